"""``synthetic`` backend: the generated porch scene (:mod:`firmware.scene`) as a camera.

For the demo and tests: a visitor walking up, lighting changes and sensor noise,
rendered deterministically. ``camera.source`` names a scene preset (default
``demo_loop``); a finite preset loops when ``camera.loop`` is true. The latest
frame's ground truth is kept in :attr:`SyntheticCamera.truth` for tests.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from doorbell.core.config import CameraSection
from firmware.camera.base import Camera, CameraError, EndOfStream, Frame, register_backend

if TYPE_CHECKING:  # the scene (and cv2) are imported at run time only when the camera opens
    from firmware.scene import PorchScene, Truth

log = logging.getLogger(__name__)
DEFAULT_PRESET = "demo_loop"


@register_backend("synthetic")
class SyntheticCamera(Camera):
    def __init__(self, cfg: CameraSection, source: str | None = None, seed: int = 0, **kwargs: Any):
        super().__init__(cfg, **kwargs)
        self.preset = str(source or cfg.source or DEFAULT_PRESET)
        self.seed = seed
        self.scene: PorchScene | None = None
        self.truth: Truth | None = None

    def _open(self) -> None:
        from firmware.scene import PorchScene

        try:
            self.scene = PorchScene(self.cfg.width, self.cfg.height, self.cfg.fps, seed=self.seed,
                                    script=self.preset)
        except ValueError as exc:
            raise CameraError(f"synthetic scene: {exc}") from None

    def _close(self) -> None:
        self.scene = None

    def read(self, timeout: float = 1.0) -> Frame | None:
        if self.scene is None:
            raise CameraError("camera not started")
        n = self.scene.n_frames
        i = self._index
        if n is not None and i >= n:
            if not self.cfg.loop:
                raise EndOfStream(f"scene {self.preset!r} ended")
            i %= n
        bgr, self.truth = self.scene.render(i)
        return self._frame_from_bgr(bgr.copy(), self._pace())
