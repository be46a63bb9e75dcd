"""Fixtures for the sharing service: the real service (HTTP on a free port, MQTT
bridge as ``sharing-service``) against the session's real Mosquitto and SeaweedFS.
Helpers live in ``sharehelp.py``.
"""
from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from doorbell.signing import generate_key, public_key_text
from sharehelp import HOME_A, HOME_B, Env, service_config
from sharing_service.client import AgencyClient
from sharing_service.core import Clock
from sharing_service.service import SharingService


@pytest.fixture
def sharing(tmp_path: Path, clean_broker: Any, s3: Any, mqtt_client: Callable[..., Any]) -> Iterator[Env]:
    cfg = service_config(tmp_path, clean_broker, s3)
    clock = Clock()
    svc = SharingService(cfg, clock=clock, mqtt_client_id=f"sharing-{secrets.token_hex(4)}",
                         sweep_interval_s=3600)
    svc.start()
    try:
        assert svc.bridge is not None and svc.bridge.wait_connected(10), "bridge did not connect"
        keys = {o: generate_key() for o in ("owner-a", "owner-b")}
        for o, k in keys.items():
            svc.core.add_owner(o, public_key_text(k))
        svc.core.add_device("dev-a", "owner-a", *HOME_A)
        svc.core.add_device("dev-b", "owner-b", *HOME_B)
        _, key = svc.core.add_agency("Springfield PD")
        client = AgencyClient(svc.url, key)
        env = Env(svc, clock, clean_broker, s3, key, client, keys, mqtt_client)
        yield env
        client.close()
    finally:
        svc.stop()
