"""``doorbell doctor``: is this device ready? Each check says what is wrong and how to fix it.

Checks, in order (each can be skipped with ``--skip NAME``):

- ``config``   the file parses and validates, and names the broker credentials;
- ``secrets``  a config file holding secrets is 0600 and owned by the service user,
               TLS private keys likewise, certificates are not expired;
- ``camera``   the configured backend opens and delivers frames;
- ``gpio``     the button/chime/LED pins can be claimed (nobody else holds them);
- ``spool``    the spool is writable, has the free space retention needs, and
               sustains several times the recording bitrate with fsync;
- ``clock``    the clock is NTP-synchronised (TLS certificates and evidence
               timestamps depend on it);
- ``broker``   the broker is reachable over the configured transport and accepts
               this device's credentials and its command subscription;
- ``bucket``   the bucket is reachable with the configured credentials.

Exit status: 0 when nothing failed (warnings and skips allowed), 1 otherwise.
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import logging
import os
import secrets
import shutil
import stat
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from doorbell.core.bucket import device_prefix

if TYPE_CHECKING:
    from doorbell.core.config import DoorbellConfig

log = logging.getLogger(__name__)

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
CHECKS = ("config", "secrets", "numpy", "camera", "gpio", "spool", "clock", "broker", "bucket")
APT_DIST = Path("/usr/lib/python3/dist-packages")  # where Debian/Raspberry Pi OS put apt's Python packages
# How a compiled module built against another numpy ABI fails at import (numpy 1.x vs 2.x, both ways).
NUMPY_ABI_SIGNS = ("numpy.dtype size changed", "binary incompatibility", "compiled using NumPy 1.x",
                   "_ARRAY_API not found", "numpy.core.multiarray failed to import",
                   "numpy.core._multiarray_umath failed to import")
NUMPY_FIX = ("re-run scripts/install-pi.sh (it pins the venv to apt's numpy), or remove the venv's own "
             "copy: sudo /opt/doorbell/venv/bin/pip uninstall numpy")
TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")
SPEED_TEST_BYTES = 8 * 1024 * 1024
SERVICE_USER = "doorbell"  # scripts/install-pi.sh creates it


@dataclass
class Result:
    """One check's outcome; ``fix`` tells the user what to do about a warn/fail."""

    name: str
    status: str
    detail: str
    fix: str = ""


# --------------------------------------------------------------------------- individual checks

def check_secrets(cfg: "DoorbellConfig", config_path: Path | None) -> list[Result]:
    """Files holding secrets must not be readable by anyone but the service user."""
    out: list[Result] = []
    problems: list[str] = []
    fixes: list[str] = []
    allowed = {os.geteuid(), 0}
    if os.geteuid() == 0:  # run with sudo: the files belong to the service user
        import pwd
        try:
            allowed.add(pwd.getpwnam(SERVICE_USER).pw_uid)
        except KeyError:
            pass

    def private(path: Path, what: str) -> None:
        try:
            st = path.stat()
        except OSError as exc:
            problems.append(f"{what} {path}: {exc.strerror}")
            fixes.append(f"check the path of {what} in the config")
            return
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            problems.append(f"{what} {path} is mode {mode:04o} (readable by others)")
            fixes.append(f"chmod 600 {path}")
        if st.st_uid not in allowed:
            problems.append(f"{what} {path} is owned by uid {st.st_uid}, not by the service user")
            fixes.append(f"chown {SERVICE_USER}: {path}")

    if config_path is not None:
        text = config_path.read_text(encoding="utf-8", errors="replace")
        import yaml
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError:
            data = {}
        holds = [f"{s}.{k}" for s, sec in data.items() if isinstance(sec, dict)
                 for k in ("password", "secret_access_key") if sec.get(k)]
        if holds:
            private(config_path, f"config file (holds {', '.join(holds)})")
    tls = cfg.mqtt.tls
    if tls.enabled:
        if tls.key_file:
            private(Path(tls.key_file).expanduser(), "TLS private key")
        for label, f in (("CA certificate", tls.ca_file), ("client certificate", tls.cert_file)):
            if f is None:
                continue
            p = Path(f).expanduser()
            if not p.is_file():
                problems.append(f"{label} {p} is missing")
                fixes.append("install the TLS files from the provisioning bundle (scripts/install-pi.sh --bundle DIR)")
                continue
            out.extend(_cert_expiry(label, p))
        if tls.insecure_skip_verify:
            out.append(Result("secrets", WARN, "mqtt.tls.insecure_skip_verify is true: the broker's hostname is not "
                              "checked (its certificate must still come from mqtt.tls.ca_file)",
                              "set mqtt.tls.insecure_skip_verify: false and mqtt.host to a name the certificate has"))
    elif cfg.mqtt.password is not None and cfg.mqtt.host not in ("127.0.0.1", "localhost", "::1"):
        problems.append(f"MQTT credentials would be sent without TLS to {cfg.mqtt.host}")
        fixes.append("set mqtt.tls.enabled: true and the files from `doorbell provision device`")
    if problems:
        out.insert(0, Result("secrets", FAIL, "; ".join(problems), "; ".join(dict.fromkeys(fixes))))
    elif not any(r.status != OK for r in out):
        out.insert(0, Result("secrets", OK, "secret files are private"))
    return out


def _cert_expiry(label: str, path: Path) -> list[Result]:
    from cryptography import x509
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError:
        return [Result("secrets", FAIL, f"{label} {path} is not a PEM certificate", "reinstall it from the bundle")]
    left = cert.not_valid_after_utc.timestamp() - time.time()
    if left < 0:
        return [Result("secrets", FAIL, f"{label} {path} expired",
                       "issue a new one: doorbell provision device --rotate")]
    if left < 30 * 86400:
        return [Result("secrets", WARN, f"{label} {path} expires in {left / 86400:.0f} days",
                       "rotate it: doorbell provision device --rotate")]
    return []


def numpy_abi_clash(exc: BaseException) -> bool:
    """Did ``exc`` (or its cause) come from a compiled module built against another numpy?"""
    seen: BaseException | None = exc
    while seen is not None:
        if any(sign in str(seen) for sign in NUMPY_ABI_SIGNS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _apt_numpy_version(apt_dist: Path) -> str | None:
    import importlib.metadata
    for dist in importlib.metadata.distributions(name="numpy", path=[str(apt_dist)]):
        return dist.version
    return None


def check_numpy(apt_dist: Path = APT_DIST) -> Result:
    """The numpy this Python imports must be the one apt's compiled packages were built against.

    picamera2 comes from apt, with compiled helpers (python3-simplejpeg, ...) built
    against apt's numpy. A newer numpy pip put into the venv shadows it, and those
    helpers then fail at import with ``numpy.dtype size changed`` (numpy 1.x vs 2.x).
    """
    try:
        import numpy
    except ImportError as exc:
        return Result("numpy", FAIL, f"numpy cannot be imported ({exc})", "pip install 'doorbell[pi]'")
    except Exception as exc:  # a broken numpy install raises anything at import; that is the finding
        return Result("numpy", FAIL, f"numpy fails at import: {exc}", NUMPY_FIX)
    here = Path(numpy.__file__).resolve().parent
    apt = apt_dist / "numpy"
    if not apt.is_dir() or here == apt.resolve():
        return Result("numpy", OK, f"numpy {numpy.__version__} from {here.parent}")
    apt_version = _apt_numpy_version(apt_dist) or "unknown version"
    what = (f"numpy {numpy.__version__} from {here.parent} shadows apt's numpy {apt_version} "
            f"({apt_dist}), which apt's compiled packages (picamera2's python3-simplejpeg) were built against")
    if apt_version.split(".")[0] != numpy.__version__.split(".")[0]:
        return Result("numpy", FAIL, f"numpy ABI mismatch: {what}; they fail with 'numpy.dtype size changed'",
                      NUMPY_FIX)
    return Result("numpy", WARN, what + " (same major version, so they still load)", NUMPY_FIX)


def _camera_open_failure(backend: str, exc: Exception, camera_error: type[Exception]) -> Result:
    """Name why the camera did not open; re-raise what is not a camera finding."""
    if numpy_abi_clash(exc):
        # picamera2's compiled helpers (python3-simplejpeg) were built against apt's numpy and
        # a different numpy is imported: a software fault, not the ribbon cable.
        return Result("camera", FAIL, f"{backend} backend cannot load: numpy ABI mismatch ({exc})", NUMPY_FIX)
    if isinstance(exc, ImportError):
        if backend == "picamera2":
            return Result("camera", FAIL, f"picamera2 cannot be imported ({exc}): not a Raspberry Pi, or "
                          "python3-picamera2 missing",
                          "on a Pi: apt install python3-picamera2 and use a venv made with --system-site-packages; "
                          "elsewhere set camera.backend: opencv")
        return Result("camera", FAIL, f"{backend} backend cannot be loaded: {exc}", "pip install 'doorbell[pi]'")
    if not isinstance(exc, (camera_error, OSError, RuntimeError, ValueError)):
        raise exc
    if backend == "picamera2" and ("No module named" in str(exc) or "not available" in str(exc)):
        return Result("camera", FAIL, f"picamera2 camera unavailable: {exc}",
                      "on a Pi: apt install python3-picamera2 and use a venv made with "
                      "--system-site-packages; elsewhere set camera.backend: opencv")
    hint = {"picamera2": "check the ribbon cable and `rpicam-hello --list-cameras`",
            "opencv": "check camera.source (device index or URL) and `v4l2-ctl --list-devices`",
            "file": "check camera.source points at a readable video file"}.get(backend, "check the camera section")
    return Result("camera", FAIL, f"{backend} camera does not open: {exc}", hint)


def check_camera(cfg: "DoorbellConfig", frames: int = 3, timeout: float = 10.0) -> Result:
    backend = cfg.camera.backend
    try:
        from firmware.camera import CameraError, create_camera
    except ImportError as exc:
        return Result("camera", FAIL, f"the firmware is not installed ({exc})", "pip install 'doorbell[pi]'")
    except Exception as exc:  # e.g. cv2 built against another numpy
        if numpy_abi_clash(exc):
            return Result("camera", FAIL, f"numpy ABI mismatch, not a camera fault: {exc}", NUMPY_FIX)
        raise
    try:
        cam = create_camera(cfg.camera)
        cam.start()
    except Exception as exc:
        return _camera_open_failure(backend, exc, CameraError)
    try:
        got = 0
        deadline = time.monotonic() + timeout
        size: tuple[int, ...] = (0, 0)
        while got < frames and time.monotonic() < deadline:
            frame = cam.read(timeout=1.0)
            if frame is not None:
                got += 1
                size = frame.lores.shape
        if got < frames:
            return Result("camera", FAIL,
                          f"{backend} camera opened but delivered {got}/{frames} frames in {timeout:.0f} s",
                          "check the camera is not used by another process (the firmware?) and its cable/stream")
        return Result("camera", OK, f"{backend} camera streaming ({got} frames, lores {size[1]}x{size[0]})")
    except Exception as exc:  # any backend failure is a finding, not a crash of the doctor
        return Result("camera", FAIL, f"{backend} camera failed while streaming: {exc}",
                      "check the camera and its source")
    finally:
        try:
            cam.stop()
        except Exception:  # stopping a broken camera may fail too; the finding above stands
            log.debug("camera stop failed", exc_info=True)


def check_gpio(cfg: "DoorbellConfig", pin_factory: Any = None) -> Result:
    """Claim each configured pin and release it again."""
    try:
        from gpiozero import Device, DigitalInputDevice, DigitalOutputDevice
        from gpiozero.exc import PinFactoryFallback
    except ImportError as exc:
        return Result("gpio", FAIL, f"gpiozero is not installed ({exc})", "pip install 'doorbell[pi]'")
    g = cfg.gpio
    factory = pin_factory
    if factory is None and g.pin_factory == "mock":
        from gpiozero.pins.mock import MockFactory
        factory = Device.pin_factory if isinstance(Device.pin_factory, MockFactory) else MockFactory()
    pins = [("button", g.button_pin, DigitalInputDevice)]
    pins += [(n, p, DigitalOutputDevice) for n, p in (("chime", g.chime_pin), ("led", g.led_pin)) if p is not None]
    claimed: list[str] = []
    busy: list[str] = []
    # gpiozero warns (PinFactoryFallback) for every driver it tries and skips; those go into
    # the finding and the debug log, not onto the user's terminal as Python warnings.
    with warnings.catch_warnings(record=True) as fallbacks:
        warnings.simplefilter("always", PinFactoryFallback)
        result = _claim_pins(pins, g, factory, claimed, busy)
    tried = "; ".join(str(w.message).replace("Falling back from ", "") for w in fallbacks
                      if issubclass(w.category, PinFactoryFallback))
    for w in fallbacks:
        log.debug("gpiozero: %s", w.message)
    if result is not None:
        if result.detail.startswith("no GPIO driver") and tried:
            result.detail += f" (tried {tried})"
        return result
    if busy:
        return Result("gpio", FAIL, f"in use by another process or device: {', '.join(busy)}",
                      "stop whatever holds them (`systemctl stop doorbell-firmware` if it is running; "
                      "`gpioinfo` shows the consumer), or change the pins in the gpio section")
    return Result("gpio", OK, "pins free: " + ", ".join(f"{n}={p}" for n, p, _ in pins))


def _claim_pins(pins: list[tuple[str, Any, Any]], g: Any, factory: Any, claimed: list[Any],
                busy: list[str]) -> Result | None:
    """Claim each pin and release it again; a Result for a fatal finding, else None."""
    from gpiozero import DigitalInputDevice
    from gpiozero.exc import BadPinFactory, GPIOPinInUse, PinInvalidPin
    try:
        for name, pin, cls in pins:
            try:
                kw = {"pull_up": g.button_pull_up} if cls is DigitalInputDevice else {}
                dev = cls(pin, pin_factory=factory, **kw)
                claimed.append(dev)
            except GPIOPinInUse:
                busy.append(f"{name} pin {pin}")
            except PinInvalidPin as exc:
                return Result("gpio", FAIL, f"{name} pin {pin} is not a valid pin: {exc}",
                              "use BCM numbers (e.g. 17) or names like 'GPIO17' / 'BOARD11' in the gpio section")
            except BadPinFactory as exc:
                return Result("gpio", FAIL, f"no GPIO driver available ({exc}): not a Raspberry Pi?",
                              "on a Pi: apt install python3-lgpio; for tests set gpio.pin_factory: mock")
            except OSError as exc:
                busy.append(f"{name} pin {pin} ({exc.strerror or exc})")
    finally:
        for dev in claimed:
            dev.close()
    return None


def check_spool(cfg: "DoorbellConfig", test_bytes: int = SPEED_TEST_BYTES) -> Result:
    root = Path(cfg.spool.dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return Result("spool", FAIL, f"spool {root} cannot be created: {exc.strerror or exc}",
                      f"create it for the service user: install -d -o doorbell -g doorbell -m 750 {root}")
    if not root.is_dir():
        return Result("spool", FAIL, f"spool {root} is not a directory", "point spool.dir at a directory")
    free = shutil.disk_usage(root).free
    need = cfg.retention.min_free_bytes + 64 * 1024 * 1024
    if free < need:
        return Result("spool", FAIL, f"only {free / 2**20:.0f} MiB free on the spool's file system; retention "
                      f"keeps {cfg.retention.min_free_bytes / 2**20:.0f} MiB free and recording needs more",
                      "free space on the SD card (or lower retention.min_free_bytes / retention.max_bytes)")
    probe = root / f".doctor-{secrets.token_hex(4)}"
    block = os.urandom(1024 * 1024)
    try:
        t0 = time.perf_counter()
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            written = 0
            while written < test_bytes:
                written += os.write(fd, block[: min(len(block), test_bytes - written)])
            os.fsync(fd)
        finally:
            os.close(fd)
        elapsed = max(time.perf_counter() - t0, 1e-6)
    except OSError as exc:
        return Result("spool", FAIL, f"cannot write in spool {root}: {exc.strerror or exc}",
                      f"chown -R doorbell:doorbell {root} (the services write there)")
    finally:
        probe.unlink(missing_ok=True)
    speed = written / elapsed
    need_speed = 4 * cfg.camera.bitrate / 8
    detail = (f"{root}: {free / 2**30:.1f} GiB free, writes {speed / 2**20:.1f} MiB/s with fsync "
              f"(recording needs {cfg.camera.bitrate / 8 / 2**20:.2f} MiB/s)")
    if speed < need_speed:
        return Result("spool", WARN, detail + ": too slow for a safety margin of 4x",
                      "use a faster (A1/A2, U3) SD card or lower camera.bitrate")
    return Result("spool", OK, detail)


class _Timex(ctypes.Structure):
    """``struct timex`` from <sys/timex.h> (Linux, LP64 and ILP32 alike: longs are native)."""

    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                ("constant", ctypes.c_long), ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
                ("time_sec", ctypes.c_long), ("time_usec", ctypes.c_long), ("tick", ctypes.c_long),
                ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long), ("shift", ctypes.c_int),
                ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long),
                ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int),
                ("_pad", ctypes.c_int * 11)]


TIME_ERROR = 5
STA_UNSYNC = 0x0040


def kernel_clock_synced() -> tuple[bool | None, str]:
    """What ``timedatectl``'s NTPSynchronized reads: adjtimex(2) without changing anything."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        tx = _Timex()
        rc = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError) as exc:
        return None, f"adjtimex unavailable: {exc}"
    if rc < 0:
        return None, f"adjtimex failed: {os.strerror(ctypes.get_errno())}"
    synced = rc != TIME_ERROR and not (tx.status & STA_UNSYNC)
    return synced, f"kernel: {'synchronised' if synced else 'unsynchronised'} (max error {tx.maxerror} us)"


def check_clock(probe: Callable[[], tuple[bool | None, str]] = kernel_clock_synced,
                timesync_flag: Path = TIMESYNC_FLAG) -> Result:
    if timesync_flag.exists():
        return Result("clock", OK, f"synchronised (systemd-timesyncd: {timesync_flag})")
    synced, detail = probe()
    if synced:
        return Result("clock", OK, detail)
    fix = ("enable time sync: `timedatectl set-ntp true` (systemd-timesyncd), check that UDP port 123 is "
           "reachable, and wait a minute; a Pi has no RTC, so TLS fails until the clock is set")
    if synced is None:
        return Result("clock", WARN, f"cannot tell whether the clock is synchronised ({detail})", fix)
    return Result("clock", FAIL, f"clock not synchronised ({detail})", fix)


def check_broker(cfg: "DoorbellConfig", timeout: float = 8.0) -> Result:
    """Log in as the device and subscribe to its command topics, through the one client factory.

    The broker binds the client id to the username, so this login briefly takes
    the running agent's session over (the agent is back within a second). It
    resumes that session rather than starting a clean one, and acknowledges
    nothing, so commands queued for the agent stay queued for it.
    """
    from doorbell.core.mqtt import MqttConnectError, MqttError, Session, make_client
    from doorbell.core.protocol import command_topic
    m = cfg.mqtt
    if m.username is None or m.password is None:
        return Result("broker", FAIL, "no broker credentials in the config (mqtt.username / mqtt.password)",
                      "install the provisioned bundle: doorbell provision device ...; "
                      "scripts/install-pi.sh --bundle DIR")
    if m.username != cfg.device.id:
        return Result("broker", FAIL, f"mqtt.username {m.username!r} differs from device.id {cfg.device.id!r}: the "
                      "broker's ACL lets a device write only under its own id, so every publish would be refused",
                      "use the device.yaml from `doorbell provision device` unchanged (username = device id)")
    where = f"{m.host}:{m.port}{' (TLS)' if m.tls.enabled else ''}"
    try:
        client = make_client(m, session=Session(clean_start=False, expiry_s=cfg.agent.session_expiry_s),
                             manual_ack=True, reconnect=False, logger_name="doorbell.doctor.paho")
    except MqttError as exc:
        return Result("broker", FAIL, str(exc), "reinstall the TLS files from the provisioning bundle (mqtt.tls.*)")
    try:
        client.connect_and_wait(timeout)
    except MqttConnectError as exc:
        fixes = {
            "tls-untrusted": "install the CA certificate from the provisioning bundle as mqtt.tls.ca_file, "
                             "and check mqtt.host matches the broker's certificate",
            "tls": "check the TLS files (mqtt.tls.*: the broker may require the client certificate) "
                   "and that the port is the broker's TLS listener",
            "unreachable": "check mqtt.host / mqtt.port, the network, and that Mosquitto is running",
            "timeout": "check the port is the broker's listener (TLS vs plain) and that a firewall lets it through",
            "refused": "the password does not match the broker's password file: re-provision with "
                       "`doorbell provision device --rotate` and reload Mosquitto",
        }
        return Result("broker", FAIL, str(exc), fixes.get(exc.kind, "check the broker's log"))
    try:
        # exactly the agent's filter: this login resumes the agent's session, which must not change
        topic = command_topic(cfg.device.id, "snapshot").rsplit("/", 1)[0] + "/+"
        try:
            granted = client.subscribe_acked(topic, qos=1, timeout=timeout)
        except MqttError as exc:
            if client.last_error:
                return Result("broker", OK, f"logged in to {where} as {m.username!r}; the running agent then "
                              "took its session back before the ACL check")
            return Result("broker", FAIL, f"connected to {where} but the subscription was not answered ({exc})",
                          "check the broker's log")
        if not granted or any(r.is_failure for r in granted):
            return Result("broker", FAIL,
                          f"connected as {m.username!r}, but the ACL refuses this device its command topics",
                          "re-render the ACL from the registry (doorbell provision ...) and reload Mosquitto")
        return Result("broker", OK, f"connected to {where} as {m.username!r}; command topics allowed")
    finally:
        client.close()


def check_bucket(cfg: "DoorbellConfig", timeout: float = 10.0) -> Result:
    s = cfg.s3
    if s.access_key_id is None or s.secret_access_key is None:
        return Result("bucket", FAIL, "no bucket credentials in the config (s3.access_key_id / s3.secret_access_key)",
                      "ask the bucket operator for a key scoped by the policy `doorbell provision device` printed")
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError
    except ImportError as exc:
        return Result("bucket", FAIL, f"boto3 is not installed ({exc})", "pip install 'doorbell[pi]'")
    client = boto3.client(
        "s3", endpoint_url=s.endpoint_url, region_name=s.region, aws_access_key_id=s.access_key_id,
        aws_secret_access_key=s.secret_access_key.get_secret_value(),
        config=Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1},
                      s3={"addressing_style": s.addressing_style}))
    where = f"s3://{s.bucket}/{device_prefix(s.prefix, cfg.device.id)} at {s.endpoint_url or 'AWS'}"

    def explain(exc: ClientError) -> Result:
        code = exc.response.get("Error", {}).get("Code", "?")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AuthorizationHeaderMalformed"):
            return Result("bucket", FAIL, f"{where}: credentials rejected ({code})",
                          "check s3.access_key_id / s3.secret_access_key (and s3.region)")
        if code in ("NoSuchBucket", "404"):
            return Result("bucket", FAIL, f"{where}: the bucket does not exist",
                          "create it or fix s3.bucket")
        if code in ("AccessDenied", "403"):
            return Result("bucket", FAIL, f"{where}: access denied ({code})",
                          "attach the policy printed by `doorbell provision device` to this key")
        return Result("bucket", FAIL, f"{where}: {code}: {exc}", "check the s3 section")

    try:
        client.head_bucket(Bucket=s.bucket)
        return Result("bucket", OK, f"{where}: reachable, credentials accepted")
    except EndpointConnectionError as exc:
        return Result("bucket", FAIL, f"cannot reach {s.endpoint_url or 'AWS S3'}: {exc}",
                      "check s3.endpoint_url and the network")
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "?")
        if code not in ("403", "AccessDenied"):
            return explain(exc)
    except BotoCoreError as exc:
        return Result("bucket", FAIL, f"{where}: {exc}", "check the s3 section")
    # HEAD on the bucket needs s3:ListBucket without a prefix condition, which a
    # device key scoped to its prefix lacks: prove the one permission it needs instead.
    key = f"{device_prefix(s.prefix, cfg.device.id)}.doctor-probe"
    try:
        client.put_object(Bucket=s.bucket, Key=key, Body=b"doorbell doctor write probe\n")
        return Result("bucket", OK,
                      f"{where}: reachable, this key may write its prefix (bucket HEAD not allowed: fine)")
    except ClientError as exc:
        return explain(exc)
    except BotoCoreError as exc:
        return Result("bucket", FAIL, f"{where}: {exc}", "check the s3 section")


def _firmware_running() -> bool:
    """True when doorbell-firmware.service is active here (it then owns the camera and pins)."""
    # sd_booted(3): without a running systemd (container, chroot) systemctl only prints
    # "System has not been booted with systemd" on our stderr.
    if not shutil.which("systemctl") or not Path("/run/systemd/system").is_dir():
        return False
    try:
        r = subprocess.run(["systemctl", "is-active", "--quiet", "doorbell-firmware.service"], timeout=5,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


# --------------------------------------------------------------------------- runner

def run_checks(config_path: str | os.PathLike[str], skip: frozenset[str] | set[str] = frozenset(), *,
               env: dict[str, str] | None = None, pin_factory: Any = None,
               clock_probe: Callable[[], tuple[bool | None, str]] = kernel_clock_synced,
               timesync_flag: Path = TIMESYNC_FLAG, firmware_running: bool | None = None) -> list[Result]:
    """Run every check not in ``skip``; never raises for a finding."""
    from doorbell.core.config import ConfigError, load_config
    path = Path(config_path)
    results: list[Result] = []
    try:
        cfg = load_config(path, env=env)
    except ConfigError as exc:
        detail = "; ".join(f"{k or '<root>'}: {r}" for k, r in exc.problems)
        return [Result("config", FAIL, f"{exc.source}: {detail}",
                       f"fix the file (`doorbell config check -c {path}` shows every problem)")]
    results.append(Result("config", OK, f"{path}: valid; device {cfg.device.id} (owner {cfg.device.owner_id})"))
    if "secrets" not in skip:
        results += check_secrets(cfg, path)
    if "numpy" not in skip:
        results.append(check_numpy())
    holder = _firmware_running() if firmware_running is None else firmware_running
    for name, fn in (("camera", lambda: check_camera(cfg)), ("gpio", lambda: check_gpio(cfg, pin_factory))):
        if name in skip:
            continue
        if holder:
            results.append(Result(name, SKIP, "doorbell-firmware is running and holds it",
                                  "`systemctl stop doorbell-firmware` to test it, then start it again"))
        else:
            results.append(fn())
    if "spool" not in skip:
        results.append(check_spool(cfg))
    if "clock" not in skip:
        results.append(check_clock(clock_probe, timesync_flag))
    if "broker" not in skip:
        results.append(check_broker(cfg))
    if "bucket" not in skip:
        results.append(check_bucket(cfg))
    return results


def format_report(results: list[Result]) -> str:
    tag = {OK: " OK ", WARN: "WARN", FAIL: "FAIL", SKIP: "SKIP"}
    lines = []
    for r in results:
        lines.append(f"[{tag[r.status]}] {r.name:<8} {r.detail}")
        if r.fix and r.status in (WARN, FAIL, SKIP):
            lines.append(f"       {'':<8} fix: {r.fix}")
    failed = sum(r.status == FAIL for r in results)
    lines.append(f"{failed} problem(s) found" if failed else "all checks passed")
    return "\n".join(lines) + "\n"


def register(subs: argparse._SubParsersAction) -> None:
    p = subs.add_parser("doctor", help="check camera, GPIO, spool, clock, broker, bucket and secrets")
    p.add_argument("--config", "-c", default="/etc/doorbell/device.yaml")
    p.add_argument("--skip", action="append", default=[], choices=CHECKS, metavar="CHECK",
                   help=f"skip a check (repeatable): {', '.join(CHECKS)}")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    results = run_checks(args.config, set(args.skip))
    failed = any(r.status == FAIL for r in results)
    if args.json:
        sys.stdout.write(json.dumps({"ok": not failed, "config": str(args.config),
                                     "checks": [asdict(r) for r in results]}, indent=2) + "\n")
    else:
        sys.stdout.write(f"doorbell doctor: {args.config}\n" + format_report(results))
    return 1 if failed else 0
