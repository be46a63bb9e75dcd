"""Issue 15, finding 1, tried as an attacker would: a provisioned device, with its own
valid login, claims the sharing service's client id (and an owner's) to push them
off the broker, and an owner's signed revoke is sent during the attempt.

The brokers the project writes bind client ids to logins
(``use_username_as_clientid``), so the device only ever gets its own session:
the service stays connected, the revoke is applied, and the agency's download
fails right after.
"""
from __future__ import annotations

import pytest

from doorbell.clients.agency.client import ApiError
from doorbell.core import protocol as p
from doorbell.core.signing import sign_decision, sign_revoke
from tests.support.sharing import Env


def _result(owner, topic: str, msg) -> p.Result:  # type: ignore[no-untyped-def]
    assert not owner.pub(topic, msg.to_json(), qos=1).is_failure
    reply = owner.expect(p.result_topic("owner-a", msg.nonce), wait=10)
    return p.decode(p.Result, reply.payload)


def test_a_device_claiming_the_services_and_an_owners_client_id_cannot_unseat_them(sharing: Env) -> None:
    t0 = sharing.clock() - 2 * 3600
    for i in range(2):
        sharing.put_clip("dev-a", t0 + i * 600)
    owner = sharing.owner("owner-a")
    rid = sharing.agency.create_request_raw(sharing.request_body())["id"]
    req = p.decode(p.PoliceRequest, owner.expect(p.request_topic("owner-a", rid), wait=10).payload)
    ids = sorted(c.clip_id for c in req.clips)
    decision = sign_decision(sharing.keys["owner-a"], owner_id="owner-a", request_id=rid, approve=True,
                             clip_ids=ids, grant_days=7, now=sharing.clock())
    granted = _result(owner, p.decision_topic("owner-a", rid), decision)
    assert granted.ok and sharing.agency.download_url(rid, ids[0])

    broker = sharing.broker
    offset = broker.log_path.stat().st_size
    # dev-b's real credentials, claiming the service's id and resuming "its" session; and the same
    # trick on the owner's id. Both connect (the logins are valid) as themselves.
    as_service = sharing.mqtt("dev-b", client_id="sharing-service", clean_start=False, session_expiry_s=3600)
    as_owner = sharing.mqtt("dev-a", client_id="owner-a", clean_start=False, session_expiry_s=3600)
    assert as_service.is_connected() and as_owner.is_connected()

    # the owner's signed revoke, sent while both impostors hold their connections
    revoke = sign_revoke(sharing.keys["owner-a"], owner_id="owner-a", grant_id=granted.grant_id,
                         now=sharing.clock())
    assert _result(owner, p.revoke_topic("owner-a", granted.grant_id), revoke).ok
    with pytest.raises(ApiError) as err:
        sharing.agency.download_url(rid, ids[0])
    assert err.value.status == 404
    assert sharing.agency.clips(rid)["clips"] == []

    log = broker.log_path.read_bytes()[offset:].decode(errors="replace")
    assert "as dev-b (" in log and "as dev-a (" in log  # each impostor got its own login as its id
    assert "already connected" not in log                # nobody was disconnected
    assert sharing.service.bridge is not None and sharing.service.bridge.connected.is_set()
    # and neither impostor was handed anything meant for the service or the owner
    assert [m.topic for m in as_service.drain() + as_owner.drain() if "/owners/" in m.topic] == []
    for impostor, login in ((as_service, "dev-b"), (as_owner, "dev-a")):
        impostor.close()
        sharing.mqtt(login, clean_start=True, session_expiry_s=0).close()  # leave no session behind
