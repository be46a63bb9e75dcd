"""Helpers for the platform tests (imported by conftest.py and the tests)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from doorbell.core.config import MqttSection, TlsSection
from doorbell.ops import provision
from doorbell.sandbox.embedded import LOOPBACK, MqttProbe, ServerProcess, port_open

REPO = Path(__file__).resolve().parents[2]
DOORBELL = [sys.executable, "-m", "doorbell.cli"]


def run_cli(*args: str, env: dict[str, str] | None = None, input: str | None = None,
            check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the real ``doorbell`` CLI in a subprocess (what a user types)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([*DOORBELL, *args], capture_output=True, text=True, env=full_env,
                          input=input, cwd=REPO, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"doorbell {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


class ProvisionedMosquitto(ServerProcess):
    """/usr/sbin/mosquitto run with a provisioned mosquitto.conf, unmodified."""

    name = "mosquitto-provisioned"

    def __init__(self, workdir: Path, conf: Path, port: int):
        super().__init__(workdir)
        self.conf = conf
        self.port = port
        self.executable = shutil.which("mosquitto") or "/usr/sbin/mosquitto"

    def _command(self) -> list[str]:
        return [self.executable, "-c", str(self.conf), "-v"]

    def _retryable(self) -> bool:
        return False

    def _wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            self._check_alive()
            if port_open(LOOPBACK, self.port):
                return
            time.sleep(0.02)
        raise AssertionError(f"provisioned mosquitto not listening on {self.port}; see {self.log_path}")


@dataclass
class Fleet:
    """A provisioned broker directory, its running Mosquitto and the bundles it issued."""

    root: Path
    bdir: provision.BrokerDir
    port: int
    server: ProvisionedMosquitto

    def bundle(self, name: str) -> Path:
        return self.bdir.client_dir(name)

    def config(self, name: str) -> dict[str, Any]:
        bundle = self.bundle(name)
        conf = next(p for p in bundle.glob("*.yaml"))
        return yaml.safe_load(conf.read_text())

    def client(self, name: str, *, password: str | None = None, ca: Path | None = None,
               cert: bool = True, tls: bool = True, timeout: float = 5.0) -> MqttProbe:
        """Connect as ``name`` with its provisioned credentials (each part overridable),
        through the product's client factory (doorbell.core.mqtt)."""
        cfg = self.config(name)
        b = self.bundle(name)
        section = MqttSection(
            host=LOOPBACK, port=self.port, username=name,
            password=password if password is not None else cfg["mqtt"]["password"],
            tls=TlsSection(enabled=tls, ca_file=ca or b / "tls" / "ca.crt",
                           cert_file=b / "tls" / "client.crt" if cert else None,
                           key_file=b / "tls" / "client.key" if cert else None))
        c = MqttProbe(section)
        c.connect_and_wait(timeout)  # MqttConnectError (a ConnectionError) with .kind if refused
        return c


def world_traversable_tmp() -> Path:
    """A scratch dir Mosquitto (which drops root to the 'mosquitto' user) can traverse;
    pytest's tmp_path lives under a 0700 directory."""
    d = Path(tempfile.mkdtemp(prefix="doorbell-platform-", dir="/tmp"))
    os.chmod(d, 0o755)
    return d


@contextmanager
def provisioned_fleet(devices: tuple[tuple[str, str], ...] = (("dev-a", "owner-a"), ("dev-b", "owner-b")),
                      services: tuple[tuple[str, str], ...] = ()) -> Iterator[Fleet]:
    """A broker made by ``doorbell provision`` (owners, devices, ``(id, role)`` service
    users), served by the real Mosquitto with exactly the generated mosquitto.conf."""
    from doorbell.sandbox.embedded import free_port
    root = world_traversable_tmp()
    data = root / "data"
    data.mkdir()
    group = provision.default_broker_group()
    if group:
        shutil.chown(data, user="mosquitto", group=group)
    port = free_port()
    bdir = root / "broker"
    run_cli("provision", "broker", "--out", str(bdir), "--port", str(port), "--bind", LOOPBACK,
            "--ip", LOOPBACK, "--hostname", "localhost", "--data-dir", str(data),
            "--ws-port", str(free_port()), check=True)  # not the fixed default: fleets run side by side
    for owner in sorted({o for _, o in devices}):
        run_cli("provision", "owner", "--broker-dir", str(bdir), "--id", owner,
                "--config-dir", str(bdir / "clients" / owner), check=True)
    for dev, owner in devices:
        run_cli("provision", "device", "--broker-dir", str(bdir), "--id", dev, "--owner", owner,
                "--config-dir", str(bdir / "clients" / dev), check=True)
    for name, role in services:
        run_cli("provision", "service", "--broker-dir", str(bdir), "--id", name, "--role", role, check=True)
    server = ProvisionedMosquitto(root / "run", bdir / "mosquitto.conf", port)
    server.start()
    try:
        yield Fleet(root, provision.BrokerDir(bdir), port, server)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
