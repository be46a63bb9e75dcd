"""Owner-side matching of a police request over the owner's own sealed-clip index (issue 12 item 5).

The cloud keeps no clip index (rule 9): the owner's app decrypts each sealed
announcement's metadata and keeps a local SQLite index
(doorbell.clients.owner.sealed_index). This builds ``--clips`` real sealed
announcements (metadata age-encrypted to the owner, the same message the
agent publishes) spread over 30 days, ingests them, then times ``match`` for
random 12-hour request windows (the rule-3 maximum).

    .venv/bin/python benchmarks/owner_match.py [--clips 10000] [--queries 200] [--json PATH]
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

from doorbell.clients.owner.sealed_index import SealedIndex
from doorbell.core import age
from doorbell.core import protocol as p
from doorbell.core.bucket import sealed_keys
from doorbell.core.spool import ClipMeta

DAY = 86400.0


def announcement(owner: age.X25519Recipient, device: str, t: float, rnd: random.Random) -> bytes:
    ms = int(t * 1000)
    clip_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime(t)) + f"{ms % 1000:03d}Z-{rnd.randrange(16**6):06x}"
    meta = ClipMeta(clip_id=clip_id, device_id=device, trigger=rnd.choice(["ring", "motion"]), started_at=t,
                    ended_at=t + rnd.uniform(8, 40), trigger_at=t + 4, pre_roll_s=4, duration_s=20,
                    sha256="0" * 64, size=rnd.randrange(500_000, 8_000_000))
    sealed = io.BytesIO()
    age.encrypt(io.BytesIO(meta.model_dump_json().encode()), sealed, [owner])
    keys = sealed_keys("devices/", device, secrets.token_hex(16))
    objects = {k: p.SealedObject(key=keys[k], sha256=secrets.token_hex(32), size=1000)
               for k in ("video", "snapshot", "metadata", "manifest")}
    return p.SealedClipMessage(device_id=device, objects=objects,
                               metadata=base64.b64encode(sealed.getvalue()).decode()).to_json()


def run(clips: int, queries: int, seed: int = 7) -> dict[str, object]:
    rnd = random.Random(seed)
    owner = age.generate_identity()
    end = time.time() - DAY
    start = end - 30 * DAY
    devices = ["front-door", "back-door"]
    msgs = [(d, announcement(owner.recipient, d, rnd.uniform(start, end), rnd))
            for d in (rnd.choice(devices) for _ in range(clips))]
    with tempfile.TemporaryDirectory() as tmp:
        idx = SealedIndex(Path(tmp) / "idx.sqlite", [owner])
        t = time.perf_counter()
        for d, m in msgs:
            if idx.ingest(d, m) is None:
                raise SystemExit("benchmark announcement refused")
        ingest_s = time.perf_counter() - t
        assert idx.count() == clips
        times_ms, found = [], []
        for _ in range(queries):
            w0 = rnd.uniform(start, end - 12 * 3600)
            t = time.perf_counter()
            got = idx.match(w0, w0 + 12 * 3600)
            times_ms.append((time.perf_counter() - t) * 1000)
            found.append(len(got))
        idx.close()
    times_ms.sort()
    return {"clips": clips, "queries": queries, "window_h": 12, "days": 30,
            "match_ms": times_ms, "match_p50_ms": statistics.median(times_ms),
            "match_p99_ms": times_ms[min(len(times_ms) - 1, int(len(times_ms) * 0.99))],
            "matched_median": statistics.median(found), "ingest_per_clip_ms": ingest_s / clips * 1000}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one run of 50 queries (still 10,000 clips)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    runs = [run(a.clips, 50 if a.quick else a.queries, seed=7 + i) for i in range(1 if a.quick else a.runs)]
    doc = {"runs": [{k: v for k, v in r.items() if k != "match_ms"} for r in runs]}
    text = json.dumps(doc, indent=2)
    if a.json:
        a.json.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
