"""Rate limits kept in the database, so they hold across every instance.

Each agency has one ``agency_rate`` row, and each share link one
``share_rate`` row (:data:`AGENCIES`, :data:`SHARE_LINKS`): a token bucket
(``tokens`` at ``updated_at``) that refills at the limit per minute and holds
at most one minute's worth. Taking a token is ONE statement, an upsert that refills,
decides and stores in the same row update and reads the verdict back with
``RETURNING``: on PostgreSQL the row lock makes concurrent takes from several
instances queue for the row (no lost update, no read-modify-write window); on
SQLite the write transaction (``BEGIN IMMEDIATE``) does the same. An agency
spreading its calls over three instances therefore gets its limit in total,
not three times it.

On SQLite the buckets live in a database file of their own
(``Database.rate_engine``, ``sharing.ratelimit.db`` next to ``sharing.db``):
SQLite has one writer per file, and in the main file an agency's call would
wait for the matcher's and the bridge's write transactions, so its latency
could tell how much matching work was going on (sharing rule 2). There, a
take waits only for other takes.

Time is wall-clock UNIX seconds (``time.time``), the one clock instances share;
a clock step backwards only delays the refill (elapsed time is floored at 0).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import TextClause, text
from sqlalchemy.engine import Connection

from sharing_service.context import AgencyInfo
from sharing_service.db import Database

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Buckets:
    """Which table holds the buckets, and its key column."""

    table: str
    key: str
    key_type: str  # for SQLite's bucket file, where the table is made on first use

    def take_sql(self, dialect: str) -> TextClause:
        t = self.table
        # the bucket after refilling: min(burst, tokens + elapsed * rate), elapsed never negative
        avail = {"postgresql": f"LEAST(:burst, {t}.tokens + GREATEST(0, :now - {t}.updated_at) * :rate)",
                 "sqlite": f"MIN(:burst, {t}.tokens + MAX(0, :now - {t}.updated_at) * :rate)"}[dialect]
        latest = {"postgresql": f"GREATEST({t}.updated_at, :now)", "sqlite": f"MAX({t}.updated_at, :now)"}[dialect]
        return text(f"INSERT INTO {t} ({self.key}, tokens, updated_at, allowed) "
                    "VALUES (:key, :burst - 1, :now, true) "
                    f"ON CONFLICT ({self.key}) DO UPDATE SET "
                    f"tokens = CASE WHEN {avail} >= 1 THEN {avail} - 1 ELSE {avail} END, "
                    f"allowed = ({avail} >= 1), updated_at = {latest} "
                    "RETURNING tokens, allowed")

    def side_table(self) -> str:
        # SQLite's separate bucket file (no foreign key: agencies and shares live in the main file;
        # a deleted row's bucket is never read again, a reused key starts capped at its own burst)
        return (f"CREATE TABLE IF NOT EXISTS {self.table} ({self.key} {self.key_type} NOT NULL PRIMARY KEY, "
                "tokens FLOAT NOT NULL, updated_at FLOAT NOT NULL, allowed BOOLEAN NOT NULL)")


AGENCIES = Buckets("agency_rate", "agency_id", "INTEGER")
SHARE_LINKS = Buckets("share_rate", "share_id", "VARCHAR(64)")


class RateLimiter:
    """Token buckets in the database (one row per key); see the module docstring."""

    def __init__(self, db: Database, default_per_min: int, clock: Callable[[], float] = time.time,
                 buckets: Buckets = AGENCIES):
        self.db = db
        self.default = default_per_min
        self.clock = clock
        self.buckets = buckets
        self._sql: TextClause | None = None  # built at the first take (the spec generator passes no database)
        self._side_lock = threading.Lock()  # this process's takes queue here, not in SQLite's busy loop
        self._side_ready = False

    def take(self, agency: AgencyInfo, conn: Connection | None = None) -> float:
        """Take one of an agency's tokens (its own limit or the default); see :meth:`take_key`."""
        return self.take_key(agency.id, agency.rate_per_min or self.default, conn)

    def take_key(self, key: int | str, per_min: int | None = None, conn: Connection | None = None) -> float:
        """Take one token from ``key``'s bucket: 0 if allowed, else the seconds until one is available.

        ``conn``: the caller's hot-read connection (the agency API's key check and
        status read). On PostgreSQL it is autocommit (``Database.hot_read_engine``): the
        upsert runs and commits there, saving a session, a pool checkout and BEGIN/COMMIT
        round trips per call. On SQLite the take is a short write transaction in the
        buckets' own file (``Database.rate_engine``, see the module docstring).
        """
        per_min = per_min or self.default
        rate = per_min / 60.0
        burst = float(max(1, per_min))
        if self._sql is None:
            self._sql = self.buckets.take_sql(self.db.dialect if self.db.dialect == "sqlite" else "postgresql")
        params = {"key": key, "burst": burst, "now": self.clock(), "rate": rate}
        if self.db.rate_engine is not None:  # SQLite: the buckets' own file
            with self._side_lock, self.db.rate_engine.begin() as side:
                if not self._side_ready:
                    side.exec_driver_sql(self.buckets.side_table())
                    self._side_ready = True
                tokens, allowed = side.execute(self._sql, params).one()
        elif conn is not None and self.db.dialect == "postgresql" and conn.engine is self.db.hot_read_engine:
            tokens, allowed = conn.execute(self._sql, params).one()
        else:  # a PostgreSQL call without the hot-read connection
            with self.db.write() as s:
                tokens, allowed = s.execute(self._sql, params).one()
        if allowed:
            return 0.0
        return max(0.0, (1.0 - float(tokens)) / rate)
