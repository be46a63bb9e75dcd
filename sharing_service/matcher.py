"""The matcher: matches recorded requests to owners and asks them, in its own process.

Why a process (rule 2, issue 15): an agency can time its own calls. With matching
on a thread of the HTTP process, the per-home work (area match, audit rows, one
presigned snapshot link per offered clip, the owners' messages) competed with the
agency's next status reads for the same interpreter lock, and a POST followed by
10 status reads took ~25 ms longer when 7 homes matched than when none did. A
child process at the lowest CPU priority (nice 19) shares nothing with the HTTP
process but the database: on a machine with a free core it runs beside it, and
when the cores are busy the scheduler gives the HTTP process the CPU first.

The child also delivers on a **fixed schedule**, at multiples of ``tick_s`` of
the wall clock, never right when a request arrives: the agency's own calls
after its POST do not overlap its request's delivery (a busy sibling process
measurably *sped up* the next reads on the 2-CPU test VM, by ~2 ms), and when a
tick's work happens does not depend on any request. At most
``MAX_PER_TICK`` requests are delivered per tick; the rest wait for the next.

What stays in the HTTP process is O(1) per request (record it, hand its id to the
child) plus handing the child's ready-made MQTT messages to the bridge, which
only copies bytes to the broker's socket. ``benchmarks/sharing.py --rule2-timing``
measures the difference that remains.

The database is the queue of record: a request scheduled while the child is down
stays undelivered (``matched_at`` NULL) and is picked up by the next :meth:`start`.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from doorbell.core.config import S3Section, SharingSection
from sharing_service.context import Outgoing, ServiceContext
from sharing_service.db import Database
from sharing_service.delivery import Delivery

log = logging.getLogger(__name__)

NICE = 19
TICK_S = 1.0          # owners are asked at most this long after a request is recorded
MAX_PER_TICK = 50     # bounded work per tick; a burst of requests spreads over several ticks


def _child_main(jobs: Connection, results: Connection, db_url: str, settings: SharingSection,
                s3: S3Section | None, key_prefix: str, log_level: int, tick_s: float) -> None:
    """The matcher process: one job at a time, messages and a done mark back to the parent."""
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s [matcher]: %(message)s")
    try:
        os.nice(NICE)
    except OSError as exc:  # still correct, only less isolated
        log.warning("matcher could not lower its priority: %s", exc)
    from sharing_service.storage import Presigner

    offset = [0.0]
    ctx = ServiceContext(Database(db_url), settings, Presigner(s3) if s3 is not None else None,
                         clock=lambda: time.time() + offset[0], key_prefix=key_prefix)
    pending: list[Outgoing] = []
    ctx.outbox.attach(pending.extend)
    delivery = Delivery(ctx)
    results.send(("ready", os.getpid()))
    queued: list[tuple[str, float]] = []
    stopping = False
    while not stopping:
        # collect jobs until the next tick of the wall clock, then deliver a bounded batch
        next_tick = (time.time() // tick_s + 1) * tick_s
        while (wait := next_tick - time.time()) > 0:
            try:
                if not jobs.poll(wait):
                    continue
                job = jobs.recv()
            except (EOFError, OSError):  # the service is gone
                job = None
            if job is None:
                stopping = True  # deliver what is queued, then end
                break
            queued.append(job)
        batch = queued if stopping else queued[:MAX_PER_TICK]
        queued = [] if stopping else queued[MAX_PER_TICK:]
        for rid, offset[0] in batch:
            try:
                delivery.deliver(rid)
            except Exception:  # the request stays undelivered and is retried at the next start
                log.exception("delivering request %s failed", rid)
            out, pending[:] = list(pending), []
            try:
                results.send(("done", rid, out))
            except (OSError, ValueError):
                stopping = True
    ctx.db.dispose()


class MatcherProcess:
    """The agency desk's :class:`~sharing_service.delivery.Scheduler`: a child process that delivers."""

    def __init__(self, delivery: Delivery, s3: S3Section | None, tick_s: float = TICK_S):
        if tick_s <= 0:
            raise ValueError("tick_s must be > 0")
        self.tick_s = tick_s
        self.delivery = delivery
        self.ctx = delivery.ctx
        self.s3 = s3
        self._proc: Any = None
        self._jobs: Connection | None = None
        self._reader: threading.Thread | None = None
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self._outstanding = 0
        self.pid: int | None = None

    def start(self) -> None:
        """Spawn the child (its start-up overlaps the service's) and re-queue undelivered requests."""
        spawn = mp.get_context("spawn")  # never fork a process that already runs threads
        job_r, job_w = spawn.Pipe(duplex=False)
        res_r, res_w = spawn.Pipe(duplex=False)
        self._proc = spawn.Process(target=_child_main, name="sharing-matcher", daemon=True,
                                   args=(job_r, res_w, self.ctx.db.url, self.ctx.settings, self.s3,
                                         self.ctx.key_prefix, logging.getLogger().getEffectiveLevel(),
                                         self.tick_s))
        self._proc.start()
        job_r.close()   # the child's ends: closing ours makes EOF mean "the other side is gone"
        res_w.close()
        self._jobs = job_w
        self._reader = threading.Thread(target=self._read, args=(res_r,), name="sharing-matcher-results",
                                        daemon=True)
        self._reader.start()
        for rid in self.delivery.undelivered():  # recorded before a stop: ask their owners now
            self.schedule(rid)

    def schedule(self, rid: str) -> None:
        """Hand a recorded request to the child: O(1), whatever the request matches."""
        jobs = self._jobs
        if jobs is None:
            log.debug("matcher stopped: request %s waits for the next start", rid)
            return
        offset = self.ctx.clock() - time.time()  # the service's clock (tests shift it)
        with self._cond:
            self._outstanding += 1
        try:
            with self._send_lock:
                jobs.send((rid, offset))
        except (OSError, ValueError) as exc:  # child gone: the request stays undelivered for the next start
            log.error("matcher unavailable, request %s waits for the next start: %s", rid, exc)
            self._finished()

    def _finished(self) -> None:
        with self._cond:
            self._outstanding -= 1
            self._cond.notify_all()

    def _read(self, results: Connection) -> None:
        while True:
            try:
                msg = results.recv()
            except (EOFError, OSError):
                break
            if msg[0] == "ready":
                self.pid = msg[1]
                continue
            _, _rid, out = msg
            try:
                self.ctx.outbox.emit(out)
            except Exception:  # the bridge re-sends pending requests after its next connect
                log.exception("publishing the owners' messages failed")
            self._finished()
        results.close()
        with self._cond:  # nothing more will come back: whatever was outstanding stays undelivered
            self._outstanding = 0
            self._cond.notify_all()

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """True once every scheduled request has been delivered and its messages handed on."""
        with self._cond:
            return self._cond.wait_for(lambda: self._outstanding == 0, timeout)

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def stop(self) -> None:
        """Finish the queued deliveries, then end the child."""
        if self._jobs is None:
            return
        with self._send_lock:
            try:
                self._jobs.send(None)
            except (OSError, ValueError):
                pass
            self._jobs.close()
            self._jobs = None
        self._proc.join(timeout=30)
        if self._proc.is_alive():
            log.warning("matcher did not stop in 30 s; terminating it")
            self._proc.terminate()
            self._proc.join(timeout=5)
        if self._reader is not None:
            self._reader.join(timeout=10)
        self._proc = self._reader = None
        self.pid = None

