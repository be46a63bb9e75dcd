"""Scale-out benchmark (issue 14): 1, 2 and 3 sharing-service instances on one PostgreSQL.

Everything is real and on this machine: a PostgreSQL cluster
(:mod:`doorbell.sandbox.postgres`), one Mosquitto (:mod:`doorbell.sandbox.embedded`)
and N ``doorbell sharing serve`` processes, each with its own config file, port
and (with ``sharing.mqtt_shared``) its own broker login in the shared
subscription group. Instances are added one at a time (1, then 2, then 3); at
each step:

1. **status**: ``GET /v1/requests/{id}`` from ``--workers`` load processes, each
   spreading its calls round-robin over the N instances (stdlib ``http.client``
   on keep-alive connections: a light client, so the service gets the CPU);
2. **create**: ``POST /v1/requests`` the same way (a random area of the
   bulk-loaded city; matching and owner delivery run in each instance's matcher,
   and the step ends once every owner has been asked: its CPU includes that);
3. **decision**: owners' signed approvals published over MQTT (QoS 1) at
   ``--window`` in flight; latency is publish -> the service's result message on
   ``owners/{o}/results/{nonce}``, for fresh pending requests (10 homes each).

For each step it reports throughput, p50/p99, the scaling ratio (throughput with
N instances / with 1) and CPU time per request: of the service processes (the
instances and their matcher children, from /proc via psutil, before/after) and,
separately, of PostgreSQL (and for decisions, of Mosquitto). The load generator
runs on the same cores, so throughput is bounded by the machine; CPU per request
is the figure that carries over to other machines (docs/scale.md).

    .venv/bin/python benchmarks/scale.py            # full: 3 instances, 10,000 devices
    .venv/bin/python benchmarks/scale.py --quick    # smoke run (~15 s on an idle 2-core machine)
    .venv/bin/python benchmarks/scale.py --json out.json

Without shared subscriptions (a service without ``sharing.mqtt_shared``), every
extra instance would handle every owner message; the benchmark then runs
instances 2 and 3 with ``--no-mqtt`` and measures decisions with one instance only.
"""
from __future__ import annotations

import argparse
import http.client
import json
import logging
import math
import multiprocessing as mp
import os
import platform
import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.sharing import CENTER, DAY, HALF_SIDE_M, _offset, bulk_load  # noqa: E402

log = logging.getLogger("benchmarks.scale")

DECIDERS = 10                    # homes near the decision site: each request there asks all of them
SITE = _offset(*CENTER, 30_000, 0)  # outside the bulk-loaded city: only the deciders live there


# ----------------------------------------------------------------------------- CPU accounting


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its descendants, live and already reaped (user + system)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


# ----------------------------------------------------------------------------- HTTP load


def _http_worker(args: tuple[list[int], str, str, int, int, float, list[str]]) -> dict[str, Any]:
    """One load process: ``n`` calls round-robin over the instances' ports; latencies in ms."""
    ports, key, kind, n, seed, now, ids = args
    rnd = random.Random(seed)
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=60) for port in ports]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    lat_ms: list[float] = []
    out_ids: list[str] = []
    errors = 0
    for i in range(n):
        conn = conns[(i + seed) % len(conns)]
        if kind == "create":
            lat, lon = _offset(*CENTER, rnd.uniform(-HALF_SIDE_M, HALF_SIDE_M), rnd.uniform(-HALF_SIDE_M, HALF_SIDE_M))
            hours = rnd.uniform(2, 12)
            end = now - rnd.uniform(0.1, 29) * DAY
            body = json.dumps({"case_number": f"S-{seed}-{i}", "legal_basis": "warrant", "attest_not_protest": True,
                               "window_start": datetime.fromtimestamp(end - hours * 3600, UTC).isoformat(),
                               "window_end": datetime.fromtimestamp(end, UTC).isoformat(),
                               "lat": lat, "lon": lon, "radius_m": rnd.uniform(200, 800), "reason": "benchmark"})
            t = time.perf_counter()
            conn.request("POST", "/v1/requests", body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            lat_ms.append((time.perf_counter() - t) * 1000)
            if r.status == 201:
                out_ids.append(json.loads(data)["id"])
            else:
                errors += 1
        else:
            t = time.perf_counter()
            conn.request("GET", f"/v1/requests/{ids[(i * 7 + seed) % len(ids)]}", headers=headers)
            r = conn.getresponse()
            r.read()
            lat_ms.append((time.perf_counter() - t) * 1000)
            errors += r.status != 200
    for conn in conns:
        conn.close()
    return {"lat_ms": lat_ms, "ids": out_ids, "errors": errors}


def pct(lat: list[float], q: float) -> float:
    xs = sorted(lat)
    return xs[min(len(xs) - 1, int(math.ceil(q * len(xs))) - 1)] if xs else float("nan")


# ----------------------------------------------------------------------------- the deployment


@dataclass
class Instance:
    login: str | None
    port: int
    config: Path
    proc: subprocess.Popen[bytes]
    log_path: Path


@dataclass
class Deployment:
    tmp: Path
    db_url: str
    pg: Any
    broker: Any
    shared: bool
    agency_key: str = ""
    instances: list[Instance] = field(default_factory=list)

    @property
    def service_pids(self) -> list[int]:
        return [i.proc.pid for i in self.instances]

    def cpu(self) -> dict[str, float]:
        pg_pid = self.pg.pid
        return {"service": sum(tree_cpu_s(p) for p in self.service_pids),
                "postgres": tree_cpu_s(pg_pid) if pg_pid else 0.0,
                "broker": tree_cpu_s(self.broker.pid) if getattr(self.broker, "pid", None) else 0.0}

    def add_instance(self, mqtt: bool, timeout: float = 60.0) -> Instance:
        """Start one more ``doorbell sharing serve`` and wait until it serves (and, with MQTT, is subscribed)."""
        import httpx
        import yaml

        from doorbell.sandbox.embedded import free_port

        n = len(self.instances) + 1
        port = free_port()
        sharing: dict[str, Any] = {"database_url": self.db_url, "http": {"host": "127.0.0.1", "port": port},
                                   "agency_rate_per_min": 100_000}
        data: dict[str, Any] = {
            "s3": {"endpoint_url": "http://127.0.0.1:9", "bucket": "doorbell-clips", "access_key_id": "BENCHKEY",
                   "secret_access_key": "bench-" + secrets.token_urlsafe(18)},
            "sharing": sharing}
        login = None
        if mqtt:
            login = self.broker.add_service_instances(n)[n - 1] if self.shared else self.broker.service_user
            if self.shared:
                sharing["mqtt_shared"] = True
            data["mqtt"] = {"host": self.broker.host, "port": self.broker.port, "username": login,
                            "password": self.broker.users[login]}
        cfg = self.tmp / f"instance-{n}.yaml"
        cfg.write_text(yaml.safe_dump(data))
        cfg.chmod(0o600)
        log_path = self.tmp / f"instance-{n}.log"
        cmd = [sys.executable, "-m", "doorbell.cli", "sharing", "serve", "-c", str(cfg)]
        if not mqtt:
            cmd.append("--no-mqtt")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                            os.environ.get("PYTHONPATH", "")])}
        with open(log_path, "wb") as fh:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        inst = Instance(login, port, cfg, proc, log_path)
        self.instances.append(inst)
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"instance {n} exited {proc.returncode}: "
                                   f"{log_path.read_text(errors='replace')[-1500:]}")
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                state = r.json()
                # a service that reports its broker link is ready once subscribed
                if r.status_code == 200 and (not mqtt or state.get("broker", "connected") == "connected"):
                    return inst
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"instance {n} did not become ready: {log_path.read_text(errors='replace')[-1500:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        for inst in self.instances:
            if inst.proc.poll() is None:
                inst.proc.terminate()
        for inst in self.instances:
            try:
                inst.proc.wait(30)
            except subprocess.TimeoutExpired:
                inst.proc.kill()
                inst.proc.wait(5)


def shared_subscriptions_supported() -> bool:
    """True when this service can run several bridges in one shared subscription group (issue 14)."""
    from doorbell.core.config import SharingSection
    from doorbell.sandbox.embedded import DoorbellBroker

    return "mqtt_shared" in SharingSection.model_fields and hasattr(DoorbellBroker, "add_service_instances")


# ----------------------------------------------------------------------------- phases


def http_phase(dep: Deployment, pool: Any, kind: str, total: int, workers: int, now: float,
               ids: list[str]) -> dict[str, Any]:
    ports = [i.port for i in dep.instances]
    per = [total // workers + (1 if w < total % workers else 0) for w in range(workers)]
    cpu0 = dep.cpu()
    t0 = time.perf_counter()
    results = pool.map(_http_worker, [(ports, dep.agency_key, kind, per[w], 1000 + w, now, ids)
                                      for w in range(workers)])
    wall = time.perf_counter() - t0
    created = [i for r in results for i in r["ids"]]
    if created:  # a creation's CPU includes asking its owners (the matchers), which must not spill into the next phase
        wait_matched(dep.db_url, created)
    settled = time.perf_counter() - t0
    cpu1 = dep.cpu()
    lat = [x for r in results for x in r["lat_ms"]]
    n = max(1, len(lat))
    return {"kind": kind, "instances": len(ports), "requests": len(lat), "errors": sum(r["errors"] for r in results),
            "wall_s": wall, "throughput_per_s": len(lat) / wall if wall else 0.0,
            "delivered_per_s": len(lat) / settled if settled else 0.0,
            "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99),
            "service_cpu_ms_per_req": (cpu1["service"] - cpu0["service"]) * 1000 / n,
            "postgres_cpu_ms_per_req": (cpu1["postgres"] - cpu0["postgres"]) * 1000 / n,
            "ids": created}


def warm_up(inst: Instance, key: str, now: float) -> None:
    """A few unmeasured calls on a new instance: database connections, compiled statements, imports."""
    ports = [inst.port]
    created = _http_worker((ports, key, "create", 3, 7, now, []))
    _http_worker((ports, key, "status", 30, 7, now, created["ids"] or ["0" * 32]))


def wait_matched(db_url: str, rids: list[str], timeout: float = 300.0) -> None:
    """Until every request in ``rids`` has been matched and its owners asked (``matched_at`` set)."""
    from sqlalchemy import func, select

    from sharing_service.db import Database
    from sharing_service.models import Request

    db = Database(db_url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            with db.read() as s:
                left = s.execute(select(func.count()).select_from(Request)
                                 .where(Request.id.in_(rids), Request.matched_at.is_(None))).scalar_one()
            if not left:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{left} request(s) not delivered within {timeout:.0f} s")
            time.sleep(0.1)
    finally:
        db.dispose()


def enrol_deciders(db_url: str, settings: Any, now: float) -> dict[str, Any]:
    """DECIDERS owners with real Ed25519 keys, one device each within 100 m of SITE, clips in the last day."""
    from sqlalchemy import insert

    from doorbell.core.signing import generate_key, public_key_text
    from sharing_service.context import ServiceContext
    from sharing_service.db import Database
    from sharing_service.models import Clip
    from sharing_service.registry import Registry

    rnd = random.Random(5)
    db = Database(db_url)
    reg = Registry(ServiceContext(db, settings))
    keys = {}
    rows = []
    for i in range(DECIDERS):
        owner = f"decider{i:02d}"
        keys[owner] = generate_key()
        reg.add_owner(owner, public_key_text(keys[owner]))
        reg.add_device(f"dd{i:02d}", owner, *_offset(*SITE, rnd.uniform(-100, 100), rnd.uniform(-100, 100)))
        for j in range(3):
            st = now - DAY + j * 900 + i
            ts = datetime.fromtimestamp(st, UTC)
            cid = ts.strftime("%Y%m%dT%H%M%S") + f"{ts.microsecond // 1000:03d}Z-{0xd00000 + i * 16 + j:06x}"
            rows.append({"id": cid, "device_id": f"dd{i:02d}", "trigger": "ring", "started_at": st,
                         "ended_at": st + 20, "key": f"dd{i:02d}/{cid}.mp4", "snapshot_key": f"dd{i:02d}/{cid}.jpg",
                         "sha256": "0" * 64, "size": 1_000_000, "indexed_at": now})
    with db.write() as s:
        s.execute(insert(Clip), rows)
    db.dispose()
    return keys


def pending_decisions(dep: Deployment, requests: int, now: float, timeout: float = 30.0
                      ) -> list[tuple[str, str, list[str]]]:
    """POST ``requests`` requests at SITE (each asks every decider); wait until delivered;
    return (owner, request id, offered clip ids) for each pending target."""
    import httpx
    from sqlalchemy import select

    from sharing_service.db import Database
    from sharing_service.models import Request, RequestClip, RequestTarget

    rids = []
    body = {"case_number": "D", "legal_basis": "warrant", "attest_not_protest": True,
            "window_start": datetime.fromtimestamp(now - DAY - 600, UTC).isoformat(),
            "window_end": datetime.fromtimestamp(now - DAY + 3 * 900, UTC).isoformat(),
            "lat": SITE[0], "lon": SITE[1], "radius_m": 500, "reason": "benchmark"}
    for n in range(requests):
        inst = dep.instances[n % len(dep.instances)]
        r = httpx.post(f"http://127.0.0.1:{inst.port}/v1/requests", json={**body, "case_number": f"D-{n}"},
                       headers={"Authorization": f"Bearer {dep.agency_key}"}, timeout=30)
        r.raise_for_status()
        rids.append(r.json()["id"])
    db = Database(dep.db_url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            with db.read() as s:
                left = s.execute(select(Request.id).where(Request.id.in_(rids), Request.matched_at.is_(None))).all()
                if not left:
                    targets = s.execute(select(RequestTarget.owner_id, RequestTarget.request_id)
                                        .where(RequestTarget.request_id.in_(rids),
                                               RequestTarget.state == "pending")).all()
                    offered: dict[tuple[str, str], list[str]] = {}
                    for rid, cid, owner in s.execute(select(RequestClip.request_id, RequestClip.clip_id,
                                                            RequestClip.owner_id)
                                                     .where(RequestClip.request_id.in_(rids))):
                        offered.setdefault((owner, rid), []).append(cid)
                    return [(o, r, sorted(offered[(o, r)])) for o, r in targets if offered.get((o, r))]
            if time.monotonic() > deadline:
                tail = dep.instances[0].log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{len(left)} request(s) not delivered within {timeout:.0f} s; instance 1 log: {tail}")
            time.sleep(0.2)
    finally:
        db.dispose()


def decision_phase(dep: Deployment, keys: dict[str, Any], todo: list[tuple[str, str, list[str]]],
                   window: int, timeout: float = 120.0) -> dict[str, Any]:
    """Publish signed approvals (``window`` in flight); latency = publish -> result message."""
    from doorbell.core import protocol as p
    from doorbell.core.config import parse_config
    from doorbell.core.mqtt import Handlers, make_client
    from doorbell.core.signing import sign_decision

    msgs = []
    for owner, rid, clip_ids in todo:
        d = sign_decision(keys[owner], owner_id=owner, request_id=rid, approve=True, clip_ids=clip_ids)
        msgs.append((p.decision_topic(owner, rid), d.to_json(), d.nonce))
    sent: dict[str, float] = {}
    lat_ms: list[float] = []
    results = {"ok": 0, "refused": 0}
    slots = threading.Semaphore(window)
    done = threading.Event()
    lock = threading.Lock()
    admin = dep.broker.admins[0]

    def on_message(_c: Any, _u: Any, m: Any) -> None:
        nonce = m.topic.rsplit("/", 1)[-1]
        t = time.perf_counter()
        with lock:
            t0 = sent.pop(nonce, None)
            if t0 is None:
                return
            lat_ms.append((t - t0) * 1000)
            ok = json.loads(m.payload).get("ok")
            results["ok" if ok else "refused"] += 1
            if len(lat_ms) == len(msgs):
                done.set()
        slots.release()

    cfg = parse_config({"mqtt": {"host": dep.broker.host, "port": dep.broker.port, "username": admin,
                                 "password": dep.broker.users[admin]}}, source="<scale bench>", env={}).mqtt
    client = make_client(cfg, handlers=Handlers(message=lambda c, m: on_message(c, None, m)))
    client.connect_and_wait()
    try:
        client.check(client.subscribe_acked(f"{p.PREFIX}/owners/+/results/+", qos=1), "the result topics")
        cpu0 = dep.cpu()
        t0 = time.perf_counter()
        for topic, payload, nonce in msgs:
            if not slots.acquire(timeout=timeout):
                raise RuntimeError("no result for a decision within the timeout")
            with lock:
                sent[nonce] = time.perf_counter()
            client.publish(topic, payload, qos=1)
        if not done.wait(timeout):
            raise RuntimeError(f"only {len(lat_ms)} of {len(msgs)} decisions answered")
        wall = time.perf_counter() - t0
        cpu1 = dep.cpu()
    finally:
        client.close()
    n = max(1, len(lat_ms))
    return {"kind": "decision", "instances": len(dep.instances), "requests": len(lat_ms),
            "errors": results["refused"], "wall_s": wall, "throughput_per_s": len(lat_ms) / wall,
            "p50_ms": pct(lat_ms, 0.5), "p99_ms": pct(lat_ms, 0.99),
            "service_cpu_ms_per_req": (cpu1["service"] - cpu0["service"]) * 1000 / n,
            "postgres_cpu_ms_per_req": (cpu1["postgres"] - cpu0["postgres"]) * 1000 / n,
            "broker_cpu_ms_per_req": (cpu1["broker"] - cpu0["broker"]) * 1000 / n}


# ----------------------------------------------------------------------------- the run


def run(max_instances: int, devices: int, clips: int, statuses: int, creates: int, decision_requests: int,
        workers: int, window: int) -> dict[str, Any]:
    from doorbell.core.config import parse_config
    from doorbell.sandbox.embedded import DoorbellBroker
    from doorbell.sandbox.postgres import PostgresServer
    from sharing_service.context import ServiceContext
    from sharing_service.db import Database
    from sharing_service.registry import Registry

    logging.basicConfig(level=logging.WARNING)
    log.setLevel(logging.INFO)
    now = time.time()
    load_before = os.getloadavg()[0]
    shared = shared_subscriptions_supported()
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmpdir:
        tmp = Path(tmpdir)
        pg = PostgresServer("max_connections=200")
        db_url = pg.start()
        broker = DoorbellBroker(tmp / "mosquitto", {}, [f"decider{i:02d}" for i in range(DECIDERS)],
                                admins=["bench"], service_user="sharing-service")
        broker.start()
        dep = Deployment(tmp, db_url, pg, broker, shared)
        try:
            load = bulk_load(db_url, devices, clips, now)  # migrates, then owners/devices/clips
            settings = parse_config({"sharing": {"database_url": db_url}}, source="<bench>", env={}).sharing
            keys = enrol_deciders(db_url, settings, now)
            # vacuum the bulk-loaded tables now: autovacuum would otherwise do it in the middle of a step
            import psycopg

            with psycopg.connect(db_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")
            db = Database(db_url)
            _, dep.agency_key = Registry(ServiceContext(db, settings)).add_agency("Scale PD")
            db.dispose()
            setup_s = time.perf_counter() - t_start
            steps: list[dict[str, Any]] = []
            timings: dict[str, float] = {"setup_s": round(setup_s, 1)}
            ids: list[str] = []
            ctx = mp.get_context("spawn")
            with ctx.Pool(workers) as pool:
                pool.map(_http_worker, [([], "", "status", 0, 0, now, ["x"])] * workers)  # imports, once
                timings["load_processes_s"] = round(time.perf_counter() - t_start - setup_s, 1)
                for n in range(1, max_instances + 1):
                    t = time.perf_counter()
                    dep.add_instance(mqtt=(n == 1 or shared))
                    timings[f"start_instance_{n}_s"] = round(time.perf_counter() - t, 1)
                    warm_up(dep.instances[-1], dep.agency_key, now)
                    create = http_phase(dep, pool, "create", creates, workers, now, [])
                    ids = (ids + create.pop("ids"))[-2000:]
                    status = http_phase(dep, pool, "status", statuses, workers, now, ids)
                    status.pop("ids")
                    step = {"instances": n, "create": create, "status": status}
                    if n == 1 or shared:
                        todo = pending_decisions(dep, decision_requests, now)
                        step["decision"] = decision_phase(dep, keys, todo, window)
                    steps.append(step)
                    timings[f"step_{n}_s"] = round(time.perf_counter() - t, 1)
                    log.warning("%d instance(s): %s", n, {k: round(v["throughput_per_s"]) for k, v in step.items()
                                                          if isinstance(v, dict)})
        finally:
            t = time.perf_counter()
            dep.stop()
            t1 = time.perf_counter()
            broker.stop()
            t2 = time.perf_counter()
            pg.stop()
            log.info("teardown: instances %.1f s, broker %.1f s, PostgreSQL %.1f s", t1 - t, t2 - t1,
                     time.perf_counter() - t2)
    for kind in ("status", "create", "decision"):
        base = steps[0].get(kind, {}).get("throughput_per_s")
        for st in steps:
            if kind in st and base:
                st[kind]["scaling_ratio"] = st[kind]["throughput_per_s"] / base
    return {"max_instances": max_instances, "devices": devices, "clips": load["clips"], "workers": workers,
            "decision_window": window, "shared_subscriptions": shared, "deciders_per_request": DECIDERS,
            "database": "postgresql", "setup_s": round(setup_s, 1), "timings": timings, "elapsed_s": round(time.perf_counter() - t_start, 1),
            "steps": steps,
            "host": {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine(),
                     "loadavg_1m_before": round(load_before, 2), "loadavg_1m_after": round(os.getloadavg()[0], 2)}}


def markdown(res: dict[str, Any]) -> str:
    h = res["host"]
    lines = [f"Sharing service scale-out on ONE machine with {h['cpus']} CPU cores: 1..{res['max_instances']} "
             f"`doorbell sharing serve` instances, one PostgreSQL, one Mosquitto, and the load generator "
             f"({res['workers']} processes) all share those cores. {res['devices']:,} devices, {res['clips']:,} clips; "
             f"decisions: {res['deciders_per_request']} homes per request, {res['decision_window']} in flight; "
             f"shared subscriptions {'on' if res['shared_subscriptions'] else 'unavailable (decisions: 1 instance)'}.",
             "",
             "| operation | instances | requests | errors | throughput (/s) | scaling ratio | p50 (ms) | p99 (ms) "
             "| service CPU (ms/req) | PostgreSQL CPU (ms/req) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    names = {"status": "GET /v1/requests/{id}", "create": "POST /v1/requests", "decision": "signed decision -> result"}
    for kind in ("status", "create", "decision"):
        for st in res["steps"]:
            ph = st.get(kind)
            if ph is None:
                continue
            lines.append(f"| {names[kind]} | {st['instances']} | {ph['requests']} | {ph['errors']} | "
                         f"{ph['throughput_per_s']:.0f} | {ph.get('scaling_ratio', 1.0):.2f} | {ph['p50_ms']:.1f} | "
                         f"{ph['p99_ms']:.1f} | {ph['service_cpu_ms_per_req']:.2f} | {ph['postgres_cpu_ms_per_req']:.2f} |")
    lines += ["", f"Host: {h['cpus']} CPUs, load average {h['loadavg_1m_before']} before / {h['loadavg_1m_after']} after; "
                  f"setup {res['setup_s']} s, total {res['elapsed_s']} s."]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: small index, few requests (< 20 s)")
    ap.add_argument("--json", type=Path, nargs="?", const=Path("-"), metavar="PATH",
                    help="write JSON to PATH (or stdout without PATH) instead of the markdown table")
    ap.add_argument("--instances", type=int, default=3, help="up to this many instances")
    ap.add_argument("--workers", type=int, default=4, help="HTTP load processes")
    ap.add_argument("--window", type=int, default=32, help="decisions in flight")
    a = ap.parse_args()
    if a.quick:
        res = run(a.instances, devices=300, clips=3_000, statuses=120, creates=12, decision_requests=1,
                  workers=2, window=a.window)
    else:
        res = run(a.instances, devices=10_000, clips=200_000, statuses=4_000, creates=400, decision_requests=30,
                  workers=a.workers, window=a.window)
    if a.json is None:
        print(markdown(res))
    elif str(a.json) == "-":
        print(json.dumps(res, indent=1))
    else:
        a.json.write_text(json.dumps(res, indent=1))
        print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
