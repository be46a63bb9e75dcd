"""End to end: a ring on the device to the MQTT subscriber and to the owner's app.

    .venv/bin/python benchmarks/e2e.py [--quick] [--presses N] [--blocks B] [--json PATH]

Every part is the real product, each in its own process, on loopback:

- Mosquitto and SeaweedFS (``doorbell.sandbox.embedded``);
- the firmware: ``doorbell firmware run --ring-on-stdin`` with gpiozero's
  MockFactory (one line on stdin = one press: the mock pin is driven, so the
  press takes the real gpiozero edge callback, debounce and chime path), the
  synthetic porch camera in real time, motion detection and clip recording
  running; ``gpio.ring_interval_s = 0`` so every press rings;
- the cloud agent: ``doorbell agent run`` (spool -> broker, clips -> bucket);
- the owner's app: ``doorbell owner events --follow --json``, whose stdout is
  read line by line here.

For each press we record three instants: the stdin write here (``sent``), the
firmware's own wall-clock stamp of the button edge (``DeviceEvent.ts``, taken
in the gpiozero edge callback right after the chime output went high) and the
arrival of the ring at (a) an MQTT subscriber in this process and (b) the
owner's app (the moment its JSON line is read). All processes share one host
clock, so ``arrival - edge`` is the button-edge latency; ``arrival - sent`` adds
the stdin hop and is reported too. Presses are spaced a little over the
firmware's debounce (30 ms) plus the round trip, and run in ``blocks`` so the
spread over repeated runs can be given.

Also recorded: peak RSS (VmHWM) of the firmware process (camera, encoder,
motion, pre-roll buffer, the clip being recorded) and of the agent.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from doorbell.core import protocol  # noqa: E402
from doorbell.core.protocol import DeviceEvent  # noqa: E402
from doorbell.sandbox.embedded import DoorbellBroker, SeaweedS3  # noqa: E402
from doorbell.sandbox.stack import mock_firmware_config, stop_process  # noqa: E402

log = logging.getLogger("benchmarks.e2e")

DEVICE = "dev-e2e"
OWNER = "owner-e2e"
MB = 1024 * 1024


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * (len(s) - 1)))))]


def vm(pid: int, key: str) -> int:
    """A /proc/<pid>/status field in bytes (VmRSS, VmHWM); 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def summarize(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50": statistics.median(values), "p99": pct(values, 99), "max": max(values)}


class SpoolWatch:
    """Stamps each event file's arrival in spool/events/ (inotify), to split the path in two legs:
    the firmware's (edge -> durable event file) and the agent's (file -> broker -> subscriber)."""

    def __init__(self, events_dir: Path):
        from inotify_simple import INotify, flags

        self.seen: dict[str, float] = {}
        self._ino = INotify()
        self._ino.add_watch(str(events_dir), flags.MOVED_TO)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, name="spool-watch", daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for ev in self._ino.read(timeout=200):
                if ev.name.endswith(".json") and "-" in ev.name:
                    self.seen[ev.name.split("-", 1)[1][:-5]] = time.time()  # <ns>-<event_id>.json

    def wait(self, event_id: str, timeout: float = 5.0) -> float | None:
        deadline = time.monotonic() + timeout
        while event_id not in self.seen and time.monotonic() < deadline:
            time.sleep(0.001)
        return self.seen.pop(event_id, None)

    def close(self) -> None:
        self._stop.set()
        self._t.join(2)
        self._ino.close()


def _pipe(stream: IO[bytes] | None, what: str) -> IO[bytes]:
    """A child's stdin/stdout opened with ``subprocess.PIPE`` (typed optional by subprocess)."""
    if stream is None:
        raise RuntimeError(f"{what} was not opened as a pipe")
    return stream


class LineReader:
    """Reads a child's stdout on a thread, stamping each JSON line with its arrival time."""

    def __init__(self, stream: IO[bytes]):
        self.q: queue.Queue[tuple[float, float, dict[str, Any]]] = queue.Queue()
        self._stream = stream
        self._t = threading.Thread(target=self._run, name="owner-stdout", daemon=True)
        self._t.start()

    def _run(self) -> None:
        for raw in iter(self._stream.readline, b""):
            mono, wall = time.monotonic(), time.time()
            try:
                self.q.put((mono, wall, json.loads(raw)))
            except ValueError:
                continue  # not a JSON line (there are none with --json, but never crash on it)

    def wait_event(self, event_id: str, timeout: float) -> tuple[float, float]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"ring {event_id} not printed by `doorbell owner events --follow` "
                                   f"within {timeout} s")
            try:
                mono, wall, e = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if e.get("event_id") == event_id:
                return mono, wall


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    import yaml

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(data, fh, sort_keys=False)
    return path


def run(presses: int, blocks: int, width: int, height: int, fps: float, gap_s: float = 0.05) -> dict[str, Any]:
    """Start everything, press ``presses`` times in ``blocks`` runs, return the figures."""
    work = Path(tempfile.mkdtemp(prefix="e2e-bench-"))
    broker = DoorbellBroker(work / "mqtt", {DEVICE: OWNER}, [OWNER], admins=["admin"])
    s3 = SeaweedS3(work / "s3", access_key="AK" + secrets.token_hex(9).upper(), secret_key=secrets.token_urlsafe(30))
    children: dict[str, subprocess.Popen[bytes]] = {}
    exe = [sys.executable, "-m", "doorbell.cli"]
    out: dict[str, Any] = {"presses": presses, "blocks": blocks, "camera": f"{width}x{height}@{fps:g}",
                           "gap_s": gap_s}
    obs = None
    try:
        broker.start()
        s3.start(timeout=90)
        mqtt = {"host": broker.host, "port": broker.port}
        device = {
            "device": {"id": DEVICE, "owner_id": OWNER},
            "spool": {"dir": str(work / "spool")},
            **mock_firmware_config(width, height, fps),
            "mqtt": {**mqtt, "username": DEVICE, "password": broker.users[DEVICE], "client_id": DEVICE},
            "s3": {"endpoint_url": s3.endpoint_url, "bucket": s3.bucket, "access_key_id": s3.access_key,
                   "secret_access_key": s3.secret_key},
            "agent": {"state_dir": str(work / "agent")},
            "logging": {"level": "WARNING"},
        }
        owner = {
            "owner": {"owner_id": OWNER, "key_file": str(work / "owner_ed25519.pem")},
            "mqtt": {**mqtt, "username": OWNER, "password": broker.users[OWNER]},
            "logging": {"level": "WARNING"},
        }
        dev_cfg = write_yaml(work / "device.yaml", device)
        own_cfg = write_yaml(work / "owner.yaml", owner)
        logs = {n: open(work / f"{n}.log", "ab") for n in ("firmware", "agent", "owner")}

        obs = broker.client("admin")
        obs.sub(protocol.events_topic(DEVICE))
        obs.sub(protocol.status_topic(DEVICE))
        obs.sub(protocol.clips_topic(DEVICE))

        from doorbell.core.spool import Spool

        watch = SpoolWatch(Spool(work / "spool").dir("events"))  # the same layout the firmware will use
        children["agent"] = subprocess.Popen([*exe, "agent", "run", "--config", str(dev_cfg)],
                                             stdout=logs["agent"], stderr=subprocess.STDOUT)
        children["owner"] = subprocess.Popen([*exe, "owner", "events", "--follow", "--json", "--config", str(own_cfg)],
                                             stdout=subprocess.PIPE, stderr=logs["owner"])
        reader = LineReader(_pipe(children["owner"].stdout, "the owner app's stdout"))
        children["firmware"] = subprocess.Popen([*exe, "firmware", "run", "--ring-on-stdin", "--config", str(dev_cfg)],
                                                stdin=subprocess.PIPE, stdout=logs["firmware"],
                                                stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while obs.expect(protocol.status_topic(DEVICE), wait=max(0.01, deadline - time.monotonic())).payload != b"online":
            pass
        # the owner's app prints the retained status first: then it is subscribed
        while True:
            try:
                _, _, e = reader.q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError("`doorbell owner events --follow` printed nothing within 60 s") from None
            if e.get("kind") == "status":
                break

        fw = children["firmware"]
        fw_stdin = _pipe(fw.stdin, "the firmware's stdin")

        def press_once() -> tuple[float, float, float, float, float | None]:
            """One press; returns wall times: sent, edge, MQTT arrival, owner app arrival, event file in spool."""
            t_wall = time.time()
            fw_stdin.write(b"\n")
            fw_stdin.flush()
            while True:
                msg = obs.expect(protocol.events_topic(DEVICE), wait=10)
                arrived = time.time() - (time.monotonic() - msg.timestamp)  # paho stamps receipt (monotonic)
                ev = protocol.decode(DeviceEvent, msg.payload)
                if ev.type == "ring":
                    break
            owner_mono, owner_wall = reader.wait_event(ev.event_id, timeout=10)
            filed = watch.wait(ev.event_id, timeout=1.0)
            return t_wall, ev.ts, arrived, owner_wall, filed

        # warm-up: the firmware's camera, encoder and first clip are up, every path has run once
        for _ in range(5):
            press_once()
            time.sleep(gap_s)
        obs.drain()
        fw_start_mb = vm(fw.pid, "VmRSS") / MB
        agent_start_mb = vm(children["agent"].pid, "VmRSS") / MB

        per = max(1, presses // blocks)
        runs = []
        edge_mqtt_all, edge_owner_all, sent_mqtt_all, sent_owner_all = [], [], [], []
        fw_rss = []
        edge_file: list[float] = []
        file_mqtt: list[float] = []
        for _block in range(blocks):
            e_m, e_o, s_m, s_o, ef, fm = [], [], [], [], [], []
            for _ in range(per):
                sent, edge, at_mqtt, at_owner, filed = press_once()
                if filed is not None:
                    ef.append((filed - edge) * 1000)
                    fm.append((at_mqtt - filed) * 1000)
                e_m.append((at_mqtt - edge) * 1000)
                e_o.append((at_owner - edge) * 1000)
                s_m.append((at_mqtt - sent) * 1000)
                s_o.append((at_owner - sent) * 1000)
                time.sleep(gap_s)
            fw_rss.append(vm(fw.pid, "VmRSS") / MB)
            runs.append({"edge_to_mqtt_ms": summarize(e_m), "edge_to_owner_app_ms": summarize(e_o),
                         "sent_to_mqtt_ms": summarize(s_m), "sent_to_owner_app_ms": summarize(s_o)})
            if ef:
                runs[-1].update(edge_to_spool_file_ms=summarize(ef), spool_file_to_mqtt_ms=summarize(fm))
            edge_file += ef
            file_mqtt += fm
            edge_mqtt_all += e_m
            edge_owner_all += e_o
            sent_mqtt_all += s_m
            sent_owner_all += s_o
        out["runs"] = runs
        out["edge_to_mqtt_ms"] = summarize(edge_mqtt_all)
        out["edge_to_owner_app_ms"] = summarize(edge_owner_all)
        out["sent_to_mqtt_ms"] = summarize(sent_mqtt_all)
        out["sent_to_owner_app_ms"] = summarize(sent_owner_all)
        if edge_file:  # the two legs (inotify may miss none, but never fail the run on it)
            out["edge_to_spool_file_ms"] = summarize(edge_file)
            out["spool_file_to_mqtt_ms"] = summarize(file_mqtt)
        watch.close()
        # let the ring clip finish and reach the bucket, so both processes have done all their work
        clips = 0
        deadline = time.monotonic() + device["clips"]["post_roll_s"] + 60
        while time.monotonic() < deadline:
            try:
                obs.expect(protocol.clips_topic(DEVICE), wait=max(0.01, deadline - time.monotonic()))
                clips += 1
                break
            except TimeoutError:
                break
        out["clips_uploaded"] = clips + sum(1 for m in obs.drain(1.0)
                                            if m.topic == protocol.clips_topic(DEVICE))
        out["firmware_rss_mb"] = {"after_start": round(fw_start_mb, 1), "samples": [round(x, 1) for x in fw_rss],
                                  "peak": round(vm(fw.pid, "VmHWM") / MB, 1)}
        out["agent_rss_mb"] = {"after_start": round(agent_start_mb, 1),
                               "now": round(vm(children["agent"].pid, "VmRSS") / MB, 1),
                               "peak": round(vm(children["agent"].pid, "VmHWM") / MB, 1)}
        out["owner_app_rss_mb"] = round(vm(children["owner"].pid, "VmHWM") / MB, 1)
        out["loadavg"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    except BaseException:
        for name in ("firmware", "agent", "owner"):  # the work dir goes away below: show why first
            f = work / f"{name}.log"
            if f.exists():
                tail = f.read_text(errors="replace").splitlines()[-15:]
                print(f"--- {name}.log (last lines)\n" + "\n".join(tail), file=sys.stderr)
        raise
    finally:
        for name in ("firmware", "owner", "agent"):
            p = children.get(name)
            if p is not None:
                stop_process(p)
        if obs is not None:
            obs.close()
        s3.stop()
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    return out


def render_markdown(r: dict[str, Any]) -> str:
    lines = [f"End to end, {r['presses']} presses in {r['blocks']} runs, synthetic camera {r['camera']} "
             f"(load average {r.get('loadavg', '?')}):", "",
             "| path | p50 ms | p99 ms | max ms | p99 per run (min-max) |", "|---|---:|---:|---:|---:|"]
    names = {"edge_to_mqtt_ms": "button edge -> MQTT subscriber (firmware -> spool -> agent -> broker)",
             "edge_to_owner_app_ms": "button edge -> `doorbell owner events --follow`",
             "sent_to_mqtt_ms": "stdin press -> MQTT subscriber (adds the stdin hop)",
             "sent_to_owner_app_ms": "stdin press -> owner app"}
    for k, label in names.items():
        s = r[k]
        per = [run[k]["p99"] for run in r["runs"]]
        lines.append(f"| {label} | {s['p50']:.2f} | {s['p99']:.2f} | {s['max']:.2f} | "
                     f"{min(per):.2f}-{max(per):.2f} |")
    for k, label in (("edge_to_spool_file_ms", "leg 1: button edge -> event file in spool/events (firmware)"),
                     ("spool_file_to_mqtt_ms", "leg 2: event file -> MQTT subscriber (agent, broker)")):
        if k in r:
            s = r[k]
            lines.append(f"| {label} | {s['p50']:.2f} | {s['p99']:.2f} | {s['max']:.2f} | |")
    lines += ["", f"Peak RSS: firmware {r['firmware_rss_mb']['peak']} MB, agent {r['agent_rss_mb']['peak']} MB, "
                  f"owner app {r['owner_app_rss_mb']} MB; ring clips in the bucket {r['clips_uploaded']}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="60 presses, 320x240 camera")
    ap.add_argument("--presses", type=int, help="presses in all (default 1200; quick 60)")
    ap.add_argument("--blocks", type=int, help="split into this many runs (default 4; quick 2)")
    ap.add_argument("--size", default=None, help="camera WxH (default 1280x720, the product default; quick 320x240)")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    presses = a.presses or (60 if a.quick else 1200)
    blocks = a.blocks or (2 if a.quick else 4)
    w, h = (int(x) for x in (a.size or ("320x240" if a.quick else "1280x720")).split("x"))
    t0 = time.perf_counter()
    r = run(presses, blocks, w, h, 15.0)
    r["elapsed_s"] = round(time.perf_counter() - t0, 1)
    print(render_markdown(r))
    if a.json:
        a.json.write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
