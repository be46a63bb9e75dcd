"""Motion detection on the camera's low-resolution luma plane.

Why this design: a doorbell camera sees big *illumination* changes (clouds,
auto-exposure jumps, the porch light, the IR night switch) and one big
*real* change that matters most: a visitor walking up, growing until they fill
a good part of the frame. Frigate's detector resets ("recalibrates") its
background whenever a large part of the frame changes, which throws the
approaching visitor away with the lighting. Here lighting is *modelled and
divided out* instead:

1. Downscale the Y plane by area averaging to about 80x60 (averages sensor
   noise down by ~4x) and take ``log(Y + 3)``: an illumination change is
   then an *additive* field, ``log F - log B = log g(x, y) + residual``.
2. Estimate ``log g`` robustly, in two scales. Coarse: block means of the log
   difference on an 8x6 grid, a quadratic surface fitted to them by
   iteratively re-weighted least squares (blocks covered by a person are
   outliers and lose their weight). Fine: the remainder's means on a 16x12
   grid, median-filtered 5x5, so a porch light's bump is followed but
   anything covering less than half of that window (a person) is not. Cells
   that were moving on the previous frame and clipped cells do not vote, so
   a visitor who fills much of the frame cannot turn into "lighting". The
   field is interpolated back to the grid and subtracted: a person is local
   and structured and stays in the residual; a global or smooth change
   leaves none.
3. Threshold the residual per cell at the largest of a floor set by
   ``sensitivity`` (0.22 .. 0.06 in log units, i.e. about a 25 % .. 6 %
   brightness change), ``4.5 x`` that cell's running noise estimate (waving
   leaves and noisy corners get a higher bar on their own) and a sensor-noise
   model for dark cells. Cells with clipped pixels (>= 250) are judged only
   in the direction clipping allows (an exposure jump clips the sky).
4. Zones and masks (frame-fraction polygons) are rasterised once; masks are
   grown by one analysis cell so the edge of something moving inside one
   never leaks out. Isolated cells are dropped (a cell needs 3 changed cells
   in its 3x3 neighbourhood, which keeps thin legs), the rest dilated to group
   parts, connected components counted by their changed cells; the frame has
   motion when they cover at least ``min_area`` of the frame.
5. The background follows the scene (time constant 1.5 s) where there is no
   motion; under motion it follows only the lighting field, plus a slow
   absorption (30 s) so a parked object does not trigger forever.
6. A change that is not a smooth field and newly hits more than a quarter of
   the analysed area *in one frame* (the IR switch: grayscale, foliage turns
   bright, the sky goes dark) cannot be a person, who grows over many frames.
   Then the background is re-learned like Frigate does, **except** under the
   cells that were already moving, which keep their background (shifted by
   the lighting field) and catch up within ~4 s, so a visitor already in view
   stays detected.
7. The first second after a (re)start only learns (fast) and reports no motion.

The state machine confirms motion after ``frames_to_confirm`` consecutive
motion frames (``motion_start``) and ends it after ``cooldown_s`` seconds
without motion (``motion_end``). Everything is numpy + OpenCV on an ~80x60
grid: well under 1 ms per 320x240 frame on one x86 core (see
``benchmarks/motion.py`` and docs/motion.md).

No face or person recognition happens here or anywhere (product rule 7).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, cast

import cv2
import numpy as np
from numpy.typing import NDArray

from doorbell.core.config import MotionSection

log = logging.getLogger(__name__)

EventKind = Literal["motion_start", "motion_end"]
BBox = tuple[float, float, float, float]

_TARGET_CELLS = 4800          # analysis grid size (80x60 for 320x240)
_BLOCKS = (8, 6)              # lighting-field block grid (x, y)
_LOG_OFFSET = 3.0             # log(Y + 3): keeps log(0) finite; noisy dark cells get a higher bar via sigma
_TAU_BG_S = 1.5               # background follows the (motion-free) scene
_TAU_ABSORB_S = 30.0          # a parked object becomes background
_TAU_VAR_S = 5.0              # noise estimate
_TAU_SUSPECT_S = 4.0          # cells kept through a re-learn catch up this fast
_WARMUP_S = 1.0               # after (re)start: learn fast, report no motion
_TAU_WARMUP_S = 0.25
_NOISE_K = 4.5                # threshold in noise sigmas
_MIN_NOISE_LEVELS = 1.0       # assumed least noise of an analysis cell, grey levels
_FINE_BLOCKS = (16, 12)       # local lighting correction grid (x, y)
_EVENT_FRACTION = 0.25        # newly changed share of the analysed area that means "camera event"


@dataclass(frozen=True, slots=True)
class MotionResult:
    """What one frame showed.

    ``motion``: this frame differs from the background beyond lighting and
    noise (raw, unconfirmed). ``active``: the confirmed motion state.
    ``event``: ``motion_start``/``motion_end`` on the frame where the state
    changes, else ``None``. ``score``: share of the frame in motion (0..1);
    for ``motion_end`` the peak score of the event. ``bbox``: (x0, y0, x1, y1)
    frame fractions of the moving area; for ``motion_end`` the union over the
    event. ``gain``: the estimated global illumination gain against the
    background (1.0 = unchanged). ``relearned``: a camera-wide change (IR
    switch) was absorbed on this frame.
    """

    ts: float
    motion: bool
    active: bool
    event: EventKind | None
    score: float
    bbox: BBox | None
    gain: float = 1.0
    relearned: bool = False


def _median(a: np.ndarray) -> float:
    """Median of a small array (np.median's overhead dominates at 48 elements)."""
    s = np.sort(a, axis=None)
    n = s.size
    return float(s[(n - 1) // 2] + s[n // 2]) * 0.5 if n else 0.0


def _sensitivity_floor(sensitivity: float) -> float:
    """Residual threshold (log units) for sensitivity 0..1: 0.22 .. 0.06."""
    return 0.22 - 0.16 * sensitivity


def _rasterise(polys: Sequence[Sequence[tuple[float, float]]], w: int, h: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    for pts in polys:
        arr = np.array([[x * w, y * h] for x, y in pts], np.float64)
        cv2.fillPoly(m, [np.round(arr * 16).astype(np.int32)], 255, shift=4)
    return m > 0


class MotionDetector:
    """Lighting-robust motion detector with a start/end state machine.

    ``update(y, ts)`` takes the lores Y plane (uint8, ``(height, width)``, row
    stride padding allowed) and a timestamp in seconds; it returns a
    ``MotionResult``, or ``None`` while motion detection is disabled in the
    config or on the first frame (which only seeds the background).
    """

    def __init__(self, config: MotionSection, width: int = 320, height: int = 240) -> None:
        if not isinstance(width, int) or not isinstance(height, int) or width < 16 or height < 12:
            raise ValueError(f"frame size must be integers of at least 16x12, got {width!r}x{height!r}")
        self.width, self.height = width, height
        k = max(1, round(math.sqrt(width * height / _TARGET_CELLS)))
        self._ww, self._wh = max(8, width // k), max(6, height // k)
        # an exact power-of-two factor is downscaled by repeated 2x bilinear
        # halving (= 2x2 means, ~3x faster than INTER_AREA at 320x240)
        n = k.bit_length() - 1
        self._halvings = n if (k == 1 << n and k > 1 and width == self._ww * k and height == self._wh * k) else 0
        self._cells = self._ww * self._wh
        self._log_lut = np.log(np.arange(256, dtype=np.float32) + _LOG_OFFSET).astype(np.float32)
        # least threshold from a sensor noise model (one grey level at the analysis
        # scale), so cells that just turned dark (IR switch) are not noise-triggered
        # before their own noise estimate catches up
        self._dark_thr = (_NOISE_K * _MIN_NOISE_LEVELS
                          / (np.arange(256, dtype=np.float32) + _LOG_OFFSET)).astype(np.float32)
        bx, by = _BLOCKS
        # quadratic surface basis at block centres, and the block -> grid interpolation
        u = (np.arange(bx) + 0.5) / bx - 0.5
        v = (np.arange(by) + 0.5) / by - 0.5
        U, V = np.meshgrid(u, v)
        self._basis = np.stack([np.ones_like(U), U, V, U * U, U * V, V * V], -1).reshape(-1, 6)
        self._kernel3 = np.ones((3, 3), np.uint8)
        self._ridge = 1e-6 * np.eye(6)
        self._pinv = np.linalg.solve(self._basis.T @ self._basis + self._ridge, self._basis.T)
        self._no_cells = np.zeros((self._wh, self._ww), bool)
        self._no_cells.setflags(write=False)
        self.configure(config)
        self.reset()

    # ------------------------------------------------------------------ setup

    def configure(self, config: MotionSection) -> None:
        """Apply (new) settings; the learned background is kept."""
        if not isinstance(config, MotionSection):
            raise ValueError(f"config must be a doorbell.core.config.MotionSection, got {type(config).__name__}")
        self.config = config
        zone = (_rasterise([z.points for z in config.zones], self._ww, self._wh)
                if config.zones else np.ones((self._wh, self._ww), bool))
        if config.masks:
            mask = _rasterise([m.points for m in config.masks], self._ww, self._wh)
            mask = cv2.dilate(mask.astype(np.uint8), self._kernel3) > 0
            zone &= ~mask
        self._region = zone
        self._region_u8 = zone.astype(np.uint8)
        self._region_cells = max(1, int(zone.sum()))
        self._floor = _sensitivity_floor(config.sensitivity)
        self._min_cells = max(1.0, config.min_area * self._cells)
        if not zone.any():
            log.warning("motion zones minus masks leave nothing to watch; no motion will be detected")

    def reset(self) -> None:
        """Forget the background and the event state (e.g. after the camera restarts)."""
        self._bg: np.ndarray | None = None
        self._var = np.full((self._wh, self._ww), 0.03**2, np.float32)
        self._prev_fg = np.zeros((self._wh, self._ww), bool)
        self._suspect = np.zeros((self._wh, self._ww), bool)
        self._bg_sat = np.zeros((self._wh, self._ww), bool)
        self._start_ts: float | None = None
        self._last_ts: float | None = None
        self._run = 0
        self._active = False
        self._last_motion_ts = -math.inf
        self._peak = 0.0
        self._union: list[float] | None = None

    # ------------------------------------------------------------------ frames

    def _check(self, y: np.ndarray, ts: float) -> float:
        if not isinstance(y, np.ndarray):
            raise ValueError(f"luma must be a numpy array, got {type(y).__name__}")
        if y.dtype != np.uint8:
            raise ValueError(f"luma must be uint8, got {y.dtype}")
        if y.ndim != 2 or y.shape != (self.height, self.width):
            raise ValueError(f"luma must be a 2-D Y plane of shape ({self.height}, {self.width}), got {y.shape}")
        try:
            t = float(ts)
        except (TypeError, ValueError):
            raise ValueError(f"timestamp must be a number of seconds, got {ts!r}") from None
        if not math.isfinite(t):
            raise ValueError(f"timestamp must be finite, got {ts!r}")
        if self._last_ts is not None and t < self._last_ts:
            raise ValueError(f"timestamps must not go backwards ({t} after {self._last_ts})")
        return t

    def update(self, y: np.ndarray, ts: float) -> MotionResult | None:
        """Process one lores Y frame taken at ``ts`` seconds."""
        t = self._check(y, ts)
        if not self.config.enabled:
            return None
        small = self._down(y)
        cur = self._log_lut[small]
        if self._bg is None or self._start_ts is None:  # both are set together
            self._bg = cur.copy()
            self._bg_sat = self._saturated(y)
            self._last_ts = self._start_ts = t
            return None
        warm = t - self._start_ts < _WARMUP_S
        dt = min(max(t - self._last_ts, 0.0), 2.0) if self._last_ts is not None else 0.0
        self._last_ts = t
        bg = self._bg
        diff = cur - bg
        # clipped highlights say nothing about the scene: a cell with clipped
        # pixels now cannot get as bright as the gain predicts, one that was
        # clipped in the background cannot get as dark. They are left out of
        # the lighting estimate and judged only in the direction clipping allows.
        sat = self._saturated(y)
        clipped = sat | self._bg_sat
        any_clipped = bool(clipped.any())
        # cells already in motion (last frame) and clipped cells do not vote on
        # the lighting: a visitor filling much of the frame cannot become "lighting"
        field, gain = self._lighting_field(diff, clipped | self._prev_fg)
        resid = diff - field
        thr = np.maximum(np.maximum(self._floor, _NOISE_K * np.sqrt(self._var)), self._dark_thr[small])
        fg = np.abs(resid) > thr
        if any_clipped:
            fg &= ~((sat & (resid < 0)) | (self._bg_sat & (resid > 0)) | (sat & self._bg_sat))
        fg &= self._region
        if warm:
            fg[...] = False
        relearned = False
        limit = _EVENT_FRACTION * self._region_cells
        if np.count_nonzero(fg) > limit and np.count_nonzero(fg & ~self._prev_fg) > limit:
            # camera-wide change in one frame (IR switch): re-learn, but keep
            # the background under what was already moving
            keep = self._prev_fg
            self._bg = np.where(keep, bg + field, cur).astype(np.float32)
            self._suspect = keep.copy()
            fg = keep.copy()
            relearned = True
            log.debug("camera-wide change at %.3f: background re-learned outside %d moving cells",
                      t, int(keep.sum()))
        fg_u8 = fg.view(np.uint8)
        # drop isolated cells (noise) but keep thin structures (a distant leg):
        # a cell stays if at least 3 cells of its 3x3 neighbourhood changed
        count = cv2.boxFilter(fg_u8, -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
        clean = (count >= 3) & fg
        fg_u8 = cast("NDArray[np.uint8]", cv2.dilate(clean.view(np.uint8), self._kernel3, iterations=2))
        fg_u8 &= self._region_u8
        # the changed cells count (not the dilation used to group parts); the box
        # spans the grouped parts. Connected components were measured slower
        # (~60 us) and bought nothing: every kept part joins one event anyway.
        area = cv2.countNonZero(clean.view(np.uint8))
        motion = area >= self._min_cells
        score = area / self._cells
        bbox: BBox | None = None
        if motion:
            bx, by, bw, bh = cv2.boundingRect(fg_u8)
            bbox = (bx / self._ww, by / self._wh, (bx + bw) / self._ww, (by + bh) / self._wh)
        moving = fg_u8.astype(bool)
        if relearned:
            self._bg_sat = sat
        else:
            # cv2's stubs omit the scalar second operand OpenCV accepts
            still = cv2.compare(fg_u8, 0, cv2.CMP_EQ)  # type: ignore[call-overload]
            self._learn(field, resid, moving, still, dt, warm)
            if any_clipped:
                self._bg_sat = np.where(moving, self._bg_sat, sat)
        self._prev_fg = moving
        return self._advance(t, motion, score, bbox, gain, relearned)

    def _saturated(self, y: np.ndarray) -> np.ndarray:
        """Cells holding at least one clipped pixel (>= 250)."""
        if cv2.minMaxLoc(y)[1] < 250:
            return self._no_cells
        # cv2's stubs omit the scalar second operand OpenCV accepts
        return self._down(cv2.compare(y, 250, cv2.CMP_GE)) > 0  # type: ignore[call-overload]

    def _down(self, img: np.ndarray) -> np.ndarray:
        """Area-average a full-size plane to the analysis grid."""
        if self._halvings:
            h, w = img.shape
            for _ in range(self._halvings):
                w, h = w // 2, h // 2
                img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
            return img
        return cv2.resize(img, (self._ww, self._wh), interpolation=cv2.INTER_AREA)

    def _lighting_field(self, diff: np.ndarray, excluded: np.ndarray) -> tuple[np.ndarray, float]:
        """Robust smooth estimate of the log illumination change (see module doc);
        ``excluded`` cells do not vote."""
        bx, by = _BLOCKS
        valid = None
        src = diff
        if excluded.any():
            valid = ~excluded
            if not valid.any():
                return np.zeros_like(diff), 1.0
            fill = cv2.mean(diff, mask=valid.view(np.uint8))[0]
            src = np.where(valid, diff, np.float32(fill))
        blocks = cv2.resize(src, (bx, by), interpolation=cv2.INTER_AREA).reshape(-1)
        med = _median(blocks)
        spread = _median(np.abs(blocks - med))
        w = (np.abs(blocks - med) <= max(0.05, 3.0 * spread)).astype(np.float64)
        A = self._basis
        surf = np.full_like(blocks, med)
        for it in range(2):  # re-weight once, unless the weights did not change
            if w.sum() < 8:
                break
            if w.all():
                coef = self._pinv @ blocks
            else:
                Aw = A * w[:, None]
                try:
                    coef = np.linalg.solve(Aw.T @ A + self._ridge, Aw.T @ blocks)
                except np.linalg.LinAlgError:
                    break
            surf = A @ coef
            if it == 1:
                break
            dev = np.abs(blocks - surf)
            w_next = (dev <= max(0.04, 2.5 * _median(dev[w > 0]))).astype(np.float64)
            if np.array_equal(w_next, w):
                break
            w = w_next
        coarse = cv2.resize(surf.astype(np.float32).reshape(by, bx), (self._ww, self._wh),
                            interpolation=cv2.INTER_LINEAR)
        # local correction: a median over 5x5 fine blocks follows a porch light's bump
        # but ignores anything covering less than half of that window (a person)
        fx, fy = _FINE_BLOCKS
        if valid is None:
            fine = cv2.resize(diff - coarse, (fx, fy), interpolation=cv2.INTER_AREA)
        else:
            vf = valid.astype(np.float32)
            num = cv2.resize(cv2.multiply(cv2.subtract(diff, coarse), vf), (fx, fy), interpolation=cv2.INTER_AREA)
            den = cv2.resize(vf, (fx, fy), interpolation=cv2.INTER_AREA)
            # blocks with under 20 % voting cells carry no estimate
            fine = np.divide(num, den, out=np.zeros_like(num), where=den > 0.2)
        fine = cv2.medianBlur(fine, 5)
        field = coarse + cv2.resize(fine, (self._ww, self._wh), interpolation=cv2.INTER_LINEAR)
        return field, math.exp(med)

    def _learn(self, field: np.ndarray, resid: np.ndarray, moving: np.ndarray, still: np.ndarray,
               dt: float, warm: bool) -> None:
        a_bg = 1.0 - math.exp(-dt / (_TAU_WARMUP_S if warm else _TAU_BG_S))
        a_abs = 1.0 - math.exp(-dt / _TAU_ABSORB_S)
        a_sus = 1.0 - math.exp(-dt / _TAU_SUSPECT_S)
        a_var = 1.0 - math.exp(-dt / (_TAU_WARMUP_S if warm else _TAU_VAR_S))
        # still pixels follow the scene; moving ones follow only the lighting (+ slow absorption;
        # faster for cells whose background predates a re-learn)
        rate_r = np.where(moving, np.float32(a_abs), np.float32(a_bg))
        if self._suspect.any():
            rate_r[self._suspect & moving] = a_sus
            self._suspect &= moving
        upd = rate_r * resid
        cv2.scaleAdd(field, a_bg, upd, dst=upd)  # + the lighting change, everywhere
        self._bg += upd
        # noise: running mean of the squared residual over still cells
        r2 = cv2.multiply(resid, resid)
        np.minimum(r2, 0.05, out=r2)
        cv2.accumulateWeighted(r2, self._var, a_var, mask=still)

    def _advance(self, t: float, motion: bool, score: float, bbox: BBox | None,
                 gain: float, relearned: bool) -> MotionResult:
        cfg = self.config
        event: EventKind | None = None
        if motion:
            self._run += 1
            self._last_motion_ts = t
        else:
            self._run = 0
        if self._active:
            if motion:
                self._peak = max(self._peak, score)
                self._grow(bbox)
            elif t - self._last_motion_ts >= cfg.cooldown_s - 1e-6:  # float timestamps
                self._active = False
                event = "motion_end"
                score, bbox = self._peak, (tuple(self._union) if self._union else None)  # type: ignore[assignment]
        elif self._run >= cfg.frames_to_confirm:
            self._active = True
            event = "motion_start"
            self._peak, self._union = score, None
            self._grow(bbox)
        return MotionResult(ts=t, motion=motion, active=self._active, event=event, score=float(score),
                            bbox=bbox, gain=gain, relearned=relearned)

    def _grow(self, bbox: BBox | None) -> None:
        if bbox is None:
            return
        if self._union is None:
            self._union = list(bbox)
        else:
            u = self._union
            u[0], u[1] = min(u[0], bbox[0]), min(u[1], bbox[1])
            u[2], u[3] = max(u[2], bbox[2]), max(u[3], bbox[3])

    @property
    def active(self) -> bool:
        """Whether a confirmed motion event is in progress."""
        return self._active


__all__ = ["MotionDetector", "MotionResult", "EventKind"]
