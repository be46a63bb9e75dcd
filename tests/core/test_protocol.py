"""The MQTT contract: topics round-trip, payloads are strictly validated and size-limited."""
import json

import pytest

from doorbell.core import protocol as p


def test_topic_builders_and_parser_roundtrip():
    cases = [
        (p.status_topic("dev-a"), "status", "dev-a", None, None),
        (p.events_topic("dev-a"), "events", "dev-a", None, None),
        (p.clips_topic("dev-a"), "clips", "dev-a", None, None),
        (p.snapshot_topic("dev-a"), "snapshot", "dev-a", None, None),
        (p.command_topic("dev-a", "privacy"), "command", "dev-a", None, "privacy"),
        (p.request_topic("owner-a", "req123456"), "request", None, "owner-a", "req123456"),
        (p.decision_topic("owner-a", "req123456"), "decision", None, "owner-a", "req123456"),
        (p.revoke_topic("owner-a", "grant1234"), "revoke", None, "owner-a", "grant1234"),
        (p.grant_topic("owner-a", "grant1234"), "grant", None, "owner-a", "grant1234"),
        (p.result_topic("owner-a", "ref123456"), "result", None, "owner-a", "ref123456"),
        (p.rpc_topic("owner-a", "call12345"), "rpc", None, "owner-a", "call12345"),
        (p.rpc_reply_topic("owner-a", "call12345"), "rpc_reply", None, "owner-a", "call12345"),
    ]
    for topic, kind, dev, owner, name in cases:
        assert topic.startswith("doorbell/v1/")
        t = p.parse_topic(topic)
        assert (t.kind, t.device_id, t.owner_id, t.name) == (kind, dev, owner, name)


@pytest.mark.parametrize("topic", [
    "doorbell/v2/devices/dev-a/events", "doorbell/v1/devices/DEV/events", "doorbell/v1/devices/+/events",
    "doorbell/v1/devices/dev-a/commands/reboot", "doorbell/v1/owners/owner-a/requests/x",
    "doorbell/v1/devices/dev-a/events/extra", "other/topic",
])
def test_bad_topics_are_refused(topic):
    with pytest.raises(p.ProtocolError):
        p.parse_topic(topic)


def test_builders_refuse_wildcards_and_bad_ids():
    for bad in ("+", "#", "a/b", "", "UPPER", "x" * 80):
        with pytest.raises(p.ProtocolError):
            p.events_topic(bad)


def test_event_roundtrip_and_strictness():
    ev = p.DeviceEvent(device_id="dev-a", type="ring")
    again = p.decode(p.DeviceEvent, ev.to_json(), "events")
    assert again == ev
    body = json.loads(ev.to_json())
    with pytest.raises(p.ProtocolError, match="Extra inputs"):
        p.decode(p.DeviceEvent, json.dumps({**body, "face_id": 3}), "events")
    with pytest.raises(p.ProtocolError, match="type"):
        p.decode(p.DeviceEvent, json.dumps({**body, "type": "explode"}), "events")
    with pytest.raises(p.ProtocolError, match="not JSON"):
        p.decode(p.DeviceEvent, b"\xff\xfe", "events")
    with pytest.raises(p.ProtocolError, match="JSON object"):
        p.decode(p.DeviceEvent, b"[1,2]", "events")
    with pytest.raises(p.ProtocolError, match="exceeds"):
        p.decode(p.DeviceEvent, b" " * 5000, "events")
    with pytest.raises(p.ProtocolError, match="v"):
        p.decode(p.DeviceEvent, json.dumps({**body, "v": 2}), "events")


def test_commands():
    assert isinstance(p.decode_command("privacy", b'{"enabled": true}'), p.PrivacyCommand)
    s = p.decode_command("settings", b'{"motion": {"sensitivity": 0.7}}')
    assert s.motion.sensitivity == 0.7
    for name, payload in [("settings", b"{}"), ("settings", b'{"motion": {"sensitivity": 3}}'),
                          ("privacy", b'{"enabled": "maybe"}'), ("settings", b'{"gpio": {"pin": 1}}'),
                          ("reboot", b"{}")]:
        with pytest.raises(p.ProtocolError):
            p.decode_command(name, payload)


def test_clip_message_validates_hash_and_times():
    good = dict(clip_id="20261123T212719123Z-1a2b3c", device_id="dev-a", trigger="ring",
                started_at=1_795_000_000, ended_at=1_795_000_012, trigger_at=1_795_000_004,
                pre_roll_s=4, key="dev-a/2026/11/23/x.mp4", sha256="a" * 64, size=10)
    p.ClipMessage(**good)
    for bad in ({"sha256": "xyz"}, {"ended_at": 1_794_999_999}, {"size": 0}, {"clip_id": "../etc"}):
        with pytest.raises(p.ProtocolError):
            p.decode(p.ClipMessage, json.dumps({**good, **bad}), "clips")


def test_status_and_snapshot():
    assert p.decode_status(b"online") == "online"
    with pytest.raises(p.ProtocolError):
        p.decode_status(b"maybe")
    assert p.decode_snapshot(b"\xff\xd8\xff\xe0rest")
    with pytest.raises(p.ProtocolError):
        p.decode_snapshot(b"\x89PNG")


def test_home_assistant_discovery_shape():
    d = p.ha_discovery_payload("dev-a", "Front door")
    kinds = sorted(c["p"] for c in d["cmps"].values())
    assert kinds == ["binary_sensor", "event", "image"]
    assert d["availability"][0]["topic"] == p.status_topic("dev-a")
    assert p.ha_discovery_topic("dev-a") == "homeassistant/device/dev-a/config"
