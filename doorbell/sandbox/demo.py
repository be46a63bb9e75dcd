"""``doorbell-demo``: the whole product on one machine, on loopback, in about half a minute.

It starts real parts with generated, unique credentials in a work directory:
Mosquitto (TLS listener with a private CA, one password and ACL block per
identity) and SeaweedFS (S3, one identity per role) through
:mod:`doorbell.sandbox.embedded`; the sharing service (``doorbell sharing serve``, on
SQLite), the firmware (``doorbell firmware run`` on the synthetic porch
camera, a video file or a USB webcam) and the cloud agent (``doorbell agent
run``) as child processes. Then it walks the story step by step, using the
owner's app code (:class:`doorbell.clients.owner.app.OwnerApp`) and the
agency client (:mod:`doorbell.clients.agency.cli`):

ring -> chime -> ring event at the owner -> clips sealed on the device and in
the bucket as ciphertext -> a police request routed by area -> the owner's app
matches its own clips -> the owner's signed approval of a subset releases
those clips' keys to the agency -> the agency decrypts and verifies (device
signature) -> the unapproved clip stays unreadable -> revoke -> a second
request, denied -> the audit chain verified by the owner. Encryption is on
(issue 12): each step says who can read what.

Every child runs in its own process group and session; Ctrl-C or SIGTERM
stops them all (``finally``), each child also dies with the demo if the demo
is killed (PR_SET_PDEATHSIG via ``setpriv``), and the next run kills any
survivor recorded in ``run/pids.json`` (checked by start time) before it
wipes the work directory and starts clean.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from doorbell.core.errors import DoorbellError
from doorbell.core.logsetup import setup_logging

DEVICE_ID = "front-door"
OWNER_ID = "demo-owner"
AGENCY = "Springfield Police Department"
HOME = (52.5200, 13.4050)
BUCKET = "doorbell-clips"
STATE_DIRS = ("mosquitto", "seaweedfs", "tls", "config", "spool", "agent", "logs", "run", "downloads",
              "owner", "sharing")


def default_workdir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or "~/.local/state"
    return Path(base).expanduser() / "doorbell-demo"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="doorbell-demo",
                        description="Starts Mosquitto, SeaweedFS, the sharing service, the firmware and the "
                                    "agent on loopback, then walks a ring, a police request, the owner's "
                                    "signed decision, the agency's download, a revoke and the audit.")
    p.add_argument("--workdir", type=Path, default=None,
                   help=f"where everything lives (default {default_workdir()}); wiped at start")
    p.add_argument("--non-interactive", action="store_true",
                   help="run the story unattended; exit 0 only if every step worked")
    cam = p.add_mutually_exclusive_group()
    cam.add_argument("--video", type=Path, metavar="FILE", help="use a video file as the camera (looped)")
    cam.add_argument("--camera", type=int, metavar="N", help="use USB webcam N (OpenCV) as the camera")
    p.add_argument("--summary-json", type=Path, metavar="PATH", help="write every step's outcome here as JSON")
    p.add_argument("--step-timeout", type=float, default=30.0, metavar="S",
                   help="fail a step that takes longer than this (default 30; start-up steps get at least 90)")
    p.add_argument("--keep-running", action="store_true",
                   help="after the story, keep everything running to try `doorbell owner`/`doorbell agency` "
                        "yourself; Ctrl-C stops it")
    return p


def main(argv: list[str] | None = None) -> int:
    """``doorbell-demo``: its own entry point, because the sandbox sits above every other layer."""
    args = build_parser().parse_args(argv)
    setup_logging()
    try:
        return _cmd_demo(args)
    except KeyboardInterrupt:
        return 130


# --------------------------------------------------------------------------- output

class StepFailed(DoorbellError):
    """A step did not reach its outcome; the message says what was expected."""


@dataclass
class StepResult:
    n: int
    name: str
    ok: bool = False
    seconds: float = 0.0
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class Console:
    """Numbered steps with ✓/✗ and timings; colour only on a terminal."""

    def __init__(self, out: TextIO):
        self.out = out
        self.color = out.isatty() and os.environ.get("NO_COLOR") is None

    def _c(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def title(self, text: str) -> None:
        self.out.write(self._c("1", text) + "\n")
        self.out.flush()

    def line(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def info(self, text: str) -> None:
        for ln in text.splitlines():
            self.out.write("      " + ln + "\n")
        self.out.flush()

    def dim(self, text: str) -> None:
        self.info(self._c("2", text))

    def head(self, n: int, name: str) -> None:
        self.out.write(self._c("1", f"{n:>3}. {name}") + "\n")
        self.out.flush()

    def done(self, r: StepResult) -> None:
        mark = self._c("32", "✓") if r.ok else self._c("31", "✗")
        text = r.detail if r.ok else (r.error or "failed")
        self.out.write(f"      {mark} {r.seconds:5.2f} s  {text}\n")
        self.out.flush()


# --------------------------------------------------------------------------- processes

def _proc_start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


class Children:
    """Child processes in their own process groups, recorded in ``run/pids.json``."""

    def __init__(self, run_dir: Path, log_dir: Path):
        self.run_dir = run_dir
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.extra: dict[str, int] = {}  # embedded servers (they stop themselves)

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "pids.json"

    def record(self) -> None:
        entries = [{"name": n, "pid": p.pid, "start": _proc_start_time(p.pid)} for n, p in self.procs.items()]
        entries += [{"name": n, "pid": pid, "start": _proc_start_time(pid)} for n, pid in self.extra.items()]
        tmp = self.pidfile.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries, indent=1))
        os.replace(tmp, self.pidfile)

    def all_pids(self) -> list[int]:
        return [p.pid for p in self.procs.values()] + list(self.extra.values())

    def spawn(self, name: str, argv: list[str], stdin: bool = False, env: dict[str, str] | None = None
              ) -> subprocess.Popen[bytes]:
        from doorbell.sandbox.embedded import pdeathsig_prefix

        log = open(self.log_dir / f"{name}.log", "ab")
        try:
            proc = subprocess.Popen(pdeathsig_prefix() + argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                    env=env)
        finally:
            log.close()
        self.procs[name] = proc
        self.record()
        return proc

    def stop(self, name: str, timeout: float = 15.0) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:  # whatever is left of the group (helpers a child started)
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        if proc.stdin:
            try:
                proc.stdin.close()
            except OSError:
                pass
        self.record()

    def stop_all(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)

    @staticmethod
    def reap_previous(pidfile: Path) -> list[str]:
        """Kill what a crashed earlier run left behind (only if pid *and* start time match)."""
        killed: list[str] = []
        try:
            entries = json.loads(pidfile.read_text())
        except (OSError, ValueError):
            return killed
        for e in entries:
            pid, start = int(e.get("pid", 0)), e.get("start")
            if pid > 1 and start and _proc_start_time(pid) == start:
                for sig in (signal.SIGTERM, signal.SIGKILL):
                    try:
                        os.killpg(pid, sig)
                    except (ProcessLookupError, PermissionError):
                        try:
                            os.kill(pid, sig)
                        except (ProcessLookupError, PermissionError):
                            pass
                    deadline = time.monotonic() + 5
                    while _proc_start_time(pid) == start and time.monotonic() < deadline:
                        time.sleep(0.05)
                    if _proc_start_time(pid) != start:
                        break
                killed.append(f"{e.get('name')} (pid {pid})")
        return killed


class LogWatch:
    """Find lines in a child's growing log file."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0

    def mark(self) -> None:
        try:
            self.offset = self.path.stat().st_size
        except OSError:
            self.offset = 0

    def find(self, pattern: str, timeout: float, proc: subprocess.Popen[bytes] | None = None,
             what: str = "") -> re.Match[str]:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with open(self.path, "rb") as fh:
                    fh.seek(self.offset)
                    text = fh.read().decode(errors="replace")
            except OSError:
                text = ""
            m = rx.search(text)
            if m:
                return m
            if proc is not None and proc.poll() is not None:
                raise StepFailed(f"{what or self.path.stem} exited with {proc.returncode}; see {self.path}:\n"
                                 + "\n".join(text.splitlines()[-8:]))
            if time.monotonic() > deadline:
                raise StepFailed(f"timed out after {timeout:g} s waiting for {what or pattern!r} in {self.path}")
            time.sleep(0.05)


def wait_until(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            value = pred()
            if value:
                return value
        except Exception as exc:  # the thing is not up yet: keep trying until the deadline
            last = exc
        if time.monotonic() > deadline:
            raise StepFailed(f"timed out after {timeout:g} s waiting for {what}"
                             + (f" (last error: {last})" if last else ""))
        time.sleep(interval)


# --------------------------------------------------------------------------- the demo

class Interrupted(DoorbellError):
    pass


class Demo:
    RING_INTERVAL_S = 1.0  # the firmware ignores presses closer together than this (a held/bouncing button)

    def __init__(self, args: argparse.Namespace, out: TextIO = sys.stdout, inp: TextIO = sys.stdin):
        self.args = args
        self.ui = Console(out)
        self.inp = inp
        self.interactive = not args.non_interactive
        self.timeout = float(args.step_timeout)
        # Start-up imports FastAPI, OpenCV, PyAV, boto3 in three processes at once: on a busy
        # small machine that alone can take tens of seconds, so start-up steps get more room.
        self.start_timeout = max(90.0, self.timeout)
        self.workdir = (args.workdir or default_workdir()).expanduser().resolve()
        self.steps: list[StepResult] = []
        self.facts: dict[str, Any] = {}
        self.broker: Any = None
        self.s3: Any = None
        self.children: Children | None = None
        self.owner: Any = None
        self.index: Any = None  # the owner's own clip index (doorbell.clients.owner.sealed_index)
        self.web: Any = None  # the owner's browser app server (doorbell.clients.owner.web)
        self.web_login = ""
        self.last_press: float | None = None
        self.t0 = time.monotonic()
        self.exe = [sys.executable, "-m", "doorbell.cli"]

    @property
    def kids(self) -> Children:
        """The process supervisor, which exists once the demo's work directory is set up."""
        if self.children is None:
            raise StepFailed("the process supervisor is not running yet")
        return self.children

    # ---------------------------------------------------------------- step machinery
    @contextmanager
    def step(self, name: str) -> Iterator[StepResult]:
        r = StepResult(len(self.steps) + 1, name)
        self.steps.append(r)
        self.ui.head(r.n, name)
        t = time.monotonic()
        try:
            yield r
            r.ok = True
        except StepFailed as exc:
            r.error = str(exc)
            raise
        except (KeyboardInterrupt, Interrupted):
            r.error = "interrupted"
            raise
        except Exception as exc:
            r.error = f"{type(exc).__name__}: {exc}"
            raise StepFailed(r.error) from exc
        finally:
            r.seconds = time.monotonic() - t
            self.ui.done(r)

    def ask(self, prompt: str) -> str:
        self.ui.out.write(f"      {prompt}")
        self.ui.out.flush()
        line = self._readline()
        if not line:
            raise Interrupted("end of input")
        return line.strip()

    def _stdin_fd(self) -> int | None:
        try:
            return self.inp.fileno()
        except (AttributeError, OSError, ValueError):
            return None

    def _readline(self) -> str:
        """One line of the terminal's answer. From a real file descriptor it is read byte by byte, unbuffered,
        so that select() on it (the owner's prompt, which also waits for the browser) sees every line still
        unread; '' at end of input."""
        fd = self._stdin_fd()
        if fd is None:
            return self.inp.readline()
        data = bytearray()
        while not data.endswith(b"\n"):
            byte = os.read(fd, 1)
            if not byte:
                break
            data += byte
        return data.decode("utf-8", "replace")

    # ---------------------------------------------------------------- run
    def run(self) -> int:
        ui = self.ui
        ui.title("Consent-first doorbell: the whole product on this machine (loopback only)")
        ui.line(f"      work dir {self.workdir}; logs in {self.workdir / 'logs'}")
        ui.line("      " + ("interactive: you ring the bell and answer the owner's prompt" if self.interactive
                           else "non-interactive: the same story, scripted"))
        ui.line()
        lock = self._lock()
        outcome = "failed"
        try:
            self._prepare()
            self._start_servers()
            self._start_services()
            self._story()
            outcome = "ok"
            if self.args.keep_running:
                self._keep_running()
        except StepFailed as exc:
            outcome = "failed"
            ui.line()
            ui.line(f"✗ the demo stopped: {str(exc).splitlines()[0]}")
        except (KeyboardInterrupt, Interrupted):
            ui.line()
            if outcome != "ok":  # with --keep-running, Ctrl-C after the story is the normal end
                outcome = "interrupted"
                ui.line("Interrupted: stopping everything the demo started…")
        finally:
            # A second Ctrl-C must not cut the clean-up short and leave servers running.
            old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                stopped = self._teardown()
                self._summary(outcome, stopped)
            finally:
                for sig, handler in old.items():
                    signal.signal(sig, handler)
                lock.close()
        if outcome == "interrupted":
            return 130
        return 0 if outcome == "ok" and all(s.ok for s in self.steps) else 1

    def _lock(self) -> TextIO:
        self.workdir.mkdir(parents=True, exist_ok=True)
        fh = open(self.workdir / ".lock", "w")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise SystemExit(f"doorbell-demo: another demo is running in {self.workdir} (use --workdir)") from None
        return fh

    def _prepare(self) -> None:
        with self.step("Prepare a clean work directory") as st:
            killed = Children.reap_previous(self.workdir / "run" / "pids.json")
            for name in STATE_DIRS:
                shutil.rmtree(self.workdir / name, ignore_errors=True)
            for name in STATE_DIRS:
                (self.workdir / name).mkdir(mode=0o700)
            self.children = Children(self.workdir / "run", self.workdir / "logs")
            st.detail = str(self.workdir) + (f" (stopped leftovers: {', '.join(killed)})" if killed else "")
            st.data["leftovers_killed"] = killed

    # ---------------------------------------------------------------- servers
    def _start_servers(self) -> None:
        from doorbell.ops import provision
        from doorbell.sandbox.embedded import DoorbellBroker, S3Identity, SeaweedS3, TlsFiles

        w = self.workdir
        with self.step("Start the MQTT broker (Mosquitto, TLS, a password + ACL per identity)") as st:
            tls_dir = w / "tls"
            ca_key, ca_cert = provision.make_ca("Doorbell demo CA", days=2)
            srv_key, srv_cert = provision.issue_cert(ca_key, ca_cert, "localhost", server=True,
                                                     dns=["localhost"], ips=["127.0.0.1"], days=2)
            for name, data in (("ca.crt", provision.cert_pem(ca_cert)), ("server.crt", provision.cert_pem(srv_cert)),
                               ("server.key", provision.key_pem(srv_key))):
                provision.write_file(tls_dir / name, data, 0o600)
            self.tls = TlsFiles(tls_dir / "ca.crt", tls_dir / "server.crt", tls_dir / "server.key")
            self.broker = DoorbellBroker(w / "mosquitto", {DEVICE_ID: OWNER_ID}, [OWNER_ID],
                                         admins=["demo-admin"], service_user="sharing-service", tls=self.tls,
                                         websockets=True)
            # the browser app's own login (a session belongs to its login: the CLI keeps OWNER_ID)
            self.web_login = self.broker.add_owner_login(OWNER_ID, "web")
            self.broker.start(timeout=self.start_timeout)
            self.kids.extra["mosquitto"] = self.broker.pid
            self.kids.record()
            st.detail = (f"mqtts://127.0.0.1:{self.broker.tls_port} (private CA), users: "
                         + ", ".join(sorted(self.broker.users)))
            st.data.update(tls_port=self.broker.tls_port, users=sorted(self.broker.users))

        with self.step("Start the S3 server (SeaweedFS) with one identity per role") as st:
            self.s3 = SeaweedS3(w / "seaweedfs", access_key="AK" + secrets.token_hex(9).upper(),
                                secret_key=secrets.token_urlsafe(30), buckets=[BUCKET])
            self.dev_s3 = ("AKDEV" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30))
            self.svc_s3 = ("AKSVC" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30))
            self.s3.identities["device"] = S3Identity("device", *self.dev_s3,
                                                      [f"Read:{BUCKET}", f"Write:{BUCKET}", f"List:{BUCKET}"])
            # reads the devices' objects and writes its opaque copies for agencies (_shared/); the demo's
            # SeaweedFS identities are bucket-wide, production scopes Write to {prefix}_shared/ (docs/sharing.md)
            self.s3.identities["sharing"] = S3Identity("sharing", *self.svc_s3, [f"Read:{BUCKET}", f"Write:{BUCKET}"])
            self.s3.start(timeout=self.start_timeout)
            self.kids.extra["seaweedfs"] = self.s3.pid
            self.kids.record()
            st.detail = f"{self.s3.endpoint_url}, bucket {BUCKET}; device may write, sharing service only read"
            st.data.update(endpoint=self.s3.endpoint_url)

    def _configs(self) -> None:
        import yaml

        w = self.workdir
        mqtt = {"host": "127.0.0.1", "port": self.broker.tls_port,
                "tls": {"enabled": True, "ca_file": str(self.tls.cafile)}}
        s3 = {"endpoint_url": self.s3.endpoint_url, "bucket": BUCKET, "region": "us-east-1", "addressing_style": "path"}
        cam: dict[str, Any] = {"backend": "synthetic", "source": "demo_loop", "width": 320, "height": 240, "fps": 10}
        if self.args.video:
            cam = {"backend": "file", "source": str(self.args.video.resolve()), "loop": True, "fps": 10}
        elif self.args.camera is not None:
            cam = {"backend": "opencv", "source": int(self.args.camera), "width": 640, "height": 480, "fps": 10}
        self.pre_roll = 2.0
        device = {
            "device": {"id": DEVICE_ID, "owner_id": OWNER_ID, "name": "Front door",
                       "latitude": HOME[0], "longitude": HOME[1]},
            "spool": {"dir": str(w / "spool")},
            "gpio": {"pin_factory": "mock", "long_press_s": None, "ring_interval_s": self.RING_INTERVAL_S},
            "camera": cam,
            "motion": {"record": False},
            "clips": {"pre_roll_s": self.pre_roll, "post_roll_s": 2.0, "max_length_s": 6.0},
            "mqtt": {**mqtt, "username": DEVICE_ID, "password": self.broker.users[DEVICE_ID], "client_id": DEVICE_ID},
            "s3": {**s3, "access_key_id": self.dev_s3[0], "secret_access_key": self.dev_s3[1]},
            "agent": {"state_dir": str(w / "agent"), "retry_base_s": 0.2, "retry_max_s": 2.0, "poll_s": 0.5},
        }
        self.http_port = _free_port()
        sharing = {
            "mqtt": {**mqtt, "username": "sharing-service", "password": self.broker.users["sharing-service"]},
            "s3": {**s3, "access_key_id": self.svc_s3[0], "secret_access_key": self.svc_s3[1]},
            "sharing": {"database_url": f"sqlite:///{w / 'sharing' / 'sharing.db'}",
                        "http": {"host": "127.0.0.1", "port": self.http_port}, "link_ttl_s": 300},
        }
        owner = {
            "owner": {"owner_id": OWNER_ID, "key_file": str(w / "owner" / "owner_ed25519.pem"),
                      "sharing_url": f"http://127.0.0.1:{self.http_port}"},
            "mqtt": {**mqtt, "username": OWNER_ID, "password": self.broker.users[OWNER_ID]},
        }
        # End-to-end encryption, as `doorbell provision device --recipients-file` sets it: the device seals
        # to the owner's age recipient and signs manifests with its own key; it holds nothing that opens a clip.
        device["encryption"] = {"enabled": True, "recipients": [str(self.owner_identity.recipient)],
                                "device_key_file": str(w / "config" / "device_ed25519.pem")}
        self.cfg_files = {}
        for name, data in (("device", device), ("sharing", sharing), ("owner", owner)):
            path = w / "config" / f"{name}.yaml"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                yaml.safe_dump(data, fh, sort_keys=False)
            self.cfg_files[name] = path
        self.sharing_url = f"http://127.0.0.1:{self.http_port}"

    def _start_services(self) -> None:
        from doorbell.clients.owner.keys import ensure_identity
        from doorbell.core import age
        from doorbell.core.config import load_config
        from doorbell.core.signing import generate_key, public_key_text, save_private_key
        from sharing_service.context import ServiceContext
        from sharing_service.core import SharingCore
        from sharing_service.db import Database

        w = self.workdir
        with self.step("Enrol the owner (Ed25519 + age keys), the doorbell (its signing key) and an agency "
                       "(its age key)") as st:
            key = generate_key()
            save_private_key(key, w / "owner" / "owner_ed25519.pem")
            self.owner_identity, _ = ensure_identity(w / "owner" / "owner_ed25519.pem")
            self._configs()
            device_key = generate_key()
            save_private_key(device_key, w / "config" / "device_ed25519.pem")
            self.agency_identity = age.generate_identity()
            self.agency_key_file = w / "config" / "agency-key.txt"
            age.save_identity(self.agency_identity, self.agency_key_file)
            pub = public_key_text(key)
            cfg = load_config(self.cfg_files["sharing"])
            db = Database(cfg.sharing.database_url)
            db.migrate()
            registry = SharingCore(ServiceContext(db, cfg.sharing)).registry
            registry.add_owner(OWNER_ID, pub)
            registry.add_device(DEVICE_ID, OWNER_ID, *HOME, public_key=public_key_text(device_key))
            _, self.api_key = registry.add_agency(AGENCY, age_recipient=str(self.agency_identity.recipient))
            db.dispose()
            agency_cfg = w / "config" / "agency.yaml"
            fd = os.open(agency_cfg, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(f"sharing_url: {self.sharing_url}\napi_key: {self.api_key}\n")
            self.cfg_files["agency"] = agency_cfg
            st.detail = f"owner {OWNER_ID} key {pub[:20]}…, device {DEVICE_ID} at {HOME}, agency '{AGENCY}'"
            self.ui.info(f"clips are sealed to the owner's age key {str(self.owner_identity.recipient)[:20]}…: "
                         "only the owner can read them; the device, the service and the bucket cannot")
            self.ui.info(f"the agency's age key {str(self.agency_identity.recipient)[:20]}… is registered: "
                         "an owner's approval can release keys to it, nothing else can")
            st.data.update(public_key=pub, configs={k: str(v) for k, v in self.cfg_files.items()})
            self.ui.dim(f"configs: {w / 'config'} (owner: doorbell owner --config {self.cfg_files['owner']} …)")

        with self.step("Start the sharing service (agency API + owner bridge, SQLite)") as st:
            proc = self.kids.spawn("sharing", [*self.exe, "sharing", "serve", "--config",
                                                   str(self.cfg_files["sharing"]), "--sweep-interval", "5"])
            # The firmware and the agent need nothing from the service: start them now, in
            # parallel (each takes seconds to import its libraries), and wait for them below.
            self.fw = self.kids.spawn("firmware", [*self.exe, "firmware", "run", "--config",
                                                       str(self.cfg_files["device"]), "--ring-on-stdin"], stdin=True)
            self.agent = self.kids.spawn("agent", [*self.exe, "agent", "run", "--config",
                                                       str(self.cfg_files["device"])])
            watch = LogWatch(self.workdir / "logs" / "sharing.log")
            watch.find(r"MQTT connected", self.start_timeout, proc, "the sharing service's MQTT connection")
            import httpx

            wait_until(lambda: httpx.get(self.sharing_url + "/healthz", timeout=1).status_code == 200,
                       self.start_timeout, "the agency API")
            st.detail = f"{self.sharing_url} (pid {proc.pid})"
            st.data.update(url=self.sharing_url, pid=proc.pid)

        with self.step("Connect the owner's app (MQTT over TLS as the owner)") as st:
            from doorbell.clients.owner.app import OwnerApp

            # the owner's pinned audit heads live with this run's database, not in the user's home
            self.owner = OwnerApp(load_config(self.cfg_files["owner"]), connect_timeout=self.start_timeout,
                                  state_dir=self.workdir / "owner" / "state").connect()
            self.owner.watch([DEVICE_ID])
            wait_until(lambda: self.owner.clips(limit=1, timeout=2) is not None, self.start_timeout,
                       "an RPC answer from the service")
            self.index = self.owner.clip_index()
            from doorbell.clients.owner.web import WebAppMissing, WebServer

            try:
                self.web = WebServer({"broker_url": self.broker.ws_url, "owner_id": OWNER_ID,
                                      "login": self.web_login, "sharing_url": self.sharing_url}).start()
                st.data.update(app_url=self.web.url, ws_url=self.broker.ws_url, app_login=self.web_login)
                self.facts["app_url"] = self.web.url
            except WebAppMissing as exc:  # a source checkout without npm: the CLI still works
                st.data.update(app_url=None, app_error=str(exc))
            st.detail = ("subscribed to the doorbell's events; a persistent session queues its clip announcements "
                         f"for the owner's own clip index ({self.index.path})"
                         + (f"; in a browser: {self.web.url}" if self.web else ""))

        with self.step("Start the doorbell firmware (camera, button, chime; mock GPIO)") as st:
            cam = self.args.video or (f"USB camera {self.args.camera}" if self.args.camera is not None
                                      else "synthetic porch scene")
            self.fw_log = LogWatch(self.workdir / "logs" / "firmware.log")
            self.fw_log.find(r"firmware running", self.start_timeout, self.fw, "the firmware to start")
            self.fw_ready = time.monotonic()
            st.detail = f"{cam}, pre-roll {self.pre_roll:g} s (pid {self.fw.pid})"

        with self.step("Start the cloud agent (spool -> S3 + MQTT)") as st:
            agent = self.agent
            self._wait_event(lambda e: e["kind"] == "status" and e["status"] == "online", "the doorbell online",
                             agent, timeout=self.start_timeout)
            st.detail = f"the owner's app sees {DEVICE_ID} online (pid {agent.pid})"

    # ---------------------------------------------------------------- helpers
    def _wait_event(self, pred: Callable[[dict[str, Any]], bool], what: str, proc: Any = None,
                    timeout: float | None = None) -> dict[str, Any]:
        from doorbell.clients.owner.render import describe_event

        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.owner.next_message(min(0.5, max(0.0, deadline - time.monotonic())))
            if proc is not None and proc.poll() is not None:
                raise StepFailed(f"the process for {what} exited with {proc.returncode}; see {self.workdir / 'logs'}")
            if msg is None:
                continue
            e = describe_event(msg.topic, msg.payload)
            if e is not None and pred(e):
                return e
        raise StepFailed(f"timed out after {timeout:g} s waiting for {what}")

    def _ring(self) -> float:
        if self.fw.poll() is not None:
            raise StepFailed(f"the firmware exited with {self.fw.returncode}")
        wait = self.pre_roll + 1.0 - (time.monotonic() - self.fw_ready)
        if self.last_press is not None:  # a press within the ring interval would be (rightly) ignored
            wait = max(wait, self.RING_INTERVAL_S + 0.5 - (time.monotonic() - self.last_press))
        if wait > 0:
            time.sleep(wait)  # let the pre-roll buffer fill so the clip shows the seconds before the press
        self.fw_log.mark()
        t = time.time()
        assert self.fw.stdin is not None
        self.fw.stdin.write(b"\n")
        self.fw.stdin.flush()
        self.last_press = time.monotonic()
        return t

    def _bucket_object(self, key: str) -> dict[str, Any] | None:
        import hashlib

        c = self.s3.client()
        try:
            body = c.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        except c.exceptions.NoSuchKey:
            return None
        return {"key": key, "size": len(body), "sha256": hashlib.sha256(body).hexdigest(),
                "age": body.startswith(b"age-encryption.org/v1\n")}

    def _one_ring(self, label: str) -> Any:
        """Ring, then see the chime (firmware), the ring at the owner, and the clip in the bucket."""
        from doorbell.clients.owner.render import fmt_time

        with self.step(f"{label}: ring the doorbell") as st:
            if self.interactive:
                self.ask("Press Enter to ring the doorbell… ")
            t = self._ring()
            st.detail = f"button pressed at {fmt_time(t)}"
            st.data["pressed_at"] = t
        with self.step("The chime rings and recording starts (firmware)") as st:
            self.fw_log.find(r"chime on \(ring \d+", self.timeout, self.fw, "the chime")
            m = self.fw_log.find(r"clip (\S+) started \(ring at [0-9.]+, pre-roll ([0-9.]+) s\)", self.timeout,
                                 self.fw, "the ring to be handled")
            if self.interactive:
                self.ui.out.write("\a")
            clip_id, pre = m.group(1), float(m.group(2))
            st.detail = f"chime pulsed (GPIO chime pin on); clip {clip_id} opened with {pre:.1f} s before the press"
            st.data.update(clip_id=clip_id, pre_roll_s=pre)
        with self.step("The owner's app gets the ring") as st:
            e = self._wait_event(lambda e: e["kind"] == "event" and e["type"] == "ring" and e.get("clip_id") == clip_id,
                                 "the ring event")
            latency = time.time() - t
            from doorbell.clients.owner.render import format_event

            self.ui.info(format_event(e))
            st.detail = f"{latency * 1000:.0f} ms from the press to the owner's app"
            st.data.update(event=e, latency_s=latency)
        with self.step("The clip is sealed, lands in the bucket as ciphertext, and in the owner's own index") as st:
            import dataclasses

            self.fw_log.find(rf"clip {re.escape(clip_id)} ready for upload", self.timeout, self.fw,
                             "the clip to finish")

            def indexed() -> Any:
                self.owner.sync_clips(self.index, idle_s=0.3, max_s=2.0)
                return self.index.get(clip_id)

            clip = wait_until(indexed, self.timeout, f"clip {clip_id} to be uploaded and announced", interval=0.3)
            video = clip.objects["video"]
            obj = self._bucket_object(str(video["key"]))
            if obj is None:
                raise StepFailed(f"clip {clip_id} is announced but not in the bucket")
            if obj["sha256"] != video["sha256"] or not obj["age"]:
                raise StepFailed(f"bucket object {obj['key']} differs from the announced ciphertext")
            length = clip.ended_at - clip.started_at
            st.detail = (f"s3://{BUCKET}/{obj['key']} ({obj['size']} bytes of age ciphertext, {length:.1f} s, "
                         f"sha256 {obj['sha256'][:12]}… matches the announcement)")
            self.ui.info("who can read it: the owner (age key). Not the device (it keeps no key that opens it), "
                         "not the bucket (an opaque name, ciphertext), not the sharing service (it was never "
                         "told this clip exists: its time and trigger are encrypted in the announcement)")
            st.data.update(clip=dataclasses.asdict(clip), object=obj, ring_to_bucket_s=time.time() - t)
        return clip

    # ---------------------------------------------------------------- the story
    def _story(self) -> None:
        from doorbell.clients.agency.cli import download_all
        from doorbell.clients.agency.client import AgencyClient, ApiError
        from doorbell.clients.owner.render import confirm, describe_approval, fmt_time

        ui = self.ui
        ui.line()
        ui.title("The doorbell")
        clip_a = self._one_ring("A visitor")
        clip_b = self._one_ring("Later, another visitor")
        self.facts["clips"] = [clip_a.clip_id, clip_b.clip_id]

        ui.line()
        ui.title("A police request, and the owner's consent")
        api = AgencyClient(self.sharing_url, self.api_key)
        try:
            with self.step("The agency files a request (case, legal basis, window, area)") as st:
                start = clip_a.started_at - 600
                end = time.time()
                iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start))
                ui.dim(f"(as: doorbell agency request create --case 2026-DEMO-001 --basis 'Search warrant 4711' "
                       f"--attest-not-protest --start {iso} --end now --lat {HOME[0]} --lon {HOME[1] + 0.001:.3f} "
                       "--radius 200 --reason '…')")
                created = api.create_request(case_number="2026-DEMO-001", legal_basis="Search warrant 4711 (AG Mitte)",
                                             attest_not_protest=True, window_start=start, window_end=end,
                                             lat=HOME[0], lon=HOME[1] + 0.001, radius_m=200,
                                             reason="Package theft reported on this street this afternoon")
                rid = created["id"]
                st.detail = f"request {rid} filed; the agency is not told which homes were asked"
                st.data.update(request_id=rid)
                self.facts["request_id"] = rid

            with self.step("The owner's app gets the request (routed by area) and finds its own matching clips") as st:
                # The service knows no clip of this home: it routes the request to owners whose devices lie
                # in the area, with the agency's registered key; the owner's app matches the window locally.
                req = wait_until(lambda: next((r for r in self.owner.pending_requests(self.timeout)
                                               if r["request_id"] == rid and r.get("agency_recipient")), None),
                                 self.timeout, "the request at the owner", interval=0.3)
                self.owner.sync_clips(self.index, idle_s=0.3)
                req["clips"] = self.owner.sealed_candidates(req, self.index)
                offered = sorted(c["clip_id"] for c in req["clips"])
                if offered != sorted(self.facts["clips"]):
                    raise StepFailed(f"the request offers {offered}, expected {sorted(self.facts['clips'])}")
                ui.info(f"{req['agency']}, case {req['case_number']}, basis: {req['legal_basis']}")
                ui.info(f"window {fmt_time(req['window_start'])} .. {fmt_time(req['window_end'])}")
                for c in req["clips"]:
                    ui.info(f"  {c['clip_id']}  {fmt_time(c['started_at'])}  (from the owner's own index)")
                st.detail = (f"{len(offered)} matching clips found by the owner's app; the service still "
                             "knows none of them")
                st.data.update(offered=offered)

            chosen = [clip_a.clip_id]
            days = 7
            with self.step("The owner approves ONE of the two clips: its keys are re-wrapped for the agency "
                           "(signed with Ed25519)") as st:
                text = describe_approval(req, chosen, days)
                # the owner app's own confirmation prompt (interactive: you answer it, here or in the browser)
                if self.interactive:
                    source, yes = self._answer_here_or_in_browser(text, "Sign and send this approval?", rid)
                else:
                    source, yes = "terminal", confirm(text, "Sign and send this approval?", True, _Indented(ui.out),
                                                      self.inp)
                if source == "browser":
                    grant = next((g for g in self.owner.grants(self.timeout) if g.request_id == rid), None)
                    if yes and grant is not None:
                        st.detail = (f"answered in the browser: grant {grant.grant_id} until "
                                     f"{fmt_time(grant.expires_at)}")
                        st.data.update(approved=True, grant_id=grant.grant_id, chosen=grant.clip_ids,
                                       answered="browser")
                        self.facts["grant_id"] = grant.grant_id
                        chosen = list(grant.clip_ids)
                    else:
                        st.detail = "you said no in the browser (signed there); nothing is shared"
                        st.data.update(approved=False, answered="browser")
                elif yes:
                    release = self.owner.release_for(req, chosen, self.index)
                    result = self.owner.decide(rid, True, chosen, days, timeout=self.timeout, release=release)
                    ui.info("who can read it now: the owner, and the agency for this one clip (its key, re-wrapped "
                            "to the agency's age key; the decision signs each new header's SHA-256). The service "
                            "learns this clip's id now, still not its content")
                    if not result.ok:
                        raise StepFailed(f"the service refused the approval: {result.reason}")
                    st.detail = f"grant {result.grant_id} until {fmt_time(result.expires_at)}"
                    st.data.update(approved=True, grant_id=result.grant_id, chosen=chosen)
                    self.facts["grant_id"] = result.grant_id
                else:
                    result = self.owner.decide(rid, False, timeout=self.timeout)
                    if not result.ok:
                        raise StepFailed(f"the service refused the denial: {result.reason}")
                    st.detail = "you said no: a signed denial was sent; nothing is shared"
                    st.data.update(approved=False)

            out_dir = self.workdir / "downloads" / rid
            out_dir.mkdir(parents=True, exist_ok=True)
            with self.step("The agency downloads, decrypts and verifies what was shared (device signature)") as st:
                status = api.status(rid)
                results = download_all(api, rid, out_dir, identity_file=self.agency_key_file)
                bad = [r for r in results if not r["ok"]]
                if bad:
                    raise StepFailed(f"download failed: {bad}")
                got = sorted(r["clip_id"] for r in results)
                want = chosen if self.facts.get("grant_id") else []
                if got != want:
                    raise StepFailed(f"the agency got {got}, expected exactly {want}")
                for r in results:
                    ui.info(f"{r['path']}  {r['size']} bytes  sha256 {r['sha256'][:16]}… decrypted; device "
                            "signature and manifest verified (also: age -d -i agency-key.txt)")
                st.detail = f"status: {status['clips_shared']} clip(s) shared; {len(results)} downloaded"
                st.data.update(downloads=results, status=status)

            with self.step("The unapproved clip stays invisible and unreadable to the agency") as st:
                listed = [c["clip_id"] for c in api.clips(rid).get("sealed", [])]
                if clip_b.clip_id in listed:
                    raise StepFailed(f"the agency sees unapproved clip {clip_b.clip_id}")
                try:
                    api.download_url(rid, clip_b.clip_id)
                    raise StepFailed(f"the agency could get a link for unapproved clip {clip_b.clip_id}")
                except ApiError as exc:
                    if exc.status != 404:
                        raise StepFailed(f"unexpected answer {exc.status} {exc.code}") from None
                    st.detail = (f"{clip_b.clip_id}: not listed, HTTP 404 {exc.code} for a link; even with the "
                                 "bucket in hand its key was never released")
                    st.data.update(refused=exc.code)

            if self.facts.get("grant_id"):
                gid = self.facts["grant_id"]
                with self.step("The owner revokes the grant (signed); the agency loses access at once") as st:
                    if self.interactive:
                        self.ask("Press Enter to revoke the grant… ")
                    result = self.owner.revoke(gid, timeout=self.timeout)
                    if not result.ok:
                        raise StepFailed(f"the service refused the revoke: {result.reason}")
                    if api.clips(rid).get("sealed"):
                        raise StepFailed("the agency still gets links after the revoke")
                    left = api.status(rid)["clips_shared"]
                    st.detail = f"grant {gid} revoked; no new links; clips shared: {left}"
                    ui.info("a key already delivered cannot be recalled: the copy the agency downloaded stays "
                            "readable to it (the owner's prompt said so before approving)")
                    st.data.update(clips_shared_after=left)

            with self.step("A second request; the owner denies it (signed)") as st:
                created2 = api.create_request(case_number="2026-DEMO-002", legal_basis="Police Act §24",
                                              attest_not_protest=True, window_start=clip_a.started_at - 600,
                                              window_end=time.time(), lat=HOME[0], lon=HOME[1], radius_m=300,
                                              reason="Looking for a witness")
                rid2 = created2["id"]
                wait_until(lambda: any(r["request_id"] == rid2 for r in self.owner.pending_requests(self.timeout)),
                           self.timeout, "the second request at the owner", interval=0.3)
                if self.interactive:
                    self.ask("Press Enter to deny this one… ")
                result = self.owner.decide(rid2, False, timeout=self.timeout)
                if not result.ok:
                    raise StepFailed(f"the service refused the denial: {result.reason}")
                status2 = api.status(rid2)
                listing2 = api.clips(rid2)
                listing2 = listing2["clips"] + listing2.get("sealed", [])
                if listing2:
                    raise StepFailed("clips visible under a denied request")
                st.detail = (f"request {rid2} denied; the agency sees status '{status2['status']}', "
                             f"{status2['clips_shared']} clips — the same as if nobody had been asked")
                st.data.update(request_id=rid2, status=status2)
        finally:
            api.close()

        ui.line()
        ui.title("Accountability")
        with self.step("The owner reads the audit log and verifies its hash chain") as st:
            from doorbell.clients.owner.render import audit_summary

            view = self.owner.audit(timeout=self.timeout)
            report = self.owner.verify_audit(view)
            own = [r for r in view.rows if r.details is not None]
            for r in own:
                ui.info(f"#{r.seq:<3} {r.kind or '':<11} {audit_summary(r)}")
            kinds = {r.kind for r in own}
            need = {"delivery", "decision", "grant", "link_issued", "revocation"}
            if not self.facts.get("grant_id"):
                need = {"delivery", "decision"}
            if not report.ok:
                raise StepFailed(f"the audit chain does not verify: {report.reason} at #{report.bad_seq}")
            if not need <= kinds:
                raise StepFailed(f"audit entries missing: {sorted(need - kinds)}")
            st.detail = (f"chain verified locally: {report.checked} entries ({len(own)} about this owner), "
                         f"head #{report.head_seq} {report.head_hash[:16]}…")
            st.data.update(verification=report.as_dict(), kinds=sorted(kinds), own_rows=len(own))

    def _answer_here_or_in_browser(self, text: str, question: str, rid: str) -> tuple[str, bool]:
        """Ask in the terminal and, at the same time, accept a decision signed in the browser app: whichever
        comes first. While it waits, a browser can link itself with the pairing code shown here (this demo's
        owner app signs its enrolment, as `doorbell owner link` does). Returns ``("terminal", yes)`` or
        ``("browser", approved)``."""
        import select

        from doorbell.clients.owner.render import confirm
        from doorbell.core import linking
        from doorbell.core import protocol as p

        out = _Indented(self.ui.out)
        fd = self._stdin_fd()
        if fd is None:  # stdin is not a file (no select): the terminal only
            return "terminal", confirm(text, question, False, out, self.inp)
        if self.web is None:  # no browser app (a checkout without npm): the terminal only, read unbuffered
            out.write(f"{text}\n{question} [y/N] ")
            out.flush()
            answer = self._readline()
            if not answer:
                out.write("\n")
            return "terminal", answer.strip().lower() in ("y", "yes")
        topic = p.request_topic(OWNER_ID, rid)
        code = linking.new_code()
        pair_id, mac_key = linking.pair_secrets(code, OWNER_ID)
        pair = p.pair_topic(OWNER_ID, pair_id)
        self.owner.subscribe(topic)
        self.owner.subscribe(pair)
        try:
            out.write(text + "\n")
            out.write("Answer here, or in the browser app, whichever comes first:\n"
                      f"  open {self.web.url} and sign in as {self.web_login}, password "
                      f"{self.broker.users[self.web_login]} (the broker at {self.broker.ws_url} has the demo's "
                      f"private CA: accept it once at https://127.0.0.1:{self.broker.ws_port}/);\n"
                      f"  link the browser: Linked devices > Link this browser, code {linking.format_code(code)};\n"
                      f"  then open {self.web.url}#/requests/{rid} and approve or deny there.\n")
            out.write(f"{question} [y/N] ")
            out.flush()
            while True:
                ready, _, _ = select.select([fd], [], [], 0.3)
                if ready:
                    answer = self._readline()
                    if not answer:
                        out.write("\n")
                    return "terminal", answer.strip().lower() in ("y", "yes")
                msg = self.owner.next_message(0.0)
                if msg is None:
                    continue
                if msg.topic == pair:
                    self._enrol_browser(msg.payload, mac_key, out)
                    continue
                if msg.topic != topic:
                    continue  # a live event while the owner decides
                try:
                    closed = p.decode(p.RequestClosed, msg.payload, "request")
                except p.ProtocolError:
                    continue  # the request itself (retained), not its answer
                out.write(f"\nanswered in the browser: {closed.state}\n")
                return "browser", closed.state == "approved"
        finally:
            self.owner.unsubscribe(pair)
            self.owner.unsubscribe(topic)

    def _enrol_browser(self, payload: bytes, mac_key: bytes, out: "_Indented") -> None:
        """A browser's pairing offer with this demo's code: check its MAC, sign its enrolment (it is yours)."""
        from doorbell.core import linking
        from doorbell.core import protocol as p

        try:
            offer = p.decode(linking.PairOffer, payload, "pair")
            linking.check_offer(offer, mac_key)
        except p.ProtocolError as exc:
            out.write(f"\nignored a pairing offer: {exc}\n")
            return
        kid = linking.key_id(offer.public_key)
        enrol = linking.sign_enrol(self.owner.key(), owner_id=OWNER_ID, public_key=offer.public_key,
                                   x25519=offer.x25519, label=offer.label)
        result = self.owner.send_signed(p.enrol_topic(OWNER_ID, kid), enrol, self.timeout)
        if result.ok:
            out.write(f"\nlinked the browser '{offer.label}' (fingerprint {linking.fingerprint(kid)}): it can "
                      "sign now\n")
        else:
            out.write(f"\nthe service refused to link the browser: {result.reason}\n")
        out.flush()

    def _keep_running(self) -> None:
        """Leave the product up for the newcomer to explore, until Ctrl-C or SIGTERM."""
        c = self.cfg_files
        ui = self.ui
        ui.line()
        ui.title("Everything is still running. Try, in another terminal:")
        for cmd in (f"doorbell owner events --follow --config {c['owner']}",
                    f"doorbell firmware ring --config {c['device']}",
                    f"doorbell owner clips --config {c['owner']}",
                    f"doorbell agency request create --config {c['agency']} --case 2026-X-1 --basis 'Warrant 12' "
                    f"--attest-not-protest --start now-1h --end now --lat {HOME[0]} --lon {HOME[1]} --radius 300 "
                    "--reason 'Witness search'",
                    f"doorbell owner requests --config {c['owner']}",
                    f"doorbell owner approve REQUEST --config {c['owner']}",
                    f"doorbell agency download REQUEST --out ./evidence --config {c['agency']}",
                    f"doorbell owner audit --verify --config {c['owner']}"):
            ui.line(f"  {cmd}")
        if self.web is not None:
            ui.line()
            ui.title("The owner's app in a browser (docs/owner-app.md):")
            ui.line(f"  open {self.web.url}  login {self.web_login}  password {self.broker.users[self.web_login]}")
            ui.line(f"  the broker ({self.broker.ws_url}) has the demo's private CA: open "
                    f"https://127.0.0.1:{self.broker.ws_port}/ once and accept its certificate "
                    f"(or import {self.tls.cafile})")
            ui.line(f"  then link the browser so it can sign: doorbell owner link --app-url {self.web.url} "
                    f"--config {c['owner']}")
        ui.line("Press Ctrl-C to stop everything.")
        while True:
            for name, proc in list(self.kids.procs.items()):
                if proc.poll() is not None:
                    raise StepFailed(f"{name} exited with {proc.returncode}; see {self.workdir / 'logs'}")
            time.sleep(0.5)

    # ---------------------------------------------------------------- teardown and summary
    def _teardown(self) -> list[int]:
        pids: list[int] = []
        if self.children is not None:
            pids = self.kids.all_pids()
        if self.index is not None:
            self.index.close()
        if self.owner is not None:
            try:
                self.owner.close()
            except Exception:
                pass
        if self.web is not None:
            self.web.stop()
        self.ui.line()
        self.ui.line("Stopping everything the demo started…")
        if self.children is not None:
            for name in ("firmware", "agent", "sharing"):
                self.kids.stop(name)
        for server in (self.s3, self.broker):
            if server is not None:
                try:
                    server.stop()
                except Exception as exc:  # keep stopping the others
                    self.ui.line(f"  could not stop {server.name}: {exc}")
        if self.children is not None:
            self.kids.extra.clear()
            self.kids.record()
        alive = [p for p in pids if _alive(p)]
        self.ui.line("  all stopped." if not alive else f"  still running: {alive}")
        return pids

    def _summary(self, outcome: str, pids: list[int]) -> None:
        total = time.monotonic() - self.t0
        ok = outcome == "ok" and all(s.ok for s in self.steps)
        self.ui.line()
        verdict = ("✓ every step worked" if ok else "interrupted" if outcome == "interrupted"
                   else "✗ not every step worked")
        self.ui.line(verdict
                     + f" ({sum(s.ok for s in self.steps)}/{len(self.steps)} steps, {total:.1f} s)")
        if self.args.summary_json:
            data = {"ok": ok, "outcome": outcome, "total_s": round(total, 3), "workdir": str(self.workdir),
                    "pids": pids, "facts": self.facts,
                    "steps": [{"n": s.n, "name": s.name, "ok": s.ok, "seconds": round(s.seconds, 3),
                               "detail": s.detail, "error": s.error, "data": s.data} for s in self.steps]}
            path = Path(self.args.summary_json)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(data, indent=2, default=str))


class _Indented:
    """A stream that indents what the owner's prompt prints, to fit the demo's layout."""

    def __init__(self, out: TextIO):
        self.out = out

    def write(self, text: str) -> int:
        self.out.write("\n".join(("      " + ln) if ln else ln for ln in text.split("\n")))
        return len(text)

    def flush(self) -> None:
        self.out.flush()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _free_port() -> int:
    from doorbell.sandbox.embedded import free_port

    return free_port()


def _cmd_demo(args: argparse.Namespace) -> int:
    # The story is the output; library chatter goes to the log files only.
    logging.getLogger().setLevel(logging.WARNING)
    for name in ("doorbell.sandbox.embedded", "httpx", "botocore", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if args.video is not None and not args.video.is_file():
        print(f"doorbell-demo: no such video file: {args.video}", file=sys.stderr)
        return 2
    if args.step_timeout <= 0:
        print("doorbell-demo: --step-timeout must be positive", file=sys.stderr)
        return 2

    def on_term(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        return Demo(args).run()
    finally:
        signal.signal(signal.SIGTERM, old)


if __name__ == "__main__":
    sys.exit(main())
