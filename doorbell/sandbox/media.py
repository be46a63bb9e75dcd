"""Real MP4 clips and JPEG snapshots for tests and benchmarks (PyAV, no mocks), and publishing them into a spool.

``make_mp4`` encodes H.264 with PyAV; ``noise=True`` makes frames that do not
compress, so a target size is reached quickly (used for multipart uploads).
"""
from __future__ import annotations

import io
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def make_mp4(path: Path, frames: int = 15, width: int = 160, height: int = 120, noise: bool = False,
             seed: int = 0, fps: int = 15) -> Path:
    """Encode ``frames`` frames to ``path`` (H.264 MP4)."""
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        if noise:
            stream.options = {"qp": "0", "preset": "ultrafast"}
        else:
            stream.options = {"preset": "ultrafast"}
        for i in range(frames):
            if noise:
                img = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            else:
                img = np.zeros((height, width, 3), dtype=np.uint8)
                img[:, : (i * 7) % width] = (40, 120, 200)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for pkt in stream.encode(frame):
                out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)
    return path


def make_noise_mp4(path: Path, min_bytes: int, width: int = 320, height: int = 240, seed: int = 0) -> Path:
    """An MP4 of at least ``min_bytes`` (lossless noise: ~ width*height*1.5 bytes per frame)."""
    per_frame = int(width * height * 1.5)
    frames = max(2, min_bytes // per_frame + 2)
    make_mp4(path, frames=frames, width=width, height=height, noise=True, seed=seed)
    return path


def make_jpeg(seed: int = 0, width: int = 64, height: int = 48) -> bytes:
    """A small real JPEG (encoded by PyAV's mjpeg encoder)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    with av.open(buf, "w", format="image2pipe") as out:
        s = out.add_stream("mjpeg", rate=1)
        s.width, s.height, s.pix_fmt = width, height, "yuvj420p"
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuvj420p")
        for pkt in s.encode(frame):
            out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    return buf.getvalue()


def publish_clip(spool, device_id: str, video: Path | None = None, *, snapshot: bool = True,
                 trigger: str = "ring", started_at: float | None = None, frames: int = 15,
                 noise_bytes: int | None = None, seed: int = 0, clip_id: str | None = None):
    """Stage and publish one clip into ``spool`` the way the firmware does; returns the SpoolClip."""
    t = time.time() if started_at is None else started_at
    staging = spool.stage_clip(clip_id=clip_id, ts=t)
    if video is not None:
        staging.video_path.write_bytes(Path(video).read_bytes())
    elif noise_bytes:
        make_noise_mp4(staging.video_path, noise_bytes, seed=seed)
    else:
        make_mp4(staging.video_path, frames=frames, seed=seed)
    if snapshot:
        staging.write_snapshot(make_jpeg(seed))
    return staging.publish(device_id=device_id, trigger=trigger, started_at=t, ended_at=t + frames / 15,
                           trigger_at=t + 0.5, pre_roll_s=0.5, duration_s=frames / 15)
