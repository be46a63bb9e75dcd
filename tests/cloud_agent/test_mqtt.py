"""Events, commands, status and Home Assistant discovery against the real Mosquitto."""
from __future__ import annotations

import json
import logging
import time

import jinja2
import pytest

from doorbell.core import protocol
from doorbell.core.protocol import DeviceEvent
from tests.support.agent import expect_kind, wait_for


def _ring(agent, **kw) -> DeviceEvent:
    ev = DeviceEvent(device_id=agent.device_id, type="ring", **kw)
    agent.spool.publish_event(ev)
    return ev


def test_ring_event_reaches_subscriber_and_leaves_spool(agent_config, start_agent, observer):
    obs = observer("dev-a")
    agent = start_agent(agent_config("dev-a"))
    ev = _ring(agent)
    msg = obs.expect(protocol.events_topic("dev-a"), wait=5)
    got = protocol.decode(DeviceEvent, msg.payload, "events")
    assert got.event_id == ev.event_id and got.type == "ring" and got.late is False
    assert msg.qos == 1
    wait_for(lambda: not agent.spool.pending_events(), what="event removed after PUBACK")


def test_events_keep_order_and_old_ones_are_marked_late(agent_config, start_agent, observer):
    obs = observer("dev-a")
    cfg = agent_config("dev-a", agent={"late_after_s": 30})
    agent = start_agent(cfg)
    old = DeviceEvent(device_id="dev-a", type="motion_start", ts=time.time() - 120)
    agent.spool.publish_event(old)
    sent = [old] + [_ring(agent) for _ in range(40)]
    got = [protocol.decode(DeviceEvent, obs.expect(protocol.events_topic("dev-a")).payload, "events")
           for _ in sent]
    assert [g.event_id for g in got] == [s.event_id for s in sent]
    assert got[0].late is True and not any(g.late for g in got[1:])


def test_status_retained_online_then_offline_on_shutdown(agent_config, start_agent, mqtt_client):
    agent = start_agent(agent_config("dev-a"))
    late_joiner = mqtt_client("admin")
    late_joiner.sub(protocol.status_topic("dev-a"))
    msg = late_joiner.expect(protocol.status_topic("dev-a"))
    assert msg.retain and msg.payload == b"online"
    agent.shutdown()
    msg = late_joiner.expect(protocol.status_topic("dev-a"))
    assert msg.payload == b"offline"


def test_valid_command_goes_to_firmware_inbox(agent_config, start_agent, mqtt_client):
    agent = start_agent(agent_config("dev-a"))
    owner = mqtt_client("owner-a")
    cmd = protocol.PrivacyCommand(enabled=True)
    rc = owner.pub(protocol.command_topic("dev-a", "privacy"), cmd.to_json())
    assert not rc.is_failure
    cmds = wait_for(agent.spool.take_commands, what="command in spool inbox")
    assert cmds[0].name == "privacy" and cmds[0].payload["enabled"] is True
    assert cmds[0].payload["command_id"] == cmd.command_id
    settings = protocol.SettingsCommand(motion=protocol.MotionSettings(sensitivity=0.8))
    owner.pub(protocol.command_topic("dev-a", "settings"), settings.to_json())
    wait_for(lambda: len(agent.spool.take_commands()) == 2, what="settings command")


@pytest.mark.parametrize("name,payload,reason", [
    ("privacy", b"{not json", "not JSON"),
    ("privacy", b'{"v":1,"enabled":"maybe"}', "invalid PrivacyCommand"),
    ("settings", json.dumps({"v": 1, "motion": {"sensitivity": 7}}).encode(), "invalid SettingsCommand"),
    ("settings", json.dumps({"v": 1, "motion": {"sensitivity": 0.5}, "pad": "x" * 5000}).encode(), "exceeds"),
    ("snapshot", b'{"v":1,"command_id":"abcdef","shell":"rm -rf /"}', "invalid SnapshotCommand"),
    ("reboot", b"{}", "unknown command"),
])
def test_bad_commands_are_refused_with_reason_and_agent_keeps_running(
        agent_config, start_agent, mqtt_client, observer, caplog, name, payload, reason):
    obs = observer("dev-a")
    agent = start_agent(agent_config("dev-a"))
    admin = mqtt_client("admin")  # owner ACL would block the unknown name at the broker already
    with caplog.at_level(logging.WARNING, logger="cloud_agent.agent"):
        admin.pub(f"{protocol.PREFIX}/devices/dev-a/commands/{name}", payload)
        wait_for(lambda: any(reason in r.getMessage() for r in caplog.records), what=f"refusal log '{reason}'")
    assert agent.spool.take_commands() == []
    assert agent.healthy() and agent.link.connected.is_set()
    # still serving: a ring goes out and a good command is accepted
    ev = _ring(agent)
    assert protocol.decode(DeviceEvent, obs.expect(protocol.events_topic("dev-a")).payload).event_id == ev.event_id
    admin.pub(protocol.command_topic("dev-a", "snapshot"), protocol.SnapshotCommand().to_json())
    wait_for(agent.spool.take_commands, what="good command after bad one")
    assert agent.board.snapshot()["counters"]["commands_refused"] == 1


def test_device_cannot_publish_under_another_devices_prefix(broker, mqtt_client):
    spy = mqtt_client("admin")
    spy.sub(f"{protocol.PREFIX}/devices/dev-b/#")
    dev_a = mqtt_client("dev-a")
    forged = DeviceEvent(device_id="dev-b", type="ring").to_json()
    for topic in (protocol.events_topic("dev-b"), protocol.clips_topic("dev-b"), protocol.status_topic("dev-b"),
                  protocol.command_topic("dev-b", "privacy"), "homeassistant/device/dev-b/config"):
        rc = dev_a.pub(topic, forged)
        assert rc.value == 0x87, f"{topic}: expected Not authorized, got {rc}"  # MQTT v5 PUBACK
    assert [m for m in spy.drain(settle=0.3) if m.payload == forged] == []
    # nor read another device's commands (Mosquitto grants the SUBACK but delivers nothing)
    dev_a.sub(f"{protocol.PREFIX}/devices/dev-b/commands/#")
    spy.pub(protocol.command_topic("dev-b", "privacy"), protocol.PrivacyCommand(enabled=True).to_json())
    assert dev_a.drain(settle=0.3) == []


def test_home_assistant_discovery_and_reannounce(agent_config, start_agent, mqtt_client, clean_broker):
    ha = mqtt_client("admin")
    start_agent(agent_config("dev-a"))
    topic = protocol.ha_discovery_topic("dev-a")
    ha.sub(topic)
    msg = ha.expect(topic)
    assert msg.retain
    cfg = json.loads(msg.payload)
    assert set(cfg) >= {"dev", "o", "cmps", "availability"}
    assert cfg["o"]["name"]  # HA requires an origin name for device discovery
    platforms = {c["p"] for c in cfg["cmps"].values()}
    assert platforms == {"event", "binary_sensor", "image"}
    for comp in cfg["cmps"].values():
        assert comp["unique_id"].startswith("dev-a_")
    assert cfg["availability"][0]["topic"] == protocol.status_topic("dev-a")
    # the templates HA will run, rendered with Jinja2 against real event payloads
    env = jinja2.Environment()
    ring_t = env.from_string(cfg["cmps"]["dev-a_ring"]["value_template"])
    motion_t = env.from_string(cfg["cmps"]["dev-a_motion"]["value_template"])
    for typ, ring_out, motion_out in (("ring", "ring", ""), ("motion_start", "", "ON"), ("motion_end", "", "OFF")):
        ev = json.loads(DeviceEvent(device_id="dev-a", type=typ).to_json())
        rendered = ring_t.render(value_json=ev)
        assert (json.loads(rendered)["event_type"] if rendered else "") == ring_out
        assert motion_t.render(value_json=ev) == motion_out
    # HA restarts: its birth message makes the agent announce again
    ha.pub(protocol.ha_status_topic(), b"online")
    again = expect_kind(ha, topic, retained=False)
    assert json.loads(again.payload) == cfg


@pytest.mark.parametrize("payload", [
    b"[" * 2000 + b"]" * 2000,  # 4,000 bytes, under the 4 KiB limit: RecursionError in the decoder before
    b'{"v":1,"enabled":' * 220 + b"true" + b"}" * 220,
])
def test_hostile_command_over_the_broker_is_refused_counted_and_shown(
        agent_config, start_agent, mqtt_client, observer, tmp_path, payload):
    """An owner's (valid credentials) hostile payload: refused, counted, shown by `doorbell agent status`."""
    import subprocess
    import sys

    from tests.support.agent import write_config_file

    assert len(payload) <= protocol.MAX_PAYLOAD["command"]
    obs = observer("dev-a")
    cfg = agent_config("dev-a")
    agent = start_agent(cfg)
    owner = mqtt_client("owner-a")
    assert not owner.pub(protocol.command_topic("dev-a", "privacy"), payload).is_failure
    wait_for(lambda: agent.board.snapshot()["counters"]["commands_refused"] == 1, what="refusal counted")
    err = agent.board.snapshot()["last_error"]
    assert err["where"] == "command" and "refused command" in err["message"]
    assert agent.healthy() and agent.link.connected.is_set()
    # the CLI a user runs shows it (status.json is rewritten every second)
    cfg_file = write_config_file(cfg, tmp_path / "agent.yaml")

    def shown() -> str | None:
        out = subprocess.run([sys.executable, "-m", "doorbell.cli", "agent", "status", "--config", str(cfg_file)],
                             capture_output=True, text=True, timeout=60)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("last error:")), "")
        return out.stdout if "refused command" in line and "commands refused 1" in out.stdout else None

    text = wait_for(shown, timeout=30, interval=0.5, what="`doorbell agent status` shows the refusal")
    assert "agent:        running" in text
    # still serving: a ring goes out and a good command is accepted
    ev = _ring(agent)
    assert protocol.decode(DeviceEvent, obs.expect(protocol.events_topic("dev-a")).payload).event_id == ev.event_id
    owner.pub(protocol.command_topic("dev-a", "privacy"), protocol.PrivacyCommand(enabled=False).to_json())
    wait_for(agent.spool.take_commands, what="good command after the hostile one")
    assert agent.board.snapshot()["counters"]["commands_accepted"] == 1
