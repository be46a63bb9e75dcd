"""The synthetic porch scene: deterministic, labelled, and what the labels say is on screen."""
from __future__ import annotations

import numpy as np
import pytest

from firmware.scene import PRESETS, REGIONS, Phase, PorchScene, Script, poly_mask


def test_render_is_deterministic_and_seeded() -> None:
    a = PorchScene(320, 240, 15, 3, "walkup")
    b = PorchScene(320, 240, 15, 3, "walkup")
    c = PorchScene(320, 240, 15, 4, "walkup")
    fa, ta = a.render(120)
    fb, tb = b.render(120)
    fc, _ = c.render(120)
    assert np.array_equal(fa, fb) and ta == tb
    assert not np.array_equal(fa, fc)


@pytest.mark.parametrize("size", [(320, 240), (1280, 720)])
def test_frame_format_is_bgr_uint8(size: tuple[int, int]) -> None:
    scene = PorchScene(size[0], size[1], 15, 0, "walkup")
    frame, truth = scene.render(0)
    assert frame.shape == (size[1], size[0], 3) and frame.dtype == np.uint8
    # BGR: the lawn (lower middle, beside the walkway) is green, the door is reddish brown
    lawn = frame[int(0.5 * size[1]), int(0.3 * size[0])].astype(int)
    assert lawn[1] > lawn[0] and lawn[1] > lawn[2]
    door = frame[int(0.3 * size[1]), int(0.06 * size[0])].astype(int)
    assert door[2] > door[0]
    assert PorchScene.luma(frame).shape == (size[1], size[0])
    assert truth.index == 0 and truth.t == 0.0 and not truth.person


def test_walkup_truth_grows_then_leaves() -> None:
    scene = PorchScene(320, 240, 15, 0, "walkup")
    truths = scene.truths()
    assert len(truths) == scene.n_frames == 300
    phases = [t.phase for t in truths]
    assert phases[0] == "quiet" and "walkup" in phases and "stand" in phases and "leave" in phases
    walk = [t for t in truths if t.phase == "walkup" and t.person]
    heights = [t.bbox[3] - t.bbox[1] for t in walk]
    assert heights[-1] > 3 * heights[0], "the visitor must grow as they approach"
    assert all(t.moving for t in walk)
    assert all(t.person and not t.moving for t in truths if t.phase == "stand")
    assert not truths[-1].person
    for t in truths:
        if t.bbox:
            x0, y0, x1, y1 = t.bbox
            assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1


def test_visitor_pixels_are_where_the_truth_says() -> None:
    scene = PorchScene(320, 240, 15, 0, "walkup")
    quiet, _ = scene.render(5)
    frame, truth = scene.render(140)  # standing at the door
    assert truth.person and truth.bbox
    diff = np.abs(PorchScene.luma(frame).astype(int) - PorchScene.luma(quiet).astype(int)) > 25
    x0, y0, x1, y1 = truth.bbox
    inside = np.zeros_like(diff)
    inside[int(y0 * 240):int(np.ceil(y1 * 240)), int(x0 * 320):int(np.ceil(x1 * 320))] = True
    assert diff[inside].mean() > 0.3, "the figure is textured and differs from the porch"
    assert diff[~inside].mean() < 0.01, "nothing else changes"


def test_passerby_stays_on_the_sidewalk_and_flag_waves_in_its_region() -> None:
    scene = PorchScene(320, 240, 15, 0, "masked_motion")
    side = poly_mask([REGIONS["sidewalk"]], 320, 240)
    flag = poly_mask([REGIONS["flag"]], 320, 240)
    f0, t0 = scene.render(60)
    f1, t1 = scene.render(61)
    assert t0.passerby and t0.wind and not t0.person
    changed = np.abs(PorchScene.luma(f0).astype(int) - PorchScene.luma(f1).astype(int)) > 25
    assert changed.sum() > 20
    assert not (changed & ~(side | flag)).any()
    x0, y0, x1, y1 = t0.passerby_bbox
    assert y0 >= 0.22 and y1 <= 0.37


def test_ir_mode_is_grayscale_and_lighting_fields_are_labelled() -> None:
    scene = PorchScene(320, 240, 15, 0, "ir_switch")
    truths = scene.truths()
    night = next(i for i, t in enumerate(truths) if t.ir)
    frame, truth = scene.render(night)
    assert truth.ir and (frame[..., 0] == frame[..., 1]).all() and (frame[..., 1] == frame[..., 2]).all()
    day, _ = scene.render(0)
    assert not (day[..., 0] == day[..., 2]).all()
    gains = [t.gain for t in PorchScene(320, 240, 15, 0, "lighting_ramp").truths()]
    assert min(gains) == pytest.approx(0.45) and max(gains) == pytest.approx(1.2)


def test_exposure_step_is_sudden() -> None:
    truths = PorchScene(320, 240, 15, 0, "exposure_step").truths()
    jumps = [b.gain - a.gain for a, b in zip(truths, truths[1:])]
    assert max(jumps) == pytest.approx(0.6)
    assert any(t.light for t in truths)


def test_demo_loop_repeats() -> None:
    scene = PorchScene(320, 240, 15, 0, "demo_loop")
    assert scene.n_frames is None and scene.script.loop
    p = scene.period_frames
    frames = list(scene.frames(limit=3))
    assert len(frames) == 3
    a, b = scene.truth(p // 3), scene.truth(p + p // 3)
    assert (a.phase, a.person, a.bbox) == (b.phase, b.person, b.bbox)
    with pytest.raises(ValueError, match="limit"):
        scene.truths()


def test_custom_script_and_invalid_arguments() -> None:
    scene = PorchScene(160, 120, 10, 0, [Phase(1.0), Phase(2.0, visitor="walkup", path="far")])
    assert scene.n_frames == 30 and scene.name == "custom"
    assert scene.truth(29).person
    with pytest.raises(ValueError, match="unknown scene preset"):
        PorchScene(320, 240, 15, 0, "nope")
    with pytest.raises(ValueError, match="duration"):
        Phase(0.0)
    with pytest.raises(ValueError, match="at least one phase"):
        PorchScene(320, 240, 15, 0, Script(()))
    with pytest.raises(ValueError, match="frame size"):
        PorchScene(10, 10, 15, 0, "walkup")
    with pytest.raises(ValueError, match="fps"):
        PorchScene(320, 240, 0, 0, "walkup")
    with pytest.raises(ValueError, match="index"):
        scene.render(-1)


def test_every_preset_renders() -> None:
    for name in PRESETS:
        scene = PorchScene(64, 48, 5, 0, name)
        frame, truth = scene.render((scene.period_frames) // 2)
        assert frame.shape == (48, 64, 3), name
