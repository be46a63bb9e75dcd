"""A real Home Assistant core for interop tests: cached venv, minimal config, REST access.

Home Assistant needs Python 3.13 (2025.4). The venv is built once per machine
and version, outside the repository (``~/.cache/doorbell/ha-venv-<version>``,
or ``$DOORBELL_HA_CACHE``), with pip from PyPI, and reused by every later run.
A marker file written after a complete install, under a file lock, makes a
half-finished install (Ctrl-C, two sessions at once) rebuild instead of being
trusted.

HA runs with ``--skip-pip``: the venv already holds what the MQTT integration
(``paho-mqtt``) and the frontend (without which HA starts in recovery mode)
need, and HA must not reach for the network while a test runs.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import yaml

from doorbell.sandbox.embedded import LOOPBACK, EmbeddedError, ServerProcess, free_port

log = logging.getLogger("tests.home_assistant")

HA_VERSION = "2025.4.4"
# What HA's mqtt integration requires (homeassistant/components/mqtt/manifest.json).
HA_EXTRA = ["paho-mqtt==2.1.0"]
PY_MINOR = "3.13"


class HomeAssistantUnavailable(EmbeddedError):
    """No Python 3.13 to build Home Assistant's venv with."""


def find_python() -> str:
    """A working python3.13: ``$DOORBELL_HA_PYTHON``, pyenv's 3.13.x, then PATH.

    pyenv's ``python3.13`` *shim* fails unless 3.13 is the selected version, so
    the interpreter inside ``$(pyenv root)/versions`` is used directly.
    """
    candidates: list[str] = []
    if os.environ.get("DOORBELL_HA_PYTHON"):
        candidates.append(os.environ["DOORBELL_HA_PYTHON"])
    roots = [os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv")]
    if shutil.which("pyenv"):
        try:
            roots.insert(0, subprocess.run(["pyenv", "root"], capture_output=True, text=True,
                                           timeout=20).stdout.strip())
        except (OSError, subprocess.TimeoutExpired):
            pass
    for root in filter(None, roots):
        versions = sorted(Path(root, "versions").glob(f"{PY_MINOR}.*"))
        candidates += [str(v / "bin" / f"python{PY_MINOR}") for v in versions]
    for name in (f"python{PY_MINOR}", "python3"):
        if shutil.which(name):
            candidates.append(shutil.which(name) or name)
    for exe in candidates:
        try:
            r = subprocess.run([exe, "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2])"],
                               capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if r.returncode == 0 and r.stdout.strip() == PY_MINOR:
            return exe
    raise HomeAssistantUnavailable(f"no working python{PY_MINOR} found (tried {candidates}); install it "
                                   f"(pyenv install {PY_MINOR}) or set DOORBELL_HA_PYTHON")


def cache_dir() -> Path:
    return Path(os.environ.get("DOORBELL_HA_CACHE") or Path.home() / ".cache" / "doorbell")


def ensure_venv(version: str = HA_VERSION, root: Path | None = None) -> Path:
    """The venv holding Home Assistant ``version``; built (minutes) only if missing."""
    root = root or cache_dir()
    venv = root / f"ha-venv-{version}"
    marker = venv / ".doorbell-complete"
    want = f"homeassistant=={version} " + " ".join(HA_EXTRA) + " +frontend"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"ha-venv-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second session waits for the first install
        if marker.exists() and marker.read_text().strip() == want and (venv / "bin" / "hass").exists():
            return venv
        python = find_python()
        log.warning("building Home Assistant %s venv in %s (once per machine; about a minute)", version, venv)
        t0 = time.monotonic()
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True, stdin=subprocess.DEVNULL, timeout=300)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        # uv resolves and downloads HA's ~150 pinned dependencies in parallel, several times faster
        # than pip; HA itself uses it. Plain pip is the fallback.
        subprocess.run([*pip, "uv"], check=True, stdin=subprocess.DEVNULL, timeout=600)
        env = {**os.environ, "UV_CACHE_DIR": str(root / "uv-cache"), "UV_PYTHON_DOWNLOADS": "never"}
        if os.environ.get("PIP_INDEX_URL"):  # a mirror configured for pip serves uv too
            env.setdefault("UV_DEFAULT_INDEX", os.environ["PIP_INDEX_URL"])
        r = subprocess.run([str(venv / "bin" / "uv"), "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
                            f"homeassistant=={version}", *HA_EXTRA], env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=1800)
        if r.returncode != 0:
            log.warning("uv failed (%s); falling back to pip", r.stderr[-2000:])
            subprocess.run([*pip, f"homeassistant=={version}", *HA_EXTRA], check=True,
                           stdin=subprocess.DEVNULL, timeout=1800)
        # The frontend is not optional: without it HA starts in recovery mode (no onboarding, no
        # automations). Its pinned wheel is named in the frontend's manifest.
        site = next((venv / "lib").glob("python3*/site-packages"))
        frontend = json.loads((site / "homeassistant/components/frontend/manifest.json").read_text())
        subprocess.run([str(venv / "bin" / "uv"), "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
                        *frontend["requirements"]], env=env, stdin=subprocess.DEVNULL, check=True, timeout=1800)
        marker.write_text(want + "\n")
        log.warning("Home Assistant venv ready in %.0f s", time.monotonic() - t0)
        return venv


def mqtt_entry(mqtt: dict[str, Any]) -> dict[str, Any]:
    """HA's MQTT config entry as its UI flow stores it, from a ``provision --role ha`` bundle.

    The flow keeps the uploaded PEM *contents* in the entry (``certificate``,
    ``client_cert``, ``client_key``) and writes them to temporary files for paho
    (homeassistant/components/mqtt/util.py: async_create_certificate_temp_files).
    """
    tls = mqtt["tls"]
    now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    return {
        "created_at": now, "modified_at": now, "discovery_keys": {}, "disabled_by": None,
        "domain": "mqtt", "entry_id": uuid.uuid4().hex, "minor_version": 2, "version": 1,
        "data": {"broker": mqtt["host"], "port": mqtt["port"], "username": mqtt["username"],
                 "password": mqtt["password"], "certificate": Path(tls["ca_file"]).read_text(),
                 "client_cert": Path(tls["cert_file"]).read_text(),
                 "client_key": Path(tls["key_file"]).read_text(), "tls_insecure": False,
                 "protocol": "5", "transport": "tcp", "discovery": True},
        "options": {}, "pref_disable_new_entities": False, "pref_disable_polling": False,
        "source": "user", "subentries": [], "title": mqtt["host"], "unique_id": None,
    }


class HomeAssistant(ServerProcess):
    """``hass`` from the cached venv, on 127.0.0.1, with a generated minimal config.

    ``automations`` is a list of automation dicts (written to automations.yaml);
    ``counters`` names counter helpers (``counter.<name>``) an automation can count with.
    """

    name = "home-assistant"

    def __init__(self, workdir: Path, venv: Path, mqtt: dict[str, Any], *,
                 automations: list[dict[str, Any]] = (), counters: list[str] = ()):
        super().__init__(workdir)
        self.venv = venv
        self.mqtt = mqtt
        self.automations = list(automations)
        self.counters = list(counters)
        self.config_dir = self.workdir / "config"
        self.port = 0
        self.token: str | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def _prepare(self, first: bool) -> None:
        if not first:
            return
        self.port = free_port()
        c = self.config_dir
        (c / ".storage").mkdir(parents=True, exist_ok=True)
        (self.workdir / "tmp").mkdir(exist_ok=True)
        config = {
            "homeassistant": {"name": "Doorbell interop", "time_zone": "UTC", "unit_system": "metric",
                              "latitude": 0, "longitude": 0, "elevation": 0, "country": "GB",
                              "currency": "GBP"},
            "http": {"server_host": LOOPBACK, "server_port": self.port},
            "counter": {name: {"initial": 0, "restore": False} for name in self.counters},
            "logger": {"default": "warning", "logs": {"homeassistant.components.mqtt": "info",
                                                       "homeassistant.components.automation": "info"}},
        }
        text = yaml.safe_dump(config, sort_keys=False) + "automation: !include automations.yaml\n"
        (c / "configuration.yaml").write_text(text)
        (c / "automations.yaml").write_text(yaml.safe_dump(self.automations, sort_keys=False))
        entries = {"version": 1, "minor_version": 5, "key": "core.config_entries",
                   "data": {"entries": [mqtt_entry(self.mqtt)]}}
        (c / ".storage" / "core.config_entries").write_text(json.dumps(entries, indent=1))

    def _command(self) -> list[str]:
        return [str(self.venv / "bin" / "hass"), "--config", str(self.config_dir), "--skip-pip",
                "--log-no-color"]

    def _env(self) -> dict[str, str]:
        # mqtt writes the certificates to $TMPDIR/home-assistant-mqtt: one per instance
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.workdir),
                "TMPDIR": str(self.workdir / "tmp"), "LANG": "C.UTF-8"}

    def _retryable(self) -> bool:
        return False

    def _wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with urllib.request.urlopen(f"{self.url}/api/onboarding", timeout=2) as r:
                    if r.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.3)
        raise EmbeddedError(f"Home Assistant did not serve in time; see {self.log_path}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # ------------------------------------------------------------------ REST

    def _request(self, method: str, path: str, body: Any = None, *, form: bool = False,
                 auth: bool = True) -> tuple[int, bytes]:
        headers = {}
        data = None
        if body is not None:
            if form:
                data = urllib.parse.urlencode(body).encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            else:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = f"Bearer {self.login()}"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def login(self) -> str:
        """An access token for the owner created by onboarding (HA's own first-run API)."""
        if self.token:
            return self.token
        client_id = self.url + "/"
        status, body = self._request("POST", "/api/onboarding/users", {
            "client_id": client_id, "name": "Interop test", "username": "interop",
            "password": secrets.token_urlsafe(16), "language": "en"}, auth=False)
        if status != 200:
            raise EmbeddedError(f"onboarding refused: {status} {body[:300]!r}")
        code = json.loads(body)["auth_code"]
        status, body = self._request("POST", "/auth/token", {
            "grant_type": "authorization_code", "code": code, "client_id": client_id}, form=True, auth=False)
        if status != 200:
            raise EmbeddedError(f"token refused: {status} {body[:300]!r}")
        self.token = json.loads(body)["access_token"]
        return self.token

    def state(self, entity_id: str) -> dict[str, Any] | None:
        status, body = self._request("GET", f"/api/states/{entity_id}")
        if status == 404:
            return None
        if status != 200:
            raise EmbeddedError(f"GET state {entity_id}: {status} {body[:300]!r}")
        return json.loads(body)

    def template(self, template: str) -> str:
        """Render a template in HA (device and area helpers included)."""
        status, body = self._request("POST", "/api/template", {"template": template})
        if status != 200:
            raise EmbeddedError(f"template: {status} {body[:300]!r}")
        return body.decode()

    def image(self, entity_id: str) -> tuple[int, bytes]:
        """The image entity's current bytes, through HA's image proxy (what a dashboard shows)."""
        return self._request("GET", f"/api/image_proxy/{entity_id}")
