"""MQTT protocol v1: every topic and every message schema, in one place.

Topics all start ``doorbell/v1/``. Payloads are JSON (except the status string
and the snapshot JPEG), validated on receipt with strict size limits: anything
invalid raises :class:`ProtocolError` with a reason the receiver logs before
dropping the message. See ``docs/protocol.md``.
"""
from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator

from doorbell.core.errors import DoorbellError

PREFIX = "doorbell/v1"
VERSION = 1
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
_ID_RE = re.compile(ID_PATTERN)
# Clip ids sort by time: 20261123T212719123Z-1a2b3c
CLIP_ID_PATTERN = r"^[0-9]{8}T[0-9]{9}Z-[0-9a-f]{6}$"
TOKEN_PATTERN = r"^[A-Za-z0-9_-]{6,64}$"

STATUS_ONLINE = "online"
STATUS_OFFLINE = "offline"

COMMAND_NAMES = ("snapshot", "privacy", "settings")

# Largest payload accepted per topic kind, in bytes (checked before parsing).
MAX_PAYLOAD = {
    "status": 16,
    "events": 4 * 1024,
    "clips": 8 * 1024,
    "snapshot": 512 * 1024,
    "command": 4 * 1024,
    "request": 256 * 1024,
    "decision": 1024 * 1024,      # an approval of sealed clips carries one age header per released object
    "revoke": 4 * 1024,
    "result": 8 * 1024,
    "rpc": 8 * 1024,
    "rpc_reply": 1024 * 1024,
    "grant": 16 * 1024,
    "share_create": 64 * 1024,    # three age headers (video, snapshot, manifest)
    "share_revoke": 4 * 1024,
    "share": 4 * 1024,
}

# Deepest JSON nesting accepted (objects and arrays). The deepest real message
# (an RPC reply listing audit entries) nests 5 levels; 32 leaves room and stays
# far below where the C decoder recurses into RecursionError (about 1,000).
MAX_DEPTH = 32
# Tokens that change nesting, with JSON strings matched whole so brackets inside
# them do not count (the regex engine scans strings without Python-level recursion).
# An unterminated string matches to the end, so every quote starts at most one
# linear scan (no quadratic rescans on hostile input).
_NESTING_RE = re.compile(rb'"[^"\\]*(?:\\(?:.|$)[^"\\]*)*(?:"|$)|[\[\]{}]', re.DOTALL)


class ProtocolError(DoorbellError, ValueError):
    """A message that must be dropped; ``str(err)`` is the reason to log."""


# --------------------------------------------------------------------------- topics

def _check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise ProtocolError(f"invalid {what} {value!r}: must match {ID_PATTERN}")
    return value


def status_topic(device_id: str) -> str:
    return f"{PREFIX}/devices/{_check_id(device_id, 'device id')}/status"


def events_topic(device_id: str) -> str:
    return f"{PREFIX}/devices/{_check_id(device_id, 'device id')}/events"


def clips_topic(device_id: str) -> str:
    return f"{PREFIX}/devices/{_check_id(device_id, 'device id')}/clips"


def snapshot_topic(device_id: str) -> str:
    return f"{PREFIX}/devices/{_check_id(device_id, 'device id')}/snapshot"


def command_topic(device_id: str, name: str) -> str:
    if name not in COMMAND_NAMES:
        raise ProtocolError(f"unknown command {name!r}; known: {', '.join(COMMAND_NAMES)}")
    return f"{PREFIX}/devices/{_check_id(device_id, 'device id')}/commands/{name}"


def request_topic(owner_id: str, request_id: str) -> str:
    return f"{PREFIX}/owners/{_check_id(owner_id, 'owner id')}/requests/{_check_token(request_id)}"


def decision_topic(owner_id: str, request_id: str) -> str:
    return f"{PREFIX}/owners/{_check_id(owner_id, 'owner id')}/decisions/{_check_token(request_id)}"


def revoke_topic(owner_id: str, grant_id: str) -> str:
    return f"{PREFIX}/owners/{_check_id(owner_id, 'owner id')}/grants/{_check_token(grant_id)}/revoke"


def grant_topic(owner_id: str, grant_id: str) -> str:
    """Retained state of one grant, for the owner's app (service to owner)."""
    return f"{PREFIX}/owners/{_check_id(owner_id, 'owner id')}/grants/{_check_token(grant_id)}"


def result_topic(owner_id: str, ref: str) -> str:
    """The service's answer to one decision or revoke (service to owner)."""
    return f"{PREFIX}/owners/{_check_id(owner_id, 'owner id')}/results/{_check_token(ref)}"


def rpc_topic(owner_id: str, call_id: str) -> str:
    """An owner's query to the service (audit, grants, clip links)."""
    return f"{PREFIX}/owners/{_check_id(owner_id, 'owner id')}/rpc/{_check_token(call_id)}"


def rpc_reply_topic(owner_id: str, call_id: str) -> str:
    return f"{PREFIX}/owners/{_check_id(owner_id, 'owner id')}/rpc/{_check_token(call_id)}/reply"


def ha_discovery_topic(device_id: str, discovery_prefix: str = "homeassistant") -> str:
    return f"{discovery_prefix}/device/{_check_id(device_id, 'device id')}/config"


def ha_status_topic(discovery_prefix: str = "homeassistant") -> str:
    return f"{discovery_prefix}/status"


# Subscription filters used by the service and by clients.
ALL_DEVICE_CLIPS = f"{PREFIX}/devices/+/clips"
ALL_DECISIONS = f"{PREFIX}/owners/+/decisions/+"
ALL_REVOKES = f"{PREFIX}/owners/+/grants/+/revoke"
ALL_RPC = f"{PREFIX}/owners/+/rpc/+"

# Linked devices (doorbell.core.linking): pairing between the owner's own apps, enrol/unlink to the service.
KEY_ID_PATTERN = r"^[0-9a-f]{32}$"


def pair_topic(owner_id: str, pair_id: str) -> str:
    return f"{PREFIX}/owners/{_check_id(owner_id, 'owner id')}/pair/{pair_id}"


def enrol_topic(owner_id: str, kid: str) -> str:
    return f"{PREFIX}/owners/{_check_id(owner_id, 'owner id')}/keys/{kid}/enrol"


def unlink_topic(owner_id: str, kid: str) -> str:
    return f"{PREFIX}/owners/{_check_id(owner_id, 'owner id')}/keys/{kid}/unlink"


def key_topic(owner_id: str, kid: str) -> str:
    return f"{PREFIX}/owners/{_check_id(owner_id, 'owner id')}/keys/{kid}"


ALL_ENROLS = f"{PREFIX}/owners/+/keys/+/enrol"
ALL_UNLINKS = f"{PREFIX}/owners/+/keys/+/unlink"
_LINK_TOPIC = re.compile(rf"^{PREFIX}/owners/(?P<o>[^/]+)/keys/(?P<k>[^/]+)/(?P<kind>enrol|unlink)$")


def parse_link_topic(topic: str) -> tuple[str, str, str] | None:
    """``(kind, owner_id, key_id)`` for an enrol/unlink topic, None for any other topic."""
    m = _LINK_TOPIC.match(topic)
    if not m:
        return None
    if not re.match(ID_PATTERN, m["o"]) or not re.match(KEY_ID_PATTERN, m["k"]):
        raise ProtocolError(f"invalid owner or key id in {topic[:200]!r}")
    return m["kind"], m["o"], m["k"]


# Share links (docs/sharing.md "Share a clip with anyone"): the owner creates and revokes, the service
# answers on results/{nonce} and keeps the retained state on shares/{share_id}.
def share_create_topic(owner_id: str, share_id: str) -> str:
    return f"{PREFIX}/owners/{_check_id(owner_id, 'owner id')}/shares/{_check_token(share_id)}/create"


def share_revoke_topic(owner_id: str, share_id: str) -> str:
    return f"{PREFIX}/owners/{_check_id(owner_id, 'owner id')}/shares/{_check_token(share_id)}/revoke"


def share_topic(owner_id: str, share_id: str) -> str:
    """Retained ShareState of one share link (service to owner)."""
    return f"{PREFIX}/owners/{_check_id(owner_id, 'owner id')}/shares/{_check_token(share_id)}"


ALL_SHARE_CREATES = f"{PREFIX}/owners/+/shares/+/create"
ALL_SHARE_REVOKES = f"{PREFIX}/owners/+/shares/+/revoke"


def _check_token(value: str) -> str:
    if not isinstance(value, str) or not re.match(TOKEN_PATTERN, value):
        raise ProtocolError(f"invalid id {value!r}: must match {TOKEN_PATTERN}")
    return value


@dataclass(frozen=True)
class Topic:
    """A parsed topic: its kind and the ids it carries."""

    kind: str
    device_id: str | None = None
    owner_id: str | None = None
    name: str | None = None  # command name, request id, grant id, rpc call id


_TOPIC_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    (kind, re.compile(rx)) for kind, rx in [
        ("status", rf"^{PREFIX}/devices/(?P<d>[^/]+)/status$"),
        ("events", rf"^{PREFIX}/devices/(?P<d>[^/]+)/events$"),
        ("clips", rf"^{PREFIX}/devices/(?P<d>[^/]+)/clips$"),
        ("snapshot", rf"^{PREFIX}/devices/(?P<d>[^/]+)/snapshot$"),
        ("command", rf"^{PREFIX}/devices/(?P<d>[^/]+)/commands/(?P<n>[^/]+)$"),
        ("request", rf"^{PREFIX}/owners/(?P<o>[^/]+)/requests/(?P<n>[^/]+)$"),
        ("decision", rf"^{PREFIX}/owners/(?P<o>[^/]+)/decisions/(?P<n>[^/]+)$"),
        ("revoke", rf"^{PREFIX}/owners/(?P<o>[^/]+)/grants/(?P<n>[^/]+)/revoke$"),
        ("grant", rf"^{PREFIX}/owners/(?P<o>[^/]+)/grants/(?P<n>[^/]+)$"),
        ("share_create", rf"^{PREFIX}/owners/(?P<o>[^/]+)/shares/(?P<n>[^/]+)/create$"),
        ("share_revoke", rf"^{PREFIX}/owners/(?P<o>[^/]+)/shares/(?P<n>[^/]+)/revoke$"),
        ("share", rf"^{PREFIX}/owners/(?P<o>[^/]+)/shares/(?P<n>[^/]+)$"),
        ("result", rf"^{PREFIX}/owners/(?P<o>[^/]+)/results/(?P<n>[^/]+)$"),
        ("rpc_reply", rf"^{PREFIX}/owners/(?P<o>[^/]+)/rpc/(?P<n>[^/]+)/reply$"),
        ("rpc", rf"^{PREFIX}/owners/(?P<o>[^/]+)/rpc/(?P<n>[^/]+)$"),
    ]
]


def parse_topic(topic: str) -> Topic:
    """Split a topic into kind and ids, validating each id; raises ProtocolError."""
    if not isinstance(topic, str):
        raise ProtocolError(f"topic must be text, got {type(topic).__name__}")
    for kind, rx in _TOPIC_PATTERNS:
        m = rx.match(topic)
        if not m:
            continue
        groups = m.groupdict()
        device = _check_id(groups["d"], "device id") if "d" in groups else None
        owner = _check_id(groups["o"], "owner id") if "o" in groups else None
        name = groups.get("n")
        if kind == "command":
            if name not in COMMAND_NAMES:
                raise ProtocolError(f"unknown command {name!r}; known: {', '.join(COMMAND_NAMES)}")
        elif name is not None:
            _check_token(name)
        return Topic(kind, device, owner, name)
    raise ProtocolError(f"not a doorbell/v1 topic: {topic[:200]!r}")


# --------------------------------------------------------------------------- messages

class Message(BaseModel):
    """Base of every JSON payload: unknown fields are refused, versions are checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


DeviceId = Annotated[str, Field(pattern=ID_PATTERN)]
OwnerId = Annotated[str, Field(pattern=ID_PATTERN)]
ClipId = Annotated[str, Field(pattern=CLIP_ID_PATTERN)]
Token = Annotated[str, Field(pattern=TOKEN_PATTERN)]
Timestamp = Annotated[float, Field(ge=1_500_000_000, le=32_503_680_000)]  # 2017 .. 3000
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Text = Annotated[str, Field(max_length=2000)]

EventType = Literal["ring", "motion_start", "motion_end", "privacy_mode", "storage_warning",
                    "command_result", "snapshot"]
Trigger = Literal["ring", "motion", "manual"]


def new_token() -> str:
    """A random id for requests, grants, events, calls (URL- and topic-safe)."""
    return uuid.uuid4().hex


class BBox(Message):
    """Bounding box in frame fractions."""

    v: Literal[1] = Field(1, exclude=True)
    x: float = Field(ge=0, le=1)
    y: float = Field(ge=0, le=1)
    w: float = Field(ge=0, le=1)
    h: float = Field(ge=0, le=1)


class DeviceEvent(Message):
    """``devices/{id}/events`` (QoS 1) and the spool's event files."""

    event_id: Token = Field(default_factory=new_token)
    device_id: DeviceId
    type: EventType
    ts: Timestamp = Field(default_factory=time.time)
    clip_id: ClipId | None = None
    score: float | None = Field(None, ge=0)
    bbox: BBox | None = None
    enabled: bool | None = None  # privacy_mode
    detail: Text | None = None
    late: bool = False  # set by the agent when it publishes long after ts


class ClipMessage(Message):
    """``devices/{id}/clips`` (QoS 1): one per clip confirmed in the bucket."""

    clip_id: ClipId
    device_id: DeviceId
    trigger: Trigger
    started_at: Timestamp
    ended_at: Timestamp
    trigger_at: Timestamp
    pre_roll_s: float = Field(ge=0, le=60)
    key: Annotated[str, Field(min_length=1, max_length=1024)]
    snapshot_key: Annotated[str, Field(max_length=1024)] | None = None
    sha256: Sha256Hex
    size: int = Field(ge=1)
    rings: list[Timestamp] = Field(default_factory=list, max_length=100)

    @model_validator(mode="after")
    def _times(self) -> "ClipMessage":
        if self.ended_at < self.started_at:
            raise ValueError("ended_at is before started_at")
        return self


class SealedObject(Message):
    """One age file of a sealed clip in the bucket: its (opaque) key, ciphertext SHA-256 and size."""

    v: Literal[1] = Field(1, exclude=True)
    key: Annotated[str, Field(min_length=1, max_length=1024)]
    sha256: Sha256Hex
    size: int = Field(ge=1)


class SealedClipMessage(Message):
    """``devices/{id}/clips`` when the device seals its clips (``encryption.enabled``, issue 12).

    No clip id, time or trigger in clear: ``metadata`` is the clip's age-encrypted
    metadata (base64 of the same file as ``objects["metadata"]``), which only
    the household's keys open; ``objects`` names the ciphertexts in the bucket.
    """

    sealed: Literal[True] = True
    device_id: DeviceId
    objects: dict[Literal["video", "snapshot", "metadata", "manifest"], SealedObject]
    metadata: Annotated[str, Field(min_length=1, max_length=6 * 1024, pattern=r"^[A-Za-z0-9+/]+={0,2}$")]

    @model_validator(mode="after")
    def _complete(self) -> "SealedClipMessage":
        missing = {"video", "metadata", "manifest"} - set(self.objects)
        if missing:
            raise ValueError(f"objects lacks {', '.join(sorted(missing))}")
        return self


class SnapshotCommand(Message):
    command_id: Token = Field(default_factory=new_token)


class PrivacyCommand(Message):
    command_id: Token = Field(default_factory=new_token)
    enabled: bool


class MotionSettings(Message):
    v: Literal[1] = Field(1, exclude=True)
    enabled: bool | None = None
    sensitivity: float | None = Field(None, ge=0, le=1)
    min_area: float | None = Field(None, gt=0, le=1)
    frames_to_confirm: int | None = Field(None, ge=1, le=60)
    cooldown_s: float | None = Field(None, ge=0, le=600)


class ClipSettings(Message):
    v: Literal[1] = Field(1, exclude=True)
    pre_roll_s: float | None = Field(None, ge=0, le=30)
    post_roll_s: float | None = Field(None, ge=0, le=120)


class SettingsCommand(Message):
    """Owner-adjustable settings; only these keys, each range-checked."""

    command_id: Token = Field(default_factory=new_token)
    motion: MotionSettings | None = None
    clips: ClipSettings | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> "SettingsCommand":
        if self.motion is None and self.clips is None:
            raise ValueError("settings command changes nothing")
        return self


COMMAND_MODELS: dict[str, type[Message]] = {
    "snapshot": SnapshotCommand,
    "privacy": PrivacyCommand,
    "settings": SettingsCommand,
}


ReleasedKind = Literal["video", "snapshot", "manifest"]
AgeRecipientText = Annotated[str, Field(pattern=r"^age1[02-9ac-hj-np-z]{58}$")]
AgeHeaderB64 = Annotated[str, Field(min_length=1, max_length=8192, pattern=r"^[A-Za-z0-9+/]+={0,2}$")]


class RequestClip(Message):
    v: Literal[1] = Field(1, exclude=True)
    clip_id: ClipId
    device_id: DeviceId
    started_at: Timestamp
    ended_at: Timestamp
    trigger: Trigger
    snapshot_url: Annotated[str, Field(max_length=4096)] | None = None


class PoliceRequest(Message):
    """``owners/{id}/requests/{request_id}``: service to owner, retained until decided."""

    request_id: Token
    owner_id: OwnerId
    agency: Annotated[str, Field(min_length=1, max_length=200)]
    case_number: Annotated[str, Field(min_length=1, max_length=100)]
    legal_basis: Annotated[str, Field(min_length=1, max_length=500)]
    reason: Text
    window_start: Timestamp
    window_end: Timestamp
    created_at: Timestamp
    expires_at: Timestamp
    grant_days: float = Field(gt=0, le=30)
    clips: list[RequestClip] = Field(max_length=500)
    # Sealed devices (issue 12): the service knows no clip of theirs, so ``clips`` lists none of them; the
    # owner's app matches the window in its own index and releases keys to this registered recipient.
    agency_recipient: AgeRecipientText | None = None
    # The requested area, so the owner's app can draw it (a circle with a scale, no map tiles).
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    radius_m: float | None = Field(None, gt=0, le=100_000)


class RequestClosed(Message):
    """Replaces a retained request once it is decided or expired (the app hides it)."""

    request_id: Token
    owner_id: OwnerId
    state: Literal["approved", "denied", "expired", "withdrawn"]


class SignedMessage(Message):
    """Fields common to everything an owner signs (see doorbell.core.signing)."""

    owner_id: OwnerId
    nonce: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    issued_at: int = Field(ge=1_500_000_000)
    expires_at: int = Field(ge=1_500_000_000)
    signature: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{86}$")]  # base64url, 64 bytes


class ReleasedObject(Message):
    """One sealed object an approval releases: where its ciphertext is and which header opens it.

    ``header_sha256`` is signed (it is part of the decision's ``released``);
    the header itself travels unsigned in the decision's ``headers`` and must
    hash to it, so a header swapped in from another clip is refused.
    """

    v: Literal[1] = Field(1, exclude=True)
    key: Annotated[str, Field(min_length=1, max_length=1024)]
    payload_offset: int = Field(ge=1, le=1 << 20)   # where the age payload starts (after the household header)
    header_sha256: Sha256Hex


class Decision(SignedMessage):
    """``owners/{id}/decisions/{request_id}``: owner to service, Ed25519-signed.

    For sealed clips (issue 12) an approval also names, per clip, the objects it
    releases (``released``: key, payload offset, SHA-256 of a fresh age header
    addressed to ``agency_recipient``), all of it signed; ``headers`` carries
    those headers (base64) and is the one field outside the signature, bound to
    it by the signed digests. A decision without ``released`` signs exactly as
    protocol v1 did (tests/vectors/signing_v1.json).
    """

    type: Literal["decision"] = "decision"
    request_id: Token
    decision: Literal["approve", "deny"]
    clip_ids: list[ClipId] = Field(default_factory=list, max_length=500)
    grant_days: int = Field(0, ge=0, le=30)
    agency_recipient: AgeRecipientText | None = None
    released: dict[ClipId, dict[ReleasedKind, ReleasedObject]] | None = Field(None, max_length=500)
    headers: dict[ClipId, dict[ReleasedKind, AgeHeaderB64]] | None = Field(None, max_length=500)

    @model_validator(mode="after")
    def _shape(self) -> "Decision":
        if self.decision == "approve" and not self.clip_ids:
            raise ValueError("an approval must name at least one clip")
        if self.decision == "deny" and self.clip_ids:
            raise ValueError("a denial names no clips")
        if self.decision == "approve" and self.grant_days < 1:
            raise ValueError("an approval needs grant_days between 1 and 30")
        if len(set(self.clip_ids)) != len(self.clip_ids):
            raise ValueError("clip_ids repeat")
        if list(self.clip_ids) != sorted(self.clip_ids):
            raise ValueError("clip_ids must be sorted (canonical form)")
        if self.released is not None:
            if self.decision != "approve" or self.agency_recipient is None:
                raise ValueError("released keys need an approval and the agency's recipient")
            if sorted(self.released) != list(self.clip_ids):
                raise ValueError("released must name exactly the approved clips")
            if any("video" not in objs or "manifest" not in objs for objs in self.released.values()):
                raise ValueError("each released clip needs its video and its manifest")
            if self.headers is None or {c: set(o) for c, o in self.headers.items()} != \
                    {c: set(o) for c, o in self.released.items()}:
                raise ValueError("headers must carry one header per released object")
        elif self.headers is not None or self.agency_recipient is not None:
            raise ValueError("headers and agency_recipient come only with released")
        return self


class Revoke(SignedMessage):
    """``owners/{id}/grants/{grant_id}/revoke``: owner to service, Ed25519-signed."""

    type: Literal["revoke"] = "revoke"
    grant_id: Token


class ShareCreate(SignedMessage):
    """``owners/{id}/shares/{share_id}/create``: share one clip by link, owner to service, Ed25519-signed.

    For a sealed clip the owner re-wraps the clip's video, snapshot and manifest
    headers to a fresh X25519 identity made for this share alone (``share_recipient``;
    the identity itself goes only into the link's fragment). ``released`` is signed
    (key, payload offset, SHA-256 of each new header); ``headers`` carries the
    headers, bound by those digests, exactly as in a :class:`Decision`. A clip
    stored in clear (no encryption on its device) has neither: the link's token is
    then the only secret, and the service could see the clip anyway.
    """

    type: Literal["share"] = "share"
    share_id: Token
    clip_id: ClipId
    days: int = Field(ge=1, le=30)
    share_recipient: AgeRecipientText | None = None
    released: dict[ReleasedKind, ReleasedObject] | None = None
    headers: dict[ReleasedKind, AgeHeaderB64] | None = None

    @model_validator(mode="after")
    def _shape(self) -> "ShareCreate":
        if self.released is not None:
            if self.share_recipient is None:
                raise ValueError("released keys need the share's recipient")
            if "video" not in self.released or "manifest" not in self.released:
                raise ValueError("a shared sealed clip needs its video and its manifest")
            if self.headers is None or set(self.headers) != set(self.released):
                raise ValueError("headers must carry one header per released object")
        elif self.headers is not None or self.share_recipient is not None:
            raise ValueError("headers and share_recipient come only with released")
        return self


class ShareRevoke(SignedMessage):
    """``owners/{id}/shares/{share_id}/revoke``: end a share link now (signed by any active key)."""

    type: Literal["unshare"] = "unshare"
    share_id: Token


class ShareState(Message):
    """``owners/{id}/shares/{share_id}`` (retained): one share link, for the owner's apps."""

    share_id: Token
    owner_id: OwnerId
    clip_id: ClipId
    sealed: bool
    created_at: Timestamp
    expires_at: Timestamp
    state: Literal["active", "expired", "revoked"]
    revoked_at: Timestamp | None = None


class Result(Message):
    """``owners/{id}/results/{ref}``: the service's verdict on a signed message.

    ``token`` answers a :class:`ShareCreate`: the link's public part, shown to the
    owner once (the service keeps only its hash)."""

    ref: Token
    ok: bool
    reason: Text | None = None
    grant_id: Token | None = None
    expires_at: Timestamp | None = None
    share_id: Token | None = None
    token: Token | None = None


class GrantState(Message):
    """``owners/{id}/grants/{grant_id}`` (retained): what is shared, until when."""

    grant_id: Token
    request_id: Token
    owner_id: OwnerId
    agency: Annotated[str, Field(max_length=200)]
    case_number: Annotated[str, Field(max_length=100)]
    clip_ids: list[ClipId] = Field(max_length=500)
    created_at: Timestamp
    expires_at: Timestamp
    state: Literal["active", "expired", "revoked"]


# --------------------------------------------------------------------------- owner RPC
# ``owners/{id}/rpc/{call_id}`` carries an RpcCall naming a method and its params;
# ``.../reply`` carries an RpcReply whose ``result`` is that method's result model.
# Each params model names its method and result type, so the owner's app and the
# service agree on both ends from this one table of models.

RpcMethod = Literal["audit", "grants", "requests", "clips", "clip_link", "object_link", "devices",
                    "shares"]
RpcScalar = str | int | float | bool | None
R = TypeVar("R", bound="RpcResult")
PM = TypeVar("PM", bound="RpcParams")


class RpcParams(BaseModel):
    """Base of every RPC method's params: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    method: ClassVar[RpcMethod]


class RpcResult(BaseModel):
    """Base of every RPC method's result."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class AuditHeadRef(RpcResult):
    seq: int = Field(ge=0)
    hash: Sha256Hex


class AuditRow(RpcResult):
    """One audit row: the owner's own rows in full, everyone else's as digests only."""

    seq: int = Field(ge=1)
    body_digest: Sha256Hex
    hash: Sha256Hex
    ts: float | None = None
    kind: str | None = None
    actor: str | None = None
    subject: str | None = None
    owner_id: str | None = None
    details: str | None = None
    prev_hash: Sha256Hex | None = None
    owner_seq: int | None = Field(None, ge=1)
    owner_prev: Sha256Hex | None = None
    owner_hash: Sha256Hex | None = None


class OwnerChainHead(RpcResult):
    """The last entry of the owner's own chain (see doorbell.core.auditchain)."""

    seq: int = Field(ge=0)
    hash: Sha256Hex


class AuditView(RpcResult):
    from_seq: int = Field(ge=1)
    start_prev: Sha256Hex
    rows: list[AuditRow]
    head: AuditHeadRef
    owner_head: OwnerChainHead | None = None
    complete: bool
    next_since: int | None = None


class AuditParams(RpcParams):
    method: ClassVar[RpcMethod] = "audit"
    since: int = Field(1, ge=1, le=2**62)
    limit: int = Field(2000, ge=1, le=5000)


class GrantInfo(RpcResult):
    grant_id: Token
    request_id: Token
    agency: str
    case_number: str
    clip_ids: list[str]
    created_at: float
    expires_at: float
    state: Literal["active", "expired", "revoked"]
    revoked_at: float | None = None


class GrantList(RpcResult):
    grants: list[GrantInfo]


class GrantsParams(RpcParams):
    method: ClassVar[RpcMethod] = "grants"
    limit: int = Field(100, ge=1, le=500)


RequestState = Literal["pending", "approved", "denied", "expired"]


class RequestInfo(RpcResult):
    request_id: Token
    agency: str
    case_number: str
    legal_basis: str
    reason: str
    window_start: float
    window_end: float
    created_at: float
    expires_at: float
    state: RequestState
    decided_at: float | None = None
    clip_ids: list[str]
    grant_days: float
    agency_recipient: str | None = None  # as in PoliceRequest: set when the owner's sealed clips may be released


class RequestList(RpcResult):
    requests: list[RequestInfo]


class RequestsParams(RpcParams):
    method: ClassVar[RpcMethod] = "requests"
    state: RequestState | None = None
    limit: int = Field(100, ge=1, le=500)


class ClipInfo(RpcResult):
    clip_id: str
    device_id: str
    trigger: str
    started_at: float
    ended_at: float
    size: int
    sha256: str
    has_snapshot: bool


class ClipList(RpcResult):
    clips: list[ClipInfo]


class ClipsParams(RpcParams):
    method: ClassVar[RpcMethod] = "clips"
    limit: int = Field(100, ge=1, le=500)
    device_id: DeviceId | None = None
    since: float | None = None
    until: float | None = None


class ClipLink(RpcResult):
    clip_id: str
    what: Literal["video", "snapshot"]
    url: str
    expires_at: float


class ClipLinkParams(RpcParams):
    method: ClassVar[RpcMethod] = "clip_link"
    clip_id: ClipId
    what: Literal["video", "snapshot"] = "video"


class ObjectLink(RpcResult):
    key: str
    url: str
    expires_at: float


class ObjectLinkParams(RpcParams):
    """A short-lived link to one of the owner's own sealed objects (to read its header when releasing it)."""

    method: ClassVar[RpcMethod] = "object_link"
    key: Annotated[str, Field(min_length=1, max_length=1024)]


class DeviceInfo(RpcResult):
    """One of the owner's devices: its registered Ed25519 key (``ed25519:...``) signs its sealed clips' manifests."""

    device_id: str
    public_key: str | None = None


class DeviceList(RpcResult):
    devices: list[DeviceInfo]


class DevicesParams(RpcParams):
    """The owner's own devices and their registered keys (the web app checks clip signatures against them)."""

    method: ClassVar[RpcMethod] = "devices"


class ShareInfo(RpcResult):
    share_id: Token
    clip_id: ClipId
    sealed: bool
    created_at: Timestamp
    expires_at: Timestamp
    state: Literal["active", "expired", "revoked"]
    revoked_at: Timestamp | None = None
    views: int = Field(ge=0)
    last_viewed_at: Timestamp | None = None


class ShareList(RpcResult):
    shares: list[ShareInfo]


class SharesParams(RpcParams):
    method: ClassVar[RpcMethod] = "shares"
    limit: int = Field(100, ge=1, le=500)


class RpcCall(Message):
    """``owners/{id}/rpc/{call_id}``: an owner's query to the service."""

    method: RpcMethod
    params: dict[str, Annotated[RpcScalar, Field()]] = Field(default_factory=dict, max_length=16)

    @classmethod
    def of(cls, params: RpcParams) -> "RpcCall":
        return cls(method=params.method, params=params.model_dump(exclude_none=True))

    def parse_params(self, model: type[PM]) -> PM:
        """The params as ``model`` (the method's params type); ProtocolError if they do not fit."""
        if model.method != self.method:
            raise ProtocolError(f"params for {model.method} given to {self.method}")
        try:
            return model.model_validate(self.params)
        except ValidationError as exc:
            raise ProtocolError("bad params: " + _reasons(exc)) from None


class RpcReply(Message):
    ok: bool
    error: Text | None = None
    result: dict[str, JsonValue] | None = None

    def parse_result(self, model: type[R]) -> R:
        """The result as ``model``; ProtocolError if the reply is a refusal or does not fit."""
        if not self.ok or self.result is None:
            raise ProtocolError(self.error or "refused without a reason")
        try:
            return model.model_validate(self.result)
        except ValidationError as exc:
            raise ProtocolError(f"invalid {model.__name__}: " + _reasons(exc)) from None



def _reasons(exc: ValidationError) -> str:
    first = exc.errors(include_input=False, include_url=False)
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in first[:5])


M = TypeVar("M", bound=Message)


def _as_bytes(payload: object) -> bytes:
    """The payload as bytes; anything that is not bytes-like or text is refused, not crashed on."""
    if isinstance(payload, str):
        try:
            return payload.encode()
        except UnicodeEncodeError as exc:  # lone surrogates
            raise ProtocolError(f"payload is not valid text: {exc.reason}") from None
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload)
    raise ProtocolError(f"payload must be bytes, got {type(payload).__name__}")


def nesting_depth(raw: bytes, limit: int = MAX_DEPTH) -> int:
    """Deepest object/array nesting in a JSON text, counted iteratively (no recursion).

    Stops counting once ``limit`` is passed and returns ``limit + 1``; unbalanced
    brackets are left for the JSON parser to report.
    """
    depth = deepest = 0
    for m in _NESTING_RE.finditer(raw):
        c = m.group()
        if c in (b"[", b"{"):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif c in (b"]", b"}"):
            depth -= 1
    return deepest


def loads_json(payload: bytes | bytearray | str, limit: int, what: str = "this topic") -> Any:
    """Parse untrusted JSON: size, nesting depth and every decoder failure become ProtocolError."""
    raw = _as_bytes(payload)
    if len(raw) > limit:
        raise ProtocolError(f"payload of {len(raw)} bytes exceeds the {limit}-byte limit for {what}")
    if nesting_depth(raw) > MAX_DEPTH:
        raise ProtocolError(f"payload nests deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"payload is not JSON: {exc}") from None
    except (ValueError, RecursionError, MemoryError) as exc:  # e.g. an integer of 5,000 digits
        raise ProtocolError(f"payload cannot be decoded: {type(exc).__name__}: {str(exc)[:200]}") from None


def decode(model: type[M], payload: bytes | bytearray | str, kind: str | None = None) -> M:
    """Validate a JSON payload against a model, enforcing the topic kind's size limit."""
    data = loads_json(payload, MAX_PAYLOAD.get(kind or "", 64 * 1024), kind or "this topic")
    if not isinstance(data, dict):
        raise ProtocolError("payload must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)
        reasons = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in first[:5])
        raise ProtocolError(f"invalid {model.__name__}: {reasons}") from None
    except (ValueError, TypeError, RecursionError) as exc:  # a validator failing outside pydantic's wrapper
        raise ProtocolError(f"invalid {model.__name__}: {type(exc).__name__}: {str(exc)[:200]}") from None


def decode_command(name: str, payload: bytes) -> Message:
    if not isinstance(name, str) or name not in COMMAND_MODELS:
        raise ProtocolError(f"unknown command {name!r}")
    return decode(COMMAND_MODELS[name], payload, "command")


def decode_status(payload: bytes) -> str:
    text = _as_bytes(payload)[: MAX_PAYLOAD["status"] + 1].decode("ascii", "replace")
    if text not in (STATUS_ONLINE, STATUS_OFFLINE):
        raise ProtocolError(f"status must be 'online' or 'offline', got {text[:16]!r}")
    return text


def decode_snapshot(payload: bytes) -> bytes:
    raw = _as_bytes(payload)
    if len(raw) > MAX_PAYLOAD["snapshot"]:
        raise ProtocolError("snapshot larger than the limit")
    if not raw[:3] == b"\xff\xd8\xff":
        raise ProtocolError("snapshot is not a JPEG")
    return raw


def ha_discovery_payload(device_id: str, name: str, discovery_prefix: str = "homeassistant",
                         sw_version: str = "") -> dict[str, Any]:
    """Home Assistant device-based discovery: doorbell event, motion sensor, snapshot image."""
    avail = [{"topic": status_topic(device_id), "payload_available": STATUS_ONLINE,
              "payload_not_available": STATUS_OFFLINE}]
    ev = events_topic(device_id)
    return {
        "dev": {"ids": [f"doorbell_{device_id}"], "name": name, "mf": "Consent-first doorbell",
                "mdl": "Raspberry Pi doorbell", "sw": sw_version},
        "o": {"name": "doorbell", "sw": sw_version},
        "availability": avail,
        "cmps": {
            f"{device_id}_ring": {
                "p": "event", "name": "Doorbell", "device_class": "doorbell",
                "unique_id": f"{device_id}_ring", "state_topic": ev,
                "event_types": ["ring"],
                # Non-ring events must render empty: HA ignores an empty result (debug log)
                # but warns on JSON without event_type. Extra keys become event attributes.
                "value_template": "{% if value_json.type == 'ring' %}"
                                  "{{ {'event_type': 'ring', 'late': value_json.late | default(false), "
                                  "'ts': value_json.ts} | tojson }}"
                                  "{% endif %}",
            },
            f"{device_id}_motion": {
                "p": "binary_sensor", "name": "Motion", "device_class": "motion",
                "unique_id": f"{device_id}_motion", "state_topic": ev,
                # Other event types render empty, which HA ignores; `this.state` would render
                # HA's lowercase 'on'/'off', which matches neither payload and is logged.
                "value_template": "{% if value_json.type == 'motion_start' %}ON"
                                  "{% elif value_json.type == 'motion_end' %}OFF{% endif %}",
                "payload_on": "ON", "payload_off": "OFF",
            },
            f"{device_id}_snapshot": {
                "p": "image", "name": "Snapshot", "unique_id": f"{device_id}_snapshot",
                "image_topic": snapshot_topic(device_id), "content_type": "image/jpeg",
            },
        },
        "qos": 1,
    }
