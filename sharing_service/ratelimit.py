"""Per-agency rate limits kept in the database, so they hold across every instance.

Each agency has one ``agency_rate`` row: a token bucket (``tokens`` at
``updated_at``) that refills at ``rate_per_min`` and holds at most one
minute's worth. Taking a token is ONE statement, an upsert that refills,
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

from sqlalchemy import TextClause, text
from sqlalchemy.engine import Connection

from sharing_service.context import AgencyInfo
from sharing_service.db import Database

log = logging.getLogger(__name__)

_TAKE = """
INSERT INTO agency_rate (agency_id, tokens, updated_at, allowed)
VALUES (:agency, :burst - 1, :now, true)
ON CONFLICT (agency_id) DO UPDATE SET
  tokens = CASE WHEN {avail} >= 1 THEN {avail} - 1 ELSE {avail} END,
  allowed = ({avail} >= 1),
  updated_at = {latest}
RETURNING tokens, allowed
"""
# SQLite's separate bucket file (no foreign key: agencies live in the main file; a deleted
# agency's row is never read again, a reused id starts from a bucket capped at its own burst)
_SIDE_TABLE = ("CREATE TABLE IF NOT EXISTS agency_rate (agency_id INTEGER NOT NULL PRIMARY KEY, "
               "tokens FLOAT NOT NULL, updated_at FLOAT NOT NULL, allowed BOOLEAN NOT NULL)")
# the bucket after refilling: min(burst, tokens + elapsed * rate), elapsed never negative
_AVAIL = {"postgresql": "LEAST(:burst, agency_rate.tokens + GREATEST(0, :now - agency_rate.updated_at) * :rate)",
          "sqlite": "MIN(:burst, agency_rate.tokens + MAX(0, :now - agency_rate.updated_at) * :rate)"}
_LATEST = {"postgresql": "GREATEST(agency_rate.updated_at, :now)", "sqlite": "MAX(agency_rate.updated_at, :now)"}


class RateLimiter:
    """Token buckets in the database (one row per agency); see the module docstring."""

    def __init__(self, db: Database, default_per_min: int, clock: Callable[[], float] = time.time):
        self.db = db
        self.default = default_per_min
        self.clock = clock
        self._sql: TextClause | None = None  # built at the first take (the spec generator passes no database)
        self._side_lock = threading.Lock()  # this process's takes queue here, not in SQLite's busy loop
        self._side_ready = False

    def take(self, agency: AgencyInfo, conn: Connection | None = None) -> float:
        """Take one token: 0 if allowed, else the seconds until one is available.

        ``conn``: the caller's hot-read connection (the agency API's key check and
        status read). On PostgreSQL it is autocommit (``Database.hot_read_engine``): the
        upsert runs and commits there, saving a session, a pool checkout and BEGIN/COMMIT
        round trips per call. On SQLite the take is a short write transaction in the
        buckets' own file (``Database.rate_engine``, see the module docstring).
        """
        per_min = agency.rate_per_min or self.default
        rate = per_min / 60.0
        burst = float(max(1, per_min))
        if self._sql is None:
            dialect = self.db.dialect if self.db.dialect in _AVAIL else "postgresql"
            self._sql = text(_TAKE.format(avail=_AVAIL[dialect], latest=_LATEST[dialect]))
        params = {"agency": agency.id, "burst": burst, "now": self.clock(), "rate": rate}
        if self.db.rate_engine is not None:  # SQLite: the buckets' own file
            with self._side_lock, self.db.rate_engine.begin() as side:
                if not self._side_ready:
                    side.exec_driver_sql(_SIDE_TABLE)
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
