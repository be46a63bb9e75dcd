"""Signed clip manifests: what the device recorded, in a form anyone can check offline.

A manifest names one clip (clip id, device id, start/end/trigger times in
integer milliseconds, trigger, pre-roll) and, for each of its files (video,
snapshot, metadata), the SHA-256 and size of the plaintext and of the age
ciphertext. The device signs it with its own Ed25519 key
(``doorbell.core.signing.sign_device_fields``: a device-only domain string,
then the canonical JSON of every field but ``signature``). An agency or a
court checks a decrypted clip with ``doorbell verify`` and the device's public
key, without trusting the cloud. Test vectors: ``tests/vectors/manifest_v1.json``.

API::

    digest = FileDigest.from_stream(age_result)        # or FileDigest(plaintext_sha256=..., ...)
    m = build_manifest(clip_id=..., device_id=..., trigger="ring", started_at=t0, ended_at=t1,
                       trigger_at=t, pre_roll_s=5.0, files={"video": digest, "snapshot": ...})
    signed = sign_manifest(m, device_key)               # sets device_key and signature
    data = manifest_json(signed)                        # canonical bytes to store next to the clip
    m2 = verify_manifest(load_manifest(data), "ed25519:...")   # raises ManifestError / SignatureError
    match = match_file(m2, reader)                      # which file (and plaintext or ciphertext) it is
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from doorbell.core.age import Reader, StreamResult
from doorbell.core.errors import DoorbellError
from doorbell.core.protocol import CLIP_ID_PATTERN, ID_PATTERN, Trigger
from doorbell.core.signing import (
    SignatureError,
    canonical_json,
    parse_public_key,
    public_key_text,
    sign_device_fields,
    verify_device_fields,
)

FileKind = Literal["video", "snapshot", "metadata"]
Form = Literal["plaintext", "ciphertext"]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
TimeMs = Annotated[int, Field(ge=1_500_000_000_000, le=32_503_680_000_000)]  # 2017 .. 3000
MAX_MANIFEST_BYTES = 64 * 1024


class ManifestError(DoorbellError, ValueError):
    """A manifest is malformed, or a file does not match it."""


class FileDigest(BaseModel):
    """One file of a clip: its plaintext, and the age file the device stored (absent if stored in clear)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    plaintext_sha256: Sha256Hex
    plaintext_size: int = Field(ge=0)
    ciphertext_sha256: Sha256Hex | None = None
    ciphertext_size: int | None = Field(None, ge=0)

    @classmethod
    def from_stream(cls, result: StreamResult) -> FileDigest:
        """From what ``doorbell.core.age.encrypt``/``Encryptor.close`` returned."""
        return cls(plaintext_sha256=result.plaintext_sha256, plaintext_size=result.plaintext_size,
                   ciphertext_sha256=result.ciphertext_sha256, ciphertext_size=result.ciphertext_size)


class ClipManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["clip_manifest"] = "clip_manifest"
    v: Literal[1] = 1
    clip_id: str = Field(pattern=CLIP_ID_PATTERN)
    device_id: str = Field(pattern=ID_PATTERN)
    trigger: Trigger
    started_at_ms: TimeMs
    ended_at_ms: TimeMs
    trigger_at_ms: TimeMs
    pre_roll_ms: int = Field(ge=0, le=60_000)
    files: dict[FileKind, FileDigest]
    device_key: str = Field("", max_length=60)  # ed25519:... of the signer; the verifier must still name the key
    signature: str = Field("", max_length=100)

    @model_validator(mode="after")
    def _shape(self) -> ClipManifest:
        if self.ended_at_ms < self.started_at_ms:
            raise ValueError("ended_at_ms is before started_at_ms")
        if "video" not in self.files:
            raise ValueError("a manifest names the clip's video")
        return self

    def fields(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _ms(t: float) -> int:
    return int(round(t * 1000))


def build_manifest(*, clip_id: str, device_id: str, trigger: str, started_at: float, ended_at: float,
                   trigger_at: float, pre_roll_s: float,
                   files: Mapping[str, FileDigest | StreamResult]) -> ClipManifest:
    """An unsigned manifest; times are epoch seconds (as in the spool's ClipMeta), stored as integer ms."""
    try:
        return ClipManifest.model_validate({
            "clip_id": clip_id, "device_id": device_id, "trigger": trigger, "started_at_ms": _ms(started_at),
            "ended_at_ms": _ms(ended_at), "trigger_at_ms": _ms(trigger_at), "pre_roll_ms": _ms(pre_roll_s),
            "files": {k: FileDigest.from_stream(v) if isinstance(v, StreamResult) else v for k, v in files.items()}})
    except ValidationError as exc:
        raise ManifestError(f"invalid manifest: {_first_error(exc)}") from None


def sign_manifest(manifest: ClipManifest, key: Ed25519PrivateKey) -> ClipManifest:
    fields = {**manifest.fields(), "device_key": public_key_text(key), "signature": ""}
    return ClipManifest.model_validate({**fields, "signature": sign_device_fields(key, fields)})


def verify_manifest(manifest: ClipManifest, public_key: Ed25519PublicKey | str) -> ClipManifest:
    """Check the signature against the device key the verifier trusts (never the one the manifest names)."""
    pub = parse_public_key(public_key) if isinstance(public_key, str) else public_key
    expected = public_key_text(pub)
    if not manifest.signature:
        raise SignatureError("the manifest is not signed")
    try:
        verify_device_fields(manifest.fields(), manifest.signature, pub)
    except SignatureError:
        if manifest.device_key and manifest.device_key != expected:
            raise SignatureError(f"manifest is signed by {manifest.device_key}, not by the given device key "
                                 f"{expected}") from None
        raise SignatureError("signature does not verify: the manifest was altered after signing, or was not "
                             "signed by this device") from None
    if manifest.device_key != expected:  # signed over, so only a signer could have put another key here
        raise SignatureError("manifest names another signer key than the one that verifies it")
    return manifest


def manifest_json(manifest: ClipManifest) -> bytes:
    """Canonical bytes for storage (signature included)."""
    return canonical_json(manifest.fields())


def load_manifest(data: bytes | str) -> ClipManifest:
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"manifest larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ManifestError("manifest is not JSON") from None
    if not isinstance(doc, dict) or doc.get("type") != "clip_manifest":
        raise ManifestError("not a doorbell clip manifest")
    try:
        return ClipManifest.model_validate(doc)
    except ValidationError as exc:
        raise ManifestError(f"invalid manifest: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    e = exc.errors()[0]
    where = ".".join(str(p) for p in e.get("loc", ())) or "manifest"
    return f"{where}: {e.get('msg', 'invalid')}"


@dataclass(frozen=True)
class FileMatch:
    """How one file compares with a manifest."""

    sha256: str
    size: int
    kind: FileKind | None = None  # None: matches nothing in the manifest
    form: Form | None = None

    @property
    def ok(self) -> bool:
        return self.kind is not None


def digest_stream(reader: Reader, chunk: int = 1 << 20) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    while True:
        data = reader.read(chunk)
        if not data:
            return h.hexdigest(), size
        h.update(data)
        size += len(data)


def match_file(manifest: ClipManifest, reader: Reader, kind: FileKind | None = None) -> FileMatch:
    """Hash ``reader`` and find the manifest entry (of ``kind``, if given) whose plaintext or ciphertext it is."""
    sha, size = digest_stream(reader)
    for k, d in manifest.files.items():
        if kind is not None and k != kind:
            continue
        if d.plaintext_sha256 == sha and d.plaintext_size == size:
            return FileMatch(sha, size, k, "plaintext")
        if d.ciphertext_sha256 == sha and d.ciphertext_size == size:
            return FileMatch(sha, size, k, "ciphertext")
    return FileMatch(sha, size)

