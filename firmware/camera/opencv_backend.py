"""``opencv`` backend: a USB webcam index, an RTSP/HTTP URL, or a file, via cv2.VideoCapture.

Frames are stamped with the wall clock when they arrive; a live source paces
itself. Reconnects are left to the service's restart policy: a source that stops
delivering raises CameraError after a few empty reads.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from doorbell.core.config import CameraSection
from firmware.camera.base import Camera, CameraError, EndOfStream, Frame, register_backend

if TYPE_CHECKING:  # cv2 is imported at run time only when the camera opens
    import cv2

log = logging.getLogger(__name__)
MAX_EMPTY_READS = 50


@register_backend("opencv")
class OpenCVCamera(Camera):
    def __init__(self, cfg: CameraSection, source: str | int | None = None, **kwargs: Any):
        super().__init__(cfg, **kwargs)
        src = cfg.source if source is None else source
        if src is None:
            src = 0
        if isinstance(src, str) and src.isdigit():
            src = int(src)
        self.source = src
        self._cap: cv2.VideoCapture | None = None
        self._empty = 0
        self._is_file = isinstance(src, str) and "://" not in src
        self.live = not self._is_file

    def _open(self) -> None:
        import cv2

        cap = cv2.VideoCapture(self.source)
        if not cap.isOpened():
            raise CameraError(f"opencv cannot open {self.source!r}")
        if isinstance(self.source, int):
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.cfg.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.cfg.height)
            cap.set(cv2.CAP_PROP_FPS, self.cfg.fps)
        fps = cap.get(cv2.CAP_PROP_FPS)
        if fps and 0 < fps <= 120:
            self.fps = float(fps)
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if w and h:
            self.width, self.height = w - w % 2, h - h % 2
        self._cap = cap

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def read(self, timeout: float = 1.0) -> Frame | None:
        if self._cap is None:
            raise CameraError("camera not started")
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            if self._is_file:
                if not self.cfg.loop:
                    raise EndOfStream(f"{self.source}: end of file")
                import cv2

                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, bgr = self._cap.read()
            if not ok or bgr is None:
                self._empty += 1
                if self._empty >= MAX_EMPTY_READS:
                    raise CameraError(f"{self.source!r} stopped delivering frames")
                time.sleep(min(timeout, 0.02))
                return None
        self._empty = 0
        ts = self._pace() if self._is_file else self._wall()
        return self._frame_from_bgr(bgr, ts)
