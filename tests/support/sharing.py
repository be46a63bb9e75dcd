"""Helpers for the sharing tests (imported by conftest.py and the test modules).

:class:`Env` wraps a running service (HTTP on a free port, MQTT bridge as
``sharing-service``, real Mosquitto and SeaweedFS) with an enrolled agency (API key
+ :class:`doorbell.clients.agency.client.AgencyClient`), owners owner-a/owner-b with fresh
Ed25519 keys, devices dev-a/dev-b ~300 m apart, and helpers to put a clip in S3
and announce it as the device would.
"""
from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from doorbell.clients.agency.client import AgencyClient
from doorbell.core import protocol as p
from doorbell.core.bucket import clip_keys
from doorbell.core.config import parse_config
from sharing_service.context import Clock
from sharing_service.service import SharingService
from tests.support.polling import wait_for

HOME_A = (52.5200, 13.4050)
HOME_B = (52.5227, 13.4050)   # ~300 m north of A
FAR = (52.6000, 13.4050)      # ~9 km away




@dataclass
class Env:
    service: SharingService
    clock: Clock
    broker: Any
    s3: Any
    agency_key: str
    agency: AgencyClient
    keys: dict[str, Any]
    mqtt: Callable[..., Any]
    seq: list[int] = field(default_factory=lambda: [0])

    @property
    def core(self):  # type: ignore[no-untyped-def]
        return self.service.core

    def new_agency(self, name: str) -> AgencyClient:
        _, key = self.core.registry.add_agency(name)
        return AgencyClient(self.service.url, key)

    def put_clip(self, device: str, started_at: float, length: float = 10.0, body: bytes | None = None,
                 snapshot: bool = True, publish: bool = True) -> tuple[str, bytes]:
        """Upload a clip (and snapshot) to S3 and announce it on the device's clips topic as the device."""
        self.seq[0] += 1
        ts = time.strftime("%Y%m%dT%H%M%S", time.gmtime(started_at))
        clip_id = f"{ts}{int(started_at * 1000) % 1000:03d}Z-{secrets.token_hex(3)}"
        data = body or (b"\x00\x00\x00\x18ftypmp42" + secrets.token_bytes(4000 + self.seq[0]))
        keys = clip_keys("", device, clip_id, started_at)  # the agent's bucket layout
        key = keys.video
        s3c = self.s3.client()
        s3c.put_object(Bucket=self.s3.bucket, Key=key, Body=data)
        snap_key = None
        if snapshot:
            snap_key = keys.snapshot
            s3c.put_object(Bucket=self.s3.bucket, Key=snap_key, Body=b"\xff\xd8\xff\xe0" + b"jpeg" * 10)
        if publish:
            msg = p.ClipMessage(clip_id=clip_id, device_id=device, trigger="ring", started_at=started_at,
                                ended_at=started_at + length, trigger_at=started_at + 4, pre_roll_s=4,
                                key=key, snapshot_key=snap_key, sha256=hashlib.sha256(data).hexdigest(),
                                size=len(data))
            with self.mqtt(device) as dev:  # closed: the device's login holds one connection at a time
                rc = dev.pub(p.clips_topic(device), msg.to_json(), qos=1)
            assert not getattr(rc, "is_failure", False), rc
            wait_for(lambda: self.indexed(clip_id), what=f"clip {clip_id} indexed")
        return clip_id, data

    def indexed(self, clip_id: str) -> bool:
        from sharing_service.models import Clip

        with self.core.db.read() as s:
            return s.get(Clip, clip_id) is not None

    def owner(self, owner_id: str):  # type: ignore[no-untyped-def]
        """An owner's MQTT client subscribed to its whole tree."""
        c = self.mqtt(owner_id)
        c.sub(f"{p.PREFIX}/owners/{owner_id}/#", qos=1)
        return c

    def request_body(self, center: tuple[float, float] = HOME_A, radius_m: float = 500,
                     start: float | None = None, hours: float = 2, **over: Any) -> dict[str, Any]:
        now = self.clock()
        start = now - 3 * 3600 if start is None else start
        body = {"case_number": "2026-000123", "legal_basis": "Search warrant 4711 (AG Mitte)",
                "attest_not_protest": True, "window_start": iso(start), "window_end": iso(start + hours * 3600),
                "lat": center[0], "lon": center[1], "radius_m": radius_m, "reason": "burglary on the street"}
        body.update(over)
        return body


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def service_config(tmp_path: Path, broker: Any, s3: Any, **sharing: Any):  # type: ignore[no-untyped-def]
    data = {
        "mqtt": {"host": broker.host, "port": broker.port, "username": "sharing-service",
                 "password": broker.users["sharing-service"]},
        "s3": {"endpoint_url": s3.endpoint_url, "bucket": s3.bucket, "region": "us-east-1",
               "access_key_id": s3.access_key, "secret_access_key": s3.secret_key, "addressing_style": "path"},
        "sharing": {"database_url": f"sqlite:///{tmp_path / 'sharing.db'}",
                    "http": {"host": "127.0.0.1", "port": 0}, "agency_rate_per_min": 100000, **sharing},
    }
    return parse_config(data, source="<sharing test>", env={})


