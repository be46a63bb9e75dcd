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
4. peak RSS (VmHWM) of ``doorbell firmware run`` as a real process at
   1280x720@15 while it records two ring clips, with each camera backend that
   runs off a Pi: ``synthetic`` (renders the porch scene itself), ``file``
   (PyAV decodes a 720p recording of that scene, as a real camera delivers
   frames) and ``opencv`` (cv2.VideoCapture on the same file). Target < 150 MB.

Only the RSS figures: ``benchmarks/firmware.py --rss-only [--json PATH]``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TypedDict

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


class RecordingCost(TypedDict):
    """Per-frame cost of recording at one size (ms), and what the pre-roll ring holds."""
    size: str
    mask_ms: float
    enc_p50: float
    enc_p99: float
    ring_kib: float
    ring_s: float


def bench_recording(width: int, height: int, frames: int = 150) -> RecordingCost:
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


RSS_BACKENDS = ("synthetic", "file", "opencv")


def _vm(pid: int, key: str) -> float:
    """A /proc/<pid>/status field in MB (0 once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def make_720p_recording(path: Path, seconds: float = 20.0, fps: float = 15.0) -> Path:
    """The synthetic porch scene (visitor walks up) encoded at 1280x720: the file/opencv backends' input."""
    import av

    from firmware.scene import PorchScene

    scene = PorchScene(1280, 720, fps, script="walkup")
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=int(fps))
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "23"}
        for i in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(scene.render(i)[0], format="bgr24")
            for pkt in stream.encode(frame):
                out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)
    return path


class RssRow(TypedDict):
    """Memory of one ``doorbell firmware run`` with one camera backend (MB)."""
    backend: str
    size: str
    after_start_mb: float
    recording_max_mb: float
    peak_mb: float


def bench_firmware_rss(backend: str, source: Path | None, width: int = 1280, height: int = 720,
                       fps: float = 15.0, clips: int = 2) -> RssRow:
    """Peak RSS of ``doorbell firmware run`` recording ``clips`` ring clips with one camera backend."""
    import yaml

    with tempfile.TemporaryDirectory(prefix="fw-rss-") as tmp:
        work = Path(tmp)
        camera: dict[str, object] = {"backend": backend, "width": width, "height": height, "fps": fps}
        if backend == "synthetic":
            camera["source"] = "demo_loop"
        else:
            camera["source"] = str(source)
        if backend == "file":
            camera["loop"] = True
        cfg = {"device": {"id": "bench"}, "spool": {"dir": str(work / "spool")},
               "gpio": {"pin_factory": "mock", "ring_interval_s": 0.0, "long_press_s": None},
               "camera": camera, "clips": {"pre_roll_s": 4.0, "post_roll_s": 4.0, "max_length_s": 60.0},
               "logging": {"level": "WARNING"}}
        (work / "device.yaml").write_text(yaml.safe_dump(cfg))
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        with open(work / "firmware.log", "wb") as log_fh:
            proc = subprocess.Popen([sys.executable, "-m", "doorbell.cli", "firmware", "run", "--ring-on-stdin",
                                     "--config", str(work / "device.yaml")], stdin=subprocess.PIPE,
                                    stdout=log_fh, stderr=subprocess.STDOUT, env=env)
        try:
            clip_dir = work / "spool" / "clips"
            time.sleep(6.0)  # camera, encoder and a full pre-roll are up
            if proc.poll() is not None:
                raise RuntimeError(f"firmware exited {proc.returncode}: {(work / 'firmware.log').read_text()[-2000:]}")
            after_start = _vm(proc.pid, "VmRSS")
            samples = []
            for n in range(1, clips + 1):
                assert proc.stdin is not None
                proc.stdin.write(b"\n")
                proc.stdin.flush()
                deadline = time.monotonic() + 60
                while not (clip_dir.is_dir() and len(list(clip_dir.iterdir())) >= n):
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError(f"no clip from the {backend} backend: "
                                           f"{(work / 'firmware.log').read_text()[-2000:]}")
                    samples.append(_vm(proc.pid, "VmRSS"))
                    time.sleep(0.25)
            peak = _vm(proc.pid, "VmHWM")
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    return {"backend": backend, "size": f"{width}x{height}@{fps:g}", "after_start_mb": round(after_start, 1),
            "recording_max_mb": round(max(samples or [0.0]), 1), "peak_mb": round(peak, 1)}


def bench_rss_all(backends: tuple[str, ...] = RSS_BACKENDS, clips: int = 2) -> list[RssRow]:
    out: list[RssRow] = []
    with tempfile.TemporaryDirectory(prefix="fw-rss-src-") as tmp:
        source = make_720p_recording(Path(tmp) / "porch-720p.mp4") if set(backends) - {"synthetic"} else None
        for backend in backends:
            if backend == "opencv":
                try:
                    import cv2  # noqa: F401
                except ImportError:
                    continue
            out.append(bench_firmware_rss(backend, source, clips=clips))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presses", type=int, default=2000)
    ap.add_argument("--service-presses", type=int, default=300)
    ap.add_argument("--rss-only", action="store_true", help="only the peak-RSS figures (about 1 minute)")
    ap.add_argument("--json", help="with --rss-only: also write the figures to this JSON file")
    args = ap.parse_args()
    if args.rss_only:
        rows = bench_rss_all()
        print("| firmware peak RSS, `doorbell firmware run`, 2 ring clips | after start MB | max while recording MB "
              "| peak (VmHWM) MB |")
        print("|---|---:|---:|---:|")
        for r in rows:
            print(f"| {r['backend']} camera {r['size']} | {r['after_start_mb']} | {r['recording_max_mb']} | "
                  f"{r['peak_mb']} |")
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
        return 0
    import platform

    print(f"# firmware benchmark on {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    chime = bench_edge_to_chime(args.presses)
    print("\n| button edge -> chime pin high (MockFactory) | presses | p50 ms | p99 ms | max ms | whole edge callback p50 / p99 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| DoorbellIO, relay | {chime['n']} | {chime['p50']:.3f} | {chime['p99']:.3f} | {chime['max']:.3f} | "
          f"{chime['cb_p50']:.3f} / {chime['cb_p99']:.3f} |")
    event = bench_edge_to_event(args.service_presses)
    print("\n| button edge -> ring event file in spool/events (full service, camera+encoder running) | presses | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    print(f"| FirmwareService, synthetic 640x480@15 real time | {event['n']} | {event['p50']:.2f} | {event['p99']:.2f} | {event['max']:.2f} |")
    print("\n| recording cost per frame (mask + libx264 ultrafast + pre-roll ring) | mask ms | encode p50 ms | encode p99 ms | ring KiB (s) |")
    print("|---|---:|---:|---:|---:|")
    for w, h in ((640, 480), (1280, 720)):
        rec = bench_recording(w, h)
        print(f"| {rec['size']} | {rec['mask_ms']:.3f} | {rec['enc_p50']:.2f} | {rec['enc_p99']:.2f} | "
              f"{rec['ring_kib']:.0f} ({rec['ring_s']:.1f} s) |")
    print("\n| firmware peak RSS (`doorbell firmware run`, 2 ring clips) | after start MB | peak (VmHWM) MB |")
    print("|---|---:|---:|")
    for row in bench_rss_all():
        print(f"| {row['backend']} camera {row['size']} | {row['after_start_mb']} | {row['peak_mb']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
