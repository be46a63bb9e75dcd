"""Tiny sd_notify(3) client and watchdog feeder for ``Type=notify`` units.

Why not python-systemd: it needs libsystemd headers to build and pulls a C
extension onto a Pi Zero for four datagrams. The protocol is one AF_UNIX
datagram of ``KEY=VALUE`` lines to ``$NOTIFY_SOCKET``; outside systemd (tests,
the demo, a developer's shell) every call is a harmless no-op.

Use::

    notifier = Notifier.from_env()
    with Watchdog(notifier, check=my_loop_is_alive) as wd:
        notifier.ready("recording")
        while running:
            ...
            wd.beat()          # the main loop proves it is not stuck
        notifier.stopping()

The watchdog thread sends ``WATCHDOG=1`` at half of ``WATCHDOG_USEC`` but only
while the service is healthy: if the main loop has not called :meth:`Watchdog.beat`
within the watchdog period (or ``check()`` returns False / raises), it stops
feeding and systemd restarts the service. A thread that pings unconditionally
would hide exactly the hang the watchdog exists to catch.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages to the socket systemd gave us (or nowhere)."""

    def __init__(self, socket_path: str | None, watchdog_usec: int | None = None):
        self.socket_path = socket_path or None
        self.watchdog_usec = watchdog_usec

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Notifier":
        """Read ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC``/``WATCHDOG_PID`` (sd_watchdog_enabled semantics)."""
        env = os.environ if env is None else env
        usec: int | None = None
        raw = env.get("WATCHDOG_USEC")
        if raw:
            try:
                usec = int(raw)
            except ValueError:
                log.warning("ignoring invalid WATCHDOG_USEC=%r", raw)
            pid = env.get("WATCHDOG_PID")
            if usec and pid and pid.isdigit() and int(pid) != os.getpid():
                usec = None  # the watchdog is meant for another process (e.g. our parent)
            if usec is not None and usec <= 0:
                usec = None
        return cls(env.get("NOTIFY_SOCKET"), usec)

    @property
    def enabled(self) -> bool:
        return self.socket_path is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to feed the watchdog: half of WATCHDOG_USEC, as sd_watchdog_enabled(3) advises."""
        return self.watchdog_usec / 2e6 if self.watchdog_usec else None

    def notify(self, *lines: str) -> bool:
        """Send ``KEY=VALUE`` lines; False when not under systemd or the send failed (never raises)."""
        if not self.socket_path:
            return False
        addr = self.socket_path
        if addr.startswith("@"):
            addr = "\0" + addr[1:]  # abstract namespace socket
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(addr)
                sock.sendall("\n".join(lines).encode("utf-8"))
            return True
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", self.socket_path, exc)
            return False

    def ready(self, status: str | None = None) -> bool:
        """READY=1: systemd considers the unit started (dependants may start)."""
        return self.notify("READY=1", *( [f"STATUS={status}"] if status else []))

    def stopping(self, status: str | None = None) -> bool:
        """STOPPING=1: we are shutting down on purpose, not hanging."""
        return self.notify("STOPPING=1", *( [f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        return self.notify("RELOADING=1")

    def status(self, text: str) -> bool:
        """Free-form one-line status shown by ``systemctl status``."""
        return self.notify(f"STATUS={text.splitlines()[0] if text else ''}")

    def watchdog(self) -> bool:
        """One WATCHDOG=1 keep-alive."""
        return self.notify("WATCHDOG=1")

    def watchdog_trigger(self) -> bool:
        """WATCHDOG=trigger: ask systemd to treat us as hung now (restart per the unit's policy)."""
        return self.notify("WATCHDOG=trigger")


class Watchdog:
    """Background feeder of the systemd watchdog, gated on the service's health.

    ``beat()`` is cheap (one monotonic clock read); call it from the main loop.
    If ``require_beat`` is set and no beat arrived within the watchdog period,
    or ``check`` returns False or raises, keep-alives stop and systemd restarts
    the service after WatchdogSec. Without a watchdog configured the thread is
    not started at all.
    """

    def __init__(self, notifier: Notifier, check: Callable[[], bool] | None = None,
                 require_beat: bool = True, interval_s: float | None = None):
        self.notifier = notifier
        self.check = check
        self.require_beat = require_beat
        self.interval_s = interval_s if interval_s is not None else notifier.watchdog_interval_s
        self._last_beat = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0  # keep-alives sent, for tests and status

    def beat(self) -> None:
        self._last_beat = time.monotonic()

    def healthy(self) -> bool:
        """Whether a keep-alive should be sent now."""
        if self.require_beat and self.interval_s is not None:
            if time.monotonic() - self._last_beat > 2 * self.interval_s:  # = WatchdogSec
                log.error("main loop has not reported for %.1f s; letting the watchdog expire",
                          time.monotonic() - self._last_beat)
                return False
        if self.check is not None:
            try:
                if not self.check():
                    log.error("health check failed; letting the watchdog expire")
                    return False
            except Exception:  # a broken check must not kill the feeder thread silently
                log.exception("health check raised; letting the watchdog expire")
                return False
        return True

    def start(self) -> "Watchdog":
        if self.interval_s is None or self._thread is not None:
            return self
        self._last_beat = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="sd-watchdog", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        assert self.interval_s is not None
        while not self._stop.wait(self.interval_s):
            if self.healthy() and self.notifier.watchdog():
                self.sent += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "Watchdog":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
