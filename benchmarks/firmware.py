"""Firmware figures: button edge -> chime, button edge -> ring event in the spool, recording cost.

Run: .venv/bin/python benchmarks/firmware.py [--presses 2000] [--service-presses 300]

1. edge -> chime: gpiozero MockFactory, the real DoorbellIO. The time from the
   start of the mock pin's falling edge (MockPin.drive_low) to the moment the
   chime pin is set high (recorded inside the chime MockPin), over N presses.
   The ring callback is a queue put, as in the service.
2. edge -> ring event file: the whole FirmwareService (synthetic camera in real
   time, encoding and motion detection running), from drive_low to the event
   file appearing in spool/events/ (inotify), i.e. what the agent can see.
3. recording cost per frame (privacy mask + libx264 ultrafast encode + ring
   buffer), at 640x480 and 1280x720, on the synthetic porch scene.
"""
from __future__ import annotations

import argparse
import logging
import queue
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from doorbell.core.config import GpioSection, parse_config  # noqa: E402


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def bench_edge_to_chime(n: int) -> dict[str, float]:
    from gpiozero.pins.mock import MockFactory

    from firmware.gpio import DoorbellIO

    factory = MockFactory()
    q: queue.Queue = queue.Queue()
    now = [1000.0]
    io = DoorbellIO(GpioSection(pin_factory="mock", ring_interval_s=0.5, long_press_s=None), on_ring=q.put,
                    pin_factory=factory, clock=lambda: now[0], wall=time.time, start_thread=False)
    button, chime = factory.pin(17), factory.pin(27)
    stamp: list[int] = []
    orig = chime._set_state

    def recording_set_state(value):  # the instant the chime output goes high
        if value:
            stamp.append(time.perf_counter_ns())
        return orig(value)

    chime._set_state = recording_set_state
    lat, total = [], []
    for _ in range(n):
        stamp.clear()
        t0 = time.perf_counter_ns()
        button.drive_low()
        t1 = time.perf_counter_ns()
        assert stamp and chime.state, "chime did not go high"
        lat.append((stamp[0] - t0) / 1e6)
        total.append((t1 - t0) / 1e6)
        button.drive_high()
        now[0] += 1.0
        io.poll()                      # pulse over, hold over
    io.close()
    assert q.qsize() == n
    return {"n": n, "p50": statistics.median(lat), "p99": pct(lat, 99), "max": max(lat),
            "cb_p50": statistics.median(total), "cb_p99": pct(total, 99)}


def bench_edge_to_event(n: int) -> dict[str, float]:
    from gpiozero.pins.mock import MockFactory
    from inotify_simple import INotify, flags

    from firmware.service import FirmwareService

    logging.disable(logging.INFO)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = parse_config({
            "device": {"id": "bench"}, "spool": {"dir": tmp},
            "gpio": {"pin_factory": "mock", "ring_interval_s": 0.0, "long_press_s": None},
            "camera": {"backend": "synthetic", "source": "demo_loop", "width": 640, "height": 480, "fps": 15},
            "clips": {"pre_roll_s": 2, "post_roll_s": 2, "max_length_s": 600},
        }, "<bench>", env={})
        factory = MockFactory()
        svc = FirmwareService(cfg, realtime=True, pin_factory=factory, retention_interval_s=3600)
        ino = INotify()
        ino.add_watch(str(svc.spool.dir("events")), flags.MOVED_TO)
        svc.start()
        time.sleep(3.0)
        button = factory.pin(17)
        lat = []
        try:
            for _ in range(n):
                t0 = time.perf_counter()
                button.drive_low()
                got = False
                while not got:
                    for ev in ino.read(timeout=2000):
                        if ev.name.endswith(".json"):
                            got = True
                    if not got:
                        raise RuntimeError("no event file within 2 s")
                lat.append((time.perf_counter() - t0) * 1000)
                button.drive_high()
                time.sleep(0.03)
        finally:
            ino.close()
            svc.shutdown()
            logging.disable(logging.NOTSET)
    return {"n": n, "p50": statistics.median(lat), "p99": pct(lat, 99), "max": max(lat)}


def bench_recording(width: int, height: int, frames: int = 150) -> dict[str, float]:
    from doorbell.core.config import Polygon
    from firmware.camera.base import Frame
    from firmware.masks import PrivacyMasker
    from firmware.recorder import SoftwareClipStore
    from firmware.scene import PorchScene

    scene = PorchScene(width, height, 15.0, script="walkup")
    imgs = [scene.render(i)[0].copy() for i in range(frames)]
    import numpy as np

    masker = PrivacyMasker([Polygon(points=[(0.7, 0.0), (1.0, 0.0), (1.0, 0.3), (0.7, 0.3)])])
    store = SoftwareClipStore(15.0, 2_000_000, 1.0, 4.0)
    lores = np.zeros((240, 320), np.uint8)
    t_mask, t_enc = [], []
    for i, img in enumerate(imgs):
        t0 = time.perf_counter()
        masker.apply(img)
        t1 = time.perf_counter()
        store.push(Frame(ts=1.8e9 + i / 15, index=i, lores=lores, main=img))
        t2 = time.perf_counter()
        t_mask.append((t1 - t0) * 1000)
        t_enc.append((t2 - t1) * 1000)
    enc = t_enc[5:]  # skip encoder start-up
    return {"size": f"{width}x{height}", "mask_ms": statistics.median(t_mask), "enc_p50": statistics.median(enc),
            "enc_p99": pct(enc, 99), "ring_kib": store.ring.bytes / 1024, "ring_s": (
                (store.ring._packets[-1].ts - store.ring._packets[0].ts) if len(store.ring) else 0.0)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presses", type=int, default=2000)
    ap.add_argument("--service-presses", type=int, default=300)
    args = ap.parse_args()
    import platform

    print(f"# firmware benchmark on {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    r = bench_edge_to_chime(args.presses)
    print("\n| button edge -> chime pin high (MockFactory) | presses | p50 ms | p99 ms | max ms | whole edge callback p50 / p99 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| DoorbellIO, relay | {r['n']} | {r['p50']:.3f} | {r['p99']:.3f} | {r['max']:.3f} | "
          f"{r['cb_p50']:.3f} / {r['cb_p99']:.3f} |")
    r = bench_edge_to_event(args.service_presses)
    print("\n| button edge -> ring event file in spool/events (full service, camera+encoder running) | presses | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    print(f"| FirmwareService, synthetic 640x480@15 real time | {r['n']} | {r['p50']:.2f} | {r['p99']:.2f} | {r['max']:.2f} |")
    print("\n| recording cost per frame (mask + libx264 ultrafast + pre-roll ring) | mask ms | encode p50 ms | encode p99 ms | ring KiB (s) |")
    print("|---|---:|---:|---:|---:|")
    for w, h in ((640, 480), (1280, 720)):
        r = bench_recording(w, h)
        print(f"| {r['size']} | {r['mask_ms']:.3f} | {r['enc_p50']:.2f} | {r['enc_p99']:.2f} | "
              f"{r['ring_kib']:.0f} ({r['ring_s']:.1f} s) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
