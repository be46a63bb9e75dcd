"""``doorbell firmware ...``: run the firmware, press its button, replay footage.

Kept light: the heavy modules (OpenCV, PyAV, gpiozero) are imported inside the
handlers, so ``doorbell --help`` works on any host.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from pathlib import Path

log = logging.getLogger(__name__)


def register(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser("firmware", help="the doorbell firmware (button, chime, camera, clips)",
                        description="The on-Pi firmware: writes clips and events into the spool, never the network.")
    fsubs = p.add_subparsers(dest="firmware_command", metavar="ACTION", required=True)

    run = fsubs.add_parser("run", help="run the firmware service (systemd: doorbell-firmware.service)")
    run.add_argument("--config", "-c", required=True, help="device config YAML (e.g. /etc/doorbell/device.yaml)")
    run.add_argument("--fast", action="store_true",
                     help="file/synthetic camera: replay as fast as possible on a virtual clock")
    run.add_argument("--ring-on-stdin", action="store_true",
                     help="press the (mock) button once per line read on stdin (demo)")
    run.set_defaults(func=_run)

    ring = fsubs.add_parser("ring", help="press the button of a firmware running on this spool (demo/testing)")
    g = ring.add_mutually_exclusive_group(required=True)
    g.add_argument("--config", "-c", help="device config (its spool.dir is used)")
    g.add_argument("--spool", help="spool directory")
    ring.set_defaults(func=_ring)

    sim = fsubs.add_parser("simulate", help="replay a video file as the camera and press the button at given times",
                           description="Replays VIDEO through the whole firmware (motion, clips, masks) into a "
                                       "spool, pressing a mock button at each --ring-at second; prints one JSON "
                                       "object per clip produced.")
    sim.add_argument("--video", required=True, help="video file to use as the camera")
    sim.add_argument("--ring-at", type=float, action="append", default=[], metavar="SECONDS",
                     help="press the button this many seconds into the video (repeatable)")
    sim.add_argument("--spool", required=True, help="spool directory to write clips and events into")
    sim.add_argument("--config", "-c", help="device config for motion/clips/privacy settings")
    sim.add_argument("--fast", action="store_true", help="faster than real time (virtual clock)")
    sim.set_defaults(func=_simulate)


def _load(path: str | None):
    from doorbell.core.config import load_config

    cfg = load_config(path)
    logging.getLogger().setLevel(cfg.logging.level)
    return cfg


def _run(args: argparse.Namespace) -> int:
    from firmware.memory import tune_process

    tune_process()  # before any thread or codec exists
    from firmware.service import FirmwareService

    cfg = _load(args.config)
    service = FirmwareService(cfg, realtime=False if args.fast else None)
    if args.ring_on_stdin:
        def read_stdin() -> None:
            for _line in sys.stdin:
                while not service.running.wait(0.5):   # a line read during start-up waits, not lost
                    if service.stopping:
                        return
                if service.stopping:
                    return
                try:
                    service.press_button()
                except RuntimeError as exc:
                    log.warning("press ignored: %s", exc)

        threading.Thread(target=read_stdin, name="stdin-presses", daemon=True).start()
    return service.run()


def _ring(args: argparse.Namespace) -> int:
    from firmware.service import request_press

    spool = args.spool or str(_load(args.config).spool.dir)
    path = request_press(spool)
    print(f"press requested: {path}")
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from firmware.memory import tune_process

    tune_process()
    from doorbell.core.config import parse_config
    from firmware.service import FirmwareService

    video = Path(args.video)
    if not video.is_file():
        print(f"doorbell firmware simulate: no such video file: {video}", file=sys.stderr)
        return 2
    if any(t < 0 for t in args.ring_at):
        print("doorbell firmware simulate: --ring-at must be >= 0", file=sys.stderr)
        return 2
    base: dict = {}
    if args.config:
        import yaml

        _load(args.config)  # validates the file and sets the log level
        base = yaml.safe_load(Path(args.config).read_text(encoding="utf-8")) or {}
    base.setdefault("camera", {}).update({"backend": "file", "source": str(video), "loop": False})
    base.setdefault("gpio", {})["pin_factory"] = "mock"
    base.setdefault("spool", {})["dir"] = str(Path(args.spool))
    cfg = parse_config(base, args.config or "<simulate>")
    service = FirmwareService(cfg, realtime=not args.fast, press_at=args.ring_at)
    before = {c.clip_id for c in service.spool.pending_clips()}
    code = service.run()
    for clip in service.spool.pending_clips():
        if clip.clip_id in before:
            continue
        if clip.sealed is not None:  # encrypted: the device cannot read its metadata back
            print(json.dumps({"clip_id": clip.clip_id, "sealed": True, "path": str(clip.video),
                              "object_id": clip.sealed.object_id, "size": clip.sealed.files["video"].size}))
            continue
        m = clip.clear
        print(json.dumps({"clip_id": m.clip_id, "trigger": m.trigger, "path": str(clip.video),
                          "started_at": m.started_at, "trigger_at": m.trigger_at, "pre_roll_s": round(m.pre_roll_s, 3),
                          "duration_s": round(m.duration_s, 3), "rings": m.rings, "motion_score": m.motion_score,
                          "size": m.size}))
    return code
