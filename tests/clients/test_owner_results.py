"""Issue 15, finding 1 (second half): an owner's decision or revoke is never acknowledged
and then lost silently. The service answers every one on ``owners/{o}/results/{nonce}``
(applied, or refused with a reason, also when applying fails), the owner's app waits for
that answer and exits non-zero when it is a refusal or does not come; and no other owner
(nor the owner itself) can read or forge another owner's results. (No answer at all: the
app's timeout, test_owner_agency.py::test_refusal_by_the_service_is_reported_with_non_zero_exit.)"""
from __future__ import annotations

import json
import sqlite3
import time

import pytest

from doorbell.core import protocol as p
from tests.support.clients import ClientEnv, sharing_db

NOT_AUTHORIZED = 135


def test_another_owner_can_neither_read_nor_forge_results(clients: ClientEnv) -> None:
    c1 = clients.put_clip(time.time() - 1200)
    rid = clients.file_request()
    spy = clients.mqtt("owner-b")
    spy.sub(f"{p.PREFIX}/owners/owner-a/results/+", qos=1)     # granted, but delivery is filtered by the ACL
    forged = p.Result(ref="0" * 32, ok=True, grant_id="f" * 32).to_json()
    rc = spy.pub(p.result_topic("owner-a", "0" * 32), forged, qos=1)
    assert rc.value == NOT_AUTHORIZED, ("owner-b", rc)
    # the owner itself cannot fake "applied" either (closed before the owner's app logs in:
    # the broker allows one connection per login)
    with clients.mqtt("owner-a") as own:
        rc = own.pub(p.result_topic("owner-a", "0" * 32), forged, qos=1)
    assert rc.value == NOT_AUTHORIZED, ("owner-a", rc)
    r = clients.owner("approve", rid, "--clip", c1, "--yes", "--json")
    assert r.code == 0, r
    result = json.loads(r.out)
    assert result["ok"] is True and result["grant_id"]           # the service's real verdict reached owner-a
    assert [m.topic for m in spy.drain(settle=0.5) if "/owner-a/" in m.topic] == []


def test_a_failure_while_applying_is_reported_as_not_applied(clients: ClientEnv) -> None:
    """The database fails mid-way (a table the approval needs is gone): the transaction rolls
    back and the owner is told so, instead of hearing nothing."""
    c1 = clients.put_clip(time.time() - 1200)
    rid = clients.file_request()
    with sqlite3.connect(sharing_db(clients)) as c:
        c.execute("pragma foreign_keys=off")
        c.execute("drop table grant_clips")
    r = clients.owner("approve", rid, "--clip", c1, "--yes")
    assert r.code == 1, r
    assert "not applied: internal error at the sharing service" in r.err, r.err
    with sqlite3.connect(sharing_db(clients)) as c:
        assert c.execute("select count(*) from grants").fetchone()[0] == 0
        assert c.execute("select state from request_targets where request_id=?", (rid,)).fetchone()[0] == "pending"


def test_a_retained_decision_is_answered_not_applied(clients: ClientEnv) -> None:
    """A retained decision would reach the service again at every reconnect: it is refused,
    and the sender hears so instead of nothing."""
    from doorbell.core.signing import load_private_key, sign_decision

    c1 = clients.put_clip(time.time() - 1200)
    rid = clients.file_request()
    msg = sign_decision(load_private_key(clients.key_file), owner_id="owner-a", request_id=rid, approve=True,
                        clip_ids=[c1], grant_days=7)
    owner = clients.mqtt("owner-a")
    owner.sub(p.result_topic("owner-a", msg.nonce), qos=1)
    clients.service.bridge.stop()
    # A session that was subscribed while the service was away would get the message queued as
    # a live one; the retained copy is what a new session (first start, or after the session
    # expired) finds. Start from no session, as such a service would.
    clients.broker.reset_session("sharing-service")
    assert not owner.pub(p.decision_topic("owner-a", rid), msg.to_json(), qos=1, retain=True).is_failure
    from sharing_service.bridge import OwnerBridge

    # the service (re)connects: the broker hands it the retained message as retained
    bridge = OwnerBridge(clients.core, clients.service.cfg.mqtt)  # resumes the service's session
    bridge.start()
    try:
        result = p.decode(p.Result, owner.expect(p.result_topic("owner-a", msg.nonce), wait=15).payload)
        assert result.ok is False and "must be sent live" in str(result.reason)
    finally:
        bridge.stop()
        owner.pub(p.decision_topic("owner-a", rid), b"", qos=1, retain=True)   # clear it
    with sqlite3.connect(sharing_db(clients)) as c:
        assert c.execute("select count(*) from grants").fetchone()[0] == 0


def test_an_unanswered_decision_is_sent_again_with_the_same_nonce_then_answered_once(clients: ClientEnv) -> None:
    """Several service instances (docs/sharing.md): the one that took a decision may die before answering.
    The app sends the very same signed message again; the service applies it once and answers the
    repeat with the first verdict."""
    from doorbell.clients.owner.app import OwnerApp, OwnerError
    from doorbell.core.config import load_config
    from doorbell.core.signing import load_private_key, sign_decision

    c1 = clients.put_clip(time.time() - 1200)
    rid = clients.file_request()
    msg = sign_decision(load_private_key(clients.key_file), owner_id="owner-a", request_id=rid, approve=True,
                        clip_ids=[c1], grant_days=7)
    watcher = clients.mqtt("admin")
    watcher.sub(p.decision_topic("owner-a", rid), qos=1)
    with OwnerApp(load_config(clients.owner_config)) as app:
        first = app.send_signed(p.decision_topic("owner-a", rid), msg, timeout=10)
        again = app.send_signed(p.decision_topic("owner-a", rid), msg, timeout=10)   # as a resend arrives
        assert first.ok and again.ok and again.grant_id == first.grant_id and "not applied again" in str(again.reason)
        clients.service.bridge.stop()  # nobody answers now: the app sends the same bytes again
        with pytest.raises(OwnerError, match="NOT known to be applied"):
            app.send_signed(p.decision_topic("owner-a", rid), msg, timeout=2.5, resend_s=1.0)
    sent = [m.payload for m in watcher.drain(settle=0.5)]
    assert len(sent) >= 4 and set(sent) == {msg.to_json()}   # 2 answered sends + at least 2 unanswered, identical
    with sqlite3.connect(sharing_db(clients)) as c:
        assert c.execute("select count(*) from grants").fetchone()[0] == 1
