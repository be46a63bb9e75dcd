"""Helpers shared by the firmware tests (imported as a plain module: tests/ has no packages)."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def decode_frames(path: Path) -> list[tuple[float, np.ndarray]]:
    """Every frame of an MP4 decoded with PyAV: (time in seconds, BGR array)."""
    with av.open(str(path)) as c:
        return [(float(f.time), f.to_ndarray(format="bgr24")) for f in c.decode(video=0)]
