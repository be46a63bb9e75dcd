"""End to end against real Mosquitto, SeaweedFS and HTTP: clip indexed -> request ->
owner's signed decision -> agency downloads exactly the approved clips (rules 1, 4, 5)."""
from __future__ import annotations

import json

import httpx
import pytest
import sqlalchemy as sa

from doorbell.clients.agency.client import ApiError
from doorbell.core import protocol as p
from doorbell.core.signing import generate_key, sign_decision, sign_revoke
from sharing_service.models import Clip
from tests.support.sharing import Env


def expect_json(client, topic: str, model, wait: float = 10):  # type: ignore[no-untyped-def]
    msg = client.expect(topic, wait=wait)
    return p.decode(model, msg.payload), msg


def retained(env: Env, owner_id: str, topic: str, model):  # type: ignore[no-untyped-def]
    """What a newly connecting client finds retained on ``topic`` (read by the ``observer``
    admin: the owner's own login is in use by the test, and holds one connection at a time)."""
    fresh = env.mqtt("observer")
    fresh.sub(topic, qos=1)
    msg = fresh.expect(topic, wait=5)
    assert msg.retain
    fresh.close()
    return p.decode(model, msg.payload)


def approve(env: Env, owner_id: str, rid: str, clip_ids: list[str], key=None, days: int = 7):  # type: ignore[no-untyped-def]
    return sign_decision(key or env.keys[owner_id], owner_id=owner_id, request_id=rid, approve=True,
                         clip_ids=clip_ids, grant_days=days, now=env.clock())


def send(env: Env, owner, topic: str, msg) -> p.Result:  # type: ignore[no-untyped-def]
    owner.pub(topic, msg.to_json() if hasattr(msg, "to_json") else msg, qos=1)
    ref = msg.nonce if hasattr(msg, "nonce") else topic.rsplit("/", 1)[-1]
    result, _ = expect_json(owner, p.result_topic(topic.split("/")[3], ref), p.Result)
    return result


@pytest.fixture
def three_clips(sharing: Env):  # type: ignore[no-untyped-def]
    t0 = sharing.clock() - 2 * 3600
    return [sharing.put_clip("dev-a", t0 + i * 600) for i in range(3)]


def test_happy_path_two_of_three(sharing: Env, three_clips) -> None:
    owner = sharing.owner("owner-a")
    created = sharing.agency.create_request_raw(sharing.request_body())
    rid = created["id"]
    req, _ = expect_json(owner, p.request_topic("owner-a", rid), p.PoliceRequest)
    assert retained(sharing, "owner-a", p.request_topic("owner-a", rid), p.PoliceRequest) == req
    assert req.agency == "Springfield PD" and req.case_number == "2026-000123"
    offered = sorted(c.clip_id for c in req.clips)
    assert offered == sorted(c for c, _ in three_clips)
    assert all(c.snapshot_url and c.snapshot_url.startswith("http") for c in req.clips)
    assert httpx.get(req.clips[0].snapshot_url).status_code == 200  # owner preview link works

    chosen = sorted(offered[:2])
    decision = approve(sharing, "owner-a", rid, chosen)
    result = send(sharing, owner, p.decision_topic("owner-a", rid), decision)
    assert result.ok and result.grant_id, result
    grant, _ = expect_json(owner, p.grant_topic("owner-a", result.grant_id), p.GrantState)
    assert grant.state == "active" and grant.clip_ids == chosen
    closed, _ = expect_json(owner, p.request_topic("owner-a", rid), p.RequestClosed)
    assert closed.state == "approved"
    assert retained(sharing, "owner-a", p.request_topic("owner-a", rid), p.RequestClosed) == closed
    assert retained(sharing, "owner-a", p.grant_topic("owner-a", result.grant_id), p.GrantState) == grant

    status = sharing.agency.status(rid)
    assert status["clips_shared"] == 2 and status["status"] == "pending"
    listing = sharing.agency.clips(rid)["clips"]
    assert sorted(c["clip_id"] for c in listing) == chosen
    bodies = dict(three_clips)
    for c in listing:
        assert set(c) >= {"url", "url_expires_at", "sha256"} and "device_id" not in c and "owner_id" not in c
        assert "X-Amz-Signature" in c["url"] and "X-Amz-Expires=300" in c["url"]
        assert sharing.agency.fetch(c["url"]) == bodies[c["clip_id"]]  # bytes match what the device uploaded
    # The redirect endpoint gives a fresh link too, and it is audited as a download.
    url = sharing.agency.download_url(rid, chosen[0])
    assert sharing.agency.fetch(url) == bodies[chosen[0]]
    kinds = [json.loads(r["details"]).get("request_id") for r in _audit_rows(sharing, "download")]
    assert kinds == [rid]
    assert len(_audit_rows(sharing, "link_issued")) == 2


def _audit_rows(env: Env, kind: str) -> list[dict]:
    from sqlalchemy import select

    from sharing_service.models import AuditEntry

    with env.core.db.read() as s:
        return [{"seq": e.seq, "details": e.details, "owner_id": e.owner_id}
                for e in s.execute(select(AuditEntry).where(AuditEntry.kind == kind)).scalars()]


def test_unapproved_clip_not_downloadable(sharing: Env, three_clips) -> None:
    """Rule 1: guessing the id of the owner's third clip (or any clip) gets nothing."""
    owner = sharing.owner("owner-a")
    rid = sharing.agency.create_request_raw(sharing.request_body())["id"]
    req, _ = expect_json(owner, p.request_topic("owner-a", rid), p.PoliceRequest)
    ids = sorted(c.clip_id for c in req.clips)
    assert send(sharing, owner, p.decision_topic("owner-a", rid), approve(sharing, "owner-a", rid, ids[:1])).ok
    for guess in (ids[1], ids[2], "20990101T000000000Z-abcdef", "../" + ids[1]):
        with pytest.raises(ApiError) as err:
            sharing.agency.download_url(rid, guess)
        assert err.value.status == 404 and err.value.code == "not_found"
    assert [c["clip_id"] for c in sharing.agency.clips(rid)["clips"]] == ids[:1]
    # Another agency cannot see this request at all, not even its status.
    other = sharing.new_agency("Shelbyville PD")
    for call in (lambda: other.status(rid), lambda: other.clips(rid), lambda: other.download_url(rid, ids[0])):
        with pytest.raises(ApiError) as err:
            call()
        assert err.value.status == 404
    other.close()


def test_refused_decisions(sharing: Env, three_clips) -> None:
    """Rule 1: forged signature, replay, clips outside the request, wrong owner, expired -> refused."""
    owner = sharing.owner("owner-a")
    sharing.put_clip("dev-b", sharing.clock() - 2 * 3600)
    far_clip, _ = sharing.put_clip("dev-b", sharing.clock() - 9 * 3600)  # outside the window
    rid = sharing.agency.create_request_raw(sharing.request_body())["id"]
    req, _ = expect_json(owner, p.request_topic("owner-a", rid), p.PoliceRequest)
    ids = sorted(c.clip_id for c in req.clips)
    topic = p.decision_topic("owner-a", rid)

    forged = approve(sharing, "owner-a", rid, ids, key=generate_key())
    r = send(sharing, owner, topic, forged)
    assert not r.ok and "signature" in r.reason

    outside = approve(sharing, "owner-a", rid, sorted(ids + [far_clip]))
    r = send(sharing, owner, topic, outside)
    assert not r.ok and "not offered" in r.reason

    expired = sign_decision(sharing.keys["owner-a"], owner_id="owner-a", request_id=rid, approve=True,
                            clip_ids=ids, now=sharing.clock() - 4000, validity_s=600)
    r = send(sharing, owner, topic, expired)
    assert not r.ok and "expired" in r.reason

    # owner-b's key and id on owner-a's topic: refused (the ACL also stops owner-b publishing here).
    wrong_owner = sign_decision(sharing.keys["owner-b"], owner_id="owner-b", request_id=rid, approve=True,
                                clip_ids=ids, now=sharing.clock())
    r = send(sharing, owner, topic, wrong_owner)
    assert not r.ok and "does not match the topic" in r.reason

    r = send(sharing, owner, topic, b'{"v":1,"type":"decision"}')
    assert not r.ok and "invalid Decision" in r.reason

    good = approve(sharing, "owner-a", rid, ids[:2])
    first = send(sharing, owner, topic, good)
    assert first.ok
    # replay of the accepted decision: not applied again; answered with the first verdict (an owner's app
    # resends an unanswered message, so it must learn that it was applied), never a second grant
    r = send(sharing, owner, topic, good)
    assert r.ok and r.grant_id == first.grant_id and "replayed" in r.reason and "not applied again" in r.reason
    again = approve(sharing, "owner-a", rid, ids[2:])  # fresh nonce, but already decided
    r = send(sharing, owner, topic, again)
    assert not r.ok and "no longer pending" in r.reason
    assert sorted(c["clip_id"] for c in sharing.agency.clips(rid)["clips"]) == ids[:2]
    assert len(_audit_rows(sharing, "refusal")) == 6
    assert len(_audit_rows(sharing, "grant")) == 1


def test_revocation_stops_downloads_at_once(sharing: Env, three_clips) -> None:
    """Rule 4: a signed revoke ends access; the next link and download fail."""
    owner = sharing.owner("owner-a")
    rid = sharing.agency.create_request_raw(sharing.request_body())["id"]
    req, _ = expect_json(owner, p.request_topic("owner-a", rid), p.PoliceRequest)
    ids = sorted(c.clip_id for c in req.clips)
    res = send(sharing, owner, p.decision_topic("owner-a", rid), approve(sharing, "owner-a", rid, ids))
    assert len(sharing.agency.clips(rid)["clips"]) == 3
    revoke = sign_revoke(sharing.keys["owner-a"], owner_id="owner-a", grant_id=res.grant_id, now=sharing.clock())
    forged = sign_revoke(generate_key(), owner_id="owner-a", grant_id=res.grant_id, now=sharing.clock())
    assert not send(sharing, owner, p.revoke_topic("owner-a", res.grant_id), forged).ok
    assert len(sharing.agency.clips(rid)["clips"]) == 3  # a forged revoke changes nothing
    r = send(sharing, owner, p.revoke_topic("owner-a", res.grant_id), revoke)
    assert r.ok
    state = None
    while state != "revoked":
        g, _ = expect_json(owner, p.grant_topic("owner-a", res.grant_id), p.GrantState)
        state = g.state
    assert sharing.agency.clips(rid)["clips"] == []
    assert sharing.agency.status(rid)["clips_shared"] == 0
    with pytest.raises(ApiError) as err:
        sharing.agency.download_url(rid, ids[0])
    assert err.value.status == 404
    r = send(sharing, owner, p.revoke_topic("owner-a", res.grant_id), revoke)  # replay: not applied again
    assert "not applied again" in str(r.reason) and len(_audit_rows(sharing, "revocation")) == 1


def test_grant_and_request_expiry(sharing: Env, three_clips) -> None:
    """Rule 4: grants lapse after their days; unanswered requests expire as a no."""
    owner = sharing.owner("owner-a")
    sharing.put_clip("dev-b", sharing.clock() - 2 * 3600)
    owner_b = sharing.owner("owner-b")
    rid = sharing.agency.create_request_raw(sharing.request_body())["id"]
    req, _ = expect_json(owner, p.request_topic("owner-a", rid), p.PoliceRequest)
    expect_json(owner_b, p.request_topic("owner-b", rid), p.PoliceRequest)
    ids = sorted(c.clip_id for c in req.clips)
    res = send(sharing, owner, p.decision_topic("owner-a", rid), approve(sharing, "owner-a", rid, ids[:1], days=4))
    assert res.ok and res.expires_at == pytest.approx(sharing.clock() + 4 * 86400, abs=30)
    assert len(sharing.agency.clips(rid)["clips"]) == 1

    sharing.clock.advance(73 * 3600)  # past request_ttl_h (72): owner-b never answered
    assert sharing.agency.status(rid)["status"] == "closed"
    assert sharing.core.sweeper.sweep() == 1
    closed, _ = expect_json(owner_b, p.request_topic("owner-b", rid), p.RequestClosed)
    assert closed.state == "expired"
    assert retained(sharing, "owner-b", p.request_topic("owner-b", rid), p.RequestClosed).state == "expired"
    late = sign_decision(sharing.keys["owner-b"], owner_id="owner-b", request_id=rid, approve=False,
                         now=sharing.clock())
    r = send(sharing, owner_b, p.decision_topic("owner-b", rid), late)
    assert not r.ok and "no longer pending" in r.reason
    assert len(sharing.agency.clips(rid)["clips"]) == 1   # owner-a's 4-day grant still runs

    sharing.clock.advance(24 * 3600)  # 97 h > 4 days: the grant lapses, even before the sweeper runs
    assert sharing.agency.clips(rid)["clips"] == []
    with pytest.raises(ApiError) as err:
        sharing.agency.download_url(rid, ids[0])
    assert err.value.status == 404
    assert sharing.core.sweeper.sweep() == 1
    g, graw = expect_json(owner, p.grant_topic("owner-a", res.grant_id), p.GrantState)
    while g.state == "active":
        g, graw = expect_json(owner, p.grant_topic("owner-a", res.grant_id), p.GrantState)
    assert g.state == "expired"
    assert retained(sharing, "owner-a", p.grant_topic("owner-a", res.grant_id), p.GrantState).state == "expired"


def test_requests_recorded_before_a_stop_are_delivered_after_restart(sharing: Env, three_clips) -> None:
    """Matching runs after the HTTP answer; a request the matcher never reached is not lost."""
    owner = sharing.owner("owner-a")
    svc = sharing.service
    svc.matcher.stop()                     # as if the process died right after answering the agency
    rid = sharing.agency.create_request_raw(sharing.request_body())["id"]
    assert sharing.core.delivery.undelivered() == [rid]
    with pytest.raises(TimeoutError):
        owner.expect(p.request_topic("owner-a", rid), wait=0.5)
    svc.matcher.start()                    # what a restart does: re-queue undelivered requests
    req, _ = expect_json(owner, p.request_topic("owner-a", rid), p.PoliceRequest)
    assert sorted(c.clip_id for c in req.clips) == sorted(c for c, _ in three_clips)
    assert sharing.core.delivery.undelivered() == []
    assert sharing.core.delivery.deliver(rid) == 0  # never asks twice


def test_sealed_announcements_are_not_indexed_and_not_warned_about(sharing: Env, caplog) -> None:  # type: ignore[no-untyped-def]
    """Rule 9: the service passes over a sealed clip quietly; a malformed one is still refused loudly."""
    obj = {"key": "dev-a/o/x/v", "sha256": "ab" * 32, "size": 100}
    sealed = json.dumps({"v": 1, "sealed": True, "device_id": "dev-a", "metadata": "YWdl",
                         "objects": {"video": obj, "metadata": {**obj, "key": "dev-a/o/x/m"},
                                     "manifest": {**obj, "key": "dev-a/o/x/n"}}}).encode()
    with sharing.core.ctx.db.read() as s:
        before = s.execute(sa.select(sa.func.count()).select_from(Clip)).scalar_one()
    caplog.set_level("DEBUG", logger="sharing_service.clip_index")
    assert sharing.core.clips.index_clip("dev-a", sealed) is True
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    with sharing.core.ctx.db.read() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(Clip)).scalar_one() == before
    assert sharing.core.clips.index_clip("dev-a", b'{"v": 1, "sealed": true}') is False
    assert any("dropped" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
