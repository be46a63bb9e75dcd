"""One sharing service: database, HTTP API, owner bridge and expiry sweeper in this process,
the matcher in a child process (``sharing_service.matcher``, rule 2).

``SharingService(cfg).start()`` runs everything on background threads (what the
tests and the demo do); ``serve()`` runs uvicorn in the calling thread with the
bridge and sweeper beside it (what ``doorbell sharing serve`` does).

Several instances may run on one database and one broker (docs/sharing.md,
"Running several instances"). ``GET /healthz`` tells a load balancer whether
to send traffic here; SIGTERM drains: /healthz answers 503 at once, the bridge
leaves the shared subscription and finishes what it received, HTTP keeps
answering for ``sharing.drain_delay_s`` (so the balancer notices) and then
finishes its in-flight requests, the matcher finishes its queue, and the
process exits 0.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

from sqlalchemy import text

from doorbell.core.config import DoorbellConfig
from doorbell.core.sdnotify import Notifier, Watchdog
from sharing_service.context import ServiceContext
from sharing_service.core import SharingCore
from sharing_service.db import Database
from sharing_service.delivery import Delivery
from sharing_service.matcher import TICK_S, MatcherProcess
from sharing_service.storage import Presigner

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger(__name__)


class SharingService:
    def __init__(self, cfg: DoorbellConfig, *, clock: Callable[[], float] | None = None,
                 mqtt: bool = True, sweep_interval_s: float | None = None,
                 migrate: bool = True, matcher_tick_s: float = TICK_S):
        self.cfg = cfg
        self.db = Database(cfg.sharing.database_url)
        if migrate:
            self.db.migrate()
        presigner = Presigner(cfg.s3) if cfg.s3.access_key_id or cfg.s3.endpoint_url else None
        if presigner is None:
            log.warning("no S3 endpoint/credentials configured: link issuance will fail with 503")
        ctx = ServiceContext(self.db, cfg.sharing, presigner, clock=clock or time.time, key_prefix=cfg.s3.prefix)
        delivery = Delivery(ctx)
        self.matcher = MatcherProcess(delivery, cfg.s3 if presigner is not None else None, matcher_tick_s)
        self.core = SharingCore(ctx, delivery=delivery, scheduler=self.matcher)
        self.bridge = None
        if mqtt:
            from sharing_service.bridge import OwnerBridge

            share = cfg.sharing.mqtt_share_group if cfg.sharing.mqtt_shared else None
            self.bridge = OwnerBridge(self.core, cfg.mqtt, share_group=share)
        self.sweep_interval_s = cfg.sharing.sweep_interval_s if sweep_interval_s is None else sweep_interval_s
        self._stop = threading.Event()
        self.draining = threading.Event()
        self._drained = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: uvicorn.Server | None = None
        self._sock: socket.socket | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"http://{self.cfg.sharing.http.host}:{self.port}"

    def _bind(self) -> socket.socket:
        http = self.cfg.sharing.http
        family = socket.AF_INET6 if ":" in http.host else socket.AF_INET
        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only when the
        # listening socket says TCP; without it every keep-alive response waits ~40 ms (Nagle).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((http.host, http.port))
        sock.listen(512)
        sock.set_inheritable(True)
        self.port = sock.getsockname()[1]
        return sock

    def _make_server(self) -> uvicorn.Server:
        import uvicorn

        from sharing_service.api import create_app

        service = self

        class Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: FrameType | None) -> None:
                if service.draining.is_set():  # a second signal: stop without waiting any longer
                    super().handle_exit(sig, frame)
                else:  # drain first (off the signal handler), then let uvicorn finish its requests
                    service.draining.set()
                    threading.Thread(target=service._drain_then_exit, args=(self,), name="sharing-drain",
                                     daemon=True).start()
                # uvicorn re-raises the signal after shutdown, which would kill the process before
                # the bridge and the database are closed; we stop them and exit 0 instead.
                getattr(self, "_captured_signals", []).clear()

        grace = max(1, int(self.cfg.sharing.drain_timeout_s))  # in-flight HTTP requests at shutdown
        config = uvicorn.Config(create_app(self.core, health=self.health), log_config=None, lifespan="off",
                                access_log=False, timeout_graceful_shutdown=grace)
        return Server(config)

    # ------------------------------------------------------------------ health and drain

    def health(self) -> tuple[bool, dict[str, str]]:
        """(serving?, state) for ``GET /healthz``: 503 while draining or when the database does not answer."""
        state = {"status": "ok", "database": "ok",
                 "broker": ("disabled" if self.bridge is None
                            else "connected" if self.bridge.connected.is_set() else "disconnected")}
        if self.cfg.mqtt.username:
            state["instance"] = self.cfg.mqtt.username
        try:
            with self.db.read() as s:
                s.execute(text("SELECT 1"))
        except Exception as exc:  # any driver error means this instance cannot serve
            log.warning("health check: database unavailable: %s", exc)
            state["database"], state["status"] = "down", "unavailable"
        if self.draining.is_set():
            state["status"] = "draining"
        return state["status"] == "ok", state

    def drain(self) -> None:
        """Stop taking owner messages and finish those received (the first half of a graceful stop)."""
        self.draining.set()
        if self.bridge is not None:
            self.bridge.drain(self.cfg.sharing.drain_timeout_s)
        self._drained.set()

    def _drain_then_exit(self, server: "uvicorn.Server") -> None:
        log.info("SIGTERM: draining (/healthz answers 503; leaving the shared subscription)")
        try:
            self.drain()
            # keep answering HTTP a little so a load balancer sees the 503 before the port closes
            self._stop.wait(self.cfg.sharing.drain_delay_s)
        except Exception:  # still stop: a failed drain must not keep the process up
            log.exception("drain failed")
        finally:
            server.should_exit = True

    def _sweeper(self) -> None:
        while not self._stop.wait(self.sweep_interval_s):
            try:
                self.core.sweeper.sweep()
                self._requeue_orphans()
            except Exception:  # keep sweeping; the error is logged
                log.exception("sweep failed")

    def _requeue_orphans(self) -> None:
        """Hand this matcher the requests another instance recorded but never delivered (it died).

        Delivery claims a request row with ``FOR UPDATE SKIP LOCKED`` and delivers it once
        (``matched_at``), so instances re-queueing the same request never ask anyone twice.
        """
        grace = max(10.0, 5 * self.matcher.tick_s)
        for rid in self.core.delivery.undelivered(older_than=self.core.ctx.clock() - grace):
            self.matcher.schedule(rid)

    def _start_side(self) -> None:
        if self.bridge:
            self.bridge.start()
        self.matcher.start()
        self.core.sweeper.sweep()
        t = threading.Thread(target=self._sweeper, name="sharing-sweeper", daemon=True)
        t.start()
        self._threads.append(t)

    def start(self, http: bool = True, timeout: float = 15) -> "SharingService":
        """Start bridge, sweeper and (optionally) the HTTP server on background threads."""
        self._start_side()
        if http:
            self._sock = self._bind()
            self._server = self._make_server()
            t = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                 name="sharing-http", daemon=True)
            t.start()
            self._threads.append(t)
            deadline = time.monotonic() + timeout
            while not self._server.started:
                if not t.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("HTTP server did not start")
                time.sleep(0.02)
            log.info("agency API on %s", self.url)
        return self

    def serve(self) -> None:
        """Run until SIGINT/SIGTERM (uvicorn handles the signals in this thread)."""
        self._start_side()
        self._sock = self._bind()
        self._server = self._make_server()
        log.info("agency API on %s (OpenAPI at /openapi.json)", self.url)
        notifier = Notifier.from_env()
        watchdog = Watchdog(notifier, check=self._healthy, require_beat=False)
        server = self._server

        def announce() -> None:
            # READY=1 only once uvicorn accepts connections, so dependants never see a refused port
            while not server.started and not self._stop.wait(0.05):
                pass
            if server.started:
                notifier.ready(f"agency API on {self.url}")
                watchdog.start()

        threading.Thread(target=announce, name="sharing-sd-notify", daemon=True).start()
        try:
            self._server.run(sockets=[self._sock])
        finally:
            notifier.stopping()
            watchdog.stop()
            self.stop()
            log.info("sharing service stopped")

    def _healthy(self) -> bool:
        """Watchdog check: HTTP still serving and every background thread alive."""
        server = self._server
        return (server is not None and server.started and not server.should_exit
                and all(t.is_alive() for t in self._threads) and self.matcher.alive)

    def stop(self) -> None:
        """HTTP first (no new requests), then the matcher (finish deliveries), then MQTT."""
        self.draining.set()
        self._stop.set()
        if self._server is not None:
            self._server.should_exit = True
        for t in self._threads:
            t.join(timeout=10)
        self._threads.clear()
        self.matcher.stop()
        if self.bridge:
            self.bridge.stop()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self.db.dispose()

    def __enter__(self) -> "SharingService":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
