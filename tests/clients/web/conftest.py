"""Fixtures for the owner web app's end-to-end tests (helpers in tests/support/web.py):
a session Mosquitto with a TLS WebSockets listener, Debian's chromium via Playwright,
and per test the real sharing service, the app server and two fresh homes."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from doorbell.core.config import parse_config
from tests.support.clients import HOME_A, HOME_B
from tests.support.web import CHROMIUM, WebEnv, launch_chromium, new_home


@pytest.fixture(scope="session")
def web_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from doorbell.sandbox.embedded import DoorbellBroker, TlsFiles
    from tests.support.tls_certs import self_signed

    d = tmp_path_factory.mktemp("web-mosquitto")
    cert, key = self_signed(d / "tls")
    b = DoorbellBroker(d / "broker", {}, admins=["admin"], service_user="sharing-service",
                       tls=TlsFiles(cert, cert, key), websockets=True)
    b.cert = cert
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="session")
def chromium(web_broker: Any) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (scripts/bootstrap.sh --test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch_chromium(pw, web_broker.cert)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def web(tmp_path: Path, web_broker: Any, s3: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebEnv]:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # where `doorbell owner audit` pins heads
    from doorbell.clients.owner.web import WebServer, dist_dir
    from doorbell.sandbox.embedded import DoorbellBroker
    from sharing_service.service import SharingService

    dist_dir()  # a clear error if the app was not built
    cfg = parse_config({
        "mqtt": {"host": web_broker.host, "port": web_broker.port, "username": "sharing-service",
                 "password": web_broker.users["sharing-service"]},
        "s3": {"endpoint_url": s3.endpoint_url, "bucket": s3.bucket, "region": "us-east-1",
               "access_key_id": s3.access_key, "secret_access_key": s3.secret_key, "addressing_style": "path"},
        "sharing": {"database_url": f"sqlite:///{tmp_path / 'sharing.db'}",
                    "http": {"host": "127.0.0.1", "port": 0}, "agency_rate_per_min": 100000},
    }, source="<web test>", env={})
    # a fresh session for the service's login (client id = login on a broker that binds them):
    # the last test's service must not hand this one its subscriptions or queued messages
    DoorbellBroker.client(web_broker, "sharing-service", clean_start=True, session_expiry_s=0).close()
    svc = SharingService(cfg, sweep_interval_s=3600)
    svc.start()
    server = WebServer({"broker_url": web_broker.ws_url, "sharing_url": svc.url}).start()
    env = None
    try:
        assert svc.bridge is not None and svc.bridge.wait_connected(10), "bridge did not connect"
        a = new_home(web_broker, svc.core, tmp_path, HOME_A)
        b = new_home(web_broker, svc.core, tmp_path, HOME_B)
        _, api_key = svc.core.registry.add_agency("Springfield PD")
        env = WebEnv(svc, web_broker, s3, server.url, tmp_path, api_key, a, b)
        yield env
    finally:
        if env is not None:
            env.close()
        server.stop()
        svc.stop()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    ctx = chromium.new_context(viewport={"width": 1280, "height": 800})
    pg = ctx.new_page()
    pg.set_default_timeout(20000)
    try:
        yield pg
    finally:
        ctx.close()
