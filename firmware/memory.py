"""Keep the firmware's resident memory small: a Pi Zero 2 W has 512 MB for everything.

Measured with ``benchmarks/firmware.py --rss-only`` (see docs/performance.md).
What the firmware holds at 1280x720 is mostly fixed: CPython, numpy, PyAV
(FFmpeg), OpenCV and pydantic loaded (~110 MB, much of it shared library
pages), the H.264 encoder's frames (~24 MB) and, with the ``file`` camera, the
decoder's (~20 MB). The pre-roll ring holds encoded packets (about 1.5 MB for
4 s at 720p), never raw frames. What is tunable is process-wide and set once,
before any thread or codec exists (:func:`tune_process`):

- no transparent huge pages: libx264 asks for them for its frame buffers,
  which rounds each up to 2 MiB resident (~8 MB at 720p);
- glibc malloc: 2 arenas instead of 8 per core, and a fixed 128 KiB mmap
  threshold so per-frame buffers (2.7 MB BGR, 1.4 MB YUV) are returned to the
  OS when freed instead of lingering in the heap (~8 MB);
- one OpenBLAS thread: numpy starts a BLAS thread pool (with its buffers) at
  import, and the firmware does no linear algebra (~2 MB). Only if the
  operator did not set ``OPENBLAS_NUM_THREADS`` and numpy is not loaded yet.
"""
from __future__ import annotations

import logging
import os
import sys

from doorbell.core.memory import disable_thp, limit_arenas

log = logging.getLogger(__name__)


def tune_process() -> None:
    """Apply the memory settings above; call first thing in a firmware process."""
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    arenas = limit_arenas(2, 128 * 1024)
    thp = disable_thp()
    log.debug("memory: malloc arenas capped %s, transparent huge pages off %s", arenas, thp)
