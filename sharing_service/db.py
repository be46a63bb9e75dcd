"""Database access: engines, sessions and Alembic migrations.

SQLite (the default) runs in WAL mode with foreign keys on and a busy timeout.
Write transactions start with ``BEGIN IMMEDIATE`` so two writers (the HTTP API,
the MQTT bridge, an admin CLI in another process) queue for the write lock
instead of failing half-way; reads use a separate engine with plain deferred
transactions so status reads run concurrently with writes. PostgreSQL is used
by URL (``postgresql+psycopg://...``); there the audit head row is locked with
``SELECT ... FOR UPDATE`` to serialise chain appends.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

if TYPE_CHECKING:
    import alembic.config

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def _sqlite_engine(url: str, immediate: bool, shared_memory: bool = False) -> Engine:
    # shared_memory: one connection for an in-memory database (the default pool gives each thread its own)
    memory = url in ("sqlite://", "sqlite:///:memory:")
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                           **({"poolclass": StaticPool} if memory and shared_memory else {}))

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (pysqlite quirk)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        if url not in ("sqlite://", "sqlite:///:memory:"):
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Database:
    """Engines and session factories for one database URL."""

    def __init__(self, url: str):
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            db = parsed.database
            if db and db != ":memory:":
                Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
            self.write_engine = _sqlite_engine(url, immediate=True)
            self.read_engine = _sqlite_engine(url, immediate=False)
            self.hot_read_engine = self.read_engine
            # The agency rate limit (a write per agency call) in a file of its own: SQLite has one
            # writer per file, and in the main file that write would queue behind the matcher's
            # and the bridge's transactions, so an agency's latency could reflect matching work
            # (sharing rule 2, docs/sharing.md). Only the buckets live there (sharing_service/ratelimit.py).
            self.rate_url = rate_limit_url(url)
            self.rate_engine: Engine | None = _sqlite_engine(self.rate_url, immediate=True, shared_memory=True)
        else:
            self.write_engine = create_engine(url, pool_pre_ping=True, pool_size=10)
            self.read_engine = self.write_engine
            # The agency API's per-call reads (key check, status): autocommit, so no BEGIN/ROLLBACK
            # round trips (under READ COMMITTED every statement has its own snapshot anyway), and no
            # ping at checkout: those reads retry once on a dropped connection (agencies.py) instead.
            self.hot_read_engine = create_engine(url, pool_size=10, isolation_level="AUTOCOMMIT")
            self.rate_engine = None  # row locks: the buckets stay in the shared database (ratelimit.py)
        self._write_sessions = sessionmaker(self.write_engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(self.read_engine, expire_on_commit=False)
        # SQLite allows one writer; queue this process's writers here rather than in SQLite's busy loop.
        self._write_lock = threading.Lock() if self.dialect == "sqlite" else None

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A read-write transaction, committed on success and rolled back on error."""
        if self._write_lock is not None:
            self._write_lock.acquire()
        try:
            with self._write_sessions() as session, session.begin():
                yield session
        finally:
            if self._write_lock is not None:
                self._write_lock.release()

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read_sessions() as session, session.begin():
            yield session

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` with the migrations shipped in the package."""
        from alembic import command

        cfg = alembic_config(self.url)
        with self.write_engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            conn.commit()
        log.info("database schema at %s (%s)", self.current_revision(), self.dialect)

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.read_engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def dispose(self) -> None:
        self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            self.read_engine.dispose()
        if self.hot_read_engine not in (self.read_engine, self.write_engine):
            self.hot_read_engine.dispose()
        if self.rate_engine is not None:
            self.rate_engine.dispose()


def rate_limit_url(url: str) -> str:
    """The SQLite file of the agency rate limit next to the database ``url`` (``sharing.ratelimit.db``
    for ``sharing.db``); in memory for an in-memory database."""
    db = make_url(url).database
    if not db or db == ":memory:":
        return "sqlite://"
    path = Path(db).expanduser()
    return f"sqlite:///{path.with_name(path.stem + '.ratelimit.db')}"


def alembic_config(url: str) -> "alembic.config.Config":
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg
