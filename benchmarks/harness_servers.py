"""Start-up, restart and stop times and memory of the test servers (doorbell.sandbox.embedded).

Run: .venv/bin/python benchmarks/harness_servers.py [--runs N]
Prints a table; nothing is asserted (see docs/testing.md for recorded figures).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from doorbell.sandbox.embedded import DoorbellBroker, MqttProbe, SeaweedS3  # noqa: E402


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _idle_cpu_pct(pid: int | None, seconds: float) -> float:
    """Share of one core the server uses while nobody talks to it (``pid`` None: the server is not running)."""
    if pid is None:
        raise RuntimeError("server is not running: no idle CPU to measure")
    c0, t0 = _cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100 * (_cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_mosquitto(runs: int, idle_s: float) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"start": [], "restart": [], "stop": [], "connect": [], "rss_mib": [],
                                   "idle_cpu_pct": []}
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as d:
            b = DoorbellBroker(d, {"dev-a": "owner-a", "dev-b": "owner-b"})
            out["start"].append(_timed(b.start))
            clients: list[MqttProbe] = []

            def connect(broker: DoorbellBroker = b, into: list[MqttProbe] = clients) -> None:
                into.append(broker.client("dev-a"))

            out["connect"].append(_timed(connect))
            clients[0].close()
            out["rss_mib"].append((b.rss_bytes() or 0) / 2**20)
            out["idle_cpu_pct"].append(_idle_cpu_pct(b.pid, idle_s))
            out["restart"].append(_timed(b.restart))
            out["stop"].append(_timed(b.stop))
    return out


def bench_seaweed(runs: int, idle_s: float) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"start": [], "restart": [], "stop": [], "rss_mib": [], "rss_after_20MiB_mib": [],
                                   "idle_cpu_pct": []}
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as d:
            s = SeaweedS3(d, "AKBENCH000000001", "bench-secret-bench-secret")
            out["start"].append(_timed(s.start))
            out["rss_mib"].append((s.rss_bytes() or 0) / 2**20)
            c = s.client()
            for i in range(20):
                c.put_object(Bucket=s.bucket, Key=f"bench/{i}", Body=os.urandom(1 << 20))
            out["rss_after_20MiB_mib"].append((s.rss_bytes() or 0) / 2**20)
            time.sleep(1.0)  # let the upload burst settle
            out["idle_cpu_pct"].append(_idle_cpu_pct(s.pid, idle_s))
            out["restart"].append(_timed(s.restart))
            out["stop"].append(_timed(s.stop))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--idle", type=float, default=5.0, help="seconds to measure idle CPU")
    args = ap.parse_args()
    rows = []
    for name, fn in (("mosquitto", bench_mosquitto), ("seaweedfs", bench_seaweed)):
        for metric, values in fn(args.runs, args.idle).items():
            unit = "MiB" if metric.endswith("mib") else "%" if metric.endswith("pct") else "s"
            rows.append((name, metric, unit, statistics.median(values), max(values)))
    print(f"{'server':<10} {'metric':<22} {'median':>9} {'max':>9}  unit   "
          f"(runs={args.runs}, load average {os.getloadavg()[0]:.1f})")
    for name, metric, unit, med, mx in rows:
        print(f"{name:<10} {metric:<22} {med:>9.3f} {mx:>9.3f}  {unit}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
