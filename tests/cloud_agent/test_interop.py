"""External clients interoperate: mosquitto_sub sees the documented topics, the AWS CLI gets the objects."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

from doorbell.core import protocol
from doorbell.core.protocol import ClipMessage, DeviceEvent
from doorbell.sandbox.media import publish_clip
from tests.support.agent import wait_for, write_config_file

MOSQUITTO_SUB = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"


@pytest.mark.skipif(not os.path.exists(MOSQUITTO_SUB), reason="mosquitto-clients not installed")
def test_mosquitto_sub_sees_documented_topics_and_payloads(agent_config, start_agent, clean_broker):
    broker = clean_broker
    sub = subprocess.Popen(
        [MOSQUITTO_SUB, "-h", broker.host, "-p", str(broker.port), "-u", "admin", "-P", broker.users["admin"],
         "-V", "mqttv5", "-q", "1", "-t", f"{protocol.PREFIX}/devices/dev-a/#",
         "-t", protocol.ha_discovery_topic("dev-a"), "-F", "%t %r %x", "-W", "30"],
        stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)  # let it subscribe
        agent = start_agent(agent_config("dev-a"))
        ring = DeviceEvent(device_id="dev-a", type="ring")
        agent.spool.publish_event(ring)
        clip = publish_clip(agent.spool, "dev-a", seed=41)
        seen: dict[str, list[bytes]] = {}
        deadline = time.monotonic() + 30
        want = {"status", "events", "clips", "snapshot", "ha"}
        while not want <= set(seen) and time.monotonic() < deadline:
            line = sub.stdout.readline()
            if not line:
                break
            topic, _retain, hexpayload = line.rstrip("\n").split(" ", 2)
            kind = "ha" if topic.startswith("homeassistant/") else protocol.parse_topic(topic).kind
            seen.setdefault(kind, []).append(bytes.fromhex(hexpayload))
    finally:
        sub.terminate()
        sub.wait(5)
    assert want <= set(seen), f"mosquitto_sub saw only {sorted(seen)}"
    assert b"online" in seen["status"]
    assert protocol.decode(DeviceEvent, seen["events"][0], "events").event_id == ring.event_id
    announced = protocol.decode(ClipMessage, seen["clips"][0], "clips")
    assert announced.clip_id == clip.clip_id and announced.sha256 == clip.meta.sha256
    assert protocol.decode_snapshot(seen["snapshot"][-1]) == agent.spool.get_clip(clip.clip_id).snapshot.read_bytes()
    assert json.loads(seen["ha"][0])["dev"]["ids"] == ["doorbell_dev-a"]


def test_aws_cli_lists_and_downloads_uploaded_objects(agent_config, start_agent, observer, s3, tmp_path,
                                                      sample_videos):
    obs = observer("dev-a")
    agent = start_agent(agent_config("dev-a"))
    clip = publish_clip(agent.spool, "dev-a", video=sample_videos[0], seed=42)  # real camera footage
    key = protocol.decode(ClipMessage, obs.expect(protocol.clips_topic("dev-a"), wait=20).payload).key
    aws = str(Path(sys.executable).parent / "aws")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/dev/null",
           "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    day = key.rsplit("/", 1)[0] + "/"
    ls = subprocess.run([aws, "s3", "ls", f"s3://{s3.bucket}/{day}", "--endpoint-url", s3.endpoint_url],
                        env=env, capture_output=True, text=True, timeout=60)
    assert ls.returncode == 0, ls.stderr
    names = {line.split()[-1] for line in ls.stdout.splitlines()}
    assert {f"{clip.clip_id}.mp4", f"{clip.clip_id}.jpg", f"{clip.clip_id}.json"} <= names
    dest = tmp_path / "download.mp4"
    cp = subprocess.run([aws, "s3", "cp", f"s3://{s3.bucket}/{key}", str(dest), "--endpoint-url", s3.endpoint_url],
                        env=env, capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == clip.meta.sha256
    with av.open(str(dest)) as container:  # it is still a playable video
        assert sum(1 for _ in container.decode(video=0)) > 10


def test_status_command_shows_connection_queue_and_last_upload(agent_config, start_agent, observer, tmp_path):
    cfg = agent_config("dev-a")
    cfg_file = write_config_file(cfg, tmp_path / "agent.yaml")
    obs = observer("dev-a")
    agent = start_agent(cfg)
    clip = publish_clip(agent.spool, "dev-a", seed=51)
    obs.expect(protocol.clips_topic("dev-a"), wait=20)
    wait_for(lambda: (agent.state_dir / "status.json").exists() and
             (json.loads((agent.state_dir / "status.json").read_text()).get("last_upload") or {}).get("clip_id")
             == clip.clip_id, what="status.json with the upload")

    def status(*extra: str) -> str:
        r = subprocess.run([sys.executable, "-m", "doorbell.cli", "agent", "status", "--config", str(cfg_file), *extra],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    out = status()
    assert "agent:        running" in out and "mqtt:         connected" in out
    assert f"last upload:  {clip.clip_id}" in out and "queue:        0 clip(s)" in out
    assert json.loads(status("--json"))["status"]["counters"]["clips_uploaded"] == 1

    agent.shutdown()
    for seed in (52, 53, 54):  # a backlog builds while the agent is down
        publish_clip(agent.spool, "dev-a", seed=seed)
    out = status()
    assert "agent:        stopped" in out and "queue:        3 clip(s)" in out
    assert "backlog:      [" in out and "0/3" in out


def test_progress_bar_renders_drain_state():
    from cloud_agent.status import progress_bar, render_status

    assert progress_bar(5, 10, width=10) == "[#####-----] 5/10 (50%)"
    status = {"pid": os.getpid(), "state": "running", "device_id": "dev-a", "started_at": time.time(),
              "updated_at": time.time(), "mqtt": {"connected": True, "since": time.time()},
              "s3": {"ok": True, "since": time.time()}, "backlog": {"peak": 40, "drained": 30},
              "last_upload": None, "last_error": {"at": time.time(), "where": "upload", "message": "boom"},
              "counters": {}}
    out = render_status(status, {"clips": 4, "clip_bytes": 1 << 20, "events": 6, "snapshots": 0, "outbox": 0})
    assert "backlog:      [" in out and "30/40 (75%)" in out
    assert "last error:   upload: boom" in out


def test_status_shows_the_disconnect_time_not_the_last_connect():
    """An agent killed while connected leaves "connected since <connect>" in status.json;
    the rendering must not present that connect time as the time of the disconnect."""
    from cloud_agent.status import render_status

    now = 1_000_000.0
    queue = {"clips": 0, "clip_bytes": 0, "events": 0, "snapshots": 0, "outbox": 0}
    dead_pid = 2 ** 22 + 12345  # above pid_max's default: no such process
    killed = {"pid": dead_pid, "state": "running", "device_id": "dev-a", "started_at": now - 7200,
              "updated_at": now - 30, "mqtt": {"connected": True, "since": now - 3600, "detail": ""},
              "s3": {"ok": True, "since": now - 3600}, "backlog": {}, "last_upload": None,
              "last_error": None, "counters": {}}
    line = next(x for x in render_status(killed, queue, now=now).splitlines() if x.startswith("mqtt:"))
    assert "disconnected since 60min ago" not in line
    assert "last seen connected 30s ago" in line and "connected since 60min ago" in line

    stopped = dict(killed, state="stopped",
                   mqtt={"connected": False, "since": now - 30, "detail": "stopped"})
    line = next(x for x in render_status(stopped, queue, now=now).splitlines() if x.startswith("mqtt:"))
    assert line == "mqtt:         disconnected since 30s ago (stopped)"
