"""The sharing service's tables (SQLAlchemy 2 declarative).

Times are float UNIX seconds (UTC) so SQLite and PostgreSQL store them alike.
The Alembic migrations in ``migrations/versions`` create exactly these tables;
``tests/sharing_service/test_db.py`` checks that the two never drift apart.
"""
from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Owner(Base):
    """A home owner: consent is proven by signatures under this public key."""

    __tablename__ = "owners"
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    public_key: Mapped[str] = mapped_column(String(100), nullable=False)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)


class Device(Base):
    """A doorbell: only a coarse location, enough for an area match."""

    __tablename__ = "devices"
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), nullable=False)
    lat: Mapped[float] = mapped_column(Float, nullable=False)
    lon: Mapped[float] = mapped_column(Float, nullable=False)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    # The device's Ed25519 manifest key (ed25519:...): set for a device that seals its clips (issue 12).
    # Agencies get it for the clips shared with them, to check the device's signature.
    public_key: Mapped[str | None] = mapped_column(String(100))
    __table_args__ = (
        # Bounding-box prefilter for area matches (lat range scan, lon filter).
        Index("ix_devices_lat_lon", "lat", "lon"),
        Index("ix_devices_owner", "owner_id"),
    )


class Clip(Base):
    """The clip index, fed by the agents' ``devices/{id}/clips`` messages."""

    __tablename__ = "clips"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), nullable=False)
    trigger: Mapped[str] = mapped_column(String(16), nullable=False)
    started_at: Mapped[float] = mapped_column(Float, nullable=False)
    ended_at: Mapped[float] = mapped_column(Float, nullable=False)
    key: Mapped[str] = mapped_column(String(1024), nullable=False)
    snapshot_key: Mapped[str | None] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    indexed_at: Mapped[float] = mapped_column(Float, nullable=False)
    __table_args__ = (Index("ix_clips_device_started", "device_id", "started_at"),)


class Agency(Base):
    """A police agency: API key stored as a SHA-256 of a 256-bit secret, never in clear."""

    __tablename__ = "agencies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)
    key_id: Mapped[str] = mapped_column(String(16), nullable=False, unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    rate_per_min: Mapped[int | None] = mapped_column(Integer)
    disabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    # The agency's X25519 age recipient (age1...): approvals of sealed clips re-wrap their keys to it.
    age_recipient: Mapped[str | None] = mapped_column(String(70))


class Request(Base):
    """An agency's request; its status to the agency depends on time only (rule 2)."""

    __tablename__ = "requests"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"), nullable=False)
    case_number: Mapped[str] = mapped_column(String(100), nullable=False)
    legal_basis: Mapped[str] = mapped_column(String(500), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    attest_not_protest: Mapped[bool] = mapped_column(Boolean, nullable=False)
    window_start: Mapped[float] = mapped_column(Float, nullable=False)
    window_end: Mapped[float] = mapped_column(Float, nullable=False)
    lat: Mapped[float] = mapped_column(Float, nullable=False)
    lon: Mapped[float] = mapped_column(Float, nullable=False)
    radius_m: Mapped[float] = mapped_column(Float, nullable=False)
    grant_days: Mapped[float] = mapped_column(Float, nullable=False)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    expires_at: Mapped[float] = mapped_column(Float, nullable=False)
    # Set once owners have been matched and asked (matching runs after the HTTP answer).
    matched_at: Mapped[float | None] = mapped_column(Float)
    __table_args__ = (Index("ix_requests_agency_created", "agency_id", "created_at"),
                      Index("ix_requests_expires", "expires_at"))


class RequestTarget(Base):
    """One owner asked under one request, and what they answered. Never shown to agencies."""

    __tablename__ = "request_targets"
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id", ondelete="CASCADE"), primary_key=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), nullable=False)  # pending/approved/denied/expired
    decided_at: Mapped[float | None] = mapped_column(Float)
    __table_args__ = (Index("ix_targets_owner_state", "owner_id", "state"),
                      Index("ix_targets_state", "state"))


class RequestClip(Base):
    """A clip offered to its owner under a request (the only clips an approval may name)."""

    __tablename__ = "request_clips"
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id", ondelete="CASCADE"), primary_key=True)
    clip_id: Mapped[str] = mapped_column(ForeignKey("clips.id", ondelete="CASCADE"), primary_key=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), nullable=False)
    __table_args__ = (Index("ix_request_clips_owner", "request_id", "owner_id"),)


class Grant(Base):
    """An owner's signed approval turned into time-limited, revocable access."""

    __tablename__ = "grants"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id", ondelete="CASCADE"), nullable=False)
    owner_id: Mapped[str] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), nullable=False)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"), nullable=False)
    decision_nonce: Mapped[str] = mapped_column(String(32), nullable=False)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    expires_at: Mapped[float] = mapped_column(Float, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)  # active/expired/revoked
    revoked_at: Mapped[float | None] = mapped_column(Float)
    __table_args__ = (Index("ix_grants_request", "request_id"),
                      Index("ix_grants_owner", "owner_id"),
                      Index("ix_grants_state_expires", "state", "expires_at"))


class GrantClip(Base):
    __tablename__ = "grant_clips"
    grant_id: Mapped[str] = mapped_column(ForeignKey("grants.id", ondelete="CASCADE"), primary_key=True)
    clip_id: Mapped[str] = mapped_column(ForeignKey("clips.id", ondelete="CASCADE"), primary_key=True)


class ReleasedObject(Base):
    """One sealed object an owner's signed approval released: the link target and the agency's header.

    The service holds no key: ``header`` is the fresh age header the owner's app
    wrote for the agency's recipient (its SHA-256 is in the signed decision);
    ``key`` and ``payload_offset`` say where the payload is in the bucket. No
    clip time is stored: the agency reads those from the decrypted manifest.
    """

    __tablename__ = "released_objects"
    grant_id: Mapped[str] = mapped_column(ForeignKey("grants.id", ondelete="CASCADE"), primary_key=True)
    clip_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # video/snapshot/manifest
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), nullable=False)
    key: Mapped[str] = mapped_column(String(1024), nullable=False)
    payload_offset: Mapped[int] = mapped_column(Integer, nullable=False)
    header: Mapped[str] = mapped_column(Text, nullable=False)  # base64
    header_sha256: Mapped[str] = mapped_column(String(64), nullable=False)


class SharedObject(Base):
    """An approved clip's copy under an opaque key (``doorbell.core.bucket.shared_key``).

    Agencies get links to these copies, never to the device's own object, so a
    link names no home (rule 2). The sweeper deletes the copy once its grant is
    revoked or expired (``deleted_at``).
    """

    __tablename__ = "shared_objects"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    grant_id: Mapped[str] = mapped_column(String(32), nullable=False)
    clip_id: Mapped[str] = mapped_column(String(32), nullable=False)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    deleted_at: Mapped[float | None] = mapped_column(Float)
    __table_args__ = (Index("ix_shared_objects_grant", "grant_id", "clip_id", unique=True),
                      Index("ix_shared_objects_deleted", "deleted_at"))


class TransparencyNoise(Base):
    """The noise added to one published transparency figure, drawn once and kept (rule 6).

    Re-drawing on every read would let anyone average the noise away; stored, a
    figure is published once and never changes (see ``sharing_service.transparency``).
    """

    __tablename__ = "transparency_noise"
    agency_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    metric: Mapped[str] = mapped_column(String(16), primary_key=True)
    noise: Mapped[int] = mapped_column(Integer, nullable=False)
    epsilon: Mapped[float] = mapped_column(Float, nullable=False)
    drawn_at: Mapped[float] = mapped_column(Float, nullable=False)


class Nonce(Base):
    """Every signed owner message's nonce, so a replay is refused."""

    __tablename__ = "nonces"
    nonce: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(63), nullable=False)
    seen_at: Mapped[float] = mapped_column(Float, nullable=False)
    expires_at: Mapped[float] = mapped_column(Float, nullable=False)
    # SHA-256 of the message's signature and the Result the service answered: the same signed
    # message sent again (the owner's app retries an unanswered one, e.g. after an instance died
    # between commit and answer) is answered again with this, never applied twice.
    sig_sha256: Mapped[str | None] = mapped_column(String(64))
    result: Mapped[str | None] = mapped_column(Text)


class AuditEntry(Base):
    """Append-only, hash-chained audit log (see doorbell/core/auditchain.py)."""

    __tablename__ = "audit"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ts: Mapped[float] = mapped_column(Float, nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    actor: Mapped[str] = mapped_column(String(250), nullable=False)
    subject: Mapped[str] = mapped_column(String(250), nullable=False)
    owner_id: Mapped[str | None] = mapped_column(String(63))
    details: Mapped[str] = mapped_column(Text, nullable=False)
    body_digest: Mapped[str] = mapped_column(String(64), nullable=False)
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)
    # The owner's own chain over the rows about them (NULL when owner_id is NULL): a row
    # hidden by setting owner_id NULL, or deleted, leaves a gap in it (see docs/sharing.md).
    owner_seq: Mapped[int | None] = mapped_column(Integer)
    owner_prev: Mapped[str | None] = mapped_column(String(64))
    owner_hash: Mapped[str | None] = mapped_column(String(64))
    __table_args__ = (Index("ix_audit_owner_seq", "owner_id", "seq"),
                      Index("ix_audit_kind_ts", "kind", "ts"),
                      Index("ux_audit_owner_chain", "owner_id", "owner_seq", unique=True))


class AuditHead(Base):
    """The chain's last seq and hash: catches a deleted tail, serialises appends."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)


class AuditOwnerHead(Base):
    """Each owner's chain head (last owner_seq and owner_hash): catches a deleted own tail."""

    __tablename__ = "audit_owner_head"
    owner_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)


class AgencyRate(Base):
    """One agency's token bucket, shared by every instance (``sharing_service.ratelimit``)."""

    __tablename__ = "agency_rate"
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id", ondelete="CASCADE"), primary_key=True,
                                           autoincrement=False)
    tokens: Mapped[float] = mapped_column(Float, nullable=False)
    updated_at: Mapped[float] = mapped_column(Float, nullable=False)
    # whether the last take was allowed (read back in the same statement, see ratelimit.py)
    allowed: Mapped[bool] = mapped_column(Boolean, nullable=False)
