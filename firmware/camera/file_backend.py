"""``file`` backend: a recorded video decoded with PyAV, looped, paced to its own fps.

For makers testing settings on their own footage (``doorbell firmware simulate``)
and for tests on real decoded video. ``realtime=False`` replays as fast as the
pipeline consumes frames, on a virtual clock that advances 1/fps per frame, so
clip timing stays true to the footage.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from doorbell.core.config import CameraSection
from firmware.camera.base import Camera, CameraError, EndOfStream, Frame, register_backend

if TYPE_CHECKING:  # av is imported lazily, when the camera opens
    from av.container import InputContainer
    from av.video.frame import VideoFrame

log = logging.getLogger(__name__)


@register_backend("file")
class FileCamera(Camera):
    def __init__(self, cfg: CameraSection, source: str | Path | None = None, loop: bool | None = None,
                 **kwargs: Any):
        super().__init__(cfg, **kwargs)
        self.path = Path(str(source if source is not None else cfg.source or ""))
        self.loop = cfg.loop if loop is None else loop
        self._container: InputContainer | None = None
        self._frames: Iterator[VideoFrame] | None = None
        self.loops = 0

    def _open(self) -> None:
        import av

        if not self.path.is_file():
            raise CameraError(f"video file not found: {self.path}")
        try:
            container = self._container = av.open(str(self.path))
            stream = container.streams.video[0]
        except (av.FFmpegError, IndexError) as exc:
            raise CameraError(f"cannot decode {self.path}: {exc}") from None
        # Slice threads, not frame threads: each frame thread keeps its own decoded frames
        # (about 6 MB more at 720p) for a speed a paced camera does not need.
        stream.thread_type = "SLICE"
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else self.cfg.fps
        self.width = stream.codec_context.width - stream.codec_context.width % 2
        self.height = stream.codec_context.height - stream.codec_context.height % 2
        self._frames = container.decode(stream)

    def _close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
            self._frames = None

    def _next_decoded(self) -> VideoFrame:
        import av

        container, frames = self._container, self._frames
        if container is None or frames is None:
            raise CameraError("camera not started")
        for attempt in range(2):
            try:
                return next(frames)
            except StopIteration:
                if not self.loop:
                    raise EndOfStream(f"{self.path.name}: end of file") from None
                if attempt:
                    raise CameraError(f"{self.path.name}: no frames") from None
                self.loops += 1
                container.seek(0)
                self._frames = frames = container.decode(container.streams.video[0])
            except av.FFmpegError as exc:
                raise CameraError(f"{self.path.name}: decode error: {exc}") from None
        raise CameraError("unreachable")

    def read(self, timeout: float = 1.0) -> Frame | None:
        if not self.started:
            raise CameraError("camera not started")
        decoded = self._next_decoded()
        bgr = decoded.to_ndarray(format="bgr24")
        return self._frame_from_bgr(bgr, self._pace())
