"""`doorbell agent run` under a (simulated) systemd: sd_notify READY/WATCHDOG/STOPPING over a real socket."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from tests.support.agent import write_config_file


def test_agent_notifies_ready_feeds_watchdog_and_stops_cleanly(agent_config, tmp_path):
    cfg = agent_config("dev-a")
    cfg_file = write_config_file(cfg, tmp_path / "agent.yaml")
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(0.5)
    env = {**os.environ, "NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "1000000"}  # ping every 0.5 s
    proc = subprocess.Popen([sys.executable, "-m", "doorbell.cli", "agent", "run", "--config", str(cfg_file)],
                            env=env, stdout=open(tmp_path / "agent.log", "wb"), stderr=subprocess.STDOUT)
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 30
        def done() -> bool:
            return ("READY=1" in seen and seen.count("WATCHDOG=1") >= 2
                    and any(line.startswith("STATUS=mqtt up") for line in seen))

        while time.monotonic() < deadline and not done():
            try:
                seen += sock.recv(4096).decode().splitlines()
            except TimeoutError:
                pass
        assert "READY=1" in seen, seen
        assert seen.count("WATCHDOG=1") >= 2, seen
        assert any(line.startswith("STATUS=mqtt up") for line in seen), seen
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        while True:
            try:
                seen += sock.recv(4096).decode().splitlines()
            except TimeoutError:
                break
        assert "STOPPING=1" in seen
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()


def test_agent_refuses_to_start_without_credentials(tmp_path):
    """No retry loop on a missing broker secret: exit 2 at start-up naming the key."""
    import subprocess
    import sys

    cfg = tmp_path / "device.yaml"
    cfg.write_text(f"device: {{id: dev-a}}\nspool: {{dir: {tmp_path / 'spool'}}}\n"
                   f"agent: {{state_dir: {tmp_path / 'agent'}}}\nmqtt: {{username: dev-a}}\n")
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("DOORBELL__")}
    r = subprocess.run([sys.executable, "-m", "doorbell.cli", "agent", "run", "-c", str(cfg)],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 2
    assert f"{cfg}: mqtt.password: required secret is missing" in r.stderr, r.stderr
    # bucket credentials may come later (the operator adds the key): not a start-up failure
    assert "s3.access_key_id: required" not in r.stderr
