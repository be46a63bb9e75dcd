"""Fixtures for the sharing service: the real service (HTTP on a free port, MQTT
bridge as ``sharing-service``) against the session's real Mosquitto and SeaweedFS.
Helpers live in ``tests/support/sharing.py``.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from doorbell.clients.agency.client import AgencyClient
from doorbell.core.signing import generate_key, public_key_text
from doorbell.sandbox.embedded import free_port
from sharing_service.context import Clock
from sharing_service.service import SharingService
from tests.support.sharing import HOME_A, HOME_B, Env, service_config


@contextmanager
def running_env(tmp_path: Path, broker: Any, s3: Any, mqtt_client: Callable[..., Any],
                **sharing_cfg: Any) -> Iterator[Env]:
    cfg = service_config(tmp_path, broker, s3, **sharing_cfg)
    clock = Clock()
    svc = SharingService(cfg, clock=clock, sweep_interval_s=3600)
    svc.start()
    try:
        assert svc.bridge is not None and svc.bridge.wait_connected(10), "bridge did not connect"
        keys = {o: generate_key() for o in ("owner-a", "owner-b")}
        for o, k in keys.items():
            svc.core.registry.add_owner(o, public_key_text(k))
        svc.core.registry.add_device("dev-a", "owner-a", *HOME_A)
        svc.core.registry.add_device("dev-b", "owner-b", *HOME_B)
        _, key = svc.core.registry.add_agency("Springfield PD")
        client = AgencyClient(svc.url, key)
        yield Env(svc, clock, broker, s3, key, client, keys, mqtt_client)
        client.close()
    finally:
        svc.stop()


@pytest.fixture
def sharing(tmp_path: Path, clean_broker: Any, s3: Any, mqtt_client: Callable[..., Any]) -> Iterator[Env]:
    """The service on SQLite (the default), with owners, devices and an agency enrolled."""
    with running_env(tmp_path, clean_broker, s3, mqtt_client) as env:
        yield env


@pytest.fixture
def pg_database(postgres_url: str) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    import psycopg

    name = f"t_{secrets.token_hex(6)}"
    base = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def sharing_pg(tmp_path: Path, clean_broker: Any, s3: Any, mqtt_client: Callable[..., Any],
               pg_database: str) -> Iterator[Env]:
    """The same service on PostgreSQL."""
    with running_env(tmp_path, clean_broker, s3, mqtt_client, database_url=pg_database) as env:
        yield env


class PostgresServer:
    """A throw-away PostgreSQL cluster on a free loopback port (run as 'postgres' when we are root)."""

    def __init__(self) -> None:
        import shutil
        import tempfile

        self.bin = Path(os.path.realpath(shutil.which("postgres") or "/usr/local/bin/postgres")).parent
        self.dir = Path(tempfile.mkdtemp(prefix="doorbell-pg-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def _as_pg(self, cmd: list[str]) -> list[str]:
        return (["runuser", "-u", "postgres", "--"] + cmd) if os.geteuid() == 0 else cmd

    def start(self) -> str:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        data = self.dir / "data"
        subprocess.run(self._as_pg([str(self.bin / "initdb"), "-D", str(data), "-U", "doorbell", "--auth=trust",
                                    "-E", "UTF8", "--no-sync"]), check=True, capture_output=True, timeout=120)
        log = open(self.dir / "pg.log", "wb")
        self.proc = subprocess.Popen(self._as_pg([str(self.bin / "postgres"), "-D", str(data), "-p", str(self.port),
                                                  "-h", "127.0.0.1", "-k", str(self.dir), "-c", "fsync=off",
                                                  "-c", "full_page_writes=off"]),
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        url = f"postgresql+psycopg://doorbell@127.0.0.1:{self.port}/postgres"
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(f"postgresql://doorbell@127.0.0.1:{self.port}/postgres", connect_timeout=1).close()
                return url
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError((self.dir / "pg.log").read_text(errors="replace")[-2000:]) from exc
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL (Debian's postgresql package + psycopg); skipped where neither is installed."""
    import shutil as _sh

    pytest.importorskip("psycopg")
    if not _sh.which("postgres") and not Path("/usr/local/bin/postgres").exists():
        pytest.skip("PostgreSQL server binaries not installed")
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.stop()
