"""A deterministic synthetic porch scene with per-frame ground truth.

Why: motion detection must be judged on what a doorbell camera really sees
(a visitor growing as they walk up, clouds, the porch light switching on,
auto-exposure, the IR night switch, sensor noise, a flag waving in a region a
user would mask, strangers on the public sidewalk) and the judgement needs
ground truth. Real footage has no labels, so the synthetic camera backend, the
motion tests and the benchmarks all render this one scene.

Frames are **BGR** uint8 ``(height, width, 3)``, OpenCV's channel order (and
picamera2's "RGB888", which is BGR in memory). ``PorchScene.luma(frame)`` gives
the BT.601 Y plane the motion detector works on.

Everything is a pure function of ``(width, height, fps, seed, script, index)``:
``render(i)`` gives the same frame on every run and machine (numpy's PCG64
generator, no wall clock). The background, the figure sprites, the waving flag
and the sensor-noise fields are precomputed once, so a frame is a copy, a few
small pastes, one 256-entry lookup table and two saturating adds: 1280x720 at
15 fps runs in real time on one core (see docs/motion.md for the figure).

Geometry is in frame fractions (x right, y down), so the same script renders
the same scene at 1280x720 and at 320x240. ``REGIONS`` names polygons (the
public sidewalk, the flag) that tests and configs use as masks.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray

COLOR_ORDER = "bgr"

Poly = list[tuple[float, float]]

#: Named polygons in frame fractions. ``sidewalk`` covers the street and the
#: public sidewalk (passers-by); ``flag`` the waving flag a user would mask.
REGIONS: dict[str, Poly] = {
    "sidewalk": [(0.0, 0.235), (1.0, 0.235), (1.0, 0.36), (0.0, 0.36)],
    "flag": [(0.70, 0.02), (0.90, 0.02), (0.90, 0.27), (0.70, 0.27)],
    "walkway": [(0.45, 0.345), (0.57, 0.345), (0.72, 0.63), (0.34, 0.63)],
    "porch": [(0.0, 0.63), (1.0, 0.63), (1.0, 1.0), (0.0, 1.0)],
    "door": [(0.03, 0.05), (0.12, 0.05), (0.12, 0.80), (0.03, 0.80)],
}

# Camera model: a pinhole at CAM_H metres looking level; image y of the horizon
# and frame-heights per metre at one metre distance. Horizontal positions use a
# fixed scale so the scene is identical (in fractions) at 16:9 and 4:3.
HORIZON = 0.25
FOCAL = 0.62
FOCAL_X = 0.62 * 0.6
CAM_H = 1.4
PERSON_H = 1.75
# Sprite canvas: head top and feet as fractions of the canvas height.
_HEAD_TOP = 0.03
_FEET = 0.985
_N_POSES = 8
_BAND = 64  # rows shaded/blended at once: bounds float temporaries (memory), same result
_N_FLAG = 16

# Visitor paths as (lateral metres, distance metres) waypoints ending at the door.
PATHS: dict[str, list[tuple[float, float]]] = {
    "side": [(-9.0, 6.0), (0.3, 1.7)],          # from the left edge of the yard
    "far": [(0.3, 13.0), (0.3, 1.7)],           # straight up the walkway from the sidewalk
    "right": [(8.0, 5.5), (0.3, 1.7)],          # from the right, behind the porch post
    "close": [(0.3, 9.0), (0.1, 0.8)],          # up to the camera, standing close
    "lean": [(0.3, 9.0), (0.05, 0.42)],         # a courier leaning right into the lens, filling the frame
}


@dataclass(frozen=True)
class Phase:
    """One scripted stretch of time. Lighting fields ramp linearly from the
    value at the phase start to the given value over the phase, or jump at the
    start if ``step``; ``None`` keeps the current value."""

    duration_s: float
    visitor: Literal["absent", "walkup", "stand", "leave"] = "absent"
    path: Literal["side", "far", "right", "close", "lean"] = "side"
    path_span: tuple[float, float] = (0.0, 1.0)  # walkup/leave cover this part of the path
    gain: float | None = None       # global exposure/illumination gain
    offset: float | None = None     # black-level offset, grey levels
    step: bool = False              # apply gain/offset at once (auto-exposure jump)
    light: bool | None = None       # porch light on/off (a smooth spatial gain field), switches at phase start
    ir: bool | None = None          # IR night mode on/off (grayscale, IR reflectances), switches at phase start
    wind: bool = False              # the flag waves
    passerby: bool = False          # a pedestrian crosses the public sidewalk
    passerby_dir: Literal["ltr", "rtl"] = "ltr"
    label: str = ""

    def __post_init__(self) -> None:
        if not self.duration_s > 0:
            raise ValueError(f"phase duration must be > 0, got {self.duration_s!r}")


@dataclass(frozen=True)
class Script:
    """A sequence of phases plus scene-wide settings (initial lighting, noise)."""

    phases: tuple[Phase, ...]
    loop: bool = False
    gain: float = 1.0
    offset: float = 0.0
    light: bool = False
    ir: bool = False
    noise_sigma: float = 2.0   # read noise, grey levels (Gaussian)
    shot_noise: float = 0.25   # shot noise: sigma = shot_noise * sqrt(level)

    @property
    def duration_s(self) -> float:
        return sum(p.duration_s for p in self.phases)


@dataclass(frozen=True)
class Truth:
    """Ground truth for one frame. Boxes are (x0, y0, x1, y1) frame fractions."""

    index: int
    t: float
    phase: str
    person: bool                      # the visitor is (at least partly) in view
    moving: bool                      # ... and walking (not standing still)
    bbox: tuple[float, float, float, float] | None
    passerby: bool                    # someone on the public sidewalk (to be masked)
    passerby_bbox: tuple[float, float, float, float] | None
    wind: bool                        # the flag is waving (to be masked)
    gain: float
    offset: float
    light: bool
    ir: bool


def _ph(duration: float, **kw: object) -> Phase:
    return Phase(duration, **kw)  # type: ignore[arg-type]


_VISIT_SIDE = (
    _ph(7.0, visitor="walkup", path="side", label="walkup"),
    _ph(3.0, visitor="stand", label="stand"),
    _ph(6.0, visitor="leave", path="side", label="leave"),
)
_VISIT_FAR = (
    _ph(7.0, visitor="walkup", path="far", label="walkup"),
    _ph(2.5, visitor="stand", label="stand"),
    _ph(6.0, visitor="leave", path="far", label="leave"),
)

#: Named scripts. Each is labelled by its ground truth; only the visitor
#: phases should produce motion events.
PRESETS: dict[str, Script] = {
    "walkup": Script((_ph(2.0, label="quiet"), *_VISIT_SIDE, _ph(2.0, label="quiet"))),
    "walkup_far": Script((_ph(2.0, label="quiet"), *_VISIT_FAR, _ph(2.0, label="quiet"))),
    "walkup_right": Script((_ph(2.0, label="quiet"),
                            _ph(6.0, visitor="walkup", path="right", label="walkup"),
                            _ph(2.0, visitor="stand", label="stand"),
                            _ph(5.0, visitor="leave", path="right", label="leave"),
                            _ph(2.0, label="quiet"))),
    "walkup_close": Script((
        _ph(2.0, label="quiet"),
        _ph(7.0, visitor="walkup", path="close", label="walkup"),
        _ph(4.0, visitor="stand", path="close", label="stand"),
        _ph(5.0, visitor="leave", path="close", label="leave"),
        _ph(2.0, label="quiet"),
    )),
    "walkup_lean": Script((
        _ph(2.0, label="quiet"),
        _ph(7.0, visitor="walkup", path="lean", label="walkup"),
        _ph(4.0, visitor="stand", path="lean", label="stand"),
        _ph(5.0, visitor="leave", path="lean", label="leave"),
        _ph(2.0, label="quiet"),
    )),
    # the cases a recalibrating detector misses: lighting changes while a visitor approaches
    "walkup_cloud": Script((
        _ph(2.0, label="quiet"),
        _ph(7.0, visitor="walkup", path="side", gain=0.45, label="walkup"),
        _ph(3.0, visitor="stand", gain=0.4, label="stand"),
        _ph(6.0, visitor="leave", path="side", gain=1.0, label="leave"),
        _ph(2.0, label="quiet"),
    )),
    "walkup_porch_light": Script((
        _ph(2.0, label="dusk"),
        _ph(3.5, visitor="walkup", path="far", path_span=(0.0, 0.55), label="walkup"),
        _ph(3.5, visitor="walkup", path="far", path_span=(0.55, 1.0), light=True, label="walkup"),
        _ph(3.0, visitor="stand", gain=0.3, label="stand"),
        _ph(6.0, visitor="leave", path="far", label="leave"),
        _ph(2.0, label="quiet"),
    ), gain=0.45),
    "walkup_night": Script((
        _ph(2.0, label="night"),
        *_VISIT_SIDE,
        _ph(2.0, label="night"),
    ), ir=True, gain=0.9, noise_sigma=4.0, shot_noise=0.5),
    "ir_switch_visitor": Script((
        _ph(2.0, label="dusk"),
        _ph(7.0, visitor="walkup", path="side", label="walkup"),
        _ph(1.0, visitor="stand", label="stand"),
        _ph(3.0, visitor="stand", ir=True, gain=0.9, step=True, label="stand"),
        _ph(6.0, visitor="leave", path="side", label="leave"),
        _ph(2.0, label="night"),
    ), gain=0.35),
    "lighting_ramp": Script((
        _ph(1.0, label="quiet"),
        _ph(5.0, gain=0.45, label="cloud"),
        _ph(2.0, label="overcast"),
        _ph(4.0, gain=1.2, label="sun"),
        _ph(2.0, gain=1.0, label="settle"),
        _ph(1.0, label="quiet"),
    )),
    "exposure_step": Script((
        _ph(2.0, label="quiet"),
        _ph(2.0, gain=1.6, step=True, label="ae-jump"),
        _ph(2.0, gain=1.0, label="ae-recover"),
        _ph(2.0, gain=0.4, label="dusk"),
        _ph(1.0, label="quiet"),
        _ph(2.0, light=True, label="porch-light-on"),
        _ph(2.0, gain=0.3, label="ae-recover"),
        _ph(1.5, light=False, label="porch-light-off"),
        _ph(2.0, gain=0.4, label="ae-recover"),
    )),
    "ir_switch": Script((
        _ph(2.0, label="dusk"),
        _ph(1.5, gain=0.22, label="darkening"),
        _ph(3.0, ir=True, gain=0.9, step=True, label="ir-on"),
        _ph(2.0, label="night"),
        _ph(3.0, ir=False, gain=0.35, step=True, label="ir-off"),
        _ph(2.0, label="dawn"),
    ), gain=0.35),
    "noise_only": Script((_ph(12.0, label="noise"),), gain=0.7, noise_sigma=6.0, shot_noise=0.6),
    "masked_motion": Script((
        _ph(12.0, wind=True, passerby=True, label="passerby"),
        _ph(10.0, wind=True, passerby=True, passerby_dir="rtl", label="jogger"),
    )),
    "demo_loop": Script((
        _ph(4.0, label="quiet"),
        *_VISIT_SIDE,
        _ph(4.0, label="quiet"),
        _ph(12.0, passerby=True, label="passerby"),
        *_VISIT_FAR,
        _ph(3.0, label="quiet"),
    ), loop=True),
}


# ----------------------------------------------------------------------------
# procedural textures


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells_y: int, cells_x: int) -> np.ndarray:
    """Value noise in [-1, 1]: a coarse random grid upsampled smoothly."""
    grid = rng.uniform(-1.0, 1.0, (max(2, cells_y), max(2, cells_x))).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def _fractal(rng: np.random.Generator, h: int, w: int, base: int, octaves: int = 3) -> np.ndarray:
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        c = base * 2**o
        out += amp * _smooth_noise(rng, h, w, max(2, int(c * h / max(w, 1)) + 2), c + 2)
        total += amp
        amp *= 0.5
    return out / total


def _fill_poly(mask: np.ndarray, pts: Poly) -> None:
    h, w = mask.shape[:2]
    arr = np.array([[round(x * (w - 1)), round(y * (h - 1))] for x, y in pts], np.int32)
    cv2.fillPoly(mask, [arr], 255)


def poly_mask(polys: Sequence[Poly], width: int, height: int) -> np.ndarray:
    """Boolean ``(height, width)`` mask of the union of fraction polygons."""
    m = np.zeros((height, width), np.uint8)
    for p in polys:
        _fill_poly(m, p)
    return m > 0


def _render_background(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """The static porch (float32 BGR) and an IR reflectance factor map."""
    ys = (np.arange(h, dtype=np.float32) + 0.5)[:, None] / h
    xs = (np.arange(w, dtype=np.float32) + 0.5)[None, :] / w
    X = np.broadcast_to(xs, (h, w))
    Y = np.broadcast_to(ys, (h, w))
    img = np.zeros((h, w, 3), np.float32)
    ir = np.ones((h, w), np.float32)  # IR brightness factor (foliage glows, sky goes dark)
    fine = _fractal(rng, h, w, max(8, w // 8), 2)
    mid = _fractal(rng, h, w, 24, 3)

    def paint(sel: np.ndarray, bgr: tuple[float, float, float], tex: np.ndarray | float = 0.0) -> None:
        for c in range(3):
            img[..., c] = np.where(sel, bgr[c] * (1.0 + tex), img[..., c])

    # sky and distant tree line
    sky = Y < HORIZON
    paint(sky, (235.0, 205.0, 175.0), 0.04 * mid - 0.25 * (HORIZON - Y))
    ir[sky] = 0.35
    tree_top = 0.12 + 0.05 * _smooth_noise(rng, 1, w, 2, 14)[0][None, :]
    trees = (Y > tree_top) & (Y < 0.245)
    paint(trees, (55.0, 95.0, 60.0), 0.35 * fine + 0.2 * mid)
    ir[trees] = 1.5
    # street, curb, public sidewalk
    paint((Y >= 0.235) & (Y < 0.285), (92.0, 95.0, 98.0), 0.12 * fine)
    paint((Y >= 0.285) & (Y < 0.295), (200.0, 200.0, 195.0), 0.05 * fine)
    side = (Y >= 0.295) & (Y < 0.345)
    joints = (np.abs(((X * 12.5) % 1.0) - 0.5) > 0.47)
    paint(side, (178.0, 180.0, 176.0), 0.07 * fine + 0.05 * mid - 0.25 * joints)
    # lawn with mowing stripes
    lawn = (Y >= 0.345) & (Y < 0.63)
    stripes = 0.08 * np.sign(np.sin((X - 0.5) / np.maximum(Y - HORIZON + 0.02, 0.02) * 2.2))
    paint(lawn, (48.0, 128.0, 66.0), 0.3 * fine + 0.12 * mid + stripes)
    ir[lawn] = 1.35
    # walkway pavers in perspective
    wm = np.zeros((h, w), np.uint8)
    _fill_poly(wm, REGIONS["walkway"])
    walk = wm > 0
    depth = 1.0 / np.maximum(Y - HORIZON, 0.01)
    pav = ((np.abs(((depth * 0.9) % 1.0) - 0.5) > 0.44)
           | (np.abs((((X - 0.5) * depth * 0.35 + 0.5 * (np.floor(depth * 0.9) % 2)) % 1.0) - 0.5) > 0.45))
    paint(walk, (120.0, 140.0, 165.0), 0.1 * fine + 0.08 * mid - 0.3 * pav)
    # porch floor boards converging to the vanishing point
    porch = Y >= 0.63
    board = np.floor((X - 0.5) / np.maximum(Y - HORIZON, 0.01) * 9.0)
    board_tone = (np.sin(board * 12.9898) * 43758.5453) % 1.0
    seam = np.abs((((X - 0.5) / np.maximum(Y - HORIZON, 0.01) * 9.0) % 1.0) - 0.5) > 0.45
    grain = _smooth_noise(rng, h, w, 6, max(40, w // 4))
    paint(porch, (62.0, 100.0, 142.0), 0.15 * board_tone - 0.1 + 0.12 * grain + 0.08 * fine - 0.35 * seam)
    # house wall with siding and a panelled wooden door
    wall = X < 0.14
    siding = np.abs(((Y / 0.035) % 1.0) - 0.9) < 0.1
    paint(wall, (196.0, 186.0, 170.0), 0.05 * fine - 0.22 * siding + 0.1 * (X - 0.07))
    door = (X >= 0.03) & (X < 0.12) & (Y >= 0.05) & (Y < 0.80)
    dgrain = _smooth_noise(rng, h, w, 6, max(60, w // 3))
    panel = np.zeros((h, w), bool)
    for (px0, px1) in ((0.04, 0.072), (0.078, 0.11)):
        for (py0, py1) in ((0.09, 0.40), (0.46, 0.76)):
            edge = ((np.abs(X - px0) < 0.003) | (np.abs(X - px1) < 0.003)) & (Y > py0) & (Y < py1)
            edge |= ((np.abs(Y - py0) < 0.004) | (np.abs(Y - py1) < 0.004)) & (X > px0) & (X < px1)
            panel |= edge
    paint(door, (40.0, 62.0, 118.0), 0.25 * dgrain + 0.08 * fine - 0.4 * panel)
    knob = (np.hypot((X - 0.108) * w / h, Y - 0.45) < 0.012)
    paint(knob, (60.0, 175.0, 210.0), 0.1 * fine)
    # porch post and railing on the right
    post = (X >= 0.88) & (X < 0.92) & (Y < 0.95)
    paint(post, (225.0, 230.0, 232.0), -0.25 * np.abs((X - 0.9) / 0.02) ** 2 + 0.03 * fine)
    rail = (X >= 0.92) & (((Y >= 0.45) & (Y < 0.47)) | ((Y >= 0.60) & (Y < 0.62))
                          | ((Y >= 0.47) & (Y < 0.60) & (np.abs(((X * 60) % 1.0) - 0.5) < 0.18)))
    paint(rail, (220.0, 224.0, 226.0), 0.04 * fine)
    # potted plants
    for cx, cy in ((0.22, 0.80), (0.78, 0.78)):
        pot = (Y > cy) & (Y < cy + 0.1) & (np.abs(X - cx) < 0.035 - 0.1 * (Y - cy) * 0.5)
        paint(pot, (60.0, 95.0, 180.0), 0.08 * fine - 0.3 * np.abs(X - cx) / 0.035)
        leaves = np.zeros((h, w), np.float32)
        for _ in range(40):
            lx = cx + rng.normal(0, 0.03)
            ly = cy - abs(rng.normal(0, 0.045)) + 0.01
            ang = rng.uniform(0, 180)
            ax = max(1, int(rng.uniform(0.012, 0.028) * w))
            ay = max(1, int(rng.uniform(0.004, 0.01) * w))
            tone = rng.uniform(0.6, 1.25)
            cv2.ellipse(leaves, (int(lx * w), int(ly * h)), (ax, ay), ang, 0, 360, float(tone), -1)
        lm = leaves > 0
        paint(lm, (40.0, 120.0, 50.0), (leaves - 1.0) + 0.15 * fine)
        ir[lm] = 1.5
    # flag pole (the cloth is drawn separately, limp or waving)
    pole = (np.abs(X - 0.737) < 0.003) & (Y > 0.05) & (Y < 0.40)
    paint(pole, (170.0, 170.0, 175.0), 0.0)
    return np.clip(img, 0, 255), ir


def _draw_flag(patch: np.ndarray, x0f: float, y0f: float, w: int, h: int, phase: float | None) -> None:
    """Draw the flag cloth into a float32 BGR patch whose top-left is at (x0f, y0f)."""
    ph, pw = patch.shape[:2]
    ys = (np.arange(ph, dtype=np.float32) + 0.5)[:, None] / h + y0f
    xs = (np.arange(pw, dtype=np.float32) + 0.5)[None, :] / w + x0f
    if phase is None:  # limp: hangs down along the pole
        u = (xs - 0.74) / 0.03
        top: float | NDArray[np.floating] = 0.07
        height: float | NDArray[np.floating] = 0.14
        v = (ys - top) / height
        shade = 1.0 - 0.15 * np.abs(np.sin(u * 6.0))
        inside = (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)
        stripe_coord, canton = u, (v < 0.3) & (u < 0.5)
    else:
        u = (xs - 0.74) / 0.10
        wave = 2 * math.pi * (1.3 * u - phase)
        top = 0.07 + 0.018 * u * np.sin(wave)
        height = 0.075 * (1.0 - 0.12 * u)
        v = (ys - top) / height
        shade = 0.85 + 0.25 * np.cos(wave)
        inside = (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)
        stripe_coord, canton = v, (v < 0.54) & (u < 0.4)
    stripe = (np.floor(stripe_coord * 13) % 2) == 0
    col = np.where(stripe[..., None], np.array([50, 40, 190], np.float32), np.array([235, 235, 235], np.float32))
    col = np.where(canton[..., None], np.array([120, 50, 40], np.float32), col)
    col = col * shade[..., None]
    np.copyto(patch, col.astype(np.float32), where=np.broadcast_to(inside[..., None], col.shape))


Sprites = tuple[list[np.ndarray], list[np.ndarray], list[tuple[float, float, float, float]], np.ndarray]


def _person_sprites(rng: np.random.Generator, hs: int, kind: str) -> Sprites:
    """Walking poses of a textured figure: BGR float32, alpha, alpha bbox (canvas fractions).

    The last pose (index ``_N_POSES``) is the standing pose.
    """
    s = hs
    ws = int(round(0.46 * s)) | 1
    palettes = {
        "visitor": [((150, 70, 40), (110, 70, 45)), ((40, 45, 160), (60, 60, 60)),
                    ((60, 120, 80), (120, 90, 60)), ((200, 200, 205), (50, 50, 55))],
        "passerby": [((60, 60, 60), (90, 70, 50)), ((30, 140, 200), (110, 70, 45))],
    }
    jacket, trousers = palettes[kind][int(rng.integers(len(palettes[kind])))]
    skin = [(150, 180, 225), (90, 125, 170), (60, 85, 120)][int(rng.integers(3))]
    hair = (30, 35, 45)
    cx = ws / 2.0
    tex = _fractal(rng, s, ws, 6, 3)
    weave = ((np.arange(s)[:, None] // max(2, s // 60)) % 2).astype(np.float32) * 0.08
    poses, alphas, boxes = [], [], []
    for k in range(_N_POSES + 1):
        a = 0.0 if k == _N_POSES else math.radians(24.0) * math.sin(2 * math.pi * k / _N_POSES)
        lab = np.zeros((s, ws), np.uint8)

        def limb(x0: float, y0: float, length: float, ang: float, width: float, val: int,
                 lab: np.ndarray = lab) -> tuple[int, int]:
            x1 = x0 + length * math.sin(ang)
            y1 = y0 + length * math.cos(ang)
            cv2.line(lab, (int(x0), int(y0)), (int(x1), int(y1)), val, max(1, int(width)))
            return int(x1), int(y1)

        for side, sign in ((-1, 1), (1, -1)):  # legs
            fx, fy = limb(cx + side * 0.045 * s, 0.50 * s, 0.44 * s, sign * a, 0.075 * s, 2)
            cv2.ellipse(lab, (fx + int(0.02 * s * (1 if sign * a >= 0 else -1) * 0), min(fy, int(_FEET * s) - 2)),
                        (max(1, int(0.04 * s)), max(1, int(0.018 * s))), 0, 0, 360, 5, -1)
        torso = np.array([[cx - 0.11 * s, 0.17 * s], [cx + 0.11 * s, 0.17 * s],
                          [cx + 0.095 * s, 0.54 * s], [cx - 0.095 * s, 0.54 * s]], np.int32)
        cv2.fillConvexPoly(lab, torso, 1)
        for side, sign in ((-1, -1), (1, 1)):  # arms swing against the legs
            hx, hy = limb(cx + side * 0.12 * s, 0.19 * s, 0.31 * s, sign * a * 0.8, 0.06 * s, 3)
            cv2.circle(lab, (hx, hy), max(1, int(0.028 * s)), 4, -1)
        cv2.line(lab, (int(cx), int(0.12 * s)), (int(cx), int(0.18 * s)), 4, max(1, int(0.045 * s)))
        cv2.ellipse(lab, (int(cx), int(0.095 * s)), (max(1, int(0.05 * s)), max(1, int(0.065 * s))), 0, 0, 360, 4, -1)
        cv2.ellipse(lab, (int(cx), int(0.08 * s)), (max(1, int(0.053 * s)), max(1, int(0.05 * s))), 0, 180, 360, 6, -1)
        col = np.zeros((s, ws, 3), np.float32)
        shade = (1.0 - 0.35 * ((np.arange(ws) - cx) / (0.13 * s)) ** 2).clip(0.5, 1.0)[None, :]
        for val, bgr, amp in ((1, jacket, 0.25), (2, trousers, 0.2), (3, jacket, 0.25), (4, skin, 0.08),
                              (5, (25, 25, 30), 0.1), (6, hair, 0.1)):
            sel = lab == val
            for c in range(3):
                ch = bgr[c] * (1.0 + amp * tex + (weave if val in (1, 3) else 0.0)) * shade
                col[..., c] = np.where(sel, ch, col[..., c])
        # zipper and pockets on the jacket: internal structure, not a flat blob
        zip_sel = (lab == 1) & (np.abs(np.arange(ws)[None, :] - cx) < max(1.0, 0.006 * s))
        col[zip_sel] = (200, 200, 200)
        alpha = (lab > 0).astype(np.float32)
        rows = np.flatnonzero(alpha.any(axis=1))
        cols = np.flatnonzero(alpha.any(axis=0))
        boxes.append((cols[0] / ws, rows[0] / s, (cols[-1] + 1) / ws, (rows[-1] + 1) / s))
        poses.append(np.clip(col, 0, 255))
        alphas.append(alpha)
    return poses, alphas, boxes, np.array([ws, s])


def _path_point(path: list[tuple[float, float]], u: float) -> tuple[float, float]:
    """Point at fraction ``u`` of the polyline's length."""
    segs = [math.dist(a, b) for a, b in zip(path, path[1:])]
    total = sum(segs)
    d = min(max(u, 0.0), 1.0) * total
    for (a, b), L in zip(zip(path, path[1:]), segs):
        if d <= L or L == 0:
            f = d / L if L else 0.0
            return a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1])
        d -= L
    return path[-1]


def _path_length(path: list[tuple[float, float]]) -> float:
    return sum(math.dist(a, b) for a, b in zip(path, path[1:]))


@dataclass
class _State:
    gain: float
    offset: float
    light: bool
    ir: bool


class PorchScene:
    """Renders a scripted porch scene: ``frames()`` yields ``(bgr_frame, Truth)``.

    ``script`` is a preset name (see ``PRESETS``), a ``Script`` or a list of
    ``Phase``. A looping script (``demo_loop``) makes ``frames()`` endless.
    """

    def __init__(self, width: int = 1280, height: int = 720, fps: float = 15.0, seed: int = 0,
                 script: str | Script | Sequence[Phase] = "walkup") -> None:
        if not (isinstance(width, int) and isinstance(height, int)) or width < 32 or height < 24:
            raise ValueError(f"frame size must be integers of at least 32x24, got {width!r}x{height!r}")
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps!r}")
        if isinstance(script, str):
            if script not in PRESETS:
                raise ValueError(f"unknown scene preset {script!r}; known: {', '.join(sorted(PRESETS))}")
            self.name = script
            script = PRESETS[script]
        elif not isinstance(script, Script):
            script = Script(tuple(script))
            self.name = "custom"
        else:
            self.name = "custom"
        if not script.phases:
            raise ValueError("a script needs at least one phase")
        self.width, self.height, self.fps, self.seed, self.script = width, height, float(fps), int(seed), script
        rng = np.random.default_rng([self.seed, 0x9E3779B9])
        bg, ir_factor = _render_background(rng, width, height)
        self._flag_box = self._box_px(REGIONS["flag"])
        fx0, fy0, fx1, fy1 = self._flag_box
        limp = bg[fy0:fy1, fx0:fx1].copy()
        base_patch = limp.copy()
        _draw_flag(limp, fx0 / width, fy0 / height, width, height, None)
        bg[fy0:fy1, fx0:fx1] = limp
        self._flag_phases = []
        for k in range(_N_FLAG):
            p = base_patch.copy()
            _draw_flag(p, fx0 / width, fy0 / height, width, height, k / _N_FLAG)
            self._flag_phases.append(p)
        ys = (np.arange(height, dtype=np.float32) + 0.5)[:, None] / height
        xs = (np.arange(width, dtype=np.float32) + 0.5)[None, :] / width
        # porch light: a smooth bump centred above the door, strongest on the porch
        self._light_map = (1.0 + 1.3 * np.exp(-((xs - 0.25) ** 2 + (ys - 1.0) ** 2) / 0.18)).astype(np.float32)
        # IR illuminator falls off with distance: near (bottom) bright, far (top) dim
        ir_fall = (0.35 + 0.75 * np.clip((ys - 0.15) / 0.85, 0, 1) ** 0.7).astype(np.float32)
        self._ir_map = (ir_factor * ir_fall).astype(np.float32)
        self._bg_f = bg
        self._bg_cache: dict[tuple[bool, bool], np.ndarray] = {}
        self._flag_cache: dict[tuple[bool, bool, int], np.ndarray] = {}
        hs = max(16, int(0.72 * height))
        self._vis = _person_sprites(rng, hs, "visitor")
        self._pas = _person_sprites(rng, max(16, int(0.16 * height)), "passerby")
        self._sprite_cache: dict[tuple[str, int, bool], tuple[np.ndarray, np.ndarray]] = {}
        self._noise = self._make_noise(rng, bg, gray=False)
        self._noise_gray = self._make_noise(rng, bg, gray=True) if any(
            p.ir for p in script.phases) or script.ir else None
        # phase timeline and the lighting state at each phase start
        self._starts: list[float] = []
        self._states: list[_State] = []
        st = _State(script.gain, script.offset, script.light, script.ir)
        t = 0.0
        for phase in script.phases:
            self._starts.append(t)
            self._states.append(replace(st))
            if phase.gain is not None:
                st.gain = phase.gain
            if phase.offset is not None:
                st.offset = phase.offset
            if phase.light is not None:
                st.light = phase.light
            if phase.ir is not None:
                st.ir = phase.ir
            t += phase.duration_s
        self._total = t
        self._lut_cache: dict[tuple[float, float], np.ndarray] = {}

    # ------------------------------------------------------------------ API

    @property
    def n_frames(self) -> int | None:
        """Frames in one pass of the script; ``None`` when it loops forever."""
        return None if self.script.loop else int(round(self._total * self.fps))

    @property
    def period_frames(self) -> int:
        """Frames in one pass of the script (also for looping scripts)."""
        return int(round(self._total * self.fps))

    @property
    def duration_s(self) -> float:
        return self._total

    def frames(self, limit: int | None = None) -> Iterator[tuple[np.ndarray, Truth]]:
        """Yield ``(frame, truth)`` in order; endless for looping scripts unless ``limit``."""
        n = self.n_frames if limit is None else (limit if self.n_frames is None else min(limit, self.n_frames))
        i = 0
        while n is None or i < n:
            yield self.render(i)
            i += 1

    def truths(self, limit: int | None = None) -> list[Truth]:
        """Ground truth only (cheap: nothing is rendered)."""
        n = self.n_frames if limit is None else limit
        if n is None:
            raise ValueError("a looping scene needs a limit")
        return [self.truth(i) for i in range(n)]

    @staticmethod
    def luma(frame: np.ndarray) -> np.ndarray:
        """BT.601 Y plane of a BGR frame (what a camera's YUV420 lores stream carries)."""
        return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)

    def region_mask(self, name: str) -> np.ndarray:
        """Boolean mask of a named region at this scene's resolution."""
        return poly_mask([REGIONS[name]], self.width, self.height)

    def truth(self, index: int) -> Truth:
        return self._layout(index)[0]

    def render(self, index: int) -> tuple[np.ndarray, Truth]:
        """Frame ``index`` (deterministic, random access)."""
        truth, vis, pas, flag_k = self._layout(index)
        frame = self._background(truth.light, truth.ir).copy()
        if flag_k is not None:
            fx0, fy0, fx1, fy1 = self._flag_box
            frame[fy0:fy1, fx0:fx1] = self._flag_patch(truth.light, truth.ir, flag_k)
        for placement, kind in ((pas, "passerby"), (vis, "visitor")):
            if placement is not None:
                self._paste(frame, kind, placement, truth.light, truth.ir)
        gain = truth.gain / self._prescale(truth.light, truth.ir)
        if gain != 1.0 or truth.offset != 0.0:
            cv2.LUT(frame, self._lut(gain, truth.offset), dst=frame)
        self._add_noise(frame, index, truth.ir)
        return frame, truth

    # ------------------------------------------------------------- internals

    def _box_px(self, poly: Poly) -> tuple[int, int, int, int]:
        xs = [p[0] for p in poly]
        ys = [p[1] for p in poly]
        return (int(min(xs) * self.width), int(min(ys) * self.height),
                int(math.ceil(max(xs) * self.width)), int(math.ceil(max(ys) * self.height)))

    def _shade(self, img: np.ndarray, light: bool, ir: bool,
               region: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """Apply the porch light and/or IR mode to float BGR (whole frame or a region)."""
        out = img
        if region is not None:
            x0, y0, x1, y1 = region
            lm, im = self._light_map[y0:y1, x0:x1], self._ir_map[y0:y1, x0:x1]
        else:
            lm, im = self._light_map, self._ir_map
        if ir:
            g = out[..., 0] * 0.114 + out[..., 1] * 0.587 + out[..., 2] * 0.299
            g = g * im
            if light:
                g = g * (0.7 + 0.3 * lm)
            out = np.repeat(g[..., None], 3, axis=2)
        elif light:
            out = out * lm[..., None]
        k = self._prescale(light, ir)
        return out * k if k != 1.0 else out

    def _prescale(self, light: bool, ir: bool) -> float:
        """Storage scale of a lighting variant. The porch light and the IR lamp
        push the stored background past 255; a real sensor clips only after
        exposure, so such variants are stored darker and the exposure lookup
        table scales them back (clipping there, after the gain)."""
        peak = {(False, False): 1.0, (True, False): 2.3, (False, True): 1.5, (True, True): 2.4}[(light, ir)]
        return 1.0 / peak

    def _background(self, light: bool, ir: bool) -> np.ndarray:
        key = (light, ir)
        if key not in self._bg_cache:
            # Shaded in bands of rows: the float temporaries of a whole 720p frame are ~45 MB.
            bg = np.empty((self.height, self.width, 3), np.uint8)
            for y0 in range(0, self.height, _BAND):
                y1 = min(self.height, y0 + _BAND)
                band = self._shade(self._bg_f[y0:y1], light, ir, (0, y0, self.width, y1))
                bg[y0:y1] = np.clip(band, 0, 255).astype(np.uint8)
            self._bg_cache[key] = bg
        return self._bg_cache[key]

    def _flag_patch(self, light: bool, ir: bool, k: int) -> np.ndarray:
        key = (light, ir, k)
        if key not in self._flag_cache:
            self._flag_cache[key] = np.clip(
                self._shade(self._flag_phases[k], light, ir, self._flag_box), 0, 255).astype(np.uint8)
        return self._flag_cache[key]

    def _lut(self, gain: float, offset: float) -> np.ndarray:
        key = (round(gain, 4), round(offset, 2))
        lut = self._lut_cache.get(key)
        if lut is None:
            lut = np.clip(np.arange(256, dtype=np.float32) * gain + offset, 0, 255).round().astype(np.uint8)
            if len(self._lut_cache) > 512:
                self._lut_cache.clear()
            self._lut_cache[key] = lut
        return lut

    def _make_noise(self, rng: np.random.Generator, bg: np.ndarray,
                    gray: bool) -> tuple[np.ndarray, np.ndarray, int] | None:
        """A flat noise field (positive and negative parts, uint8) slightly longer
        than a frame; each frame uses it at a random offset, so noise differs
        frame to frame without generating millions of normals per frame."""
        sig, shot = self.script.noise_sigma, self.script.shot_noise
        if sig <= 0 and shot <= 0:
            return None
        h, w = self.height, self.width
        level = bg.mean(axis=2) if gray else bg
        scale = np.sqrt(sig**2 + shot**2 * level).astype(np.float32)
        pad = 3 * w * 4
        if gray:
            z = rng.standard_normal(h * w + pad // 3, dtype=np.float32)
            z = np.repeat(z, 3)
            scale3 = np.repeat(scale.reshape(-1), 3)
        else:
            z = rng.standard_normal(h * w * 3 + pad, dtype=np.float32)
            scale3 = scale.reshape(-1)
        n = z[: h * w * 3] * scale3
        n = np.concatenate([n, z[h * w * 3:] * float(np.median(scale3))])
        n = np.round(n)
        pos = np.clip(n, 0, 255).astype(np.uint8)
        neg = np.clip(-n, 0, 255).astype(np.uint8)
        return pos, neg, pad

    def _add_noise(self, frame: np.ndarray, index: int, ir: bool) -> None:
        bank = self._noise_gray if ir and self._noise_gray is not None else self._noise
        if bank is None:
            return
        pos, neg, pad = bank
        off = int(np.random.default_rng([self.seed, index, 7]).integers(0, pad // 3)) * 3
        n = frame.size
        flat = frame.reshape(-1, 1)
        cv2.add(flat, pos[off:off + n].reshape(-1, 1), dst=flat)
        cv2.subtract(flat, neg[off:off + n].reshape(-1, 1), dst=flat)

    def _phase_at(self, t: float) -> tuple[int, float]:
        i = 0
        for k, s in enumerate(self._starts):
            if t >= s:
                i = k
        p = self.script.phases[i]
        return i, min(max((t - self._starts[i]) / p.duration_s, 0.0), 1.0)

    def _layout(self, index: int) -> tuple[Truth, tuple | None, tuple | None, int | None]:
        if index < 0:
            raise ValueError(f"frame index must be >= 0, got {index}")
        t = index / self.fps
        # a looping script repeats in whole frames, so frame i and i + period match
        tt = (index % self.period_frames) / self.fps if self.script.loop else min(t, self._total - 1e-9)
        tt = min(tt, self._total - 1e-9)
        i, u = self._phase_at(tt)
        p = self.script.phases[i]
        st = self._states[i]
        nxt_gain = p.gain if p.gain is not None else st.gain
        nxt_off = p.offset if p.offset is not None else st.offset
        if p.step:
            gain, offset = nxt_gain, nxt_off
        else:
            gain = st.gain + (nxt_gain - st.gain) * u
            offset = st.offset + (nxt_off - st.offset) * u
        light = st.light if p.light is None else p.light
        ir = st.ir if p.ir is None else p.ir
        local_t = tt - self._starts[i]
        # the visitor
        vis = None
        moving = False
        if p.visitor != "absent":
            if p.visitor == "walkup":
                path = PATHS[p.path]
                a, b = p.path_span
                lat, dist = _path_point(path, a + (b - a) * u)
                moving = True
                speed = _path_length(path) * abs(b - a) / p.duration_s
            elif p.visitor == "leave":
                path = PATHS[p.path]
                a, b = p.path_span
                lat, dist = _path_point(path, 1.0 - (a + (b - a) * u))
                moving = True
                speed = _path_length(path) * abs(b - a) / p.duration_s
            else:
                lat, dist = PATHS[p.path][-1]
                lat += 0.03 * math.sin(2 * math.pi * local_t / 2.5)  # a slight sway
                speed = 0.0
            stride = 1.4  # metres per gait cycle
            pose = _N_POSES if speed == 0 else int((local_t * speed / stride * _N_POSES) % _N_POSES)
            vis = self._place(lat, dist, PERSON_H, pose, self._vis)
        bbox = vis[4] if vis is not None else None
        if vis is not None and bbox is None:
            vis = None
        # the passer-by on the public sidewalk
        pas = None
        if p.passerby:
            d = 10.5
            lx = -15.5 + 31.0 * u  # enters and leaves beyond the frame edges
            if p.passerby_dir == "rtl":
                lx = -lx
            pose = int((local_t * 1.4 / 1.4 * _N_POSES) % _N_POSES)
            pas = self._place(lx, d, 1.7, pose, self._pas)
            if pas is not None and pas[4] is None:
                pas = None
        flag_k = int((local_t * 1.2 * _N_FLAG) % _N_FLAG) if p.wind else None
        truth = Truth(index=index, t=t, phase=p.label or p.visitor, person=vis is not None,
                      moving=moving and vis is not None, bbox=bbox, passerby=pas is not None,
                      passerby_bbox=pas[4] if pas is not None else None, wind=p.wind,
                      gain=float(gain), offset=float(offset), light=light, ir=ir)
        return truth, vis, pas, flag_k

    def _place(self, lat: float, dist: float, height_m: float, pose: int, sprites: tuple) -> tuple | None:
        """Where a figure's sprite canvas goes in pixels and its visible bbox (fractions)."""
        poses, alphas, boxes, (ws, hs) = sprites
        feet_y = HORIZON + FOCAL * CAM_H / dist
        head_y = HORIZON - FOCAL * (height_m - CAM_H) / dist
        canvas_h = (feet_y - head_y) / (_FEET - _HEAD_TOP) * self.height
        if canvas_h < 4:
            return None
        k = canvas_h / hs
        cw, ch = max(1, int(round(ws * k))), max(1, int(round(hs * k)))
        cx = (0.5 + FOCAL_X * lat / dist) * self.width
        x0 = int(round(cx - cw / 2))
        y0 = int(round(head_y * self.height - _HEAD_TOP * ch))
        bx0, by0, bx1, by1 = boxes[pose]
        fx0 = max(0.0, (x0 + bx0 * cw) / self.width)
        fy0 = max(0.0, (y0 + by0 * ch) / self.height)
        fx1 = min(1.0, (x0 + bx1 * cw) / self.width)
        fy1 = min(1.0, (y0 + by1 * ch) / self.height)
        visible = (fx1 - fx0) * self.width >= 1 and (fy1 - fy0) * self.height >= 1
        bbox = (float(fx0), float(fy0), float(fx1), float(fy1)) if visible else None
        return x0, y0, cw, ch, bbox, pose

    def _paste(self, frame: np.ndarray, kind: str, placement: tuple, light: bool, ir: bool) -> None:
        x0, y0, cw, ch, _bbox, pose = placement
        sprites = self._vis if kind == "visitor" else self._pas
        poses, alphas = sprites[0], sprites[1]
        H, W = self.height, self.width
        sx0, sy0 = max(0, -x0), max(0, -y0)
        fx0, fy0 = max(0, x0), max(0, y0)
        fx1, fy1 = min(W, x0 + cw), min(H, y0 + ch)
        if fx1 <= fx0 or fy1 <= fy0:
            return
        interp = cv2.INTER_AREA if ch < poses[pose].shape[0] else cv2.INTER_LINEAR
        spr = cv2.resize(poses[pose], (cw, ch), interpolation=interp)
        alp = cv2.resize(alphas[pose], (cw, ch), interpolation=interp)
        spr = spr[sy0:sy0 + fy1 - fy0, sx0:sx0 + fx1 - fx0]
        alp = alp[sy0:sy0 + fy1 - fy0, sx0:sx0 + fx1 - fx0, None]
        # Blended in bands of rows (the same arithmetic per pixel): a visitor close to the
        # lens covers most of the frame, and its float temporaries would otherwise peak at
        # several frame-sized arrays.
        for b0 in range(0, fy1 - fy0, _BAND):
            b1 = min(fy1 - fy0, b0 + _BAND)
            shaded = self._shade(spr[b0:b1], light, ir, (fx0, fy0 + b0, fx1, fy0 + b1))
            roi = frame[fy0 + b0:fy0 + b1, fx0:fx1]
            out = roi.astype(np.float32)
            out += alp[b0:b1] * (shaded - out)
            np.clip(out, 0, 255, out=out)
            roi[...] = out.astype(np.uint8)


__all__ = ["COLOR_ORDER", "REGIONS", "PATHS", "PRESETS", "Phase", "Script", "Truth", "PorchScene", "poly_mask"]
