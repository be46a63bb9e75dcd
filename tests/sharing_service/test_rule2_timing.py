"""Rule 2 against timing (issue 15 finding 4), structurally: the agency's HTTP calls do no
per-home work. Matching and asking owners happen in a separate, lowest-priority process;
with that process frozen, an agency's POST and status reads are answered in full while
no home has been matched. (The measured difference is in benchmarks/sharing.py
--rule2-timing: no timed assertions here.)"""
from __future__ import annotations

import os
import signal
import threading

from sqlalchemy import func, select

from doorbell.core import protocol as p
from sharing_service.matcher import NICE
from sharing_service.models import AuditEntry, RequestTarget
from tests.support.sharing import Env, wait_for


def test_rule2_http_path_does_no_per_home_work(sharing: Env) -> None:
    t0 = sharing.clock() - 2 * 3600
    sharing.put_clip("dev-a", t0)
    sharing.put_clip("dev-b", t0 + 60)
    matcher = sharing.service.matcher
    wait_for(lambda: matcher.pid is not None, what="matcher process up")
    pid = matcher.pid
    assert pid is not None and pid != os.getpid()
    assert os.getpriority(os.PRIO_PROCESS, pid) == NICE
    assert not any(t.name == "sharing-matcher" for t in threading.enumerate())  # no matching thread here
    owners = {o: sharing.owner(o) for o in ("owner-a", "owner-b")}

    os.kill(pid, signal.SIGSTOP)  # the matcher can do nothing now
    try:
        rid = sharing.agency.create_request_raw(sharing.request_body(radius_m=800))["id"]
        statuses = [sharing.agency.status(rid) for _ in range(10)]
        assert {s["status"] for s in statuses} == {"pending"} and {s["clips_shared"] for s in statuses} == {0}
        with sharing.core.db.read() as s:  # the answers above were given without matching a single home
            assert s.execute(select(func.count()).select_from(RequestTarget)).scalar_one() == 0
            assert s.execute(select(func.count()).select_from(AuditEntry)
                             .where(AuditEntry.kind == "delivery")).scalar_one() == 0
    finally:
        os.kill(pid, signal.SIGCONT)
    for o, c in owners.items():  # the frozen matcher resumes and asks both homes
        c.expect(p.request_topic(o, rid))
    assert matcher.wait_idle(30)
    with sharing.core.db.read() as s:
        assert s.execute(select(func.count()).select_from(RequestTarget)).scalar_one() == 2


def test_rule2_matcher_stop_and_restart_keep_requests(sharing: Env) -> None:
    """A request recorded while the matcher is down is delivered by the next start (the database is
    the queue of record), and the child process ends with the service."""
    sharing.put_clip("dev-a", sharing.clock() - 2 * 3600)
    matcher = sharing.service.matcher
    wait_for(lambda: matcher.pid is not None, what="matcher process up")
    old = matcher.pid
    matcher.stop()
    assert not matcher.alive
    rid = sharing.agency.create_request_raw(sharing.request_body())["id"]
    owner = sharing.owner("owner-a")
    matcher.start()
    owner.expect(p.request_topic("owner-a", rid))
    assert matcher.alive and matcher.pid != old
    assert matcher.wait_idle(30)


def test_rule2_agency_calls_never_wait_for_the_matchers_write_lock(sharing: Env) -> None:
    """Every agency call takes a rate-limit token (a database write). On SQLite that write goes to the
    buckets' own file: with another process holding the main file's write lock (as the matcher does
    while it asks homes), the agency's POST and status reads are still answered in full, so their
    latency cannot reflect how long the matching takes."""
    import sqlite3

    from sqlalchemy.engine import make_url

    if sharing.core.db.dialect != "sqlite":
        return
    path = make_url(sharing.core.db.url).database
    assert path
    rid = sharing.agency.create_request_raw(sharing.request_body())["id"]
    writer = sqlite3.connect(path, timeout=0, isolation_level=None)  # like the matcher: another process's writer
    try:
        writer.execute("BEGIN IMMEDIATE")
        statuses = [sharing.agency.status(rid) for _ in range(5)]
        assert {s["status"] for s in statuses} == {"pending"}
        try:  # the main file's write lock was held all along
            sqlite3.connect(path, timeout=0).execute("BEGIN IMMEDIATE")
            raise AssertionError("the main file's write lock was not held")
        except sqlite3.OperationalError:
            pass
    finally:
        writer.execute("ROLLBACK")
        writer.close()
