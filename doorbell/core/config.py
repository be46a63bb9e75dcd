"""One validated configuration model that every component reads.

Each host has one YAML file (shipped, commented, in ``config/``). Every section
has defaults, so a file names only what differs. Secrets may come from the
environment instead of the file: ``DOORBELL__MQTT__PASSWORD`` sets
``mqtt.password`` (double underscores separate the key path). A component asks
for the secrets it needs with :meth:`DoorbellConfig.require`, so a Pi never
needs the sharing service's database URL and vice versa.

Errors name the file, the key path and the reason, and never echo a secret.
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from doorbell.core.age import AgeError, parse_recipient
from doorbell.core.errors import DoorbellError

ENV_PREFIX = "DOORBELL__"
SLUG = r"^[a-z0-9][a-z0-9_-]{0,62}$"
PLACEHOLDER_SECRETS = frozenset(
    {"changeme", "change-me", "change_me", "password", "secret", "admin", "default",
     "example", "placeholder", "xxx", "todo", "replace-me", "replaceme", "<secret>"}
)


class ConfigError(DoorbellError):
    """Invalid configuration: carries the file, the key path and the reason."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {key or '<root>'}: {reason}" for key, reason in problems]
        super().__init__("invalid configuration\n  " + "\n  ".join(lines))


class Section(BaseModel):
    """Base for config sections: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


Point = tuple[float, float]


def _check_polygon(poly: list[Point]) -> list[Point]:
    if len(poly) < 3:
        raise ValueError("a polygon needs at least 3 points")
    for x, y in poly:
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise ValueError("polygon points are fractions of the frame, each in [0, 1]")
    return poly


class Polygon(Section):
    """A polygon in frame fractions (0,0 top-left .. 1,1 bottom-right), resolution-independent."""

    name: str = ""
    points: list[Point]

    @field_validator("points")
    @classmethod
    def _points(cls, v: list[Point]) -> list[Point]:
        return _check_polygon(v)


class DeviceSection(Section):
    id: str = Field("doorbell-1", pattern=SLUG, description="unique device id, used in topics and keys")
    owner_id: str = Field("owner-1", pattern=SLUG)
    name: str = Field("Front door", max_length=64)
    latitude: float | None = Field(None, ge=-90, le=90, description="coarse location for area matching")
    longitude: float | None = Field(None, ge=-180, le=180)


class SpoolSection(Section):
    dir: Path = Path("/var/lib/doorbell/spool")


# The 40-pin header (J8) of every current Pi (Zero 2 W, 3, 4, 5): physical pin -> BCM GPIO,
# and wiringPi numbers -> physical pin, as gpiozero names them (gpiozero/pins/pi.py: _make_pin).
J8_GPIO = {3: 2, 5: 3, 7: 4, 8: 14, 10: 15, 11: 17, 12: 18, 13: 27, 15: 22, 16: 23, 18: 24, 19: 10,
           21: 9, 22: 25, 23: 11, 24: 8, 26: 7, 27: 0, 28: 1, 29: 5, 31: 6, 32: 12, 33: 13, 35: 19,
           36: 16, 37: 26, 38: 20, 40: 21}
J8_POWER = {1: "3V3", 2: "5V", 4: "5V", 6: "GND", 9: "GND", 14: "GND", 17: "3V3", 20: "GND", 25: "GND",
            30: "GND", 34: "GND", 39: "GND"}
WPI_PHYSICAL = {8: 3, 9: 5, 7: 7, 15: 8, 16: 10, 0: 11, 1: 12, 2: 13, 3: 15, 4: 16, 5: 18, 12: 19, 13: 21,
                6: 22, 14: 23, 10: 24, 11: 26, 30: 27, 31: 28, 21: 29, 22: 31, 26: 32, 23: 33, 24: 35,
                27: 36, 25: 37, 28: 38, 29: 40}
_PIN_RE = re.compile(r"^(?:(?P<bcm>[0-9]+)|(?:GPIO|BCM)(?P<gpio>[0-9]+)|WPI(?P<wpi>[0-9]+)"
                     r"|(?:BOARD|J8:)(?P<phys>[0-9]+))$")
PIN_FORMS = "a BCM number (17), 'GPIO17', 'BCM17', 'BOARD11', 'J8:11' or 'WPI0' (case-sensitive)"


def gpio_of_pin(pin: int | str) -> int:
    """The BCM GPIO number a gpiozero pin name refers to on the 40-pin header; ValueError if none.

    Accepts exactly the names gpiozero gives a header GPIO (gpiozero matches them
    exactly, so ``gpio17`` is refused there as here).
    """
    if isinstance(pin, bool):
        raise ValueError(f"{pin!r} is not a pin; use {PIN_FORMS}")
    m = _PIN_RE.match(str(pin))
    if m is None:
        raise ValueError(f"{pin!r} is not a GPIO pin name; use {PIN_FORMS}")
    if m["bcm"] is not None or m["gpio"] is not None:
        gpio = int(m["bcm"] if m["bcm"] is not None else m["gpio"])
        if gpio not in J8_GPIO.values():
            raise ValueError(f"{pin!r}: GPIO{gpio} is not on the 40-pin header (GPIO0 to GPIO27)")
        return gpio
    if m["wpi"] is not None:
        wpi = int(m["wpi"])
        if wpi not in WPI_PHYSICAL:
            raise ValueError(f"{pin!r}: no wiringPi pin {wpi} on the 40-pin header")
        return J8_GPIO[WPI_PHYSICAL[wpi]]
    phys = int(m["phys"])
    if phys in J8_POWER:
        raise ValueError(f"{pin!r}: physical pin {phys} is {J8_POWER[phys]}, not a GPIO")
    if phys not in J8_GPIO:
        raise ValueError(f"{pin!r}: the 40-pin header has physical pins 1 to 40")
    return J8_GPIO[phys]


class GpioSection(Section):
    pin_factory: Literal["auto", "mock"] = "auto"
    button_pin: int | str = 17
    button_pull_up: bool = True
    chime_pin: int | str | None = 27
    chime_kind: Literal["relay", "buzzer"] = "relay"
    chime_pulse_s: float = Field(0.25, gt=0, le=5)
    led_pin: int | str | None = 22
    debounce_s: float = Field(0.03, ge=0, le=1, description="contact must be stable this long")
    ring_interval_s: float = Field(3.0, ge=0, le=60, description="at most one ring per interval")
    # Off by default: the button is outside, so a stranger could otherwise switch recording off.
    long_press_s: float | None = Field(None, gt=0, le=60, description="hold to toggle privacy mode; null disables")

    @field_validator("button_pin", "chime_pin", "led_pin", mode="before")
    @classmethod
    def _not_a_bool(cls, v: Any) -> Any:
        if isinstance(v, bool):  # YAML `true` would otherwise become pin 1
            raise ValueError(f"{v!r} is not a pin; use {PIN_FORMS}")
        return v

    @field_validator("button_pin", "chime_pin", "led_pin")
    @classmethod
    def _pin_name(cls, v: int | str | None) -> int | str | None:
        """Refuse what gpiozero would refuse at start-up (e.g. 'banana'), naming the key now."""
        if v is not None:
            gpio_of_pin(v)
        return v

    @model_validator(mode="after")
    def _distinct_pins(self) -> "GpioSection":
        seen: dict[int, str] = {}
        for key in ("button_pin", "chime_pin", "led_pin"):
            pin = getattr(self, key)
            if pin is None:
                continue
            gpio = gpio_of_pin(pin)
            if gpio in seen:
                raise ValueError(f"{key} {pin!r} is GPIO{gpio}, already used as {seen[gpio]}")
            seen[gpio] = key
        return self


class CameraSection(Section):
    backend: Literal["picamera2", "opencv", "file", "synthetic"] = "picamera2"
    source: str | int | None = Field(None, description="opencv: device index or URL; file: path")
    loop: bool = True
    width: int = Field(1280, ge=64, le=4096)
    height: int = Field(720, ge=48, le=3072)
    fps: float = Field(15.0, gt=0, le=60)
    lores_width: int = Field(320, ge=32, le=1280)
    lores_height: int = Field(240, ge=24, le=960)
    bitrate: int = Field(2_000_000, ge=100_000, le=50_000_000)
    keyframe_interval_s: float = Field(1.0, gt=0, le=10)
    hflip: bool = False
    vflip: bool = False
    audio: bool = Field(False, description="no audio by default (sharing rule 7)")

    @model_validator(mode="after")
    def _source_needed(self) -> "CameraSection":
        if self.backend == "file" and not self.source:
            raise ValueError("camera.source: the file backend needs a video file path")
        return self


class MotionSection(Section):
    enabled: bool = True
    sensitivity: float = Field(0.5, ge=0, le=1, description="0 = least, 1 = most sensitive")
    min_area: float = Field(0.01, gt=0, le=1, description="fraction of the frame that must change")
    frames_to_confirm: int = Field(3, ge=1, le=60)
    cooldown_s: float = Field(5.0, ge=0, le=600)
    zones: list[Polygon] = Field(default_factory=list, description="detect only inside these; empty = whole frame")
    masks: list[Polygon] = Field(default_factory=list, description="never detect inside these")
    record: bool = True


class PrivacySection(Section):
    masks: list[Polygon] = Field(default_factory=list, description="burned black into clips and snapshots")
    start_in_privacy_mode: bool = False


class ClipsSection(Section):
    pre_roll_s: float = Field(4.0, ge=0, le=30)
    post_roll_s: float = Field(8.0, ge=0, le=120)
    max_length_s: float = Field(60.0, ge=1, le=600)
    snapshot_quality: int = Field(85, ge=10, le=100)

    @model_validator(mode="after")
    def _lengths(self) -> "ClipsSection":
        if self.max_length_s < self.post_roll_s:
            raise ValueError("max_length_s must be at least post_roll_s")
        return self


class EncryptionSection(Section):
    """Device side of end-to-end encryption (issue 12; docs/encryption.md).

    When ``enabled``, the firmware writes each clip's video, snapshot, metadata
    and signed manifest into the spool only as age files encrypted to
    ``recipients`` (every household member, plus an optional offline recovery
    key), and the agent uploads them under opaque object names. The device
    keeps only these public keys: nothing on it opens a clip it recorded.
    Off when absent (no recipients, nothing to seal to); ``doorbell provision
    device`` turns it on whenever it is given the household's recipients.
    """

    enabled: bool = Field(False, description="encrypt and sign clips on the device (needs recipients)")
    recipients: list[str] = Field(default_factory=list, max_length=64,
                                  description="age1... X25519 public keys: household members and a recovery key")
    device_key_file: Path = Field(Path("/etc/doorbell/device_ed25519.pem"),
                                  description="the device's Ed25519 key that signs clip manifests")
    ha_snapshot_plaintext: bool | None = Field(
        None, description="publish each clip's snapshot in clear (retained) for Home Assistant; this JPEG "
        "leaves the end-to-end boundary. Default (null): true while encryption is off, false when it is on")

    @field_validator("recipients")
    @classmethod
    def _recipients(cls, v: list[str]) -> list[str]:
        out: list[str] = []
        for i, text in enumerate(v):
            try:
                key = str(parse_recipient(text.strip()))
            except AgeError as exc:
                raise ValueError(f"recipients[{i}]: {exc}") from None
            if key in out:
                raise ValueError(f"recipients[{i}]: listed twice")
            out.append(key)
        return out

    @model_validator(mode="after")
    def _usable(self) -> "EncryptionSection":
        if self.enabled and not self.recipients:
            raise ValueError("enabled needs at least one recipient (doorbell provision device --recipient age1...)")
        return self

    @property
    def snapshot_in_clear(self) -> bool:
        """Whether the agent may publish a clip's snapshot JPEG in clear over MQTT (Home Assistant)."""
        return (not self.enabled) if self.ha_snapshot_plaintext is None else self.ha_snapshot_plaintext


class RetentionSection(Section):
    max_age_days: float = Field(30, gt=0, le=3650)
    max_bytes: int = Field(4 * 1024**3, ge=1024**2)
    min_free_bytes: int = Field(200 * 1024**2, ge=0, description="hard floor: below it even un-uploaded clips go")


class TlsSection(Section):
    """``mqtt.tls``: one meaning per key for every MQTT client (see doorbell.core.mqtt)."""

    enabled: bool = False
    ca_file: Path | None = Field(None, description="the only CA trusted for the broker; null = system CAs")
    cert_file: Path | None = Field(None, description="client certificate, for brokers that require one")
    key_file: Path | None = Field(None, description="its private key (may be inside cert_file)")
    insecure_skip_verify: bool = Field(False, description="skip the hostname check only; the chain is "
                                       "still verified against ca_file")

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _expand_home(cls, v: Path | None) -> Path | None:
        # Expanded here, once, so every client reads the same file.
        return v.expanduser() if v is not None else None

    @model_validator(mode="after")
    def _key_needs_cert(self) -> "TlsSection":
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("mqtt.tls.key_file is set without mqtt.tls.cert_file")
        return self


class MqttSection(Section):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    client_id: str | None = Field(None, description="only for a broker without logins; with a username the "
                                  "client id is the username (the broker enforces it)")
    keepalive_s: int = Field(30, ge=5, le=3600)
    tls: TlsSection = Field(default_factory=TlsSection)

    @model_validator(mode="after")
    def _client_id_is_username(self) -> "MqttSection":
        # The product's brokers run with use_username_as_clientid: a different id would be
        # silently replaced, so say so instead of letting the config pretend otherwise.
        if self.client_id and self.username and self.client_id != self.username:
            raise ValueError(f"mqtt.client_id {self.client_id!r} must equal mqtt.username {self.username!r} "
                             "(or be left out): the broker binds each client id to its login")
        return self


class S3Section(Section):
    endpoint_url: str | None = Field(None, description="null = AWS; else any S3-compatible endpoint")
    region: str = "us-east-1"
    bucket: str = Field("doorbell-clips", min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]+[a-z0-9]$")
    prefix: str = Field("", description="key prefix inside the bucket")
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    addressing_style: Literal["auto", "path", "virtual"] = "path"
    multipart_threshold_mb: int = Field(8, ge=5, le=5120)
    multipart_chunk_mb: int = Field(8, ge=5, le=5120)
    max_concurrency: int = Field(4, ge=1, le=64)
    max_upload_bytes_per_s: int | None = Field(None, ge=10_000, description="optional upload cap, bytes per second")


class HomeAssistantSection(Section):
    enabled: bool = True
    discovery_prefix: str = "homeassistant"


class AgentSection(Section):
    state_dir: Path = Path("/var/lib/doorbell/agent")
    retry_base_s: float = Field(0.5, gt=0, le=60)
    retry_max_s: float = Field(60.0, gt=0, le=3600)
    poll_s: float = Field(1.0, gt=0, le=60, description="fallback rescan when inotify is unavailable")
    late_after_s: float = Field(30.0, gt=0, description="events older than this are flagged late")
    session_expiry_s: int = Field(86400, ge=0, le=30 * 86400,
                                  description="how long the broker keeps the agent's session "
                                  "(subscriptions, queued commands)")
    conditional_writes: bool = Field(True, description="send If-None-Match: * so the bucket refuses overwrites; "
                                     "turn off only for S3 servers without conditional writes")
    home_assistant: HomeAssistantSection = Field(default_factory=HomeAssistantSection)


class HttpSection(Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    public_url: str | None = None


class SharingSection(Section):
    database_url: str = "sqlite:////var/lib/doorbell/sharing.db"
    http: HttpSection = Field(default_factory=HttpSection)
    max_window_h: float = Field(12.0, gt=0, le=12, description="rule 3: at most 12 h")
    max_radius_m: float = Field(800.0, gt=0, le=800, description="rule 3: at most 800 m")
    request_ttl_h: float = Field(72.0, gt=0, le=24 * 30, description="unanswered requests expire as a no")
    grant_default_days: float = Field(7.0, gt=0, le=30)
    grant_max_days: float = Field(30.0, gt=0, le=30)
    link_ttl_s: int = Field(300, ge=10, le=3600, description="agency download links live minutes")
    decision_max_age_s: int = Field(3600, ge=60, le=86400 * 7)
    agency_rate_per_min: int = Field(60, ge=1, le=100_000)
    # Several instances on one database and one broker (docs/sharing.md, "Running several instances"):
    # the owner bridge subscribes through the MQTT v5 shared subscription $share/<group>/..., so the
    # broker hands each owner message to exactly one instance.
    mqtt_shared: bool = Field(False, description="subscribe as one member of a shared subscription group")
    # The group name is a shared secret of the instances: Mosquitto 2.0 lets any login join any
    # $share group whose filter it could subscribe to, and a member that may not read a message makes
    # the broker drop it for the whole group. `doorbell provision` writes a random one.
    mqtt_share_group: str = Field("sharing", pattern=r"^[A-Za-z0-9_-]{1,64}$",
                                  description="the shared subscription group: the same random value on "
                                              "every instance, known to no one else")
    sweep_interval_s: float = Field(30.0, gt=0, le=3600, description="seconds between expiry sweeps")
    drain_timeout_s: float = Field(20.0, ge=0, le=600,
                                   description="SIGTERM: longest wait for in-flight work before exiting")
    drain_delay_s: float = Field(0.0, ge=0, le=600, description="SIGTERM: keep answering HTTP (with /healthz "
                                 "503) this long, so a load balancer stops sending before the port closes")

    @model_validator(mode="after")
    def _grants(self) -> "SharingSection":
        if self.grant_default_days > self.grant_max_days:
            raise ValueError("grant_default_days must not exceed grant_max_days")
        return self


class OwnerSection(Section):
    owner_id: str = Field("owner-1", pattern=SLUG)
    key_file: Path = Path("~/.config/doorbell/owner_ed25519.pem")
    sharing_url: str = "http://127.0.0.1:8080"


class LoggingSection(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_format: bool = False


class DoorbellConfig(Section):
    """The whole configuration; each host uses the sections it needs."""

    device: DeviceSection = Field(default_factory=DeviceSection)
    spool: SpoolSection = Field(default_factory=SpoolSection)
    gpio: GpioSection = Field(default_factory=GpioSection)
    camera: CameraSection = Field(default_factory=CameraSection)
    motion: MotionSection = Field(default_factory=MotionSection)
    privacy: PrivacySection = Field(default_factory=PrivacySection)
    clips: ClipsSection = Field(default_factory=ClipsSection)
    encryption: EncryptionSection = Field(default_factory=EncryptionSection)
    retention: RetentionSection = Field(default_factory=RetentionSection)
    mqtt: MqttSection = Field(default_factory=MqttSection)
    s3: S3Section = Field(default_factory=S3Section)
    agent: AgentSection = Field(default_factory=AgentSection)
    sharing: SharingSection = Field(default_factory=SharingSection)
    owner: OwnerSection = Field(default_factory=OwnerSection)
    logging: LoggingSection = Field(default_factory=LoggingSection)

    # Not a config key: where this config came from, for error messages.
    source: str = Field("<defaults>", exclude=True, repr=False)

    def require(self, *paths: str) -> None:
        """Fail with a ConfigError unless each dotted key path holds a value.

        Components call this at start-up for the secrets they cannot run without.
        """
        problems = []
        for path in paths:
            value: Any = self
            for part in path.split("."):
                value = getattr(value, part, None)
            if value is None or (isinstance(value, SecretStr) and not value.get_secret_value()):
                env = ENV_PREFIX + path.upper().replace(".", "__")
                problems.append((path, f"required secret is missing (set it in the file or in ${env})"))
        if problems:
            raise ConfigError(self.source, problems)

    def redacted(self) -> dict[str, Any]:
        """The effective config as plain data with every secret replaced by '********'."""
        return self.model_dump(mode="json")


def _iter_secrets(model: BaseModel, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, value in model:
        path = f"{prefix}{name}"
        if isinstance(value, SecretStr):
            yield path, value
        elif isinstance(value, BaseModel):
            yield from _iter_secrets(value, path + ".")


def _check_placeholders(cfg: DoorbellConfig) -> list[tuple[str, str]]:
    problems = []
    for path, secret in _iter_secrets(cfg):
        raw = secret.get_secret_value().strip()
        if raw.lower() in PLACEHOLDER_SECRETS or re.fullmatch(r"<.*>|\$\{.*\}", raw):
            problems.append((path, "placeholder secret: generate a unique one (doorbell provision ...)"))
        elif raw and len(raw) < 8:
            problems.append((path, "secret too short: use at least 8 characters"))
    return problems


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> None:
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in key[len(ENV_PREFIX):].split("__") if p]
        if not parts:
            continue
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value


def _loc_to_path(loc: tuple[Any, ...]) -> str:
    out = []
    for part in loc:
        if isinstance(part, int):
            out.append(f"[{part}]")
        else:
            out.append(("." if out else "") + str(part))
    return "".join(out)


def parse_config(data: Mapping[str, Any] | None, source: str = "<memory>",
                 env: Mapping[str, str] | None = None) -> DoorbellConfig:
    """Validate already-loaded data (plus environment overrides) into the config model."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(source, [("", f"the top level must be a mapping of sections, not {type(data).__name__}")])
    merged: dict[str, Any] = _deep_copy(data)
    _apply_env(merged, os.environ if env is None else env)
    try:
        cfg = DoorbellConfig.model_validate(merged)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_input=False, include_url=False):
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check the spelling against config/*.yaml)"
            problems.append((_loc_to_path(err["loc"]), msg))
        raise ConfigError(source, problems) from None
    object.__setattr__(cfg, "source", source)
    problems = _check_placeholders(cfg)
    for path, value in (("camera.fps", cfg.camera.fps),):
        if not math.isfinite(value):
            problems.append((path, "must be finite"))
    if problems:
        raise ConfigError(source, problems)
    return cfg


def load_config(path: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None) -> DoorbellConfig:
    """Load and validate a YAML config file; ``None`` means embedded defaults."""
    if path is None:
        return parse_config({}, "<defaults>", env)
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), [("", f"cannot read file: {exc.strerror or exc}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(str(p), [("", f"not valid YAML{where}: {getattr(exc, 'problem', exc)}")]) from None
    return parse_config(data, str(p), env)


def dump_yaml(cfg: DoorbellConfig) -> str:
    """The effective config as YAML with secrets redacted (for ``doorbell config check``)."""
    return yaml.safe_dump(cfg.redacted(), sort_keys=False, default_flow_style=False)


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}
