"""Linked devices on the service, by attack: only a signature by one of the owner's active keys
links a key; another owner's account, the owner's own password without a key, a replay, a
forged id, and the service's own account all fail. A linked key can then consent, and an
unlinked one cannot (real Mosquitto, real service)."""
from __future__ import annotations

from typing import Any

from doorbell.core import linking
from doorbell.core import protocol as p
from doorbell.core.age import generate_identity
from doorbell.core.signing import generate_key, public_key_text, sign_decision
from sharing_service.enrolment import OwnerKey
from tests.support.sharing import Env


def new_device_key() -> tuple[Any, str, str]:
    k = generate_key()
    return k, public_key_text(k), str(generate_identity().recipient)


def send(conn: Any, topic: str, msg: Any) -> Any:
    """Publish ``msg`` on ``conn`` (subscribed to its owner tree) and return the service's Result."""
    conn.pub(topic, msg.to_json(), qos=1)
    return p.decode(p.Result, conn.expect(p.result_topic(msg.owner_id, msg.nonce), wait=10).payload, "result")


def enrol(conn: Any, owner: str, signer: Any, pub: str, x25519: str, topic_kid: str | None = None) -> tuple[Any, Any]:
    """Publish a signed Enrol on ``conn`` (one connection per login: the broker binds sessions to
    logins); returns (PUBACK reason, Result or None when the broker refused it)."""
    msg = linking.sign_enrol(signer, owner_id=owner, public_key=pub, x25519=x25519, label="Phone")
    rc = conn.pub(p.enrol_topic(owner, topic_kid or msg.key_id), msg.to_json(), qos=1)
    if rc.is_failure:
        return rc, None
    res = conn.expect(p.result_topic(owner, msg.nonce), wait=10)
    return rc, p.decode(p.Result, res.payload, "result")


def keys_of(env: Env, owner: str) -> dict[str, str]:
    with env.core.db.read() as s:
        return {k.key_id: k.state for k in s.query(OwnerKey).filter(OwnerKey.owner_id == owner)}


def test_owner_key_links_a_new_key_which_then_consents(sharing: Env) -> None:
    k, pub, rcpt = new_device_key()
    a = sharing.owner("owner-a")
    rc, res = enrol(a, "owner-a", sharing.keys["owner-a"], pub, rcpt)
    assert not rc.is_failure and res.ok, res
    kid = linking.key_id(pub)
    assert keys_of(sharing, "owner-a") == {kid: "active"}
    retained = a.expect(p.key_topic("owner-a", kid), wait=5)
    ks = p.decode(linking.KeyState, retained.payload, "grant")
    assert ks.state == "active" and ks.x25519 == rcpt
    assert ks.enrolled_by == linking.key_id(public_key_text(sharing.keys["owner-a"]))
    late = sharing.mqtt("admin")  # a later subscriber gets the key's state as a retained message
    late.sub(p.key_topic("owner-a", kid), qos=1)
    assert late.expect(p.key_topic("owner-a", kid), wait=5).retain
    # the new key consents: a denial it signs is applied
    cid = sharing.put_clip("dev-a", sharing.clock() - 2 * 3600)  # inside the default request window
    rid = sharing.agency.create_request_raw(sharing.request_body())["id"]
    assert sharing.service.matcher.wait_idle(timeout=30)
    assert cid
    d = sign_decision(k, owner_id="owner-a", request_id=rid, approve=False)
    res = send(a, p.decision_topic("owner-a", rid), d)
    assert res.ok, res


def test_another_owners_account_cannot_enrol_a_key_for_me(sharing: Env) -> None:
    _k, pub, rcpt = new_device_key()
    rc, _ = enrol(sharing.mqtt("owner-b"), "owner-a", sharing.keys["owner-b"], pub, rcpt)
    assert rc.value == 135  # the broker refuses owner-b on owner-a's topic
    assert keys_of(sharing, "owner-a") == {}


def test_the_owners_password_without_a_key_cannot_enrol(sharing: Env) -> None:
    """A stolen MQTT password, a key of the thief's own: signature refused."""
    thief, pub, rcpt = new_device_key()
    a = sharing.owner("owner-a")
    rc, res = enrol(a, "owner-a", thief, pub, rcpt)
    assert not rc.is_failure and not res.ok and "does not verify" in res.reason
    # another owner's valid key is no better
    rc, res = enrol(a, "owner-a", sharing.keys["owner-b"], pub, rcpt)
    assert not res.ok and "does not verify" in res.reason
    assert keys_of(sharing, "owner-a") == {}


def test_replay_forged_id_and_bad_recipient_are_refused(sharing: Env) -> None:
    _k, pub, rcpt = new_device_key()
    msg = linking.sign_enrol(sharing.keys["owner-a"], owner_id="owner-a", public_key=pub, x25519=rcpt, label="Phone")
    a = sharing.owner("owner-a")
    assert send(a, p.enrol_topic("owner-a", msg.key_id), msg).ok
    again = send(a, p.enrol_topic("owner-a", msg.key_id), msg)  # the same message again
    assert "replayed" in str(again.reason) and "not applied again" in str(again.reason)  # the first verdict, once
    _k2, pub2, rcpt2 = new_device_key()
    rc, res = enrol(a, "owner-a", sharing.keys["owner-a"], pub2, rcpt2, topic_kid="0" * 32)
    assert not res.ok and "key_id does not match" in res.reason
    bad = linking.sign_enrol(sharing.keys["owner-a"], owner_id="owner-a", public_key=pub2,
                             x25519="age1" + "q" * 58, label="Phone")
    res = send(a, p.enrol_topic("owner-a", bad.key_id), bad)
    assert not res.ok and "not an age recipient" in res.reason
    assert list(keys_of(sharing, "owner-a").values()) == ["active"]


def test_the_service_account_cannot_forge_an_enrolment(sharing: Env) -> None:
    _k, pub, rcpt = new_device_key()
    msg = linking.sign_enrol(sharing.keys["owner-a"], owner_id="owner-a", public_key=pub, x25519=rcpt, label="x")
    rc = sharing.mqtt("sharing-service").pub(p.enrol_topic("owner-a", msg.key_id), msg.to_json(), qos=1)
    assert rc.value == 135


def test_unlinked_key_can_no_longer_consent_or_link(sharing: Env) -> None:
    k, pub, rcpt = new_device_key()
    a = sharing.owner("owner-a")
    assert enrol(a, "owner-a", sharing.keys["owner-a"], pub, rcpt)[1].ok
    kid = linking.key_id(pub)
    u = linking.sign_unlink(k, owner_id="owner-a", kid=kid)  # a key may unlink itself
    assert send(a, p.unlink_topic("owner-a", kid), u).ok
    assert keys_of(sharing, "owner-a") == {kid: "revoked"}
    _k2, pub2, rcpt2 = new_device_key()
    _rc, res = enrol(a, "owner-a", k, pub2, rcpt2)
    assert not res.ok and "does not verify" in res.reason
    # and the revoked key itself cannot come back
    _rc, res = enrol(a, "owner-a", sharing.keys["owner-a"], pub, rcpt)
    assert not res.ok and "already linked" in res.reason
