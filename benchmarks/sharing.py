"""Sharing-service benchmark: request creation and status reads over real HTTP.

Builds a SQLite index of N devices (one owner each, spread over a 20 x 20 km
city) and M clips (spread over the last 30 days), starts the real service
(uvicorn + the MQTT owner bridge against a real Mosquitto started here), then
drives it from separate worker processes (httpx):

1. POST /v1/requests: random point, radius 200-800 m, window 2-12 h in the
   last 30 days: bounding-box + haversine area match, window scan of the clip
   index, per-owner PoliceRequest messages (with presigned snapshot links)
   published retained over MQTT, audit rows.
2. GET /v1/requests/{id} for the requests just created.

    .venv/bin/python benchmarks/sharing.py            # 10,000 devices, 1,000,000 clips
    .venv/bin/python benchmarks/sharing.py --quick    # 1,000 devices, 100,000 clips
    .venv/bin/python benchmarks/sharing.py --json     # machine-readable
    .venv/bin/python benchmarks/sharing.py --rule2-timing [--pairs 200]

``--rule2-timing`` measures what an agency could learn from time (rule 2, issue 15):
a POST followed by 10 status reads, once for an area where 7 homes have matching
clips and once for an empty area, in random order within each pair; it reports the
median of the paired differences (7 homes minus none) over ``--pairs`` pairs, with a
95 % confidence interval from the sign test's order statistics.

Presigning is local (no S3 round trip), so no S3 server is needed here.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing as mp
import os
import platform
import random
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CENTER = (52.5200, 13.4050)
HALF_SIDE_M = 10_000.0
DAY = 86400.0


def _offset(lat: float, lon: float, dn: float, de: float) -> tuple[float, float]:
    return (lat + math.degrees(dn / 6_371_008.8),
            lon + math.degrees(de / (6_371_008.8 * math.cos(math.radians(lat)))))


def bulk_load(url: str, devices: int, clips: int, now: float, seed: int = 1) -> dict[str, float]:
    """Owners, devices and clips with SQLAlchemy Core executemany in one transaction per table."""
    from sqlalchemy import insert

    from sharing_service.db import Database
    from sharing_service.models import Clip, Device, Owner

    rnd = random.Random(seed)
    db = Database(url)
    db.migrate()
    t0 = time.perf_counter()
    pub = "ed25519:" + "A" * 43
    with db.write() as s:
        s.execute(insert(Owner), [{"id": f"o{i:06d}", "public_key": pub, "created_at": now} for i in range(devices)])
        rows = []
        for i in range(devices):
            lat, lon = _offset(*CENTER, rnd.uniform(-HALF_SIDE_M, HALF_SIDE_M), rnd.uniform(-HALF_SIDE_M, HALF_SIDE_M))
            rows.append({"id": f"d{i:06d}", "owner_id": f"o{i:06d}", "lat": round(lat, 3), "lon": round(lon, 3),
                         "created_at": now})
        s.execute(insert(Device), rows)
    t_reg = time.perf_counter() - t0
    t1 = time.perf_counter()
    per = max(1, clips // devices)
    batch: list[dict[str, Any]] = []
    n = 0
    with db.write() as s:
        for i in range(devices):
            for _ in range(per):
                start = now - rnd.uniform(0, 30 * DAY)
                ts = datetime.fromtimestamp(start, UTC)
                cid = ts.strftime("%Y%m%dT%H%M%S") + f"{ts.microsecond // 1000:03d}Z-{n:06x}"
                batch.append({"id": cid, "device_id": f"d{i:06d}", "trigger": "motion", "started_at": start,
                              "ended_at": start + rnd.uniform(8, 60), "key": f"clips/d{i:06d}/{cid}.mp4",
                              "snapshot_key": f"clips/d{i:06d}/{cid}.jpg", "sha256": "0" * 64,
                              "size": 2_000_000, "indexed_at": now})
                n += 1
                if len(batch) >= 50_000:
                    s.execute(insert(Clip), batch)
                    batch.clear()
        if batch:
            s.execute(insert(Clip), batch)
    t_clips = time.perf_counter() - t1
    with db.write() as s:
        s.connection().exec_driver_sql("ANALYZE")
    db.dispose()
    return {"registry_s": t_reg, "clips_s": t_clips, "clips": n}


def _worker(args: tuple[str, str, str, int, int, float, list[str]]) -> dict[str, Any]:
    """One load process: POSTs (kind='create') or GETs (kind='status'); returns latencies."""
    import httpx

    url, key, kind, n, seed, now, ids = args
    rnd = random.Random(seed)
    lat_ms: list[float] = []
    out_ids: list[str] = []
    errors = 0
    matched_hint = 0
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
        for i in range(n):
            if kind == "create":
                lat, lon = _offset(*CENTER, rnd.uniform(-HALF_SIDE_M, HALF_SIDE_M), rnd.uniform(-HALF_SIDE_M, HALF_SIDE_M))
                hours = rnd.uniform(2, 12)
                end = now - rnd.uniform(0.1, 29) * DAY
                body = {"case_number": f"B-{seed}-{i}", "legal_basis": "warrant", "attest_not_protest": True,
                        "window_start": datetime.fromtimestamp(end - hours * 3600, UTC).isoformat(),
                        "window_end": datetime.fromtimestamp(end, UTC).isoformat(),
                        "lat": lat, "lon": lon, "radius_m": rnd.uniform(200, 800), "reason": "benchmark"}
                t = time.perf_counter()
                r = c.post("/v1/requests", json=body)
                lat_ms.append((time.perf_counter() - t) * 1000)
                if r.status_code == 201:
                    out_ids.append(r.json()["id"])
                else:
                    errors += 1
            else:
                rid = ids[i % len(ids)]
                t = time.perf_counter()
                r = c.get(f"/v1/requests/{rid}")
                lat_ms.append((time.perf_counter() - t) * 1000)
                if r.status_code != 200:
                    errors += 1
    return {"lat_ms": lat_ms, "ids": out_ids, "errors": errors, "matched": matched_hint}


def _child_cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) of the matcher process, from /proc (0 where unavailable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _phase(pool: Any, url: str, key: str, kind: str, total: int, workers: int, now: float,
           ids: list[str], settle: Any = None, matcher_pid: int | None = None) -> dict[str, Any]:
    per = [total // workers + (1 if w < total % workers else 0) for w in range(workers)]
    t0 = time.perf_counter()
    # the service runs in this process and its matcher child: their CPU per request resists machine load
    cpu0 = time.process_time() + _child_cpu_s(matcher_pid)
    results = pool.map(_worker, [(url, key, kind, per[w], 1000 + w, now, ids) for w in range(workers)])
    wall = time.perf_counter() - t0
    if settle is not None:
        settle()  # creation: wait until the matcher has asked every owner
    settled = time.perf_counter() - t0
    cpu = time.process_time() + _child_cpu_s(matcher_pid) - cpu0
    lat = sorted(x for r in results for x in r["lat_ms"])
    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(math.ceil(q * len(lat))) - 1)] if lat else float("nan")
    return {"kind": kind, "requests": len(lat), "errors": sum(r["errors"] for r in results),
            "throughput_per_s": len(lat) / wall if wall else 0.0, "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "mean_ms": statistics.fmean(lat) if lat else float("nan"),
            "server_cpu_ms_per_req": cpu * 1000 / max(1, len(lat)),
            "delivered_per_s": len(lat) / settled if settled else 0.0,
            "ids": [i for r in results for i in r["ids"]]}


def run(devices: int, clips: int, creates: int, statuses: int, workers: int, mqtt: bool,
        rounds: int = 1) -> dict[str, Any]:
    from doorbell.core.config import parse_config
    from sharing_service.service import SharingService

    logging.basicConfig(level=logging.WARNING)
    now = time.time()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="sharing-bench-") as tmp:
        url = f"sqlite:///{tmp}/sharing.db"
        load = bulk_load(url, devices, clips, now)
        broker = None
        data: dict[str, Any] = {
            "s3": {"endpoint_url": "http://127.0.0.1:9", "bucket": "doorbell-clips", "access_key_id": "BENCHKEY",
                   "secret_access_key": secrets.token_urlsafe(24)},
            "sharing": {"database_url": url, "http": {"host": "127.0.0.1", "port": 0},
                        "agency_rate_per_min": 100000},
        }
        if mqtt:
            from doorbell.sandbox.embedded import DoorbellBroker

            broker = DoorbellBroker(Path(tmp) / "mosquitto", {}, [], admins=[], service_user="sharing-service")
            broker.start()
            data["mqtt"] = {"host": broker.host, "port": broker.port, "username": "sharing-service",
                            "password": broker.users["sharing-service"]}
        cfg = parse_config(data, source="<benchmark>", env={})
        svc = SharingService(cfg, mqtt=mqtt, sweep_interval_s=3600)
        svc.start()
        try:
            if svc.bridge:
                svc.bridge.wait_connected(10)
            _, key = svc.core.registry.add_agency("Bench PD")
            ctx = mp.get_context("spawn")
            with ctx.Pool(workers) as pool:
                pool.map(_worker, [(svc.url, key, "status", 0, 0, now, ["x"])] * workers)  # warm up imports
                phases = []
                for r in range(rounds):  # repeated runs on the same index, for the spread
                    created = _phase(pool, svc.url, key, "create", creates, workers, now, [],
                                     settle=lambda: svc.matcher.wait_idle(600), matcher_pid=svc.matcher.pid)
                    status = _phase(pool, svc.url, key, "status", statuses, workers, now, created["ids"],
                                    matcher_pid=svc.matcher.pid)
                    for ph in (created, status):
                        ph.pop("ids")
                        ph["round"] = r
                    phases += [created, status]
            from sqlalchemy import func, select

            from sharing_service.models import RequestTarget
            with svc.db.read() as s:
                asked = s.execute(select(func.count()).select_from(RequestTarget)).scalar_one()
        finally:
            svc.stop()
            if broker:
                broker.stop()
    return {"devices": devices, "clips": load["clips"], "workers": workers, "mqtt": mqtt,
            "load": {"registry_s": round(load["registry_s"], 2), "clips_s": round(load["clips_s"], 2),
                     "clips_per_s": round(load["clips"] / load["clips_s"])},
            "owners_asked_per_request": round(asked / max(1, sum(p["requests"] for p in phases
                                                                  if p["kind"] == "create")), 1),
            "phases": phases,
            "host": {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine(),
                     "loadavg_1m_before": round(load_before, 2), "loadavg_1m_after": round(os.getloadavg()[0], 2)}}


RULE2_HOMES = 7
RULE2_READS = 10


def _rule2_sequence(c: Any, body: dict[str, Any]) -> float:
    """POST a request then read its status 10 times; ms for the whole sequence."""
    t = time.perf_counter()
    r = c.post("/v1/requests", json=body)
    r.raise_for_status()
    rid = r.json()["id"]
    for _ in range(RULE2_READS):
        c.get(f"/v1/requests/{rid}").raise_for_status()
    return (time.perf_counter() - t) * 1000


def _sign_test_ci(diffs: list[float]) -> tuple[float, float]:
    """95 % confidence interval of the median from the binomial order statistics (no normality assumed)."""
    xs = sorted(diffs)
    n = len(xs)
    k = max(0, int(math.floor(n / 2 - 1.96 * math.sqrt(n) / 2)))
    return xs[k], xs[min(n - 1, n - 1 - k)]


def rule2_timing(pairs: int, seed: int = 7) -> dict[str, Any]:
    """Paired timing of POST + 10 status reads: 7 matching homes vs none (see the module docstring)."""
    import httpx
    from sqlalchemy import insert

    from doorbell.core.config import parse_config
    from doorbell.sandbox.embedded import DoorbellBroker
    from sharing_service.models import Clip
    from sharing_service.service import SharingService

    logging.basicConfig(level=logging.WARNING)
    now = time.time()
    rnd = random.Random(seed)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="sharing-rule2-") as tmp:
        url = f"sqlite:///{tmp}/sharing.db"
        bulk_load(url, 1000, 20_000, now)
        broker = DoorbellBroker(Path(tmp) / "mosquitto", {}, [], admins=[], service_user="sharing-service")
        broker.start()
        cfg = parse_config({
            "s3": {"endpoint_url": "http://127.0.0.1:9", "bucket": "doorbell-clips", "access_key_id": "BENCHKEY",
                   "secret_access_key": secrets.token_urlsafe(24)},
            "sharing": {"database_url": url, "http": {"host": "127.0.0.1", "port": 0},
                        "agency_rate_per_min": 100_000},
            "mqtt": {"host": broker.host, "port": broker.port, "username": "sharing-service",
                     "password": broker.users["sharing-service"]},
        }, source="<benchmark>", env={})
        # A shorter delivery tick than the service's default only shortens the waits between
        # sequences: each sequence (~50 ms) still starts right after a tick and ends before the next.
        svc = SharingService(cfg, sweep_interval_s=3600, matcher_tick_s=0.25)
        svc.start()
        try:
            if svc.bridge:
                svc.bridge.wait_connected(10)
            _, key = svc.core.registry.add_agency("Bench PD")
            home = _offset(*CENTER, 25_000, 0)     # outside the bulk-loaded city: only our 7 homes
            empty = _offset(*CENTER, -25_000, 0)   # nobody lives here
            win_end = now - DAY
            clip_rows = []
            for i in range(RULE2_HOMES):
                svc.core.registry.add_owner(f"h{i}", "ed25519:" + "A" * 43)
                lat, lon = _offset(*home, rnd.uniform(-150, 150), rnd.uniform(-150, 150))
                svc.core.registry.add_device(f"hd{i}", f"h{i}", lat, lon)
                for j in range(3):
                    st = win_end - 3600 + j * 600 + i
                    ts = datetime.fromtimestamp(st, UTC)
                    cid = ts.strftime("%Y%m%dT%H%M%S") + f"{ts.microsecond // 1000:03d}Z-{i:03x}{j:03x}"
                    clip_rows.append({"id": cid, "device_id": f"hd{i}", "trigger": "ring", "started_at": st,
                                      "ended_at": st + 20, "key": f"hd{i}/{cid}.mp4", "snapshot_key": f"hd{i}/{cid}.jpg",
                                      "sha256": "0" * 64, "size": 1_000_000, "indexed_at": now})
            with svc.db.write() as s:
                s.execute(insert(Clip), clip_rows)

            def body(center: tuple[float, float], n: int) -> dict[str, Any]:
                return {"case_number": f"T-{n}", "legal_basis": "warrant", "attest_not_protest": True,
                        "window_start": datetime.fromtimestamp(win_end - 2 * 3600, UTC).isoformat(),
                        "window_end": datetime.fromtimestamp(win_end, UTC).isoformat(),
                        "lat": center[0], "lon": center[1], "radius_m": 500, "reason": "benchmark"}

            matched: list[float] = []
            unmatched: list[float] = []
            with httpx.Client(base_url=svc.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
                for n in range(20):  # warm up: connections, caches, the matcher's first run
                    _rule2_sequence(c, body(home if n % 2 else empty, n))
                    svc.matcher.wait_idle(60)
                for n in range(pairs):
                    order = [(home, matched), (empty, unmatched)]
                    rnd.shuffle(order)
                    for center, out in order:
                        out.append(_rule2_sequence(c, body(center, n)))
                        svc.matcher.wait_idle(60)  # each sequence starts from an idle service
            from sqlalchemy import func, select

            from sharing_service.models import RequestTarget
            with svc.db.read() as s:
                asked = s.execute(select(func.count()).select_from(RequestTarget)).scalar_one()
        finally:
            svc.stop()
            broker.stop()
    diffs = [a - b for a, b in zip(matched, unmatched, strict=True)]
    lo, hi = _sign_test_ci(diffs)
    return {"pairs": pairs, "homes": RULE2_HOMES, "reads": RULE2_READS,
            "owners_asked_per_matching_request": round(asked / (pairs + 10), 2),
            "median_matched_ms": statistics.median(matched), "median_unmatched_ms": statistics.median(unmatched),
            "paired_median_diff_ms": statistics.median(diffs), "ci95_low_ms": lo, "ci95_high_ms": hi,
            "host": {"cpus": os.cpu_count(), "loadavg_1m_before": round(load_before, 2),
                     "loadavg_1m_after": round(os.getloadavg()[0], 2)}}


def rule2_markdown(r: dict[str, Any]) -> str:
    return "\n".join([
        f"Rule 2 timing: POST + {r['reads']} status reads, {r['homes']} matching homes vs none, "
        f"{r['pairs']} pairs (random order within each pair).", "",
        "| 7 homes p50 (ms) | no home p50 (ms) | paired median difference (ms) | 95 % CI (ms) |",
        "|---:|---:|---:|---:|",
        f"| {r['median_matched_ms']:.2f} | {r['median_unmatched_ms']:.2f} | {r['paired_median_diff_ms']:+.2f} | "
        f"[{r['ci95_low_ms']:+.2f}, {r['ci95_high_ms']:+.2f}] |", "",
        f"Host: {r['host']['cpus']} CPUs, load average {r['host']['loadavg_1m_before']} before / "
        f"{r['host']['loadavg_1m_after']} after."])


def markdown(res: dict[str, Any]) -> str:
    lines = [f"Sharing service, SQLite, {res['devices']:,} devices, {res['clips']:,} clips, "
             f"{res['workers']} load processes, MQTT bridge {'on' if res['mqtt'] else 'off'}; "
             f"~{res['owners_asked_per_request']} owners asked per request.",
             "",
             "| operation | round | requests | errors | throughput (req/s) | p50 (ms) | p99 (ms) | server CPU (ms/req) "
             "| incl. owner delivery (req/s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    names = {"create": "POST /v1/requests", "status": "GET /v1/requests/{id}"}
    for ph in res["phases"]:
        lines.append(f"| {names[ph['kind']]} | {ph.get('round', 0) + 1} | {ph['requests']} | {ph['errors']} | {ph['throughput_per_s']:.0f} | "
                     f"{ph['p50_ms']:.1f} | {ph['p99_ms']:.1f} | {ph['server_cpu_ms_per_req']:.1f} | "
                     f"{ph['delivered_per_s']:.0f} |")
    ld = res["load"]
    lines += ["", f"Bulk load: registry {ld['registry_s']} s, clips {ld['clips_s']} s "
                  f"({ld['clips_per_s']:,} rows/s). Host: {res['host']['cpus']} CPUs, load average "
                  f"{res['host']['loadavg_1m_before']} before / {res['host']['loadavg_1m_after']} after."]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1,000 devices / 100,000 clips / fewer requests")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a markdown table")
    ap.add_argument("--devices", type=int)
    ap.add_argument("--clips", type=int)
    ap.add_argument("--creates", type=int)
    ap.add_argument("--statuses", type=int)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=1, help="repeat the create+status phases (median/spread)")
    ap.add_argument("--no-mqtt", action="store_true", help="skip the broker (owner messages are dropped)")
    ap.add_argument("--rule2-timing", action="store_true", help="paired timing: 7 matching homes vs none")
    ap.add_argument("--pairs", type=int, default=200, help="pairs for --rule2-timing")
    a = ap.parse_args()
    if a.rule2_timing:
        r2 = rule2_timing(a.pairs)
        print(json.dumps(r2, indent=2) if a.json else rule2_markdown(r2))
        return 0
    devices = a.devices or (1_000 if a.quick else 10_000)
    clips = a.clips or (100_000 if a.quick else 1_000_000)
    creates = a.creates or (200 if a.quick else 1_000)
    statuses = a.statuses or (1_000 if a.quick else 5_000)
    res = run(devices, clips, creates, statuses, a.workers, not a.no_mqtt, a.rounds)
    print(json.dumps(res, indent=2) if a.json else markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
