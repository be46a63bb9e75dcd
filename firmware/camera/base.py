"""The camera backend contract: timestamped frames, a main image and a lores luma plane.

A backend delivers :class:`Frame` objects from :meth:`Camera.read`. ``main`` is
the full-resolution BGR image that gets masked and recorded; ``lores`` is the
small luma plane (320x240 by default) the motion detector reads. ``ts`` is the
capture time in seconds since the epoch on the camera's timeline: wall-clock for
live and paced sources, a virtual clock (start + n/fps) for sources replayed
faster than real time, so clips keep correct relative timing either way.

A backend that encodes H.264 itself (``picamera2``: the ISP and hardware encoder
do it) sets ``encodes_itself`` and provides :meth:`Camera.clip_store`; the others
leave encoding to :mod:`firmware.recorder`'s PyAV encoder.
"""
from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from doorbell.core.config import CameraSection
from doorbell.core.errors import DoorbellError

if TYPE_CHECKING:  # the recorder imports this module
    from firmware.recorder import ClipStore

log = logging.getLogger(__name__)

_REGISTRY: dict[str, type["Camera"]] = {}


class CameraError(DoorbellError, RuntimeError):
    """The camera cannot be opened or stopped delivering frames."""


class EndOfStream(CameraError):
    """A non-looping source has no more frames."""


@dataclass
class Frame:
    ts: float                      # capture time (epoch seconds, camera timeline)
    index: int                     # frame counter since start
    lores: np.ndarray              # (lores_h, lores_w) uint8 luma for detection
    main: np.ndarray | None = None  # (h, w, 3) uint8 BGR; None if the backend records itself and no still was asked


def register_backend(name: str) -> Callable[[type["Camera"]], type["Camera"]]:
    """Class decorator: make a backend available to ``camera.backend: <name>``."""

    def deco(cls: type["Camera"]) -> type["Camera"]:
        cls.backend_name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def registered_backends() -> dict[str, type["Camera"]]:
    return dict(_REGISTRY)


class Camera(ABC):
    """Base class for backends: lifecycle, timeline and the lores/flip helpers."""

    backend_name = "base"
    encodes_itself = False
    live = False  # a live camera that fails is retried; a missing file or bad preset is a hard error

    def __init__(self, cfg: CameraSection, realtime: bool | None = None,
                 wall: Callable[[], float] = time.time, **_ignored: Any):
        self.cfg = cfg
        self.realtime = True if realtime is None else realtime
        self._wall = wall
        self.width = cfg.width
        self.height = cfg.height
        self.fps = cfg.fps
        self.lores_size = (cfg.lores_width, cfg.lores_height)
        self._index = 0
        self._t0_wall = 0.0
        self._t0_mono = 0.0
        self._last_ts = 0.0
        self._main_wanted = threading.Event()
        self.started = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self.started:
            return
        self._open()
        self._t0_wall = self._wall()
        self._t0_mono = time.monotonic()
        self._last_ts = self._t0_wall
        self.started = True
        log.info("camera %s started: %dx%d @ %.1f fps, lores %dx%d, %s", self.backend_name, self.width,
                 self.height, self.fps, *self.lores_size, "real time" if self.realtime else "as fast as possible")

    def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        try:
            self._close()
        finally:
            log.info("camera %s stopped after %d frames", self.backend_name, self._index)

    def __enter__(self) -> "Camera":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @abstractmethod
    def _open(self) -> None: ...

    @abstractmethod
    def _close(self) -> None: ...

    @abstractmethod
    def read(self, timeout: float = 1.0) -> Frame | None:
        """Next frame, ``None`` on timeout; raises EndOfStream / CameraError."""

    # ------------------------------------------------------------------ timeline
    def now(self) -> float:
        """Current time on the camera timeline (what a button press is stamped with)."""
        if self.realtime or not self.started:
            return self._wall()
        return self._last_ts

    def want_main(self) -> None:
        """Ask for the main image on the next frame (snapshots on backends that record themselves)."""
        self._main_wanted.set()

    # ------------------------------------------------------------------ helpers for raw-frame backends
    def _pace(self) -> float:
        """Wait for frame ``_index``'s slot (real time) or advance the virtual clock; returns its ts."""
        if self.realtime:
            due = self._t0_mono + self._index / self.fps
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            ts = self._wall()
        else:
            ts = self._t0_wall + self._index / self.fps
        return ts

    def _frame_from_bgr(self, bgr: np.ndarray, ts: float) -> Frame:
        """Flip, make the lores luma plane, stamp and count a BGR frame."""
        import cv2

        if self.cfg.hflip and self.cfg.vflip:
            bgr = cv2.flip(bgr, -1)
        elif self.cfg.hflip:
            bgr = cv2.flip(bgr, 1)
        elif self.cfg.vflip:
            bgr = cv2.flip(bgr, 0)
        h, w = bgr.shape[:2]
        if w % 2 or h % 2:  # H.264 4:2:0 needs even sizes
            bgr = bgr[: h - h % 2, : w - w % 2]
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        lores = cv2.resize(gray, self.lores_size, interpolation=cv2.INTER_AREA)
        frame = Frame(ts=ts, index=self._index, lores=lores, main=np.ascontiguousarray(bgr))
        self._index += 1
        self._last_ts = ts
        return frame

    def clip_store(self, pre_roll_s: float) -> ClipStore:
        """Backends with their own encoder return their clip store; others have none."""
        raise TypeError(f"the {self.backend_name} camera does not encode itself; use the PyAV recorder")
