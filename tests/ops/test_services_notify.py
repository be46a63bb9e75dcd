"""The Pi services speak the unit files' Type=notify + WatchdogSec contract: run the real
`doorbell firmware run` / `doorbell agent run` with a NOTIFY_SOCKET as systemd would and
expect READY=1, then WATCHDOG=1 keep-alives, then STOPPING=1 on SIGTERM. The agent runs
with a provisioned bundle against the provisioned TLS broker."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.support.ops import REPO, Fleet


def _collect(sock: socket.socket, want: set[str], timeout: float) -> set[str]:
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while not want <= seen and time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(4096).decode()
        except TimeoutError:
            break
        seen |= {line for line in data.split("\n") if line and not line.startswith("STATUS=")}
    return seen


def run_under_fake_systemd(argv: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> set[str]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DOORBELL__")}
    full_env.update(env or {})
    full_env.update({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"})  # keep-alive every 0.5 s
    proc = subprocess.Popen(argv, env=full_env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        seen = _collect(sock, {"READY=1", "WATCHDOG=1"}, timeout=60)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signal.SIGTERM)
        seen |= _collect(sock, {"STOPPING=1"}, timeout=30)
        assert proc.wait(30) == 0
        return seen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()


def test_firmware_notifies_ready_feeds_the_watchdog_and_says_stopping(tmp_path: Path) -> None:
    cfg = tmp_path / "device.yaml"
    cfg.write_text(yaml.safe_dump({
        "device": {"id": "dev-a", "owner_id": "owner-a"},
        "spool": {"dir": str(tmp_path / "spool")},
        "gpio": {"pin_factory": "mock"},
        "camera": {"backend": "synthetic", "width": 320, "height": 240, "fps": 10},
    }))
    seen = run_under_fake_systemd([sys.executable, "-m", "doorbell.cli", "firmware", "run", "-c", str(cfg)], tmp_path)
    assert {"READY=1", "WATCHDOG=1", "STOPPING=1"} <= seen, seen


def test_agent_with_provisioned_bundle_over_tls(fleet: Fleet, tmp_path: Path) -> None:
    owner = fleet.client("owner-a")
    try:
        owner.sub("doorbell/v1/devices/dev-a/status")
        owner.drain(settle=0.3)  # a retained status from earlier tests, if any
        bundle_cfg = fleet.bundle("dev-a") / "device.yaml"
        env = {"DOORBELL__SPOOL__DIR": str(tmp_path / "spool"),
               "DOORBELL__AGENT__STATE_DIR": str(tmp_path / "agent")}
        seen = run_under_fake_systemd([sys.executable, "-m", "doorbell.cli", "agent", "run", "-c", str(bundle_cfg)],
                                      tmp_path, env)
        assert {"READY=1", "WATCHDOG=1", "STOPPING=1"} <= seen, seen
        payloads = [m.payload for m in owner.drain(settle=0.5)]
        assert b"online" in payloads  # the agent reached the TLS broker with its provisioned identity
    finally:
        owner.close()


def test_sharing_service_notifies_ready_feeds_the_watchdog_and_says_stopping(tmp_path: Path) -> None:
    """Type=notify for doorbell-sharing.service: READY only once HTTP accepts connections."""
    cfg = tmp_path / "sharing.yaml"
    cfg.write_text(yaml.safe_dump({
        "sharing": {"database_url": f"sqlite:///{tmp_path / 'sharing.db'}", "http": {"port": 0}},
    }))
    argv = [sys.executable, "-m", "doorbell.cli", "sharing", "serve", "-c", str(cfg), "--no-mqtt"]
    seen = run_under_fake_systemd(argv, tmp_path)
    assert {"READY=1", "WATCHDOG=1", "STOPPING=1"} <= seen, seen
