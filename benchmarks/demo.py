"""How long the unattended demo takes, step by step, and ring -> owner latency.

Runs ``doorbell-demo --non-interactive`` (a real process, real servers) N times
in a scratch work directory and prints a table of each step's seconds (median
and worst) from ``--summary-json``. Run:

    .venv/bin/python benchmarks/demo.py [--runs 3] [--video FILE]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--video", help="pass --video FILE to the demo")
    args = ap.parse_args()
    per_step: dict[str, list[float]] = {}
    totals, walls, latencies, to_bucket = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="doorbell-demo-bench-") as tmp:
        for i in range(args.runs):
            summary = Path(tmp) / f"run{i}.json"
            cmd = [sys.executable, "-m", "doorbell.sandbox.demo", "--non-interactive", "--workdir",
                   str(Path(tmp) / "work"), "--summary-json", str(summary)]
            if args.video:
                cmd += ["--video", args.video]
            t = time.monotonic()
            r = subprocess.run(cmd, capture_output=True, text=True)
            walls.append(time.monotonic() - t)
            data = json.loads(summary.read_text())
            if r.returncode != 0 or not data["ok"]:
                print(r.stdout[-3000:], file=sys.stderr)
                print(f"run {i} failed", file=sys.stderr)
                return 1
            totals.append(data["total_s"])
            for s in data["steps"]:
                per_step.setdefault(f"{s['n']:>2}. {s['name'][:60]}", []).append(s["seconds"])
                if "latency_s" in s["data"]:
                    latencies.append(s["data"]["latency_s"] * 1000)
                if "ring_to_bucket_s" in s["data"]:
                    to_bucket.append(s["data"]["ring_to_bucket_s"])
    print(f"doorbell-demo --non-interactive, {args.runs} run(s)")
    print(f"{'step':<66} {'median s':>9} {'max s':>7}")
    for name, xs in per_step.items():
        print(f"{name:<66} {statistics.median(xs):>9.2f} {max(xs):>7.2f}")
    print(f"{'total inside the demo':<66} {statistics.median(totals):>9.2f} {max(totals):>7.2f}")
    print(f"{'wall clock incl. Python start-up':<66} {statistics.median(walls):>9.2f} {max(walls):>7.2f}")
    print(f"{'ring -> owner app (ms)':<66} {statistics.median(latencies):>9.0f} {max(latencies):>7.0f}")
    print(f"{'ring -> clip indexed and verified in the bucket (s)':<66} "
          f"{statistics.median(to_bucket):>9.2f} {max(to_bucket):>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
