"""A full state-directory filesystem degrades the agent; it never stops it (issue 16, finding 6).

A real filesystem (a 1 MiB tmpfs, filled to the last byte) holds ``agent.state_dir``;
the spool stays on the normal disk, as the firmware's own retention keeps it writable.
"""
from __future__ import annotations

import logging
import os
import time

from cloud_agent.agent import Agent
from cloud_agent.status import STATUS_FILE, read_status
from doorbell.core import protocol
from doorbell.core.protocol import ClipMessage, DeviceEvent
from doorbell.sandbox.media import publish_clip
from tests.support.agent import wait_for


def _ring(agent: Agent, sent: list[DeviceEvent]) -> None:
    ev = DeviceEvent(device_id="dev-a", type="ring")
    agent.spool.publish_event(ev)
    sent.append(ev)


def _observer(mqtt_client):  # type: ignore[no-untyped-def]
    c = mqtt_client("admin", client_id=f"obs-full-{os.getpid()}-{time.time_ns()}")
    c.sub(f"{protocol.PREFIX}/devices/dev-a/#", qos=1)
    return c


def test_agent_starts_and_keeps_working_on_a_full_state_disk(agent_config, start_agent, mqtt_client, s3,
                                                             full_disk, caplog):
    state = full_disk.path / "agent"
    cfg = agent_config("dev-a", agent={"state_dir": str(state)})
    obs = _observer(mqtt_client)
    full_disk.fill()
    with open(full_disk.path / "probe", "wb") as fh:  # really full
        try:
            fh.write(b"x" * 8192)
            fh.flush()
            os.fsync(fh.fileno())
            raise AssertionError("the filesystem is not full")
        except OSError:
            pass

    sent: list[DeviceEvent] = []
    with caplog.at_level(logging.INFO):
        agent = start_agent(cfg)  # used to exit here: status.json could not be written
        assert agent.healthy()
        for _ in range(3):
            _ring(agent, sent)
        got = [obs.expect(protocol.events_topic("dev-a"), wait=10) for _ in sent]
        assert [protocol.decode(DeviceEvent, m.payload).event_id for m in got] == [e.event_id for e in sent]
        wait_for(lambda: not agent.spool.pending_events(), what="acknowledged events removed")

        # a clip reaches the bucket (journal kept in memory) but cannot be announced yet: no room for the outbox
        clip = publish_clip(agent.spool, "dev-a", seed=61)
        wait_for(lambda: "announcement" in ((agent.board.snapshot()["last_error"] or {}).get("message", "")),
                 what="announcement refused for lack of space")
        time.sleep(3)  # a few status ticks on the full disk
        assert agent.healthy() and agent.link.connected.is_set()
        assert not (state / STATUS_FILE).exists()
        warnings = [r for r in caplog.records if "cannot write" in r.getMessage() and STATUS_FILE in r.getMessage()]
        assert len(warnings) == 1  # logged once per outage, not every second
        _ring(agent, sent)  # rings still flow
        assert protocol.decode(DeviceEvent, obs.expect(protocol.events_topic("dev-a"), wait=10).payload
                               ).event_id == sent[-1].event_id

        full_disk.free()  # retention (or the owner) made room: the agent catches up by itself
        msg = obs.expect(protocol.clips_topic("dev-a"), wait=30)
        assert protocol.decode(ClipMessage, msg.payload).clip_id == clip.clip_id
        status = wait_for(lambda: read_status(state), what="status.json written again")
        assert status["state"] == "running"
        assert any("status file written again" in r.getMessage() for r in caplog.records)
        wait_for(lambda: [c.clip_id for c in agent.spool.uploaded_clips()] == [clip.clip_id], what="clip done")
        _ring(agent, sent)
        obs.expect(protocol.events_topic("dev-a"), wait=10)

    # a restart re-sends nothing that was acknowledged
    agent.shutdown()
    again = Agent(cfg)
    again.start()
    try:
        assert again.link.connected.wait(10)
        time.sleep(2)
        extra = [m for m in obs.drain(settle=1.0) if m.topic in (protocol.events_topic("dev-a"),
                                                                 protocol.clips_topic("dev-a"))]
        assert extra == []
        assert again.spool.pending_events() == [] and again.spool.pending_clips() == []
    finally:
        again.shutdown()
