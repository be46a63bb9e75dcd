"""MotionDetector against ground truth: walk-ups are found (latency bounded in
frames), lighting, exposure, IR and noise are not motion, zones and masks are
honoured, the state machine confirms and cools down as configured."""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from doorbell.core.config import MotionSection, Polygon
from firmware.motion import MotionDetector, MotionResult
from firmware.scene import REGIONS

FPS = 15.0
WALKUPS = ["walkup", "walkup_far", "walkup_right", "walkup_close", "walkup_lean", "walkup_cloud",
           "walkup_porch_light", "walkup_night", "ir_switch_visitor"]
QUIET = ["lighting_ramp", "exposure_step", "ir_switch", "noise_only"]
MASKS = [Polygon(name="sidewalk", points=REGIONS["sidewalk"]), Polygon(name="flag", points=REGIONS["flag"])]
# the detector may take this many frames beyond frames_to_confirm once the
# visitor's box covers 2.5x min_area (the silhouette fills about half its box)
LATENCY_SLACK_FRAMES = 6


def run(cfg: MotionSection, ys: list[np.ndarray], fps: float = FPS, t0: float = 0.0) -> list[MotionResult | None]:
    det = MotionDetector(cfg, ys[0].shape[1], ys[0].shape[0])
    return [det.update(y, t0 + i / fps) for i, y in enumerate(ys)]


def events(results: list[MotionResult | None]) -> list[tuple[int, str]]:
    return [(i, r.event) for i, r in enumerate(results) if r is not None and r.event]


def area(b: tuple[float, float, float, float] | None) -> float:
    return 0.0 if b is None else (b[2] - b[0]) * (b[3] - b[1])


def overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.mark.parametrize("preset", WALKUPS)
def test_walkup_is_detected_promptly(preset: str, scene_luma: Callable) -> None:
    ys, truths, fps = scene_luma(preset)
    cfg = MotionSection()
    res = run(cfg, ys, fps)
    starts = [i for i, e in events(res) if e == "motion_start"]
    assert starts, f"{preset}: the visitor was never detected"
    first = starts[0]
    assert truths[first].person, f"{preset}: motion_start at frame {first} with nobody there"
    visible = next(i for i, t in enumerate(truths) if area(t.bbox) >= 2.5 * cfg.min_area)
    assert first <= visible + cfg.frames_to_confirm + LATENCY_SLACK_FRAMES, (
        f"{preset}: detected at frame {first}, visitor big enough from frame {visible}")
    assert overlaps(res[first].bbox, truths[first].bbox)
    # no event while nobody is there (before the visitor appears)
    appear = next(i for i, t in enumerate(truths) if t.person)
    assert all(r is None or not r.motion for r in res[:appear])


@pytest.mark.parametrize("preset", WALKUPS[:3])
def test_detection_follows_the_visitor_to_the_door(preset: str, scene_luma: Callable) -> None:
    """Unlike a recalibrating detector, the growing visitor is never thrown away."""
    ys, truths, fps = scene_luma(preset)
    res = run(MotionSection(), ys, fps)
    walk = [i for i, t in enumerate(truths) if t.phase == "walkup" and area(t.bbox) >= 0.03]
    assert walk
    hits = sum(1 for i in walk if res[i] and res[i].motion and overlaps(res[i].bbox, truths[i].bbox))
    assert hits == len(walk)
    near = walk[-1]
    assert res[near].bbox[3] - res[near].bbox[1] >= 0.6 * (truths[near].bbox[3] - truths[near].bbox[1])


@pytest.mark.parametrize("preset", QUIET)
def test_lighting_and_noise_are_not_motion(preset: str, scene_luma: Callable) -> None:
    ys, truths, fps = scene_luma(preset)
    for sensitivity in (0.5, 1.0):
        res = run(MotionSection(sensitivity=sensitivity), ys, fps)
        raw = [i for i, r in enumerate(res) if r and r.motion]
        assert not raw, f"{preset} (sensitivity {sensitivity}): motion on frames {raw[:10]}"
        assert not events(res)


def test_exposure_jump_is_measured_as_gain(scene_luma: Callable) -> None:
    ys, truths, fps = scene_luma("exposure_step")
    res = run(MotionSection(), ys, fps)
    jump = next(i for i, t in enumerate(truths) if t.gain > 1.5)
    assert res[jump].gain == pytest.approx(1.6, rel=0.15)


def test_ir_switch_is_relearned_not_reported(scene_luma: Callable) -> None:
    ys, truths, fps = scene_luma("ir_switch")
    res = run(MotionSection(sensitivity=1.0), ys, fps)
    switches = [i for i, (a, b) in enumerate(zip(truths, truths[1:]), 1) if a.ir != b.ir]
    assert len(switches) == 2
    for i in switches:
        assert res[i].relearned and not res[i].motion


def test_masked_regions_never_trigger(scene_luma: Callable) -> None:
    ys, truths, fps = scene_luma("masked_motion")
    sensitive = dict(min_area=0.002, sensitivity=0.8)
    unmasked = run(MotionSection(**sensitive), ys, fps)
    assert [e for _, e in events(unmasked)].count("motion_start") >= 1, "the passer-by/flag are visible unmasked"
    masked = run(MotionSection(masks=MASKS, **sensitive), ys, fps)
    assert not events(masked) and not any(r and r.motion for r in masked)


def test_zones_limit_detection(scene_luma: Callable) -> None:
    ys, truths, fps = scene_luma("walkup_far")  # the visitor comes straight up the middle
    right = Polygon(points=[(0.75, 0.0), (1.0, 0.0), (1.0, 1.0), (0.75, 1.0)])
    middle = Polygon(points=[(0.3, 0.3), (0.7, 0.3), (0.7, 1.0), (0.3, 1.0)])
    assert not events(run(MotionSection(zones=[right]), ys, fps))
    res = run(MotionSection(zones=[middle]), ys, fps)
    start = next(i for i, e in events(res) if e == "motion_start")
    x0, y0, x1, y1 = res[start].bbox
    assert x0 >= 0.25 and x1 <= 0.75 and y0 >= 0.25


def test_mask_over_the_door_hides_the_visitor_standing_there(scene_luma: Callable) -> None:
    ys, truths, fps = scene_luma("walkup_far")
    porch = Polygon(points=[(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)])
    assert not events(run(MotionSection(masks=[porch]), ys, fps))


# --- state machine on a controlled pattern --------------------------------------------------

def _pattern(rng: np.random.Generator) -> np.ndarray:
    import cv2
    base = rng.integers(40, 200, (30, 40)).astype(np.uint8)
    return cv2.resize(base, (320, 240), interpolation=cv2.INTER_LINEAR)


def _with_square(bg: np.ndarray, on: bool, x: int = 120) -> np.ndarray:
    f = bg.copy()
    if on:
        f[80:160, x:x + 60] = 255 - f[80:160, x:x + 60]
    return f


def _sequence(on: list[bool], seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    bg = _pattern(rng)
    return [_with_square(bg, o, 120 + 2 * (i % 5)) for i, o in enumerate(on)]


@pytest.mark.parametrize("confirm", [1, 3, 6])
def test_frames_to_confirm(confirm: int) -> None:
    warm = 20
    cfg = MotionSection(frames_to_confirm=confirm, cooldown_s=0)
    short = [False] * warm + [True] * (confirm - 1) + [False] * 10
    if confirm > 1:
        assert not events(run(cfg, _sequence(short)))
    longer = [False] * warm + [True] * confirm + [False] * 10
    res = run(cfg, _sequence(longer))
    assert events(res)[0] == (warm + confirm - 1, "motion_start")
    assert all(r.motion for r in res[warm:warm + confirm])


@pytest.mark.parametrize("cooldown_s", [0.0, 1.0, 2.5])
def test_cooldown_delays_motion_end(cooldown_s: float) -> None:
    warm, on = 20, 10
    cfg = MotionSection(frames_to_confirm=2, cooldown_s=cooldown_s)
    seq = [False] * warm + [True] * on + [False] * 60
    res = run(cfg, _sequence(seq))
    evs = events(res)
    assert [e for _, e in evs] == ["motion_start", "motion_end"]
    last_motion = max(i for i, r in enumerate(res) if r and r.motion)
    assert last_motion == warm + on - 1
    end = evs[1][0]
    expected = last_motion + max(1, math.ceil(round(cooldown_s * FPS, 6)))
    assert end == expected
    assert res[end].score >= res[warm + 2].score and res[end].bbox is not None


def test_motion_within_cooldown_extends_one_event() -> None:
    cfg = MotionSection(frames_to_confirm=2, cooldown_s=2.0)
    seq = [False] * 20 + [True] * 5 + [False] * 15 + [True] * 5 + [False] * 40
    kinds = [e for _, e in events(run(cfg, _sequence(seq)))]
    assert kinds == ["motion_start", "motion_end"]


def test_motion_end_reports_peak_score_and_union_box() -> None:
    cfg = MotionSection(frames_to_confirm=1, cooldown_s=0.5)
    rng = np.random.default_rng(5)
    bg = _pattern(rng)
    frames = [bg] * 20 + [_with_square(bg, True, x) for x in (40, 80, 120, 160, 200)] + [bg] * 20
    res = run(cfg, frames)
    end = next(r for r in res if r and r.event == "motion_end")
    boxes = [r.bbox for r in res if r and r.motion]
    assert end.bbox[0] == pytest.approx(min(b[0] for b in boxes))
    assert end.bbox[2] == pytest.approx(max(b[2] for b in boxes))
    assert end.score == pytest.approx(max(r.score for r in res if r and r.motion))


def test_first_frame_seeds_and_disabled_returns_none() -> None:
    frames = _sequence([False] * 3)
    det = MotionDetector(MotionSection())
    assert det.update(frames[0], 0.0) is None
    r = det.update(frames[1], 0.1)
    assert isinstance(r, MotionResult) and not r.motion and r.event is None and not det.active
    off = MotionDetector(MotionSection(enabled=False))
    assert off.update(frames[0], 0.0) is None and off.update(frames[1], 0.1) is None


def test_configure_keeps_the_background() -> None:
    seq = _sequence([False] * 20 + [True] * 5)
    det = MotionDetector(MotionSection(frames_to_confirm=1))
    for i, y in enumerate(seq[:20]):
        det.update(y, i / FPS)
    det.configure(MotionSection(frames_to_confirm=1, masks=[Polygon(points=[(0, 0), (1, 0), (1, 1), (0, 1)])]))
    assert not det.update(seq[20], 20 / FPS).motion
    det.configure(MotionSection(frames_to_confirm=1))
    r = det.update(seq[21], 21 / FPS)
    assert r.motion and r.event == "motion_start"


def test_sizes_other_than_320x240() -> None:
    import cv2
    for w, h in ((640, 480), (176, 144), (1280, 720)):
        frames = [cv2.resize(f, (w, h)) for f in _sequence([False] * 20 + [True] * 4)]
        res = run(MotionSection(frames_to_confirm=2), frames)
        assert [e for _, e in events(res)] == ["motion_start"], (w, h)


def test_global_brightness_changes_of_a_still_frame() -> None:
    rng = np.random.default_rng(2)
    bg = _pattern(rng).astype(np.float32)
    gains = list(np.linspace(1.0, 0.5, 30)) + [1.5] * 10 + list(np.linspace(1.5, 0.8, 20)) + [1.2] * 5
    frames = [np.clip(bg * g + rng.normal(0, 2, bg.shape), 0, 255).astype(np.uint8) for g in gains]
    res = run(MotionSection(sensitivity=1.0), frames)
    assert not any(r and r.motion for r in res)
