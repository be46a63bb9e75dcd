"""Every MQTT client in the product honours each ``mqtt.tls`` key the same way.

One real Mosquitto per broker shape (doorbell.sandbox.embedded), certificates
made the way ``doorbell provision`` makes them, and the product's own clients:
the agent's link, the sharing service's bridge, the owner's app, doctor's
broker check and the sandbox probe. Each client is asked only "did you get a
session?"; the expected answer depends on the TLS setting, never on the client.
"""
from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from doorbell.core.config import DoorbellConfig, parse_config
from doorbell.sandbox.embedded import DoorbellBroker, TlsFiles
from tests.support.polling import wait_for
from tests.support.tls_certs import PrivatePki, private_pki

DEVICE, OWNER, SERVICE = "dev-t", "owner-t", "sharing-service"
PASSWORD = secrets.token_urlsafe(24)  # one password for every login here: clients differ by username only
SETTLE_S = 20.0  # how long a daemon may take to either connect or report why not


def _session_or_error_daemon(connected: Callable[[], bool], error: Callable[[], str | None]) -> str | None:
    """Wait until a reconnecting client is connected (None) or has reported a failure (its text)."""
    state = wait_for(lambda: "up" if connected() else error(), timeout=SETTLE_S, what="connect or failure")
    return None if state == "up" else state


def agent_link(cfg: DoorbellConfig, _tmp: Path) -> str | None:
    from cloud_agent.mqtt_link import MqttLink

    link = MqttLink(cfg, session_expiry_s=60)
    link.start()
    try:
        return _session_or_error_daemon(link.connected.is_set, lambda: link.last_error)
    finally:
        link.stop()


def sharing_bridge(cfg: DoorbellConfig, tmp: Path) -> str | None:
    from sharing_service.service import SharingService

    svc_cfg = cfg.model_copy(update={"mqtt": cfg.mqtt.model_copy(update={"username": SERVICE})})
    svc = SharingService(svc_cfg, sweep_interval_s=3600)
    assert svc.bridge is not None
    svc.bridge.start()
    try:
        return _session_or_error_daemon(svc.bridge.connected.is_set, lambda: svc.bridge.last_error)
    finally:
        svc.bridge.stop()


def owner_app(cfg: DoorbellConfig, _tmp: Path) -> str | None:
    from doorbell.clients.owner.app import OwnerApp, OwnerError

    owner_cfg = cfg.model_copy(update={"mqtt": cfg.mqtt.model_copy(update={"username": OWNER})})
    try:
        OwnerApp(owner_cfg, connect_timeout=SETTLE_S).connect().close()
    except OwnerError as exc:
        return str(exc)
    return None


def doctor(cfg: DoorbellConfig, _tmp: Path) -> str | None:
    from doorbell.ops.doctor import FAIL, check_broker

    result = check_broker(cfg, timeout=SETTLE_S)
    return result.detail if result.status == FAIL else None


def sandbox_probe(cfg: DoorbellConfig, _tmp: Path) -> str | None:
    from doorbell.core.mqtt import MqttConnectError
    from doorbell.sandbox.embedded import MqttProbe

    probe = MqttProbe(cfg.mqtt.model_copy(update={"username": "admin"}))
    try:
        probe.connect_and_wait(SETTLE_S)
    except MqttConnectError as exc:
        return str(exc)
    probe.close()
    return None


CLIENTS = [agent_link, sharing_bridge, owner_app, doctor, sandbox_probe]


@pytest.fixture(params=CLIENTS, ids=lambda f: f.__name__)
def client(request: pytest.FixtureRequest) -> Callable[[DoorbellConfig, Path], str | None]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PrivatePki:
    """The broker's CA; its certificate names 127.0.0.1 only (so ``localhost`` is the wrong name)."""
    return private_pki(tmp_path_factory.mktemp("pki"), ips=["127.0.0.1"])


def _broker(workdir: Path, pki: PrivatePki, require_certificate: bool) -> DoorbellBroker:
    users = (DEVICE, OWNER, SERVICE, "admin")
    b = DoorbellBroker(workdir, {DEVICE: OWNER}, [OWNER], admins=["admin"], service_user=SERVICE,
                       passwords=dict.fromkeys(users, PASSWORD),
                       tls=TlsFiles(pki.ca, pki.server_cert, pki.server_key, require_certificate))
    b.start()
    return b


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory, pki: PrivatePki) -> Iterator[DoorbellBroker]:
    b = _broker(tmp_path_factory.mktemp("mqtt-tls"), pki, require_certificate=False)
    yield b
    b.stop()


@pytest.fixture(scope="module")
def mtls_broker(tmp_path_factory: pytest.TempPathFactory, pki: PrivatePki) -> Iterator[DoorbellBroker]:
    b = _broker(tmp_path_factory.mktemp("mqtt-mtls"), pki, require_certificate=True)
    yield b
    b.stop()


def config(broker: DoorbellBroker, tmp: Path, host: str = "127.0.0.1", **tls: Any) -> DoorbellConfig:
    """A config that logs in as the device; each client swaps in its own login (one shared password)."""
    data: dict[str, Any] = {
        "device": {"id": DEVICE, "owner_id": OWNER},
        "mqtt": {"host": host, "port": broker.tls_port, "username": DEVICE, "password": PASSWORD,
                 "tls": {"enabled": True, **{k: str(v) if isinstance(v, Path) else v for k, v in tls.items()}}},
        "agent": {"state_dir": str(tmp / "agent")},
        "spool": {"dir": str(tmp / "spool")},
        "sharing": {"database_url": f"sqlite:///{tmp / 'sharing.db'}", "http": {"host": "127.0.0.1", "port": 0}},
        "owner": {"owner_id": OWNER, "key_file": str(tmp / "owner.pem")},
    }
    return parse_config(data, source="<tls test>", env={})


# --------------------------------------------------------------------------- the settings


def test_broker_signed_by_the_configured_ca_is_accepted(client, tls_broker, pki, tmp_path) -> None:
    assert client(config(tls_broker, tmp_path, ca_file=pki.ca), tmp_path) is None


def test_broker_signed_by_another_ca_is_refused(client, tls_broker, tmp_path) -> None:
    other = private_pki(tmp_path / "other", cn="Some other CA")
    error = client(config(tls_broker, tmp_path, ca_file=other.ca), tmp_path)
    assert error is not None and "not trusted" in error and "self-signed certificate in certificate chain" in error


def test_insecure_skip_verify_never_trusts_another_ca(client, tls_broker, tmp_path) -> None:
    """The documented meaning: it skips the hostname check only, never the chain."""
    other = private_pki(tmp_path / "other", cn="Some other CA")
    error = client(config(tls_broker, tmp_path, ca_file=other.ca, insecure_skip_verify=True), tmp_path)
    assert error is not None and "not trusted" in error and "self-signed certificate in certificate chain" in error


def test_wrong_hostname_is_refused(client, tls_broker, pki, tmp_path) -> None:
    error = client(config(tls_broker, tmp_path, host="localhost", ca_file=pki.ca), tmp_path)
    assert error is not None and "not trusted" in error and "Hostname mismatch" in error


def test_insecure_skip_verify_accepts_a_wrong_hostname_from_the_right_ca(client, tls_broker, pki, tmp_path) -> None:
    cfg = config(tls_broker, tmp_path, host="localhost", ca_file=pki.ca, insecure_skip_verify=True)
    assert client(cfg, tmp_path) is None


def test_ca_file_with_a_tilde_is_expanded(client, tls_broker, pki, tmp_path, monkeypatch) -> None:
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    (home / ".config" / "ca.crt").write_bytes(pki.ca.read_bytes())
    monkeypatch.setenv("HOME", str(home))
    assert client(config(tls_broker, tmp_path, ca_file="~/.config/ca.crt"), tmp_path) is None


def test_required_client_certificate_is_sent(client, mtls_broker, pki, tmp_path) -> None:
    cfg = config(mtls_broker, tmp_path, ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key)
    assert client(cfg, tmp_path) is None


def test_missing_client_certificate_is_refused(client, mtls_broker, pki, tmp_path) -> None:
    error = client(config(mtls_broker, tmp_path, ca_file=pki.ca), tmp_path)
    assert error is not None and "requires a client certificate" in error


def test_client_certificate_from_another_ca_is_refused(client, mtls_broker, pki, tmp_path) -> None:
    other = private_pki(tmp_path / "other", cn="Some other CA")
    cfg = config(mtls_broker, tmp_path, ca_file=pki.ca, cert_file=other.client_cert, key_file=other.client_key)
    error = client(cfg, tmp_path)
    assert error is not None and "did not accept the client certificate" in error
