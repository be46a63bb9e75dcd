"""doorbell.core.age against the age project's published test vectors (C2SP CCTV testkit).

Each vector is decrypted with its identities; the outcome must be the one the
vector expects (success, or the specific failure class), and the plaintext
released before any failure must match the vector's payload hash. Every
vector whose header parses is also re-encoded and must round-trip byte for
byte, and every success vector's header re-wraps to a fresh recipient whose
file decrypts to the same payload.
"""
from __future__ import annotations

import hashlib
import io
import zlib
from pathlib import Path

import pytest

from doorbell.core import age

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "age"
FILES = sorted(p for p in VECTORS.iterdir() if p.name != "README.md")
EXPECT = {
    "success": None,
    "no match": age.NoIdentityMatchError,
    "HMAC failure": age.HeaderMacError,
    "header failure": age.HeaderError,
    "payload failure": age.PayloadError,
}


def load(path: Path) -> tuple[dict[str, list[str]], bytes]:
    raw = path.read_bytes()
    head, body = raw.split(b"\n\n", 1)
    meta: dict[str, list[str]] = {}
    for line in head.decode().splitlines():
        key, value = line.split(": ", 1)
        meta.setdefault(key, []).append(value)
    if meta.get("compressed") == ["zlib"]:
        body = zlib.decompress(body)
    return meta, body


def test_vectors_present() -> None:
    assert len(FILES) == 67  # the selection README.md describes
    kinds = {load(p)[0]["expect"][0] for p in FILES}
    assert kinds == set(EXPECT)


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_vector(path: Path) -> None:
    meta, body = load(path)
    expect = meta["expect"][0]
    identities = [age.parse_identity(text) for text in meta.get("identity", [])]
    out = io.BytesIO()
    error = EXPECT[expect]
    if error is None:
        result = age.decrypt(io.BytesIO(body), out, identities)
        assert result.ciphertext_size == len(body)
        assert result.ciphertext_sha256 == hashlib.sha256(body).hexdigest()
        assert result.plaintext_sha256 == meta["payload"][0]
    else:
        with pytest.raises(error):
            age.decrypt(io.BytesIO(body), out, identities)
    if "payload" in meta:  # what was released before a failure is exactly what the vector allows
        assert hashlib.sha256(out.getvalue()).hexdigest() == meta["payload"][0]
    if expect != "header failure":
        header = age.read_header(io.BytesIO(body))
        rebuilt = b"age-encryption.org/v1\n" + b"".join(s.encode() for s in header.stanzas) + b"---"
        assert rebuilt == header.mac_input
        assert header.raw == rebuilt + b" " + age._b64(header.mac).encode() + b"\n"


@pytest.mark.parametrize("path", [p for p in FILES if load(p)[0]["expect"] == ["success"]],
                         ids=lambda p: p.name)
def test_vector_rewrap(path: Path) -> None:
    meta, body = load(path)
    identities = [age.parse_identity(text) for text in meta["identity"]]
    header, offset = age.header_and_payload_offset(io.BytesIO(body))
    agency = age.generate_identity()
    new_header = age.rewrap_header(header, identities, [agency.recipient])
    out = io.BytesIO()
    age.decrypt(io.BytesIO(new_header + body[offset:]), out, [agency])
    assert hashlib.sha256(out.getvalue()).hexdigest() == meta["payload"][0]
    with pytest.raises(age.NoIdentityMatchError):  # the new header no longer opens for the old identities
        age.decrypt(io.BytesIO(new_header + body[offset:]), io.BytesIO(), identities)
