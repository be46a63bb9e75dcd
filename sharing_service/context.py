"""What every role of the sharing service shares: one database, the settings,
the presigner, a clock and the outbox, plus the errors and values they return.

The roles (:mod:`sharing_service.registry`, :mod:`~sharing_service.agencies`,
:mod:`~sharing_service.delivery`, :mod:`~sharing_service.transparency`,
:mod:`~sharing_service.clip_index`, :mod:`~sharing_service.consent`,
:mod:`~sharing_service.owner_rpc`, :mod:`~sharing_service.sweeps`) each take a
:class:`ServiceContext` and nothing else that is shared, so their only common
state is the database.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from doorbell.core.config import SharingSection
from doorbell.core.errors import DoorbellError
from sharing_service.db import Database
from sharing_service.storage import Presigner

log = logging.getLogger(__name__)

MAX_CLIP_LENGTH_S = 600.0       # clips.max_length_s is at most 600: bounds the window index scan
MAX_CLIPS_PER_OWNER = 200       # per request message (keeps PoliceRequest under its 256 KiB limit)
SNAPSHOT_LINK_TTL_S = 3600      # owner's snapshot previews in a request; refreshed on reconnect
FUTURE_SKEW_S = 300.0
COORD_DECIMALS = 3              # ~110 m: devices are stored coarse (enough for an area match)


class Refused(DoorbellError):
    """An input the rules refuse; ``code`` is machine-readable, ``str()`` is for humans."""

    def __init__(self, code: str, message: str, status: int = 422):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class NotFound(Refused):
    def __init__(self, what: str = "request"):
        super().__init__("not_found", f"no such {what}", 404)


@dataclass(frozen=True)
class Outgoing:
    """One MQTT message for the bridge to publish (QoS 1)."""

    topic: str
    payload: bytes
    retain: bool = False


Publisher = Callable[[list[Outgoing]], None]


class Outbox:
    """Where committed outcomes go: the bridge attaches its publisher while it runs.

    Without a publisher (admin CLI, HTTP-only service) messages are dropped
    with a debug line: the state they describe is in the database, and the
    bridge re-sends what owners still need (pending requests) when it connects.
    """

    def __init__(self) -> None:
        self._publisher: Publisher | None = None
        self._lock = threading.Lock()

    def attach(self, publisher: Publisher) -> None:
        with self._lock:
            self._publisher = publisher

    def detach(self) -> None:
        with self._lock:
            self._publisher = None

    def emit(self, messages: list[Outgoing]) -> None:
        with self._lock:
            publisher = self._publisher
        if publisher is not None:
            publisher(messages)
        elif messages:
            log.debug("no MQTT publisher attached; %d message(s) not sent", len(messages))


@dataclass(frozen=True)
class AgencyInfo:
    id: int
    name: str
    rate_per_min: int | None


class Clock:
    """Wall-clock time with an adjustable offset (tests move it to exercise expiry)."""

    def __init__(self, offset_s: float = 0.0):
        self.offset_s = offset_s

    def __call__(self) -> float:
        return time.time() + self.offset_s

    def advance(self, seconds: float) -> None:
        self.offset_s += seconds


@dataclass
class ServiceContext:
    """The collaborators every role shares (one database; no other shared state)."""

    db: Database
    settings: SharingSection
    presigner: Presigner | None = None
    clock: Callable[[], float] = time.time
    outbox: Outbox = field(default_factory=Outbox)
    key_prefix: str = ""  # s3.prefix: a device's objects all live under {prefix}{device_id}/


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def month_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m")
