"""sd_notify over a real AF_UNIX datagram socket, as systemd provides it."""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from doorbell.core.sdnotify import Notifier, Watchdog


@pytest.fixture()
def notify_socket(tmp_path: Path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    yield str(path), sock
    sock.close()


def recv(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_outside_systemd_everything_is_a_no_op() -> None:
    n = Notifier.from_env({})
    assert not n.enabled and n.watchdog_interval_s is None
    assert n.ready() is False and n.watchdog() is False
    with Watchdog(n) as wd:  # no thread without WATCHDOG_USEC
        assert wd._thread is None


def test_ready_status_stopping(notify_socket) -> None:
    path, sock = notify_socket
    n = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert n.ready("recording")
    assert recv(sock) == ["READY=1", "STATUS=recording"]
    assert n.status("3 clips pending\nsecond line ignored")
    assert recv(sock) == ["STATUS=3 clips pending"]
    assert n.stopping()
    assert recv(sock) == ["STOPPING=1"]


def test_watchdog_interval_is_half_of_watchdog_usec_and_respects_pid() -> None:
    n = Notifier.from_env({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())})
    assert n.watchdog_interval_s == 15.0
    other = Notifier.from_env({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_interval_s is None
    assert Notifier.from_env({"WATCHDOG_USEC": "garbage"}).watchdog_interval_s is None


def test_watchdog_feeds_while_the_main_loop_beats_and_stops_when_it_hangs(notify_socket) -> None:
    path, sock = notify_socket
    n = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})  # 0.1 s -> ping every 50 ms
    with Watchdog(n) as wd:
        for _ in range(4):
            wd.beat()
            assert recv(sock) == ["WATCHDOG=1"]
        # Now the "main loop" hangs: no beat; after WatchdogSec (0.1 s) pings must stop.
        time.sleep(0.5)
        sock.settimeout(0.01)
        while True:  # drain what was sent before the deadline passed
            try:
                sock.recv(4096)
            except TimeoutError:
                break
        sent = wd.sent
        time.sleep(0.3)
        assert wd.sent == sent
        wd.beat()  # recovers
        sock.settimeout(2)
        assert recv(sock) == ["WATCHDOG=1"]


def test_failing_health_check_stops_the_keepalives(notify_socket) -> None:
    path, sock = notify_socket
    healthy = {"ok": True}
    n = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})
    with Watchdog(n, check=lambda: healthy["ok"], require_beat=False) as wd:
        assert recv(sock) == ["WATCHDOG=1"]
        healthy["ok"] = False
        time.sleep(0.6)
        sent = wd.sent
        time.sleep(0.2)
        assert wd.sent == sent


def test_abstract_namespace_socket() -> None:
    name = f"doorbell-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        assert Notifier(f"@{name}").ready()
        assert recv(sock) == ["READY=1"]
    finally:
        sock.close()
