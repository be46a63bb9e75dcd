"""Serving the built app: `doorbell owner web` as a real process on loopback, and the
sharing service at /app/ (no Node.js at run time: the files are package data)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

from doorbell.clients.owner.web import dist_dir
from tests.support.web import WebEnv


def test_owner_web_serves_the_app_and_its_config_on_loopback(tmp_path: Path) -> None:
    cfg = tmp_path / "owner.yaml"
    cfg.write_text(yaml.safe_dump({"owner": {"owner_id": "owner-a", "key_file": str(tmp_path / "k.pem")},
                                   "mqtt": {"host": "mqtt.example.org", "port": 8883, "username": "owner-a",
                                            "password": "s3cret-pw", "tls": {"enabled": True}}}))
    proc = subprocess.Popen([sys.executable, "-m", "doorbell.cli", "owner", "web", "--config", str(cfg),
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("Your doorbell app: http://127.0.0.1:"), line
        url = line.split()[3]
        r = httpx.get(url)
        assert r.status_code == 200 and "<title>Doorbell</title>" in r.text
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
        conf = httpx.get(url + "config.json")
        assert conf.json() == {"broker_url": "wss://mqtt.example.org:8884/", "owner_id": "owner-a",
                               "login": "owner-a.web", "sharing_url": "http://127.0.0.1:8080"}
        assert "s3cret" not in conf.text and conf.headers["cache-control"] == "no-store"
        js = httpx.get(url + "app.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        assert httpx.get(url + "manifest.webmanifest").json()["display"] == "standalone"
        for bad in ("../setup.py", "..%2f..%2fsetup.py", "src/main.js", "nope.js", "%00"):
            assert httpx.get(url + bad).status_code == 404, bad
    finally:
        proc.terminate()
        proc.wait(10)


def test_owner_web_with_a_bad_broker_url_is_a_usage_error(tmp_path: Path) -> None:
    from tests.support.clients import run_cli

    cfg = tmp_path / "owner.yaml"
    cfg.write_text(yaml.safe_dump({"owner": {"owner_id": "owner-a"}, "mqtt": {"host": "h", "username": "owner-a",
                                                                             "password": "long-enough-pw"}}))
    r = run_cli(["owner", "web", "--config", str(cfg), "--broker-url", "http://h/"])
    assert r.code == 2 and "--broker-url must start with wss://" in r.err


def test_sharing_service_serves_the_app_at_app(web: WebEnv) -> None:
    r = httpx.get(web.service.url + "/app/")
    assert r.status_code == 200 and r.text == (dist_dir() / "index.html").read_text()
    assert r.headers["x-frame-options"] == "DENY" and r.headers["referrer-policy"] == "no-referrer"
    assert "x-frame-options" not in httpx.get(web.service.url + "/healthz").headers
    assert httpx.get(web.service.url + "/app/app.js").status_code == 200
    assert httpx.get(web.service.url + "/app/../setup.py").status_code == 404
    # the agency API's spec is unchanged by the mount
    assert "/app" not in json.dumps(httpx.get(web.service.url + "/openapi.json").json()["paths"])


def test_service_worker_serves_the_shell_offline(web: WebEnv, page: object) -> None:
    """The PWA part: once loaded, the service worker keeps the shell, so the app opens offline."""
    pg: Any = page
    pg.goto(web.app_url)
    pg.wait_for_selector("#login-title")
    assert pg.evaluate("navigator.serviceWorker.ready.then(r => !!r.active)") is True
    pg.reload()  # now controlled by the worker, which caches what it serves
    pg.wait_for_selector("#login-title")
    assert pg.evaluate("!!navigator.serviceWorker.controller")
    pg.context.set_offline(True)
    try:
        pg.reload()
        pg.wait_for_selector("#login-title")
        manifest = pg.evaluate("fetch('manifest.webmanifest').then(r => r.json())")
        assert manifest["display"] == "standalone" and manifest["start_url"] == "./#/live"
    finally:
        pg.context.set_offline(False)


def test_a_client_that_goes_away_mid_response_prints_no_traceback(tmp_path: Path, capfd: Any) -> None:
    """Closing a tab while a file is sent is normal: the server says nothing on stderr and keeps serving."""
    import socket
    import struct

    from doorbell.clients.owner.web import WebServer

    root = tmp_path / "dist"
    root.mkdir()
    (root / "index.html").write_text("<!doctype html><title>app</title>")
    (root / "big.js").write_bytes(b"x" * (8 << 20))  # larger than the socket buffers
    server = WebServer({"broker_url": "wss://127.0.0.1:1/"}, root=root).start()
    try:
        for _ in range(3):
            s = socket.create_connection(server.httpd.server_address[:2])
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
            s.sendall(b"GET /big.js HTTP/1.1\r\nHost: x\r\n\r\n")
            s.recv(1024)
            s.close()
        assert httpx.get(server.url + "index.html", timeout=10).status_code == 200
    finally:
        server.stop()
    assert "Traceback" not in capfd.readouterr().err
