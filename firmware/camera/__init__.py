"""Camera backends, chosen by ``camera.backend`` like gpiozero's pin factories.

Each backend registers itself under a name; :func:`create_camera` imports the
backend module only when it is asked for, so ``picamera2`` (which exists only on
a Pi) is never imported elsewhere, and a missing OpenCV does not break the file
backend.
"""
from __future__ import annotations

import importlib
from typing import Any

from doorbell.core.config import CameraSection
from firmware.camera.base import Camera, CameraError, EndOfStream, Frame, register_backend, registered_backends

# backend name -> module that registers it (imported lazily)
BACKEND_MODULES: dict[str, str] = {
    "picamera2": "firmware.camera.picamera2_backend",
    "opencv": "firmware.camera.opencv_backend",
    "file": "firmware.camera.file_backend",
    "synthetic": "firmware.camera.synthetic_backend",
}


def create_camera(cfg: CameraSection, **kwargs: Any) -> Camera:
    """Build the backend named in ``cfg.backend`` (keyword arguments go to its constructor)."""
    module = BACKEND_MODULES.get(cfg.backend)
    if module is None and cfg.backend not in registered_backends():
        raise CameraError(f"unknown camera backend {cfg.backend!r}; known: {', '.join(sorted(BACKEND_MODULES))}")
    if module is not None:
        importlib.import_module(module)
    return registered_backends()[cfg.backend](cfg, **kwargs)


__all__ = ["Camera", "CameraError", "EndOfStream", "Frame", "create_camera", "register_backend",
           "registered_backends", "BACKEND_MODULES"]
