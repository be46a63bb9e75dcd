"""The test broker is a real Mosquitto enforcing the product's passwords and ACL."""
from __future__ import annotations

import pytest

from doorbell.core import protocol
from doorbell.sandbox.embedded import MqttConnectError

NOT_AUTHORIZED = 135
BAD_USER_OR_PASSWORD = 134


def test_device_publish_to_other_device_is_refused_with_puback_135(mqtt_client):
    dev_a = mqtt_client("dev-a")
    rc = dev_a.pub(protocol.events_topic("dev-b"), b'{"v":1}', qos=1)
    assert rc.value == NOT_AUTHORIZED
    # its own topic is fine (and the refusal did not cost it the connection)
    assert dev_a.pub(protocol.events_topic("dev-a"), b'{"v":1}', qos=1).is_failure is False


def test_wrong_password_is_refused_at_connect(broker):
    with pytest.raises(MqttConnectError) as err:
        broker.client("dev-a", password="not-the-password")
    # Mosquitto 2.0.11 answers 135 (Not authorized); newer versions may say 134
    assert err.value.reason_code.value in (BAD_USER_OR_PASSWORD, NOT_AUTHORIZED)


def test_unknown_user_is_refused_at_connect(broker):
    with pytest.raises(MqttConnectError):
        broker.client("mallory", password="whatever-password")


def test_device_cannot_receive_other_devices_commands(mqtt_client):
    dev_a = mqtt_client("dev-a")
    owner_b = mqtt_client("owner-b")
    topic_b = protocol.command_topic("dev-b", "snapshot")
    codes = dev_a.sub(topic_b, qos=1)
    assert codes[0].value in (NOT_AUTHORIZED, 0, 1)  # refused at SUBACK (2.0) or filtered on delivery
    dev_a.sub("doorbell/v1/devices/#", qos=1)  # a broad filter must not leak either
    dev_b = mqtt_client("dev-b")
    assert dev_b.sub(topic_b, qos=1)[0].value == 1
    assert owner_b.pub(topic_b, b'{"v":1}', qos=1).is_failure is False
    assert dev_b.expect(topic_b).payload == b'{"v":1}'  # delivered to its device...
    leaked = [m for m in dev_a.drain(settle=0.3) if m.topic == topic_b]
    assert leaked == []  # ...and never to another device


def test_owner_cannot_command_a_device_it_does_not_own(mqtt_client):
    owner_a = mqtt_client("owner-a")
    assert owner_a.pub(protocol.command_topic("dev-b", "snapshot"), b"{}", qos=1).value == NOT_AUTHORIZED
    assert owner_a.pub(protocol.command_topic("dev-a", "snapshot"), b"{}", qos=1).is_failure is False


def test_retained_message_survives_broker_restart(broker):
    topic = protocol.status_topic("dev-a")
    dev_a = broker.client("dev-a")
    assert dev_a.pub(topic, b"online", qos=1, retain=True).is_failure is False
    dev_a.close()
    old_port = broker.port
    broker.restart()
    assert broker.port == old_port
    watcher = broker.client("owner-a")
    try:
        watcher.sub(topic, qos=1)
        msg = watcher.expect(topic)
        assert msg.payload == b"online" and msg.retain
    finally:
        watcher.close()
        broker.clear_retained(topic)


def test_persistent_session_gets_queued_command_after_restart(broker):
    """A device's QoS 1 session (clean_start=False) keeps commands sent while it was
    offline, across a broker restart (persistence is on)."""
    topic = protocol.command_topic("dev-a", "privacy")
    cid = "dev-a-persistent-test"
    dev = broker.client("dev-a", client_id=cid, clean_start=False, session_expiry_s=300)
    try:
        assert dev.sub(topic, qos=1)[0].value == 1
    finally:
        dev.close()
    owner = broker.client("owner-a")
    try:
        assert not owner.pub(topic, b'{"on":true}', qos=1).is_failure
    finally:
        owner.close()
    broker.restart()
    dev = broker.client("dev-a", client_id=cid, clean_start=False, session_expiry_s=300)
    try:
        assert dev.expect(topic).payload == b'{"on":true}'
    finally:
        dev.close()
    # end the session so later tests start clean
    broker.client("dev-a", client_id=cid, clean_start=True).close()


def test_a_test_may_stop_the_broker(broker):
    broker.stop()
    assert not broker.running  # the autouse fixture brings it back for the next test


def test_broker_is_back_after_a_test_stopped_it(broker, mqtt_client):
    assert broker.running
    assert not mqtt_client("admin").pub("harness/ping", b"x", qos=1).is_failure


def test_tls_listener(tmp_path, tls_files):
    """Provisioning's TLS setup works with this Mosquitto: a verified TLS connection is
    accepted with the password and the same ACL holds."""
    from doorbell.sandbox.embedded import DoorbellBroker, mqtt_client

    cert = tls_files.cafile
    with DoorbellBroker(tmp_path / "mq", {"dev-a": "owner-a"}, tls=tls_files) as b:
        c = mqtt_client(b.host, b.tls_port, "dev-a", b.users["dev-a"], tls_ca=cert)
        try:
            assert not c.pub(protocol.events_topic("dev-a"), b"{}", qos=1).is_failure
            assert c.pub(protocol.events_topic("dev-b"), b"{}", qos=1).value == NOT_AUTHORIZED
        finally:
            c.close()
        with pytest.raises(MqttConnectError):
            mqtt_client(b.host, b.tls_port, "dev-a", "wrong-password", tls_ca=cert)


def test_restart_waits_for_its_port_when_something_else_holds_it(tmp_path):
    """A restart keeps its port (clients keep their URL): if another process holds
    it for a moment, the start retries the same port instead of moving."""
    import socket
    import threading

    from doorbell.sandbox.embedded import DoorbellBroker, EmbeddedError

    b = DoorbellBroker(tmp_path / "mq", {"dev-a": "owner-a"})
    with b:
        port = b.port
        b.stop()
        squatter = socket.socket()
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((b.host, port))
        squatter.listen()
        threading.Timer(0.3, squatter.close).start()
        b.start()
        assert b.port == port
        b.client("dev-a").close()
        b.stop()
        squatter = socket.socket()
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # our port may be in TIME_WAIT
        squatter.bind((b.host, port))
        squatter.listen()
        try:
            with pytest.raises(EmbeddedError, match="exited"):
                b.start()
        finally:
            squatter.close()
