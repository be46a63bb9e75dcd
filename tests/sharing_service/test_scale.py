"""Issue 14: three `doorbell sharing serve` processes on one PostgreSQL and one Mosquitto.

Agencies talk HTTP to the instances in turn; owners' signed decisions go over
MQTT to the shared subscription ``$share/sharing/...``, so the broker picks the
instance. One instance is SIGKILLed while decisions are in flight; owners send
unanswered decisions again (same nonce), as the owner's app does. Then: every
decision answered "applied" and applied exactly once, one delivery per asked
owner, both audit chains verify, and the rate limit held across instances.
A second test drains one instance with SIGTERM.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import func, select

from doorbell.clients.agency.client import AgencyClient, ApiError
from doorbell.core import protocol as p
from doorbell.core.auditchain import verify_owner_view
from doorbell.core.bucket import clip_keys
from doorbell.core.config import SharingSection
from doorbell.core.signing import generate_key, public_key_text, sign_decision
from doorbell.sandbox.embedded import free_port
from sharing_service import audit
from sharing_service.context import AgencyInfo, ServiceContext
from sharing_service.core import SharingCore
from sharing_service.db import Database
from sharing_service.models import AuditEntry, Grant, Nonce, RequestTarget
from sharing_service.schemas import RequestCreate
from tests.support.polling import wait_for
from tests.support.sharing import HOME_A, iso

OWNERS = [f"scale-o{i}" for i in range(1, 6)]
REQUESTS = 6
RESEND_S = 3.0
SHARE_GROUP = "sharing-" + secrets.token_hex(16)  # the instances' secret (see the last test)


@dataclass
class Instance:
    login: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def health(self) -> httpx.Response:
        return httpx.get(self.url + "/healthz", timeout=2)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _start(tmp_path: Path, broker: Any, s3: Any, db_url: str, login: str, **sharing: Any) -> Instance:
    port = free_port()
    cfg = tmp_path / f"{login}.yaml"
    cfg.write_text(yaml.safe_dump({
        "sharing": {"database_url": db_url, "http": {"host": "127.0.0.1", "port": port},
                    "mqtt_shared": True, "mqtt_share_group": SHARE_GROUP, "sweep_interval_s": 2, **sharing},
        "mqtt": {"host": broker.host, "port": broker.port, "username": login},
        "s3": {"endpoint_url": s3.endpoint_url, "bucket": s3.bucket, "access_key_id": s3.access_key,
               "region": "us-east-1", "addressing_style": "path"},
    }))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2]), "DOORBELL__MQTT__PASSWORD": broker.users[login],
           "DOORBELL__S3__SECRET_ACCESS_KEY": s3.secret_key}
    log = tmp_path / f"{login}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "doorbell.cli", "sharing", "serve", "--config", str(cfg)],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    return Instance(login, port, proc, log)


def _serving(inst: Instance) -> bool:
    assert inst.proc.poll() is None, inst.output()[-3000:]
    try:
        state = inst.health().json()
    except httpx.HTTPError:
        return False
    return state.get("status") == "ok" and state.get("broker") == "connected"


def _stop(instances: list[Instance]) -> None:
    for inst in instances:
        if inst.proc.poll() is None:
            inst.proc.send_signal(signal.SIGTERM)
    for inst in instances:
        try:
            inst.proc.wait(30)
        except subprocess.TimeoutExpired:
            inst.proc.kill()
            inst.proc.wait()


@dataclass
class Cluster:
    core: SharingCore
    instances: list[Instance]
    keys: dict[str, Any]
    agency_key: str
    agency_id: int
    limited_key: str
    broker: Any


@pytest.fixture
def cluster(tmp_path: Path, clean_broker: Any, s3: Any, pg_database: str) -> Iterator[Cluster]:
    """Three instances as sharing-service-1..3, five owners with a device and a clip each near HOME_A."""
    broker = clean_broker
    logins = broker.add_service_instances(3)
    for i, owner in enumerate(OWNERS, 1):
        broker.add_device(f"scale-d{i}", owner)
    db = Database(pg_database)
    db.migrate()
    core = SharingCore(ServiceContext(db, SharingSection(database_url=pg_database)))
    keys = {o: generate_key() for o in OWNERS}
    for i, owner in enumerate(OWNERS, 1):
        core.registry.add_owner(owner, public_key_text(keys[owner]))
        core.registry.add_device(f"scale-d{i}", owner, HOME_A[0] + i * 0.0002, HOME_A[1])
    agency_id, agency_key = core.registry.add_agency("Scale PD")
    _, limited_key = core.registry.add_agency("Limited PD", rate_per_min=2)
    instances = [_start(tmp_path, broker, s3, pg_database, login) for login in logins]
    try:
        wait_for(lambda: all(_serving(i) for i in instances), timeout=60, interval=0.1, what="three instances")
        yield Cluster(core, instances, keys, agency_key, agency_id, limited_key, broker)
    finally:
        _stop(instances)
        db.dispose()


def _announce_clips(c: Cluster, s3: Any, started_at: float) -> dict[str, str]:
    """Each device uploads one clip and announces it on MQTT (indexed by whichever instance gets it)."""
    clips = {}
    s3c = s3.client()
    for i, owner in enumerate(OWNERS, 1):
        device = f"scale-d{i}"
        clip_id = time.strftime("%Y%m%dT%H%M%S000Z", time.gmtime(started_at)) + f"-{i:06x}"
        data = b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000)
        key = clip_keys("", device, clip_id, started_at).video
        s3c.put_object(Bucket=s3.bucket, Key=key, Body=data)
        msg = p.ClipMessage(clip_id=clip_id, device_id=device, trigger="ring", started_at=started_at,
                            ended_at=started_at + 10, trigger_at=started_at + 4, pre_roll_s=4, key=key,
                            snapshot_key=None, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
        with c.broker.probe(device) as dev:
            assert not dev.pub(p.clips_topic(device), msg.to_json(), qos=1).is_failure
        clips[owner] = clip_id
    from sharing_service.models import Clip

    def indexed() -> bool:
        with c.core.db.read() as s:
            return s.execute(select(func.count()).select_from(Clip)).scalar_one() == len(OWNERS)
    wait_for(indexed, what="clips indexed by the instances")
    return clips


def test_three_instances_survive_a_sigkill_mid_flow(cluster: Cluster, s3: Any, mqtt_client: Any) -> None:
    c = cluster
    a, b, dead = c.instances
    now = time.time()
    _announce_clips(c, s3, now - 3600)
    body = {"case_number": "2026-001400", "legal_basis": "Warrant 14", "attest_not_protest": True,
            "window_start": iso(now - 2 * 3600), "window_end": iso(now - 1800), "lat": HOME_A[0], "lon": HOME_A[1],
            "radius_m": 500, "reason": "burglary"}

    class DiedBeforeMatching:
        def schedule(self, rid: str) -> None:
            """The instance that recorded the request died before its matcher ran."""

    orphan = SharingCore(c.core.ctx, scheduler=DiedBeforeMatching()).agencies.create_request(
        AgencyInfo(c.agency_id, "Scale PD", None), RequestCreate.model_validate(body))["id"]

    # the rate limit is one per agency, whichever instance answers: 2 per minute in total, not 2 per instance
    codes = []
    for n in range(9):
        with AgencyClient(c.instances[n % 3].url, c.limited_key) as limited:
            try:
                limited.requests()
                codes.append(200)
            except ApiError as exc:
                codes.append(exc.status)
    assert codes.count(200) == 2 and codes.count(429) == 7, codes

    owners = {o: mqtt_client(o) for o in OWNERS}
    for o, probe in owners.items():
        probe.sub(f"{p.PREFIX}/owners/{o}/#", qos=1)
    rids = []
    for n in range(REQUESTS):  # agency HTTP round-robin over the three instances
        with AgencyClient(c.instances[n % 3].url, c.agency_key) as agency:
            rids.append(agency.create_request_raw({**body, "case_number": f"2026-0014{n:02d}"})["id"])

    # every owner is asked every request exactly once (whichever matcher delivered it)
    offered: dict[tuple[str, str], list[str]] = {}
    results: dict[str, list[p.Result]] = {}

    def pump() -> None:
        for o, probe in owners.items():
            for msg in probe.drain():
                if "/results/" in msg.topic:
                    r = p.decode(p.Result, msg.payload)
                    results.setdefault(r.ref, []).append(r)
                elif "/requests/" in msg.topic and msg.payload:
                    try:
                        req = p.decode(p.PoliceRequest, msg.payload)
                    except p.ProtocolError:
                        continue  # a RequestClosed
                    offered[(req.request_id, o)] = [x.clip_id for x in req.clips]

    def asked(rid_list: list[str]) -> bool:
        pump()
        return all((rid, o) in offered for rid in rid_list for o in OWNERS)
    wait_for(lambda: asked(rids), timeout=30, what="every owner asked every request")

    decisions = {(rid, o): sign_decision(c.keys[o], owner_id=o, request_id=rid, approve=True,
                                         clip_ids=offered[(rid, o)], grant_days=7)
                 for rid in rids for o in OWNERS}
    for o in OWNERS:
        for rid in rids:
            owners[o].sub(p.result_topic(o, decisions[(rid, o)].nonce), qos=1)
    sent_at: dict[tuple[str, str], float] = {}

    def send(k: tuple[str, str]) -> None:
        rid, o = k
        assert not owners[o].pub(p.decision_topic(o, rid), decisions[k].to_json(), qos=1).is_failure
        sent_at[k] = time.monotonic()

    order = list(decisions)
    half = len(order) // 2
    for k in order[:half]:
        send(k)
    dead.proc.kill()  # SIGKILL, with decisions in flight
    for k in order[half:]:
        send(k)
    deadline = time.monotonic() + 60
    while True:
        pump()
        missing = [k for k in order if decisions[k].nonce not in results]
        if not missing:
            break
        assert time.monotonic() < deadline, f"{len(missing)} decision(s) never answered"
        for k in missing:  # what the owner's app does: the same signed message again
            if time.monotonic() - sent_at[k] >= RESEND_S:
                send(k)
        time.sleep(0.05)
    assert dead.proc.wait(10) == -signal.SIGKILL
    # the request recorded by an instance that died before matching: a survivor's sweep delivers it
    wait_for(lambda: asked([orphan]), timeout=40, interval=0.2, what="the orphaned request delivered")

    # every decision answered "applied", never refused (a resend is answered with the stored verdict)
    for k in order:
        got = results[decisions[k].nonce]
        assert all(r.ok for r in got), (k, [r.reason for r in got])
        assert len({r.grant_id for r in got}) == 1, got
    with c.core.db.read() as s:
        grants = s.execute(select(Grant.decision_nonce, Grant.request_id, Grant.owner_id)).all()
        assert sorted(g[0] for g in grants) == sorted(d.nonce for d in decisions.values())  # once each
        assert {(g[1], g[2]) for g in grants} == set(decisions)
        states = s.execute(select(RequestTarget.state, func.count()).group_by(RequestTarget.state)).all()
        assert dict(states) == {"approved": len(decisions), "pending": len(OWNERS)}  # (the orphan: undecided)
        kinds = dict(s.execute(select(AuditEntry.kind, func.count()).group_by(AuditEntry.kind)).all())
        assert kinds["decision"] == kinds["grant"] == len(decisions)
        assert kinds["delivery"] == len(decisions) + len(OWNERS)  # each owner asked once per request
        assert kinds.get("refusal", 0) == 0
        assert s.execute(select(func.count()).select_from(Nonce)).scalar_one() == len(decisions)
        report = audit.verify_chain(s)
        assert report.ok, report
        for o in OWNERS:
            view = audit.owner_view(s, o).model_dump(mode="json", exclude_none=True)
            assert verify_owner_view(view, o).ok

    # the survivors serve the agency the approved clips of any request, whoever recorded it
    for n, rid in enumerate(rids):
        with AgencyClient((a, b)[n % 2].url, c.agency_key) as agency:
            assert len(agency.clips(rid)["clips"]) == len(OWNERS)
    assert "Traceback" not in a.output() + b.output()


def test_sigterm_drains_then_exits_zero(tmp_path: Path, clean_broker: Any, s3: Any, pg_database: str,
                                        mqtt_client: Any) -> None:
    """SIGTERM: /healthz turns 503 at once while HTTP still answers, the bridge leaves the group
    and answers the decision it already received, the process exits 0."""
    broker = clean_broker
    login = broker.add_service_instances(1)[0]
    broker.add_device("scale-d1", OWNERS[0])
    db = Database(pg_database)
    db.migrate()
    core = SharingCore(ServiceContext(db, SharingSection(database_url=pg_database)))
    key = generate_key()
    core.registry.add_owner(OWNERS[0], public_key_text(key))
    core.registry.add_device("scale-d1", OWNERS[0], *HOME_A)
    _, agency_key = core.registry.add_agency("Drain PD")
    inst = _start(tmp_path, broker, s3, pg_database, login, drain_delay_s=2)
    try:
        wait_for(lambda: _serving(inst), timeout=60, interval=0.1, what="the instance")
        owner = mqtt_client(OWNERS[0])
        # a (refused: no such request) decision sent just before SIGTERM must still be answered
        msg = sign_decision(key, owner_id=OWNERS[0], request_id=p.new_token(), approve=False)
        owner.sub(p.result_topic(OWNERS[0], msg.nonce), qos=1)
        assert not owner.pub(p.decision_topic(OWNERS[0], msg.request_id), msg.to_json(), qos=1).is_failure
        inst.proc.send_signal(signal.SIGTERM)
        result = p.decode(p.Result, owner.expect(p.result_topic(OWNERS[0], msg.nonce), wait=15).payload)
        assert result.ok is False and "no such request" in str(result.reason)
        health = wait_for(lambda: (r := inst.health()).status_code == 503 and r, timeout=10, what="503")
        assert health.json()["status"] == "draining"
        with AgencyClient(inst.url, agency_key) as agency:  # still answering while the balancer catches up
            assert agency.requests() == []
        assert inst.proc.wait(30) == 0
        out = inst.output()
        assert "draining" in out and "Traceback" not in out
    finally:
        _stop([inst])
        db.dispose()


def test_a_device_cannot_take_owners_decisions_from_the_secret_group(clean_broker: Any, mqtt_client: Any) -> None:
    """Attack with devices' valid logins: join the service's shared subscription to take (and, as they
    may not read them, make the broker drop) a share of every owner's decisions.

    Mosquitto 2.0 grants any SUBSCRIBE and checks the ACL at each delivery, also under ``$share/<group>/``
    (against the filter without the prefix). A device in a guessed group gets nothing and takes nothing:
    the service, in its secret group, gets every decision. A device that knew the secret would join the
    group and the broker would drop the messages it hands to it: why the group's name is a secret."""
    login = clean_broker.add_service_instances(1)[0]
    secret = "sharing-" + secrets.token_hex(16)
    svc, owner = mqtt_client(login), mqtt_client("owner-a")
    assert not svc.sub(f"$share/{secret}/{p.ALL_DECISIONS}")[0].is_failure
    guesser = mqtt_client("dev-a")
    assert not guesser.sub(f"$share/sharing/{p.ALL_DECISIONS}")[0].is_failure  # granted, in another group
    got: list[Any] = []

    def publish_and_count(n: int) -> None:
        for _ in range(n):
            assert not owner.pub(p.decision_topic("owner-a", p.new_token()), b"{}", qos=1).is_failure

    publish_and_count(20)
    wait_for(lambda: len(got.__iadd__(svc.drain())) >= 20, timeout=10, what="20 decisions at the service")
    assert len(got) == 20 and guesser.drain() == []

    leaked = mqtt_client("dev-b")  # the same, knowing the secret: a member that may read nothing
    assert not leaked.sub(f"$share/{secret}/{p.ALL_DECISIONS}")[0].is_failure
    got.clear()
    publish_and_count(20)
    got += svc.drain(settle=2.0)
    assert leaked.drain() == [] and 0 < len(got) < 20  # the broker dropped the device's share
