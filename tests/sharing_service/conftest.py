"""Fixtures for the sharing service: the real service (HTTP on a free port, MQTT
bridge as ``sharing-service``) against the session's real Mosquitto and SeaweedFS.
Helpers live in ``tests/support/sharing.py``.
"""
from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from doorbell.clients.agency.client import AgencyClient
from doorbell.core.signing import generate_key, public_key_text
from doorbell.sandbox.postgres import PostgresServer, server_bin
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
def pg_database(postgres_server: PostgresServer) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    return postgres_server.create_database(f"t_{secrets.token_hex(6)}")


@pytest.fixture
def sharing_pg(tmp_path: Path, clean_broker: Any, s3: Any, mqtt_client: Callable[..., Any],
               pg_database: str) -> Iterator[Env]:
    """The same service on PostgreSQL."""
    with running_env(tmp_path, clean_broker, s3, mqtt_client, database_url=pg_database) as env:
        yield env


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL (doorbell.sandbox.postgres: Debian's postgresql package + psycopg); skipped where
    neither is installed."""
    pytest.importorskip("psycopg")
    if server_bin() is None:
        pytest.skip("PostgreSQL server binaries not installed")
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of the session's PostgreSQL (its ``postgres`` database)."""
    return postgres_server.url
