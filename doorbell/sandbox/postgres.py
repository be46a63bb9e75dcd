"""A throw-away PostgreSQL cluster on a free loopback port, for tests and benchmarks.

It runs Debian's server binaries (package ``postgresql``; scripts/bootstrap.sh
--test installs it) with ``initdb`` into a temporary directory, trust
authentication for the user ``doorbell`` on 127.0.0.1 only, and no fsync (the
data is thrown away). As root it runs as the ``postgres`` user, since the
server refuses to run as root. ``stop()`` (or leaving the ``with`` block) shuts
it down and removes the directory.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from doorbell.core.errors import DoorbellError
from doorbell.sandbox.embedded import free_port

log = logging.getLogger(__name__)


class PostgresUnavailable(DoorbellError):
    """The server binaries or the psycopg driver are missing, or the server did not start."""


def server_bin() -> Path | None:
    """The directory of ``postgres``/``initdb`` (PATH, /usr/local/bin or Debian's versioned directory)."""
    found = shutil.which("postgres") or ("/usr/local/bin/postgres" if Path("/usr/local/bin/postgres").exists()
                                         else None)
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    return versions[-1].parent if versions else None


class PostgresServer:
    """One cluster; ``start()`` returns a SQLAlchemy URL (``postgresql+psycopg://doorbell@127.0.0.1:<port>/postgres``)."""

    def __init__(self, *settings: str) -> None:
        """``settings``: extra ``name=value`` server settings (``-c``), e.g. ``max_connections=200``."""
        self.settings = list(settings)
        self.bin = server_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="doorbell-pg-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://doorbell@127.0.0.1:{self.port}/postgres"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @staticmethod
    def _as_pg() -> dict[str, object]:
        """Run as 'postgres' when we are root: as the server's own process, never under a wrapper
        (runuser would not pass our SIGINT on, and a killed wrapper would orphan the server)."""
        return {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}

    def start(self, timeout: float = 30.0) -> str:
        if self.bin is None:
            raise PostgresUnavailable("PostgreSQL server binaries not installed (apt-get install postgresql)")
        try:
            import psycopg
        except ImportError as exc:
            raise PostgresUnavailable("the psycopg driver is not installed (pip install 'psycopg[binary]')") from exc
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        data = self.dir / "data"
        subprocess.run([str(self.bin / "initdb"), "-D", str(data), "-U", "doorbell", "--auth=trust", "-E", "UTF8",
                        "--no-sync"], check=True, capture_output=True, timeout=120, cwd=self.dir,
                       **self._as_pg())  # type: ignore[call-overload]
        extra = [arg for s in self.settings for arg in ("-c", s)]
        with open(self.dir / "pg.log", "wb") as logf:
            self.proc = subprocess.Popen(
                [str(self.bin / "postgres"), "-D", str(data), "-p", str(self.port), "-h", "127.0.0.1",
                 "-k", str(self.dir), "-c", "fsync=off", "-c", "full_page_writes=off", *extra],
                stdout=logf, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.dir,
                **self._as_pg())  # type: ignore[call-overload]
        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(f"postgresql://doorbell@127.0.0.1:{self.port}/postgres", connect_timeout=1).close()
                log.info("PostgreSQL on 127.0.0.1:%d (pid %d)", self.port, self.proc.pid)
                return self.url
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    tail = (self.dir / "pg.log").read_text(errors="replace")[-2000:]
                    self.stop()
                    raise PostgresUnavailable(f"PostgreSQL did not start: {tail}") from exc
                time.sleep(0.1)

    def create_database(self, name: str) -> str:
        """A fresh database on this server; returns its URL."""
        import psycopg

        if not name.isidentifier():
            raise ValueError(f"database name must be an identifier: {name!r}")
        with psycopg.connect(f"postgresql://doorbell@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url.rsplit("/", 1)[0] + "/" + name

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "PostgresServer":
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
