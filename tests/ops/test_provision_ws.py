"""The provisioned broker's TLS WebSockets listener (the owner's browser app), on the real
Mosquitto with the generated config: password over TLS without a client certificate, the
ACL as on the MQTT port, and bound to the given address only (not every interface, which is
what Debian's 2.0.11 does without `socket_domain ipv4`, eclipse/mosquitto#3045)."""
from __future__ import annotations

import ssl
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from doorbell.core import protocol as p
from doorbell.sandbox.embedded import port_open
from tests.support.ops import Fleet
from tests.support.polling import wait_for


def ws_port(fleet: Fleet) -> int:
    return int(fleet.bdir.load_registry()["broker"]["ws_port"])


def ws_client(fleet: Fleet, name: str, password: str | None = None) -> tuple[Any, Any]:
    cfg = fleet.config(name)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, transport="websockets", protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=str(fleet.bundle(name) / "tls" / "ca.crt"), cert_reqs=ssl.CERT_REQUIRED)
    c.username_pw_set(name, password if password is not None else cfg["mqtt"]["password"])
    done, reason = threading.Event(), []
    c.on_connect = lambda _c, _u, _f, rc, _p: (reason.append(rc), done.set())
    # the fixture waits for the MQTT port; Mosquitto opens the WebSockets listener just after it
    wait_for(lambda: port_open("127.0.0.1", ws_port(fleet)), what="the WebSockets listener")
    c.connect("127.0.0.1", ws_port(fleet))
    c.loop_start()
    assert done.wait(10), "no CONNACK over WebSockets"
    return c, reason[0]


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on ``port`` (from /proc/net/tcp and tcp6)."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.rsplit(":", 1)
            if state == "0A" and int(hexport, 16) == port:
                out.add(addr)
    return out


def test_owner_connects_over_tls_websockets_with_a_password(fleet: Fleet) -> None:
    c, reason = ws_client(fleet, "owner-a")
    try:
        assert not reason.is_failure, reason
    finally:
        c.loop_stop()
        c.disconnect()


def test_wrong_password_over_websockets_is_refused(fleet: Fleet) -> None:
    c, reason = ws_client(fleet, "owner-a", password="not-the-password")
    c.loop_stop()
    assert reason.is_failure


def test_websockets_listener_binds_only_the_given_address(fleet: Fleet) -> None:
    assert listening_addresses(ws_port(fleet)) == {"0100007F"}  # 127.0.0.1, nothing on 0.0.0.0 or ::


def test_acl_applies_over_websockets(fleet: Fleet) -> None:
    """owner-b over WebSockets receives nothing from owner-a's device."""
    got: list[str] = []
    c, reason = ws_client(fleet, "owner-b")
    try:
        assert not reason.is_failure
        c.on_message = lambda _c, _u, m: got.append(m.topic)
        subscribed = threading.Event()
        c.on_subscribe = lambda *_a: subscribed.set()
        c.subscribe([(f"{p.PREFIX}/devices/+/events", 1), (f"{p.PREFIX}/devices/dev-b/events", 1)])
        assert subscribed.wait(5)
        dev_a, dev_b = fleet.client("dev-a"), fleet.client("dev-b")
        try:
            dev_a.pub(p.events_topic("dev-a"), p.DeviceEvent(device_id="dev-a", type="ring").to_json(), qos=1)
            dev_b.pub(p.events_topic("dev-b"), p.DeviceEvent(device_id="dev-b", type="ring").to_json(), qos=1)
            wait_for(lambda: p.events_topic("dev-b") in got, what="owner-b's own event over WebSockets")
            assert p.events_topic("dev-a") not in got
        finally:
            dev_a.close()
            dev_b.close()
    finally:
        c.loop_stop()
        c.disconnect()


def test_owner_login_for_the_browser(fleet: Fleet) -> None:
    """`provision owner-login`: a second login with the owner's rights, over WebSockets, and only those."""
    import os
    import signal

    import yaml

    from tests.support.ops import run_cli

    r = run_cli("provision", "owner-login", "--broker-dir", str(fleet.bdir.root), "--owner", "owner-a")
    assert r.returncode == 0, r.stderr
    bundle = fleet.bdir.client_dir("owner-a.web")
    login = yaml.safe_load((bundle / "login.yaml").read_text())
    assert login["login"] == "owner-a.web" and login["broker_url"] == f"wss://localhost:{ws_port(fleet)}/"
    assert (bundle / "login.yaml").stat().st_mode & 0o077 == 0
    acl = fleet.bdir.acl.read_text()
    assert "user owner-a.web" in acl
    os.kill(fleet.server.pid, signal.SIGHUP)  # what `systemctl reload mosquitto` does

    def connect() -> Any:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, transport="websockets", protocol=mqtt.MQTTv5)
        c.tls_set(ca_certs=str(bundle / "ca.crt"), cert_reqs=ssl.CERT_REQUIRED)
        c.username_pw_set(login["login"], login["password"])
        done, reason = threading.Event(), []
        c.on_connect = lambda _c, _u, _f, rc, _p: (reason.append(rc), done.set())
        c.connect("127.0.0.1", ws_port(fleet))
        c.loop_start()
        assert done.wait(10)
        if reason[0].is_failure:
            c.loop_stop()
            return None
        return c

    made: list[Any] = []
    wait_for(lambda: bool(made.append(connect()) or made[-1] is not None), what="the new login accepted after reload")
    c = made[-1]
    got: list[str] = []
    try:
        c.on_message = lambda _c, _u, m: got.append(m.topic)
        subscribed = threading.Event()
        c.on_subscribe = lambda *_a: subscribed.set()
        c.subscribe(f"{p.PREFIX}/devices/+/events", 1)
        assert subscribed.wait(5)
        dev_a, dev_b = fleet.client("dev-a"), fleet.client("dev-b")
        try:
            dev_b.pub(p.events_topic("dev-b"), p.DeviceEvent(device_id="dev-b", type="ring").to_json(), qos=1)
            dev_a.pub(p.events_topic("dev-a"), p.DeviceEvent(device_id="dev-a", type="ring").to_json(), qos=1)
            wait_for(lambda: p.events_topic("dev-a") in got, what="owner-a's event on owner-a.web")
            assert p.events_topic("dev-b") not in got
        finally:
            dev_a.close()
            dev_b.close()
    finally:
        c.loop_stop()
        c.disconnect()
    r = run_cli("provision", "remove", "--broker-dir", str(fleet.bdir.root), "--id", "owner-a")
    assert r.returncode != 0 and "owner-a.web" in r.stderr  # an owner with logins is not removed silently
    # leave the shared fleet as it was
    assert run_cli("provision", "remove", "--broker-dir", str(fleet.bdir.root), "--id", "owner-a.web").returncode == 0
    assert "owner-a.web" not in fleet.bdir.acl.read_text() and "owner-a.web:" not in fleet.bdir.passwd.read_text()
    os.kill(fleet.server.pid, signal.SIGHUP)
