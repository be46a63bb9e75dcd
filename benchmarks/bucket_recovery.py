"""Bucket recovery benchmark: how soon uploads resume after a bucket outage.

    .venv/bin/python benchmarks/bucket_recovery.py [--quick] [--reps N] [--outage S] [--json PATH]

(Rings after a broker outage: benchmarks/recovery.py.)

The agent runs as a real subprocess with the product's retry settings
(``agent.retry_base_s``/``retry_max_s`` defaults) against real Mosquitto and
SeaweedFS on loopback. Each outage lasts ``--outage`` seconds, long enough for
any exponential backoff to have grown. Measured, per repetition:

- **bucket outage, clip queued**: a clip is published while the bucket is down;
  from the moment the restarted SeaweedFS serves again to the clip's ``clips``
  message (which the agent sends only after the bucket confirmed all objects;
  target < 10 s);
- **bucket outage, mid-multipart**: the same, but the bucket dies while a
  multipart upload of that clip is in flight (the failed upload is aborted
  and retried from the start).
"""
from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.agent import DEVICE, MB, publish_clip, wait_clip  # noqa: E402
from doorbell.core import protocol  # noqa: E402
from doorbell.core.spool import Spool  # noqa: E402
from doorbell.sandbox.embedded import DoorbellBroker, MqttProbe, SeaweedS3  # noqa: E402
from doorbell.sandbox.media import make_noise_mp4  # noqa: E402
from doorbell.sandbox.stack import agent_stack  # noqa: E402


def _observer(broker: DoorbellBroker) -> MqttProbe:
    obs = broker.client("admin", client_id=f"recovery-obs-{secrets.token_hex(4)}")
    obs.sub(f"{protocol.PREFIX}/devices/{DEVICE}/#", qos=1)
    return obs


def _stale_uploads(s3: SeaweedS3) -> list[Any]:
    return s3.client().list_multipart_uploads(Bucket=s3.bucket, Prefix=DEVICE).get("Uploads", []) or []


def bucket_outage(broker: DoorbellBroker, s3: SeaweedS3, spool: Spool, video: Path, outage: float,
                  mid_upload: bool) -> float:
    """Seconds from the bucket serving again to the announcement of a clip that waited for it."""
    obs = _observer(broker)
    try:
        if mid_upload:
            clip, _ = publish_clip(spool, video)
            deadline = time.monotonic() + 60
            while not _stale_uploads(s3):  # the multipart upload is in flight
                if time.monotonic() > deadline:
                    raise RuntimeError("multipart upload did not start")
                time.sleep(0.05)
            time.sleep(0.5)
            s3.stop()
        else:
            s3.stop()
            clip, _ = publish_clip(spool, video)
        time.sleep(outage)
        s3.start(timeout=120)
        t_up = time.monotonic()
        print(f"{time.strftime('%H:%M:%S')} bucket back ({'mid-multipart' if mid_upload else 'queued'}, "
              f"clip {clip.clip_id})", file=sys.stderr, flush=True)
        return wait_clip(obs, clip.clip_id, timeout=300) - t_up
    finally:
        obs.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 repetition of 20 s outages (about 2 minutes)")
    ap.add_argument("--reps", type=int, help="repetitions per scenario (default 3, quick 1)")
    ap.add_argument("--outage", type=float, help="outage length in seconds (default 30, quick 20)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    reps = args.reps or (1 if args.quick else 3)
    outage = args.outage or (20.0 if args.quick else 30.0)
    results: dict[str, Any] = {"quick": args.quick, "reps": reps, "outage_s": outage}
    # multipart from 5 MB and a bandwidth cap, so the bucket can die mid-upload; retry settings: the product's defaults
    with tempfile.TemporaryDirectory(prefix="bucket-recovery-bench-") as tmp, \
            agent_stack(Path(tmp), DEVICE, "owner-bench", config={
                "s3": {"multipart_threshold_mb": 5, "multipart_chunk_mb": 5, "max_upload_bytes_per_s": 4_000_000},
                "logging": {"level": "INFO"}}) as stack:
        work, broker, s3, cfg = stack.work, stack.broker, stack.s3, stack.cfg
        results["retry_base_s"], results["retry_max_s"] = cfg.agent.retry_base_s, cfg.agent.retry_max_s
        spool = Spool(cfg.spool.dir)
        obs = _observer(broker)
        stack.start_agent(obs)
        obs.close()
        small = make_noise_mp4(work / "small.mp4", 1 * MB, seed=1)
        big = make_noise_mp4(work / "big.mp4", 12 * MB, seed=2)  # 3 parts, ~3 s at the cap

        scenarios: dict[str, list[float]] = {"bucket_outage_s": [], "bucket_outage_mid_multipart_s": []}
        for _ in range(reps):
            scenarios["bucket_outage_s"].append(bucket_outage(broker, s3, spool, small, outage, mid_upload=False))
            scenarios["bucket_outage_mid_multipart_s"].append(
                bucket_outage(broker, s3, spool, big, outage, mid_upload=True))
        for key, vals in scenarios.items():
            results[key] = {"values": [round(v, 3) for v in vals], "median": round(statistics.median(vals), 3),
                            "max": round(max(vals), 3)}
        results["agent_log"] = stack.log_file.read_text(errors="replace").splitlines()[-400:]

    print(f"## Bucket recovery benchmark ({reps} rep(s), {outage:.0f} s outages, "
          f"retry_base_s {results.get('retry_base_s')}, retry_max_s {results.get('retry_max_s')})\n")
    print("| metric | median / max | target |")
    print("|---|---|---|")
    rows = [("bucket_outage_s", "bucket back -> queued clip uploaded and announced", "< 10 s"),
            ("bucket_outage_mid_multipart_s", "bucket back (died mid-multipart) -> clip uploaded and announced",
             "< 10 s")]
    for key, label, target in rows:
        r = results[key]
        print(f"| {label} | {r['median']:.2f} / {r['max']:.2f} s | {target} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
