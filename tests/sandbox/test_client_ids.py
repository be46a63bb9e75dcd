"""Mosquitto 2.0 with ``use_username_as_clientid true``: a session belongs to a login.

The client id a client claims is ignored; the broker uses the username. So a
login can only resume (or take over) its own session, never another role's
(issue 15, finding 1). These tests pin the broker semantics the product relies
on, against the real Mosquitto the sandbox runs.
"""
from __future__ import annotations

from doorbell.core import protocol
from tests.support.polling import wait_for


def test_a_session_belongs_to_the_login_whatever_id_is_claimed(broker, mqtt_client) -> None:
    topic = protocol.command_topic("dev-a", "snapshot")
    dev = mqtt_client("dev-a", client_id="first-name", clean_start=False, session_expiry_s=300)
    assert dev.sub(topic)[0].value == 1
    dev.close()
    owner = mqtt_client("owner-a")
    command = protocol.SnapshotCommand().to_json()
    assert not owner.pub(topic, command).is_failure  # queued for dev-a's session

    # another device claims dev-a's id and asks to resume: it gets its own session, not dev-a's
    thief = mqtt_client("dev-b", client_id="dev-a", clean_start=False, session_expiry_s=300)
    assert thief.drain(settle=0.5) == []
    thief.close()

    # dev-a, under yet another claimed id, resumes its session and gets the queued command
    again = mqtt_client("dev-a", client_id="second-name", clean_start=False, session_expiry_s=300)
    assert again.session_present
    assert again.expect(topic, wait=5).payload == command
    again.close()
    mqtt_client("dev-a", clean_start=True, session_expiry_s=0).close()  # leave no session behind


def test_claiming_another_logins_id_takes_nothing_over(broker, mqtt_client) -> None:
    victim = mqtt_client("owner-a")
    victim.sub(f"{protocol.PREFIX}/owners/owner-a/#")
    offset = broker.log_path.stat().st_size
    impostor = mqtt_client("dev-b", client_id="owner-a", clean_start=False, session_expiry_s=300)
    assert impostor.is_connected()
    # the victim's connection is untouched: it still gets what is published to it, without reconnecting
    admin = mqtt_client("admin")
    admin.pub(f"{protocol.PREFIX}/owners/owner-a/probe", b"still here")
    assert victim.expect(f"{protocol.PREFIX}/owners/owner-a/probe", wait=5).payload == b"still here"
    log = broker.log_path.read_bytes()[offset:].decode(errors="replace")
    assert "as dev-b (" in log                      # the broker used the login as the client id
    assert "already connected" not in log           # and closed nobody's connection
    impostor.close()
    mqtt_client("dev-b", clean_start=True, session_expiry_s=0).close()


def test_the_same_login_does_take_its_own_session_over(broker, mqtt_client) -> None:
    """What the product must live with: one connection per login (docs/protocol.md)."""
    first = mqtt_client("owner-b")
    offset = broker.log_path.stat().st_size
    second = mqtt_client("owner-b", allow_takeover=True)
    wait_for(lambda: "Client owner-b already connected, closing old connection"
             in broker.log_path.read_bytes()[offset:].decode(errors="replace"), what="takeover logged")
    assert second.is_connected()
    first.disconnect()  # stop its reconnect loop before it takes the session back
    second.close()
