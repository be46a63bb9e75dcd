"""Fixtures for the owner app and agency client tests: the real sharing service
(in-process: HTTP on a free port, MQTT bridge) on the session's real Mosquitto
and SeaweedFS, an owner config file for owner-a with a fresh signing key, an
agency config file with a fresh API key (helpers in ``tests/support/clients.py``).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from doorbell.core.config import parse_config
from doorbell.core.signing import generate_key, public_key_text, save_private_key
from tests.support.clients import HOME_A, HOME_B, ClientEnv


@pytest.fixture
def clients(tmp_path: Path, clean_broker: Any, s3: Any, mqtt_client: Callable[..., Any],
            monkeypatch: pytest.MonkeyPatch) -> Iterator[ClientEnv]:
    # the owner app pins the audit heads it verified under $XDG_STATE_HOME/doorbell
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    from sharing_service.service import SharingService

    cfg = parse_config({
        "mqtt": {"host": clean_broker.host, "port": clean_broker.port, "username": "sharing-service",
                 "password": clean_broker.users["sharing-service"]},
        "s3": {"endpoint_url": s3.endpoint_url, "bucket": s3.bucket, "region": "us-east-1",
               "access_key_id": s3.access_key, "secret_access_key": s3.secret_key, "addressing_style": "path"},
        "sharing": {"database_url": f"sqlite:///{tmp_path / 'sharing.db'}",
                    "http": {"host": "127.0.0.1", "port": 0}, "agency_rate_per_min": 100000},
    }, source="<clients test>", env={})
    svc = SharingService(cfg, sweep_interval_s=3600)
    svc.start()
    try:
        assert svc.bridge is not None and svc.bridge.wait_connected(10), "bridge did not connect"
        key = generate_key()
        key_file = tmp_path / "owner-a.pem"
        save_private_key(key, key_file)
        svc.core.registry.add_owner("owner-a", public_key_text(key))
        svc.core.registry.add_owner("owner-b", public_key_text(generate_key()))
        svc.core.registry.add_device("dev-a", "owner-a", *HOME_A)
        svc.core.registry.add_device("dev-b", "owner-b", *HOME_B)
        _, api_key = svc.core.registry.add_agency("Springfield PD")
        owner_cfg = tmp_path / "owner.yaml"
        owner_cfg.write_text(yaml.safe_dump({
            "owner": {"owner_id": "owner-a", "key_file": str(key_file), "sharing_url": svc.url},
            "mqtt": {"host": clean_broker.host, "port": clean_broker.port, "username": "owner-a",
                     "password": clean_broker.users["owner-a"]},
        }))
        agency_cfg = tmp_path / "agency.yaml"
        agency_cfg.write_text(yaml.safe_dump({"sharing_url": svc.url, "api_key": api_key}))
        yield ClientEnv(svc, clean_broker, s3, owner_cfg, agency_cfg, key_file, tmp_path, mqtt_client)
    finally:
        svc.stop()
