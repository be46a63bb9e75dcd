"""doorbell.core.broker_acl renders what Mosquitto enforces: checked here as text
and against the real broker (every allow/deny below is a real PUBACK)."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from doorbell.core import broker_acl, protocol
from doorbell.core.broker_acl import AclError

NOT_AUTHORIZED = 135


def test_render_gives_each_role_explicit_rules():
    rules = broker_acl.acl_rules({"dev-a": "owner-a", "dev-b": "owner-b"}, ["owner-a", "owner-c"],
                                 extra_admins=["admin"], ha_users=["ha"])
    assert set(rules) == {"dev-a", "dev-b", "owner-a", "owner-b", "owner-c", "sharing-service", "admin", "ha"}
    assert ("read", "doorbell/v1/devices/dev-a/commands/#") in rules["dev-a"]
    assert ("write", "doorbell/v1/devices/dev-a/commands/#") in rules["owner-a"]
    assert not any("dev-b" in t for _, t in rules["owner-a"])
    assert not any("devices" in t for _, t in rules["owner-c"])  # owns nothing yet
    assert rules["admin"] == [("readwrite", "#")]
    text = broker_acl.render_acl({"dev-a": "owner-a"}, ["owner-a"])
    first_rule = next(i for i, line in enumerate(text.splitlines()) if line.startswith("topic"))
    first_user = next(i for i, line in enumerate(text.splitlines()) if line.startswith("user "))
    assert first_user < first_rule  # no rule applies to everyone (or to anonymous)
    assert "pattern" not in text


@pytest.mark.parametrize("name", ["dev a", "dev-a\ntopic readwrite #", "#", "+", "a/b", "", "-x"])
def test_unsafe_usernames_are_refused(name):
    with pytest.raises(AclError):
        broker_acl.render_acl({name: "owner-a"})
    with pytest.raises(AclError):
        broker_acl.password_line(name, "a-long-password")


def test_a_name_in_two_roles_is_refused():
    with pytest.raises(AclError, match="two roles"):
        broker_acl.acl_rules({"dev-a": "owner-a"}, extra_admins=["dev-a"])


@pytest.mark.parametrize("access,topic", [("write", "a/#/b"), ("read", "a/b#"), ("rw", "a"), ("read", "a b")])
def test_bad_rules_are_refused(access, topic):
    with pytest.raises(AclError):
        broker_acl.check_rule(access, topic)


def test_password_hash_matches_mosquitto_passwd_format(tmp_path):
    entry = broker_acl.hash_password("s3cret-pass", salt=b"\x00" * 12)
    kind, iterations, salt, digest = entry.split("$")[1:]
    assert (kind, iterations, salt) == ("7", "101", "AAAAAAAAAAAAAAAA")
    assert len(digest) == 88  # base64 of a 64-byte SHA-512 PBKDF2 output
    assert broker_acl.verify_password("s3cret-pass", entry)
    assert not broker_acl.verify_password("wrong", entry)
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd not installed (mosquitto-clients/mosquitto); format checked above")
    pw = tmp_path / "pw"
    pw.touch()
    subprocess.run([tool, "-b", str(pw), "alice", "s3cret-pass"], check=True, capture_output=True)
    theirs = pw.read_text().strip().split(":", 1)[1]
    assert theirs.startswith("$7$101$")
    assert broker_acl.verify_password("s3cret-pass", theirs)


def test_password_file_is_private_and_newline_safe(tmp_path):
    path = broker_acl.write_password_file(tmp_path / "passwd", {"dev-a": "pw-aaaaaaaa", "admin": "pw-bbbbbbbb"})
    assert path.stat().st_mode & 0o777 == 0o600
    lines = path.read_text().splitlines()
    assert [line.split(":")[0] for line in lines] == ["admin", "dev-a"]
    with pytest.raises(AclError):
        broker_acl.hash_password("bad\npassword")


# (user, topic, allowed) checked with a real QoS 1 publish against the real broker
PUBLISH_CASES = [
    ("dev-a", protocol.status_topic("dev-a"), True),
    ("dev-a", protocol.clips_topic("dev-a"), True),
    ("dev-a", protocol.snapshot_topic("dev-a"), True),
    ("dev-a", protocol.ha_discovery_topic("dev-a"), True),
    ("dev-a", protocol.ha_discovery_topic("dev-b"), False),
    ("dev-a", protocol.clips_topic("dev-b"), False),
    ("dev-a", protocol.command_topic("dev-a", "snapshot"), False),  # a device does not command itself
    ("dev-a", protocol.decision_topic("owner-a", "req-000001"), False),
    ("owner-a", protocol.decision_topic("owner-a", "req-000001"), True),
    ("owner-a", protocol.decision_topic("owner-b", "req-000001"), False),  # never another owner's consent
    ("owner-a", protocol.revoke_topic("owner-a", "grant-00001"), True),
    ("owner-a", protocol.rpc_topic("owner-a", "call-000001"), True),
    ("owner-a", protocol.request_topic("owner-a", "req-000001"), False),  # only the service asks
    ("owner-a", protocol.events_topic("dev-a"), False),  # cannot fake its own device's ring
    ("sharing-service", protocol.request_topic("owner-a", "req-000001"), True),
    ("sharing-service", protocol.result_topic("owner-b", "ref-000001"), True),
    ("sharing-service", protocol.grant_topic("owner-b", "grant-00001"), True),
    ("sharing-service", protocol.rpc_reply_topic("owner-a", "call-000001"), True),
    ("sharing-service", protocol.decision_topic("owner-a", "req-000001"), False),  # cannot forge consent
    ("sharing-service", protocol.command_topic("dev-a", "privacy"), False),
    ("admin", protocol.events_topic("dev-b"), True),
]


@pytest.mark.parametrize("user,topic,allowed", PUBLISH_CASES, ids=[f"{u}->{t}" for u, t, _ in PUBLISH_CASES])
def test_broker_enforces_publish_acl(mqtt_client, user, topic, allowed):
    rc = mqtt_client(user).pub(topic, b"{}", qos=1)
    if allowed:
        assert not rc.is_failure, rc
    else:
        assert rc.value == NOT_AUTHORIZED, rc


def test_broker_filters_reads_by_acl(mqtt_client):
    """Subscriptions are granted by Mosquitto 2.0.11 but delivery is filtered by the read ACL."""
    svc = mqtt_client("sharing-service")
    owner_b = mqtt_client("owner-b")
    for c in (svc, owner_b):
        c.sub("doorbell/v1/#", qos=1)
    dev_a = mqtt_client("dev-a")
    dev_a.pub(protocol.clips_topic("dev-a"), b'{"clip":1}', qos=1)
    dev_a.pub(protocol.events_topic("dev-a"), b'{"ring":1}', qos=1)
    assert svc.expect(protocol.clips_topic("dev-a")).payload == b'{"clip":1}'
    got_svc = {m.topic for m in svc.drain(settle=0.3)}
    assert protocol.events_topic("dev-a") not in got_svc  # the service does not see rings
    # nor does another owner see anything of dev-a (retained dev-b state from other tests may arrive)
    assert [m.topic for m in owner_b.drain() if "/dev-a/" in m.topic] == []


def test_added_device_gets_standard_acl_at_runtime(broker, mqtt_client):
    password = broker.add_device("hx-dev-c", "hx-owner-c")
    dev_c = mqtt_client("hx-dev-c", password)
    assert not dev_c.pub(protocol.events_topic("hx-dev-c"), b"{}", qos=1).is_failure
    assert dev_c.pub(protocol.events_topic("dev-a"), b"{}", qos=1).value == NOT_AUTHORIZED
    owner_c = mqtt_client("hx-owner-c")
    assert not owner_c.pub(protocol.command_topic("hx-dev-c", "snapshot"), b"{}", qos=1).is_failure
    assert owner_c.pub(protocol.command_topic("dev-a", "snapshot"), b"{}", qos=1).value == NOT_AUTHORIZED


def test_add_user_with_custom_rules_survives_acl_rerender(broker, mqtt_client):
    broker.add_user("probe-reader", "probe-password-1", ["topic read doorbell/v1/devices/+/status"])
    broker.add_device("hx-dev-d", "hx-owner-d")  # re-renders the base ACL
    probe = mqtt_client("probe-reader")
    assert probe.pub(protocol.status_topic("dev-a"), b"online", qos=1).value == NOT_AUTHORIZED
    probe.sub(protocol.status_topic("hx-dev-d"), qos=1)
    mqtt_client("hx-dev-d").pub(protocol.status_topic("hx-dev-d"), b"online", qos=1)
    assert probe.expect(protocol.status_topic("hx-dev-d")).payload == b"online"


def test_mosquitto_accepts_pure_python_hashes_with_more_iterations(tmp_path):
    from doorbell.sandbox.embedded import Mosquitto, MqttConnectError

    acl = broker_acl.format_acl({"u1": [("readwrite", "#")]})
    with Mosquitto(tmp_path, {"u1": "password-one"}, acl, password_iterations=20000) as m:
        assert m.password_path.read_text().startswith("u1:$7$20000$")
        m.client("u1").close()
        with pytest.raises(MqttConnectError):
            m.client("u1", "wrong-password")
