"""`doorbell doctor` logs in as the device. The broker binds the client id to the
login, so doctor's login *is* the agent's session: it must leave that session
as it found it, so a command queued for the agent still reaches it."""
from __future__ import annotations

from doorbell.core import protocol
from doorbell.ops.doctor import OK, check_broker
from tests.support.agent import wait_for


def test_doctor_leaves_the_agents_session_and_queued_commands_alone(agent_config, start_agent, mqtt_client):
    cfg = agent_config("dev-a")
    agent = start_agent(cfg)
    agent.shutdown()  # the session stays on the broker (clean_start false, expiry 300 s)
    owner = mqtt_client("owner-a")
    cmd = protocol.PrivacyCommand(enabled=True)
    assert not owner.pub(protocol.command_topic("dev-a", "privacy"), cmd.to_json()).is_failure  # queued

    result = check_broker(cfg)
    assert result.status == OK, result

    again = start_agent(cfg)
    cmds = wait_for(again.spool.take_commands, what="the queued command, after doctor's login")
    assert [c.payload["command_id"] for c in cmds] == [cmd.command_id]


def test_doctor_while_the_agent_runs(agent_config, start_agent):
    """Doctor takes the session over for a moment; the agent comes back on its own."""
    cfg = agent_config("dev-a")
    agent = start_agent(cfg)
    result = check_broker(cfg)
    assert result.status == OK, result
    wait_for(agent.link.connected.is_set, what="the agent reconnected after doctor")
