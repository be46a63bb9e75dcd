"""Outages and crashes: broker restart, bucket outage mid-upload, kill -9 mid-multipart, conflicts."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cloud_agent.status import read_status
from doorbell.core import protocol
from doorbell.core.bucket import clip_keys, device_prefix
from doorbell.core.protocol import ClipMessage, DeviceEvent
from doorbell.core.spool import Spool
from doorbell.sandbox.media import publish_clip
from tests.support.agent import wait_for, write_config_file

MULTIPART = {"multipart_threshold_mb": 5, "multipart_chunk_mb": 5, "max_concurrency": 2}


def _observer(mqtt_client, name: str):
    """A subscriber with a persistent session, so it misses nothing across a broker restart.

    The session belongs to the login (the broker binds client ids to usernames), so
    an earlier test's session is discarded first: this one starts empty."""
    mqtt_client("admin", clean_start=True, session_expiry_s=0).close()
    c = mqtt_client("admin", clean_start=False, session_expiry_s=600)
    c.sub(f"{protocol.PREFIX}/devices/dev-a/#", qos=1)
    return c


def _expect_status(obs, payload: bytes, wait: float = 20.0) -> None:
    """Wait for a live status message (the retained one of an earlier test does not count)."""
    deadline = time.monotonic() + wait
    while True:
        msg = obs.expect(protocol.status_topic("dev-a"), wait=max(0.01, deadline - time.monotonic()))
        if msg.payload == payload and not msg.retain:
            return


def _without_broker_redeliveries(msgs: list) -> list:
    """Drop the broker's own redeliveries to the observer.

    QoS 1 is at-least-once on every hop: when the broker stops before the observer's PUBACK
    reached it, it redelivers that message after its restart with the DUP flag set. That copy is
    the broker's, not the agent's (a publish the agent sends again reaches subscribers as a fresh
    delivery, without DUP), so it does not count against "each exactly once".
    """
    seen: set[tuple[str, bytes]] = set()
    kept = []
    for m in msgs:
        key = (m.topic, bytes(m.payload))
        if m.dup and key in seen:
            continue
        seen.add(key)
        kept.append(m)
    return kept


def _stale_uploads(s3, prefix: str) -> list:
    return s3.client().list_multipart_uploads(Bucket=s3.bucket, Prefix=prefix).get("Uploads", []) or []


def _objects(s3, prefix: str) -> list[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix=prefix)
    return [o["Key"] for p in pages for o in p.get("Contents", []) or []]


def test_broker_restart_and_bucket_outage_deliver_everything_once(agent_config, start_agent, mqtt_client,
                                                                  broker, s3):
    obs = _observer(mqtt_client, "outage")
    cfg = agent_config("dev-a", s3={**MULTIPART, "max_upload_bytes_per_s": 4_000_000})
    agent = start_agent(cfg)
    events: list[DeviceEvent] = []
    clips = []

    def ring() -> None:
        ev = DeviceEvent(device_id="dev-a", type="ring")
        agent.spool.publish_event(ev)
        events.append(ev)

    for _ in range(5):
        ring()
    clips.append(publish_clip(agent.spool, "dev-a", seed=1))
    wait_for(lambda: not agent.spool.pending_events() and not list(agent.outbox.root.iterdir()),
             what="first batch published")

    broker.stop()  # broker down: events and clip messages queue up
    for _ in range(5):
        ring()
    clips.append(publish_clip(agent.spool, "dev-a", seed=2))
    big = publish_clip(agent.spool, "dev-a", noise_bytes=12 * 1024 * 1024, seed=3)  # multipart, ~3 s at the cap
    clips.append(big)
    wait_for(lambda: _stale_uploads(s3, device_prefix("", "dev-a")), timeout=20,
             what="multipart upload of the big clip in flight")
    s3.stop()  # bucket gone mid-upload
    for _ in range(5):
        ring()
    time.sleep(1.0)
    broker.start()
    for _ in range(5):
        ring()
    time.sleep(1.0)
    s3.start(timeout=60)

    ev_topic, clip_topic = protocol.events_topic("dev-a"), protocol.clips_topic("dev-a")
    got = []
    deadline = time.monotonic() + 90
    while (sum(m.topic == ev_topic for m in _without_broker_redeliveries(got)) < len(events)
           or sum(m.topic == clip_topic for m in _without_broker_redeliveries(got)) < len(clips)):
        left = deadline - time.monotonic()
        assert left > 0, f"missing messages; got {[(m.topic, m.payload[:60]) for m in got]}"
        try:
            got.append(obs.expect(wait=min(left, 5)))
        except TimeoutError:
            pass
    got += obs.drain(settle=1.5)  # anything extra would be a duplicate
    got = _without_broker_redeliveries(got)
    got_events = [protocol.decode(DeviceEvent, m.payload).event_id for m in got if m.topic == ev_topic]
    assert got_events == [e.event_id for e in events]  # each exactly once, in order
    announced = [protocol.decode(ClipMessage, m.payload).clip_id for m in got if m.topic == clip_topic]
    assert announced == [c.clip_id for c in clips]
    late = [protocol.decode(DeviceEvent, m.payload).late for m in got if m.topic == ev_topic]
    assert not any(late)  # the outage was shorter than late_after_s

    client = s3.client()
    for c in clips:
        keys = clip_keys("", "dev-a", c.clip_id, c.meta.started_at)
        assert sorted(_objects(s3, keys.video[:-4])) == sorted([keys.video, keys.meta, keys.snapshot])
        body = client.get_object(Bucket=s3.bucket, Key=keys.video)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == c.meta.sha256
    assert _stale_uploads(s3, device_prefix("", "dev-a")) == []
    assert [c.clip_id for c in agent.spool.uploaded_clips()] == [c.clip_id for c in clips]
    assert agent.spool.pending_events() == []


def _spawn_agent(cfg_file: Path, log_file: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "doorbell.cli", "agent", "run", "--config", str(cfg_file)],
                            stdout=open(log_file, "ab"), stderr=subprocess.STDOUT, start_new_session=True)


def test_kill_9_mid_multipart_completes_after_restart_without_duplicate(agent_config, mqtt_client, s3, tmp_path):
    obs = _observer(mqtt_client, "kill9")
    cfg = agent_config("dev-a", s3={**MULTIPART, "max_upload_bytes_per_s": 3_000_000})
    cfg_file = write_config_file(cfg, tmp_path / "agent.yaml")
    spool = Spool(cfg.spool.dir)
    clip = publish_clip(spool, "dev-a", noise_bytes=14 * 1024 * 1024, seed=9)
    keys = clip_keys("", "dev-a", clip.clip_id, clip.meta.started_at)
    log_file = tmp_path / "agent.log"

    proc = _spawn_agent(cfg_file, log_file)
    try:
        _expect_status(obs, b"online")
        wait_for(lambda: _stale_uploads(s3, keys.video), timeout=30, what="multipart upload started")
        time.sleep(0.8)  # some parts are in
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    # the broker saw the socket die: the Last Will says offline
    _expect_status(obs, b"offline", wait=10)
    assert s3.client().list_objects_v2(Bucket=s3.bucket, Prefix=keys.video).get("KeyCount", 0) == 0
    assert len(_stale_uploads(s3, keys.video)) == 1
    assert [c.clip_id for c in spool.pending_clips()] == [clip.clip_id]  # nothing local was lost

    proc = _spawn_agent(cfg_file, log_file)
    try:
        msg = obs.expect(protocol.clips_topic("dev-a"), wait=60)
        assert protocol.decode(ClipMessage, msg.payload).clip_id == clip.clip_id
        head = s3.client().head_object(Bucket=s3.bucket, Key=keys.video, ChecksumMode="ENABLED")
        assert head["Metadata"]["sha256"] == clip.meta.sha256 and head["ContentLength"] == clip.meta.size
        parts = -(-clip.meta.size // (5 * 1024 * 1024))
        assert parts >= 3 and head["ChecksumSHA256"].endswith(f"-{parts}")  # composite SHA-256 of the parts
        assert _stale_uploads(s3, device_prefix("", "dev-a")) == []
        assert sorted(_objects(s3, keys.video[:-4])) == sorted([keys.video, keys.snapshot, keys.meta])
        wait_for(lambda: [c.clip_id for c in spool.uploaded_clips()] == [clip.clip_id], what="marked uploaded")
        # clean shutdown on SIGTERM: offline status, exit code 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    _expect_status(obs, b"offline", wait=10)
    assert [m for m in obs.drain(settle=0.5) if m.topic == protocol.clips_topic("dev-a")] == []  # no duplicate
    status = read_status(cfg.agent.state_dir)
    assert status["state"] == "stopped" and status["last_upload"]["clip_id"] == clip.clip_id
    text = log_file.read_text()
    assert "interrupted while uploading" in text and "aborted interrupted multipart upload" in text


@pytest.mark.parametrize("conditional_writes", [True, False])
def test_existing_different_object_is_never_overwritten(agent_config, start_agent, s3, observer,
                                                        conditional_writes):
    cfg = agent_config("dev-a", agent={"conditional_writes": conditional_writes})
    spool = Spool(cfg.spool.dir)
    clip = publish_clip(spool, "dev-a", seed=21)
    keys = clip_keys("", "dev-a", clip.clip_id, clip.meta.started_at)
    s3.client().put_object(Bucket=s3.bucket, Key=keys.video, Body=b"someone else's bytes")
    agent = start_agent(cfg)
    wait_for(lambda: not spool.pending_clips(), what="clip leaves the queue")
    assert s3.client().get_object(Bucket=s3.bucket, Key=keys.video)["Body"].read() == b"someone else's bytes"
    assert [p.name.split(".")[0] for p in spool.dir("quarantine").iterdir()] == [clip.clip_id]
    assert spool.uploaded_clips() == []
    err = agent.board.snapshot()["last_error"]
    assert "refusing to overwrite" in err["message"]


def test_already_uploaded_clip_is_not_uploaded_twice(agent_config, start_agent, s3, observer):
    """A crash after the upload but before mark_uploaded: the restart finds the objects and skips them."""
    from cloud_agent.uploader import Uploader

    cfg = agent_config("dev-a")
    spool = Spool(cfg.spool.dir)
    clip = publish_clip(spool, "dev-a", seed=31)
    first = Uploader(cfg.s3, "dev-a", cfg.agent.state_dir).upload_clip(clip)
    assert len(first.uploaded) == 3
    before = s3.client().head_object(Bucket=s3.bucket, Key=first.keys.video)["LastModified"]
    obs = observer("dev-a")
    agent = start_agent(cfg)
    msg = obs.expect(protocol.clips_topic("dev-a"), wait=15)
    assert protocol.decode(ClipMessage, msg.payload).clip_id == clip.clip_id
    assert s3.client().head_object(Bucket=s3.bucket, Key=first.keys.video)["LastModified"] == before
    wait_for(lambda: agent.board.snapshot()["counters"]["objects_skipped"] == 3, what="3 objects skipped")


def test_clip_corrupted_in_the_spool_is_quarantined_not_uploaded(agent_config, start_agent, s3):
    cfg = agent_config("dev-a")
    spool = Spool(cfg.spool.dir)
    bad = publish_clip(spool, "dev-a", seed=71)
    good = publish_clip(spool, "dev-a", seed=72)
    with open(bad.video, "r+b") as fh:  # a flipped byte on the SD card
        fh.seek(100)
        b = fh.read(1)
        fh.seek(100)
        fh.write(bytes([b[0] ^ 0xFF]))
    agent = start_agent(cfg)
    wait_for(lambda: [c.clip_id for c in spool.uploaded_clips()] == [good.clip_id], what="good clip uploaded")
    assert [p.name.split(".")[0] for p in spool.dir("quarantine").iterdir()] == [bad.clip_id]
    keys = clip_keys("", "dev-a", bad.clip_id, bad.meta.started_at)
    assert _objects(s3, keys.video[:-4]) == []
    board = agent.board.snapshot()
    assert "differs from the recorded" in board["last_error"]["message"]
    assert board["counters"]["quarantined"] == 1
