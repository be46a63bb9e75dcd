"""The agency HTTP API's request and response bodies (they make the OpenAPI spec).

Responses are designed for sharing rule 2: nothing in them depends on which
homes were asked or what they answered, until a clip is actually shared.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from doorbell.core.text import refusal as text_refusal


class ErrorDetail(BaseModel):
    code: str = Field(description="machine-readable reason, e.g. window_too_long, radius_too_large, "
                                  "attestation_required, missing_field, invalid_field, unauthorized, "
                                  "rate_limited, not_found")
    message: str
    fields: list[dict[str, str]] | None = Field(None, description="per-field reasons for validation errors")


class ErrorBody(BaseModel):
    error: ErrorDetail


class RequestCreate(BaseModel):
    """A police request. Rule 3: case, legal basis, attestation, window <= 12 h, radius <= 800 m."""

    model_config = ConfigDict(extra="forbid")

    case_number: Annotated[str, Field(min_length=1, max_length=100, description="the agency's case number")]
    legal_basis: Annotated[str, Field(min_length=1, max_length=500, description="statute, warrant or other basis")]
    attest_not_protest: Literal[True] = Field(description="must be true: the request does not target lawful protest")
    window_start: AwareDatetime = Field(description="start of the time window (RFC 3339 with a time zone)")
    window_end: AwareDatetime = Field(description="end of the window; at most 12 h after the start")
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    radius_m: float = Field(gt=0, le=800, description="radius around (lat, lon) in metres; at most 800 "
                                                    "(or the lower sharing.max_radius_m)")
    reason: Annotated[str, Field(min_length=1, max_length=2000, description="why the footage is needed")]

    @field_validator("case_number", "legal_basis", "reason")
    @classmethod
    def _readable(cls, value: str) -> str:
        """The owner reads these before signing: no terminal controls, line breaks, bidi
        overrides or invisible-only text (doorbell.core.text, the one policy)."""
        why = text_refusal(value)
        if why:
            raise ValueError(why)
        return value


class RequestCreated(BaseModel):
    id: str
    status: Literal["pending", "closed"]
    created_at: float
    expires_at: float


class RequestStatus(BaseModel):
    """Identical for 'no home matched', 'every home declined' and 'nobody answered yet'."""

    id: str
    case_number: str
    status: Literal["pending", "closed"] = Field(
        description="pending until expires_at, then closed; depends on time only")
    created_at: float
    expires_at: float
    window_start: float
    window_end: float
    clips_shared: int = Field(description="clips currently available to the agency under this request")


class RequestList(BaseModel):
    requests: list[RequestStatus]


class SharedClip(BaseModel):
    clip_id: str
    started_at: float
    ended_at: float
    trigger: str
    size: int
    sha256: str
    url: str = Field(description="presigned GET URL, valid until url_expires_at (minutes)")
    url_expires_at: float
    access_expires_at: float = Field(description=(
        "the earliest end of any grant under this request (the same for every clip, so it tells no homes "
        "apart); a revoke ends access earlier"))


class ReleasedObjectLink(BaseModel):
    url: str = Field(description="presigned GET URL of the sealed object in the bucket, valid until url_expires_at")
    payload_offset: int = Field(description="fetch from this byte on (HTTP Range): the age payload after the "
                                            "household's header")
    header: str = Field(description="base64 of the age header the owner wrote for your registered recipient; "
                                    "header + payload is an age file that `age -d -i agency-key.txt` opens")
    header_sha256: str = Field(description="SHA-256 of the header, as signed in the owner's decision")


class SealedSharedClip(BaseModel):
    clip_id: str
    device_key: str = Field(description="the device's registered Ed25519 key: the decrypted manifest must verify "
                                        "under it (`doorbell verify`). A pseudonym: it names no home, and links "
                                        "only clips that one home's owner chose to share")
    objects: dict[str, ReleasedObjectLink] = Field(description="video, manifest and (if recorded) snapshot")
    url_expires_at: float
    access_expires_at: float


class SharedClipList(BaseModel):
    request_id: str
    clips: list[SharedClip]
    sealed: list[SealedSharedClip] = Field(default_factory=list, description=(
        "end-to-end encrypted clips: the owner released their keys to your registered age recipient; times and "
        "digests are in the device-signed manifest, which the service cannot read"))


class TransparencyRow(BaseModel):
    agency: str
    month: str = Field(description="YYYY-MM (UTC), by request creation")
    requests: int
    approvals: int = Field(description="homes that approved, with differentially private noise (see method)")
    denials: int = Field(description="homes that denied or never answered, with differentially private noise")
    clips_shared: int = Field(description="clips released (exact: the agency receives them)")


class Transparency(BaseModel):
    method: str = Field(description="how the home counts are protected")
    epsilon_per_figure: float = Field(description="privacy loss of one request's outcome per noisy figure")
    epsilon_per_request: float = Field(description="total privacy loss of one request's outcome (both figures)")
    homes_counted_per_request: int = Field(description="a request adds at most this many homes to each figure")
    published_through: str | None = Field(
        description="last month included; months appear once every request in them has closed")
    rows: list[TransparencyRow]


class Health(BaseModel):
    """What ``GET /healthz`` says: a load balancer only needs the status code."""

    status: Literal["ok", "draining", "unavailable"] = Field(
        description="ok: serving (200); draining: shutting down after SIGTERM (503); unavailable: no database (503)")
    database: Literal["ok", "down"] | None = None
    broker: Literal["connected", "disconnected", "disabled"] | None = Field(
        None, description="the owner bridge's MQTT session (informative: HTTP works without it)")
    instance: str | None = Field(None, description="this instance's broker login, to tell instances apart")
