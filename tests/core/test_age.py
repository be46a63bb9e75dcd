"""doorbell.core.age against tools nobody here wrote, and under attack.

Interop runs in both directions with the stock ``age`` CLI (Debian ``age``,
installed by ``scripts/bootstrap.sh --test``) and with rage through ``pyrage``:
our files open with theirs, theirs open with ours, and a re-wrapped header
plus the untouched payload opens with ``age -d -i agency-key.txt``.
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tracemalloc
from pathlib import Path

import pyrage
import pytest

from doorbell.core import age

SIZES = [0, 1, age.CHUNK_SIZE - 1, age.CHUNK_SIZE, age.CHUNK_SIZE + 1, 3 * age.CHUNK_SIZE, 200_000]


@pytest.fixture(scope="module")
def age_cli() -> str:
    exe = shutil.which("age")
    assert exe, "the age CLI is missing: apt-get install age (scripts/bootstrap.sh --test does)"
    return exe


def keyfile(tmp_path: Path, identity: age.X25519Identity, name: str = "key.txt") -> Path:
    path = tmp_path / name
    age.save_identity(identity, path)
    return path


def enc_bytes(data: bytes, recipients: list[age.X25519Recipient]) -> tuple[bytes, age.StreamResult]:
    out = io.BytesIO()
    result = age.encrypt(io.BytesIO(data), out, recipients)
    return out.getvalue(), result


def dec_bytes(data: bytes, identities: list[age.X25519Identity]) -> bytes:
    out = io.BytesIO()
    age.decrypt(io.BytesIO(data), out, identities)
    return out.getvalue()


# ----------------------------------------------------------------------------- keys


def test_keys_round_trip_and_match_age_keygen(tmp_path: Path) -> None:
    identity = age.generate_identity()
    assert str(identity).startswith("AGE-SECRET-KEY-1") and str(age.parse_identity(str(identity))) == str(identity)
    assert str(identity.recipient).startswith("age1")
    assert age.parse_recipient(str(identity.recipient)) == identity.recipient
    assert str(identity) not in repr(identity)
    # age-keygen -y derives the same recipient from our identity file
    path = keyfile(tmp_path, identity)
    assert (path.stat().st_mode & 0o777) == 0o600
    derived = subprocess.run(["age-keygen", "-y", str(path)], capture_output=True, text=True, check=True).stdout
    assert derived.strip() == str(identity.recipient)
    # and we read age-keygen's files
    theirs = tmp_path / "theirs.txt"
    subprocess.run(["age-keygen", "-o", str(theirs)], capture_output=True, check=True)
    [loaded] = age.load_identities(theirs)
    pub = subprocess.run(["age-keygen", "-y", str(theirs)], capture_output=True, text=True, check=True).stdout
    assert str(loaded.recipient) == pub.strip()


@pytest.mark.parametrize("text", ["", "age1", "age1qqqq", "AGE-SECRET-KEY-1QQQ", "ed25519:abc",
                                  "age1" + "q" * 58, "Age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj"])
def test_bad_recipients_refused(text: str) -> None:
    with pytest.raises(age.KeyFormatError):
        age.parse_recipient(text)


def test_identity_file_errors_do_not_echo_secrets(tmp_path: Path) -> None:
    secret = str(age.generate_identity())
    with pytest.raises(age.KeyFormatError) as exc:
        age.parse_identities(f"# comment\n{secret[:-1]}x\n")
    assert "line 2" in str(exc.value) and secret[:20] not in str(exc.value)
    with pytest.raises(age.KeyFormatError):
        age.parse_identities("# nothing here\n")
    loose = tmp_path / "loose.txt"
    loose.write_text(secret + "\n")
    loose.chmod(0o644)
    with pytest.raises(age.KeyFormatError, match="readable by others"):
        age.load_identities(loose)


# ----------------------------------------------------------------------------- interop


@pytest.mark.parametrize("size", SIZES)
def test_ours_opens_with_age_cli(tmp_path: Path, age_cli: str, size: int) -> None:
    data = os.urandom(size)
    a, b = age.generate_identity(), age.generate_identity()
    blob, result = enc_bytes(data, [a.recipient, b.recipient])
    assert result.plaintext_size == size and result.plaintext_sha256 == hashlib.sha256(data).hexdigest()
    assert result.ciphertext_size == len(blob) and result.ciphertext_sha256 == hashlib.sha256(blob).hexdigest()
    (tmp_path / "clip.age").write_bytes(blob)
    for ident in (a, b):  # every household member's key opens it
        key = keyfile(tmp_path, ident, f"{ident.recipient}.txt")
        out = subprocess.run([age_cli, "-d", "-i", str(key), str(tmp_path / "clip.age")], capture_output=True,
                             check=True).stdout
        assert out == data


@pytest.mark.parametrize("size", SIZES)
def test_age_cli_output_opens_with_ours(tmp_path: Path, age_cli: str, size: int) -> None:
    data = os.urandom(size)
    a, other = age.generate_identity(), age.generate_identity()
    (tmp_path / "plain").write_bytes(data)
    subprocess.run([age_cli, "-r", str(other.recipient), "-r", str(a.recipient), "-o", str(tmp_path / "x.age"),
                    str(tmp_path / "plain")], check=True)
    assert dec_bytes((tmp_path / "x.age").read_bytes(), [a]) == data


def test_rewrapped_header_opens_with_age_cli(tmp_path: Path, age_cli: str) -> None:
    """The consent path: the owner re-wraps a clip's header for the agency; the payload is not touched."""
    data = os.urandom(3 * age.CHUNK_SIZE + 12345)
    owner, agency = age.generate_identity(), age.generate_identity()
    (tmp_path / "plain").write_bytes(data)
    subprocess.run([age_cli, "-r", str(owner.recipient), "-o", str(tmp_path / "clip.age"), str(tmp_path / "plain")],
                   check=True)
    blob = (tmp_path / "clip.age").read_bytes()
    header, offset = age.header_and_payload_offset(io.BytesIO(blob))
    assert blob.startswith(header) and offset == len(header)
    new_header = age.rewrap_header(header, [owner], [agency.recipient])
    assert new_header != header
    (tmp_path / "shared.age").write_bytes(new_header + blob[offset:])
    out = subprocess.run([age_cli, "-d", "-i", str(keyfile(tmp_path, agency, "agency-key.txt")),
                          str(tmp_path / "shared.age")], capture_output=True, check=True).stdout
    assert out == data
    # the owner's key no longer opens the re-wrapped file; the agency's does not open the original
    r = subprocess.run([age_cli, "-d", "-i", str(keyfile(tmp_path, owner, "owner.txt")), str(tmp_path / "shared.age")],
                       capture_output=True)
    assert r.returncode != 0 and b"no identity matched" in r.stderr
    with pytest.raises(age.NoIdentityMatchError):
        dec_bytes(blob, [agency])


def test_rewrap_needs_an_identity_that_opens_the_header() -> None:
    owner, agency, stranger = age.generate_identity(), age.generate_identity(), age.generate_identity()
    blob, _ = enc_bytes(b"clip", [owner.recipient])
    header, _ = age.header_and_payload_offset(io.BytesIO(blob))
    with pytest.raises(age.NoIdentityMatchError):
        age.rewrap_header(header, [stranger], [agency.recipient])
    with pytest.raises(age.HeaderError):  # header bytes must be exactly one header
        age.rewrap_header(blob, [owner], [agency.recipient])
    tampered = header.replace(b"X25519 ", b"X25519 A", 1)
    with pytest.raises(age.AgeError):
        age.rewrap_header(tampered, [owner], [agency.recipient])


def test_interop_with_rage(tmp_path: Path) -> None:
    data = os.urandom(2 * age.CHUNK_SIZE + 7)
    ours = age.generate_identity()
    theirs = pyrage.x25519.Identity.generate()
    blob, _ = enc_bytes(data, [age.parse_recipient(str(theirs.to_public()))])
    assert pyrage.decrypt(blob, [theirs]) == data
    rage_blob = pyrage.encrypt(data, [pyrage.x25519.Recipient.from_str(str(ours.recipient))])
    assert dec_bytes(rage_blob, [ours]) == data
    header, offset = age.header_and_payload_offset(io.BytesIO(rage_blob))
    again = age.rewrap_header(header, [ours], [age.parse_recipient(str(theirs.to_public()))])
    assert pyrage.decrypt(again + rage_blob[offset:], [theirs]) == data


# ----------------------------------------------------------------------------- refusals


def test_tampered_chunk_refused_by_us_and_by_age(tmp_path: Path, age_cli: str) -> None:
    data = os.urandom(3 * age.CHUNK_SIZE)
    owner = age.generate_identity()
    blob, _ = enc_bytes(data, [owner.recipient])
    _, offset = age.header_and_payload_offset(io.BytesIO(blob))
    pos = offset + 16 + age.CIPHERTEXT_CHUNK_SIZE + 1000  # inside the second chunk
    bad = bytearray(blob)
    bad[pos] ^= 0x01
    out = io.BytesIO()
    with pytest.raises(age.PayloadError, match="chunk 1"):
        age.decrypt(io.BytesIO(bytes(bad)), out, [owner])
    assert out.getvalue() == data[:age.CHUNK_SIZE]  # only the authenticated first chunk was released
    (tmp_path / "bad.age").write_bytes(bad)
    r = subprocess.run([age_cli, "-d", "-i", str(keyfile(tmp_path, owner)), str(tmp_path / "bad.age")],
                       capture_output=True)
    assert r.returncode != 0


@pytest.mark.parametrize("cut", ["in_header", "nonce", "one_chunk", "last_byte", "mid_chunk"])
def test_truncation_refused(cut: str) -> None:
    owner = age.generate_identity()
    blob, _ = enc_bytes(os.urandom(2 * age.CHUNK_SIZE + 100), [owner.recipient])
    _, offset = age.header_and_payload_offset(io.BytesIO(blob))
    end = {"in_header": offset - 5, "nonce": offset + 8, "one_chunk": offset + 16 + age.CIPHERTEXT_CHUNK_SIZE,
           "last_byte": len(blob) - 1, "mid_chunk": offset + 16 + 5000}[cut]
    with pytest.raises(age.HeaderError if cut in ("in_header", "nonce") else age.PayloadError):
        dec_bytes(blob[:end], [owner])


def test_interrupted_encryptor_leaves_a_refused_file() -> None:
    """An exception inside ``with Encryptor`` writes no final chunk: the partial file never decrypts whole."""
    owner = age.generate_identity()
    out = io.BytesIO()
    with pytest.raises(RuntimeError):
        with age.Encryptor(out, [owner.recipient]) as enc:
            enc.write(os.urandom(3 * age.CHUNK_SIZE))
            raise RuntimeError("camera failed")
    with pytest.raises(age.PayloadError, match="without its final chunk"):
        dec_bytes(out.getvalue(), [owner])


def test_wrong_identity_and_edited_header_refused() -> None:
    owner, stranger = age.generate_identity(), age.generate_identity()
    blob, _ = enc_bytes(b"frame", [owner.recipient])
    with pytest.raises(age.NoIdentityMatchError):
        dec_bytes(blob, [stranger])
    with pytest.raises(age.NoIdentityMatchError):
        dec_bytes(blob, [])
    # add a second recipient to the header without the file key: the MAC gives it away
    header, offset = age.header_and_payload_offset(io.BytesIO(blob))
    extra = age.Stanza("X25519", (age._b64(os.urandom(32)),), os.urandom(32)).encode()
    forged = header.replace(b"\n---", b"\n" + extra[:-1] + b"\n---", 1)
    with pytest.raises(age.HeaderMacError):
        dec_bytes(forged + blob[offset:], [owner])
    with pytest.raises(age.HeaderError):
        dec_bytes(b"not an age file at all\n", [owner])


def test_encryptor_push_style_matches_any_write_pattern() -> None:
    data = os.urandom(5 * age.CHUNK_SIZE + 3)
    owner = age.generate_identity()
    out = io.BytesIO()
    with age.Encryptor(out, [owner.recipient]) as enc:
        for piece in (data[:10], data[10:70_000], data[70_000:70_001], data[70_001:]):
            enc.write(piece)
    assert enc.result is not None and enc.result.plaintext_size == len(data)
    assert out.getvalue().startswith(enc.header)
    assert dec_bytes(out.getvalue(), [owner]) == data
    with pytest.raises(age.AgeError):
        enc.write(b"late")
    with pytest.raises(age.AgeError):
        age.encrypt(io.BytesIO(b"x"), io.BytesIO(), [])


# ----------------------------------------------------------------------------- memory


def test_streaming_memory_is_flat_for_50_mb(tmp_path: Path) -> None:
    """Encrypting and decrypting a 50 MB file allocates a few chunks, not the file (tracemalloc peak)."""
    size = 50 * 2**20
    src = tmp_path / "clip.mp4"
    block = os.urandom(2**20)
    with open(src, "wb") as fh:
        for i in range(size // len(block)):
            fh.write(bytes([i % 256]) + block[1:])
    owner = age.generate_identity()
    tracemalloc.start()
    try:
        with open(src, "rb") as r, open(tmp_path / "clip.age", "wb") as w:
            enc = age.encrypt(r, w, [owner.recipient])
        _, enc_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        with open(tmp_path / "clip.age", "rb") as r, open(tmp_path / "out.mp4", "wb") as w:
            dec = age.decrypt(r, w, [owner])
        _, dec_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert enc.plaintext_size == dec.plaintext_size == size
    assert enc.plaintext_sha256 == dec.plaintext_sha256
    assert enc.ciphertext_sha256 == dec.ciphertext_sha256
    assert enc_peak < 1 * 2**20, f"encrypt peak {enc_peak} bytes"
    assert dec_peak < 1 * 2**20, f"decrypt peak {dec_peak} bytes"


class Trickle:
    """A reader with only ``read``, returning at most 1000 bytes a call (a socket or a pipe)."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)

    def read(self, size: int = -1, /) -> bytes:
        return self._data.read(1000 if size < 0 else min(size, 1000))


def test_short_reads_and_no_readline() -> None:
    data = os.urandom(2 * age.CHUNK_SIZE + 99)
    owner = age.generate_identity()
    out = io.BytesIO()
    enc = age.encrypt(Trickle(data), out, [owner.recipient])
    plain = io.BytesIO()
    dec = age.decrypt(Trickle(out.getvalue()), plain, [owner])
    assert plain.getvalue() == data
    assert dec.ciphertext_sha256 == enc.ciphertext_sha256 and dec.ciphertext_size == enc.ciphertext_size
    header, offset = age.header_and_payload_offset(Trickle(out.getvalue()))
    assert out.getvalue()[:offset] == header
