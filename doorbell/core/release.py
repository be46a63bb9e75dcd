"""Consent that releases keys (issue 12, sharing rule 8): re-wrapped age headers for an agency.

A sealed clip's objects (video, snapshot, signed manifest) are age files to the
household's recipients. On approval the owner's app unwraps each object's file
key with the owner's identity and writes a fresh header for the same payload,
addressed to the agency's registered X25519 recipient
(:func:`release_object`). The signed decision covers each new header's SHA-256
(:func:`doorbell.core.signing.sign_decision` with a
:class:`~doorbell.core.signing.Release`); the service checks the carried
headers against those digests (:func:`check_headers`) and stores only the
headers and the object keys. The agency puts header and payload together
(:func:`open_released`), decrypts, and checks the plaintext against the
device-signed manifest and the device's registered key (:func:`verify_released`).

Nothing here needs the payload to re-wrap: the payload key derives from the
file key and the payload's own nonce, so ``new header + payload`` is a valid
age file (``age -d -i agency-key.txt`` opens it).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from doorbell.core import age
from doorbell.core import manifest as mf
from doorbell.core.errors import DoorbellError
from doorbell.core.protocol import Decision, ReleasedObject
from doorbell.core.signing import Release

RELEASED_KINDS = ("video", "snapshot", "manifest")


class ReleaseError(DoorbellError, ValueError):
    """A released header or object does not match what the owner signed, or does not open."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class SealedSource:
    """One household age object the owner is about to release: its bucket key and its header bytes."""

    key: str
    header: bytes


def release_object(source: SealedSource, identities: Sequence[age.X25519Identity],
                   agency_recipient: age.X25519Recipient) -> tuple[ReleasedObject, bytes]:
    """The signed description of one released object and its new header (owner side)."""
    age.parse_header(source.header)  # exactly one header, nothing after it
    new_header = age.rewrap_header(source.header, identities, [agency_recipient])
    return (ReleasedObject(key=source.key, payload_offset=len(source.header), header_sha256=sha256_hex(new_header)),
            new_header)


def build_release(clips: Mapping[str, Mapping[str, SealedSource]], identities: Sequence[age.X25519Identity],
                  agency_recipient: str) -> Release:
    """Re-wrap every approved clip's objects for the agency; the result goes into ``sign_decision``."""
    recipient = age.parse_recipient(agency_recipient)
    released: dict[str, dict[str, ReleasedObject]] = {}
    headers: dict[str, dict[str, str]] = {}
    for clip_id, objects in clips.items():
        for kind, source in objects.items():
            if kind not in RELEASED_KINDS:
                raise ReleaseError(f"{kind} is not an object an approval releases")
            obj, header = release_object(source, identities, recipient)
            released.setdefault(clip_id, {})[kind] = obj
            headers.setdefault(clip_id, {})[kind] = base64.b64encode(header).decode()
    return Release(agency_recipient=str(recipient), released=released, headers=headers)


def check_headers(decision: Decision) -> dict[str, dict[str, bytes]]:
    """The decision's headers, each checked against the SHA-256 the owner signed (service and agency side).

    Call after the signature verified. A header swapped in from another clip,
    or addressed to another recipient than the signed one, is refused.
    """
    if decision.released is None or decision.headers is None or decision.agency_recipient is None:
        raise ReleaseError("this decision releases no keys")
    age.parse_recipient(decision.agency_recipient)  # a stanza does not name its recipient; the signed field does
    out: dict[str, dict[str, bytes]] = {}
    for clip_id, objects in decision.released.items():
        for kind, obj in objects.items():
            try:
                header = base64.b64decode(decision.headers[clip_id][kind], validate=True)
            except (KeyError, binascii.Error):
                raise ReleaseError(f"clip {clip_id}: no readable header for its {kind}") from None
            if sha256_hex(header) != obj.header_sha256:
                raise ReleaseError(f"clip {clip_id}: the {kind} header is not the one the owner signed")
            parsed = age.parse_header(header)
            shares = [s for s in parsed.stanzas if s.type == "X25519"]
            if len(parsed.stanzas) != 1 or len(shares) != 1:
                raise ReleaseError(f"clip {clip_id}: the {kind} header must have exactly one recipient")
            out.setdefault(clip_id, {})[kind] = header
    return out


def open_released(header: bytes, payload: io.BufferedIOBase | io.BytesIO | age.Reader, dest: Path,
                  identities: Sequence[age.X25519Identity],
                  expected_header_sha256: str | None = None) -> age.StreamResult:
    """Header + payload -> plaintext at ``dest`` (agency side); nothing is left at ``dest`` on failure."""
    if expected_header_sha256 is not None and sha256_hex(header) != expected_header_sha256:
        raise ReleaseError("the header is not the one the owner signed")
    tmp = dest.with_name(dest.name + ".part")
    try:
        with tmp.open("wb") as out:
            result = age.decrypt(_Concat(header, payload), out, identities)
        tmp.replace(dest)
        return result
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def verify_released(files: Mapping[str, Path], manifest_path: Path, device_key: str) -> mf.ClipManifest:
    """Check decrypted files against the decrypted, device-signed manifest and the device's registered key."""
    manifest = mf.verify_manifest(mf.load_manifest(manifest_path.read_bytes()), device_key)
    for kind, path in files.items():
        want = {str(k): v for k, v in manifest.files.items()}.get(kind)
        if want is None:
            raise ReleaseError(f"the manifest names no {kind}")
        with path.open("rb") as fh:
            digest, size = mf.digest_stream(fh)
        if digest != want.plaintext_sha256 or size != want.plaintext_size:
            raise ReleaseError(f"{kind} does not match the device-signed manifest (altered or another clip's)")
    return manifest


class _Concat:
    """A reader over ``header`` then ``payload`` (age.decrypt reads one stream)."""

    def __init__(self, header: bytes, payload: age.Reader):
        self._head = io.BytesIO(header)
        self._payload = payload

    def read(self, size: int = -1, /) -> bytes:
        data = self._head.read(size)
        if size < 0:
            return data + self._payload.read()
        if len(data) < size:
            data += self._payload.read(size - len(data))
        return data

    def readline(self, size: int = -1, /) -> bytes:
        line = self._head.readline(size)
        if line.endswith(b"\n") or (size >= 0 and len(line) >= size):
            return line
        raise age.HeaderError("header does not end where the payload begins")
