"""Helpers shared by the firmware tests (imported as a plain module: tests/ has no packages)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np


def decode_frames(path: Path) -> list[tuple[float, np.ndarray]]:
    """Every frame of an MP4 decoded with PyAV: (time in seconds, BGR array)."""
    with av.open(str(path)) as c:
        return [(float(f.time), f.to_ndarray(format="bgr24")) for f in c.decode(video=0)]


def record_clip(spool_dir: Path, video: Path, *, sealing: Any = None, clear_snapshot: bool = False,
                ring_frame: int = 60, frames: int | None = None, device_id: str = "dev-a") -> Any:
    """Record one ring clip from real footage through the real recorder (PyAV) into a spool; return it.

    ``sealing`` (doorbell.core.spool.Sealing) records it encrypted and signed, as with
    ``encryption.enabled``; ``clip.clear`` then still holds the recorder's in-memory metadata
    (never on disk). ``frames`` stops the replay early (default: the whole video).
    """
    from doorbell.core.config import parse_config
    from doorbell.core.spool import Spool
    from firmware.camera import create_camera
    from firmware.recorder import ClipRecorder, SoftwareClipStore

    cfg = parse_config({"camera": {"backend": "file", "source": str(video), "loop": False,
                                   "keyframe_interval_s": 1.0, "bitrate": 1_000_000},
                        "clips": {"pre_roll_s": 2.0, "post_roll_s": 2.0, "max_length_s": 30.0}}, env={})
    cam = create_camera(cfg.camera, realtime=False)
    cam.start()
    spool = Spool(spool_dir)
    before = {c.clip_id for c in spool.pending_clips()}
    store = SoftwareClipStore(cam.fps, cfg.camera.bitrate, 1.0, cfg.clips.pre_roll_s)
    rec = ClipRecorder(spool, device_id, cfg.clips, store, fps=cam.fps, start_publisher=False,
                       sealing=sealing, clear_snapshot=clear_snapshot)
    i = 0
    try:
        while frames is None or i < frames:
            try:
                frame = cam.read()
            except Exception:  # end of the file
                break
            if i == ring_frame:
                rec.trigger("ring", frame.ts)
            rec.on_frame(frame)
            i += 1
        rec.flush()
    finally:
        cam.stop()
    [clip] = [c for c in spool.pending_clips() if c.clip_id not in before]
    [published] = rec.published  # the same clip, with the recorder's in-memory metadata (sealed clips)
    assert published.clip_id == clip.clip_id
    return published


# Long enough (>= 8 bytes) that random ciphertext never holds one by chance: MP4 brands as
# ``ftyp`` boxes, MP4 box headers, the JFIF APP0 segment that follows a JPEG's start (OpenCV writes one).
MEDIA_SIGNATURES = (b"ftypisom", b"ftypiso5", b"ftypiso6", b"ftypmp41", b"ftypmp42", b"moov\x00\x00\x00",
                    b"mvhd\x00\x00\x00", b"\xe0\x00\x10JFIF\x00")


def assert_opaque(data: bytes, plaintext: bytes | None = None, what: str = "") -> None:
    """``data`` shows no MP4/JPEG signature, does not start like one, and shares no 32-byte run with ``plaintext``."""
    assert data[:3] != b"\xff\xd8\xff" and data[4:8] != b"ftyp", what
    for sig in MEDIA_SIGNATURES:
        assert sig not in data, (what, sig)
    if plaintext:
        for i in range(0, max(1, len(plaintext) - 32), 4096):
            assert plaintext[i:i + 32] not in data, (what, i)
