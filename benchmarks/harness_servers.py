"""Start-up, restart and stop times and memory of the test servers (doorbell.embedded).

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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from doorbell.embedded import DoorbellBroker, SeaweedS3  # noqa: E402


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_mosquitto(runs: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"start": [], "restart": [], "stop": [], "connect": [], "rss_mib": []}
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as d:
            b = DoorbellBroker(d, {"dev-a": "owner-a", "dev-b": "owner-b"})
            out["start"].append(_timed(b.start))
            c = None

            def connect() -> None:
                nonlocal c
                c = b.client("dev-a")

            out["connect"].append(_timed(connect))
            c.close()
            out["rss_mib"].append((b.rss_bytes() or 0) / 2**20)
            out["restart"].append(_timed(b.restart))
            out["stop"].append(_timed(b.stop))
    return out


def bench_seaweed(runs: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"start": [], "restart": [], "stop": [], "rss_mib": [], "rss_after_20MiB_mib": []}
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as d:
            s = SeaweedS3(d, "AKBENCH000000001", "bench-secret-bench-secret")
            out["start"].append(_timed(s.start))
            out["rss_mib"].append((s.rss_bytes() or 0) / 2**20)
            c = s.client()
            for i in range(20):
                c.put_object(Bucket=s.bucket, Key=f"bench/{i}", Body=os.urandom(1 << 20))
            out["rss_after_20MiB_mib"].append((s.rss_bytes() or 0) / 2**20)
            out["restart"].append(_timed(s.restart))
            out["stop"].append(_timed(s.stop))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for name, fn in (("mosquitto", bench_mosquitto), ("seaweedfs", bench_seaweed)):
        for metric, values in fn(args.runs).items():
            unit = "MiB" if metric.endswith("mib") else "s"
            rows.append((name, metric, unit, statistics.median(values), max(values)))
    print(f"{'server':<10} {'metric':<22} {'median':>9} {'max':>9}  unit   (runs={args.runs})")
    for name, metric, unit, med, mx in rows:
        print(f"{name:<10} {metric:<22} {med:>9.3f} {mx:>9.3f}  {unit}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
