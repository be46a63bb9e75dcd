"""``doorbell motion scan``: run the motion detector over a video file, offline.

Makers tune ``motion.sensitivity``, ``min_area``, zones and masks on their own
footage before mounting the camera: this prints one line per detected motion
event (``--json``: one JSON object per line with ``start_s``, ``end_s``,
``peak_score`` and ``bbox``). The detector, its config and the lores luma
preparation are the firmware's own, so what it reports is what the doorbell
would have done; privacy masks are excluded from detection here as well.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import Any


def register(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser("motion", help="motion detection tools (tune settings on your own footage)")
    msubs = p.add_subparsers(dest="motion_command", metavar="ACTION", required=True)
    scan = msubs.add_parser("scan", help="detect motion events in a video file",
                            description="Runs the firmware's motion detector over VIDEO and prints each "
                                        "motion event with its start, end, peak score and bounding box.")
    scan.add_argument("video", help="video file (anything FFmpeg/PyAV decodes)")
    scan.add_argument("--config", "-c", help="device config: its motion and privacy settings are used")
    scan.add_argument("--sensitivity", type=float, help="override motion.sensitivity (0..1)")
    scan.add_argument("--json", action="store_true", help="one JSON object per event, one per line")
    scan.set_defaults(func=_scan)


def scan_events(video: str, cfg: Any) -> Iterator[dict[str, Any]]:
    """Yield one dict per motion event found in ``video`` (times in seconds from its start)."""
    import av
    import cv2

    from firmware.motion import MotionDetector

    motion = cfg.motion
    if cfg.privacy.masks:  # as the service does: privacy-masked areas are never analysed
        motion = motion.model_copy(update={"masks": [*motion.masks, *cfg.privacy.masks]})
    size = (cfg.camera.lores_width, cfg.camera.lores_height)
    detector = MotionDetector(motion, *size)
    start: float | None = None
    peak, box = 0.0, None
    last_ts = 0.0
    with av.open(video) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        first: float | None = None
        for n, frame in enumerate(container.decode(stream)):
            t = float(frame.time) if frame.time is not None else n / float(stream.average_rate or 15)
            first = t if first is None else first
            ts = max(t - first, last_ts)  # seconds from the start; never backwards
            last_ts = ts
            gray = frame.to_ndarray(format="gray")
            lores = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
            result = detector.update(lores, ts)
            if result is None:
                continue
            if result.event == "motion_start":
                start, peak, box = ts, 0.0, None
            if start is not None and result.motion:  # running peak and union, for an event still open at the end
                peak = max(peak, result.score)
                box = _union(box, result.bbox)
            if result.event == "motion_end" and start is not None:
                yield _event(start, ts, result.score, result.bbox, open_=False)
                start = None
    if start is not None:  # still moving when the video ended
        yield _event(start, last_ts, peak, box, open_=True)


def _union(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return a if b is None else tuple(b)
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _event(start: float, end: float, score: float | None, bbox: Any, open_: bool) -> dict[str, Any]:
    return {"start_s": round(start, 3), "end_s": round(end, 3),
            "peak_score": None if score is None else round(float(score), 4),
            "bbox": None if bbox is None else [round(float(v), 4) for v in bbox],
            "open_at_end": open_}


def _scan(args: argparse.Namespace) -> int:
    import os

    from doorbell.core.config import load_config

    if not os.path.isfile(args.video):
        print(f"doorbell motion scan: no such video file: {args.video}", file=sys.stderr)
        return 2
    cfg = load_config(args.config)
    if args.sensitivity is not None:
        if not 0 <= args.sensitivity <= 1:
            print("doorbell motion scan: --sensitivity must be between 0 and 1", file=sys.stderr)
            return 2
        cfg.motion.sensitivity = args.sensitivity
    try:
        count = 0
        for event in scan_events(args.video, cfg):
            count += 1
            if args.json:
                print(json.dumps(event), flush=True)
            else:
                box = ", ".join(f"{v:.2f}" for v in event["bbox"]) if event["bbox"] else "-"
                peak = f"{event['peak_score']:.3f}" if event["peak_score"] is not None else "-"
                tail = "  (still moving at the end)" if event["open_at_end"] else ""
                print(f"{event['start_s']:8.2f} s .. {event['end_s']:8.2f} s  peak {peak}  bbox [{box}]{tail}")
    except Exception as exc:  # av.error.* for unreadable files: report, don't trace back
        if type(exc).__module__.startswith("av"):
            print(f"doorbell motion scan: cannot decode {args.video}: {exc}", file=sys.stderr)
            return 2
        raise
    if not args.json:
        print(f"{count} motion event(s)", file=sys.stderr)
    return 0
