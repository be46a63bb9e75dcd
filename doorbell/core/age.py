"""age v1 encryption (C2SP age specification) for clips: X25519 recipients, streaming, key re-wrap.

Files written here open with the stock ``age`` CLI (``age -d -i key.txt``) and
files ``age -r`` writes open here. Only what the doorbell needs is implemented:
X25519 recipients and identities, binary (not armored) files. docs/encryption.md
says why this is hand-written on ``cryptography``'s primitives rather than a
library (in short: no library exposes the file key for a re-wrap, none takes a
push-style stream, and rage's Python wheel has no 32-bit ARM build).

API::

    identity = generate_identity()            # X25519Identity; str(identity) -> "AGE-SECRET-KEY-1..."
    recipient = identity.recipient            # X25519Recipient; str(recipient) -> "age1..."
    parse_recipient("age1..."); parse_identity("AGE-SECRET-KEY-1...")
    parse_identities(text); load_identities(path); save_identity(identity, path)   # age-keygen file format

    result = encrypt(reader, writer, [recipient, ...])    # -> StreamResult: sizes and SHA-256s
    with Encryptor(writer, recipients) as enc:            # push-style: feed bytes as they are produced;
        enc.write(chunk)                                  # only a clean exit writes the final chunk
    result = decrypt(reader, writer, [identity, ...])     # -> StreamResult; raises AgeError subclasses

    header, offset = header_and_payload_offset(reader)    # the raw header; the payload starts at offset
    new_header = rewrap_header(header, [identity], [agency_recipient])
    # new_header + the original file's bytes from offset on is a valid age file for the agency.

Memory stays flat: the payload moves in age's 64 KiB chunks. ``decrypt`` writes
each chunk as soon as it is authenticated, so when it raises, the caller must
discard what was written (the error says the file is damaged or tampered with).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import logging
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bech32 import bech32_decode, bech32_encode, convertbits
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from doorbell.core.errors import DoorbellError

log = logging.getLogger(__name__)

VERSION_LINE = b"age-encryption.org/v1"
X25519_LABEL = b"age-encryption.org/v1/X25519"
RECIPIENT_HRP = "age"
IDENTITY_HRP = "age-secret-key-"
FILE_KEY_SIZE = 16
PAYLOAD_NONCE_SIZE = 16
CHUNK_SIZE = 64 * 1024                 # plaintext bytes per STREAM chunk
TAG_SIZE = 16
CIPHERTEXT_CHUNK_SIZE = CHUNK_SIZE + TAG_SIZE
MAX_HEADER_BYTES = 1 << 20             # a header is a few hundred bytes; refuse a runaway one
_BODY_COLUMNS = 64                     # base64 characters per stanza body line
_BODY_LINE_BYTES = 48                  # bytes those 64 characters carry
_LAST_COUNTER = (1 << 88) - 1


class AgeError(DoorbellError, ValueError):
    """An age file, header or key was refused; ``str()`` says why."""


class KeyFormatError(AgeError):
    """An identity or recipient string is not a valid X25519 age key."""


class HeaderError(AgeError):
    """The header is malformed (not age v1, or not in canonical form)."""


class NoIdentityMatchError(AgeError):
    """None of the given identities opens any of the file's recipient stanzas."""


class HeaderMacError(AgeError):
    """The file key was unwrapped but the header MAC is wrong: the header was altered."""


class PayloadError(AgeError):
    """The encrypted payload is damaged, truncated or tampered with."""


class Writer(Protocol):
    def write(self, data: bytes, /) -> int | None: ...


class Reader(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


# ----------------------------------------------------------------------------- encodings


def _b64(data: bytes) -> str:
    """age's base64: standard alphabet, no padding."""
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str, what: str) -> bytes:
    """Strict, canonical unpadded base64 (as age's parser: no '=', no CR, no stray bits)."""
    if "=" in text or "\r" in text or "\n" in text:
        raise HeaderError(f"{what}: not canonical unpadded base64")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise HeaderError(f"{what}: invalid base64") from None
    if _b64(raw) != text:
        raise HeaderError(f"{what}: not canonical base64")
    return raw


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def _bech32_encode(hrp: str, data: bytes) -> str:
    words = convertbits(list(data), 8, 5, True)
    assert words is not None  # 8 -> 5 bits with padding always succeeds
    return bech32_encode(hrp, words)


def _bech32_decode(text: str, hrp: str, what: str) -> bytes:
    got_hrp, words = bech32_decode(text.strip())
    if got_hrp is None or words is None:
        raise KeyFormatError(f"{what} is not valid Bech32 (typo or truncated?)")
    if got_hrp != hrp:
        raise KeyFormatError(f"{what} must start with {hrp.upper() if what == 'identity' else hrp}1")
    raw = convertbits(words, 5, 8, False)
    if raw is None or len(raw) != 32:
        raise KeyFormatError(f"{what} does not carry a 32-byte X25519 key")
    return bytes(raw)


# ----------------------------------------------------------------------------- keys


@dataclass(frozen=True)
class X25519Recipient:
    """Someone files can be encrypted to: ``age1...``."""

    public_key: bytes

    def __post_init__(self) -> None:
        if len(self.public_key) != 32:
            raise KeyFormatError("an X25519 public key is 32 bytes")

    def __str__(self) -> str:
        return _bech32_encode(RECIPIENT_HRP, self.public_key)


class X25519Identity:
    """A secret key that opens files encrypted to its recipient: ``AGE-SECRET-KEY-1...``."""

    __slots__ = ("_key", "recipient")

    def __init__(self, private_key: X25519PrivateKey):
        self._key = private_key
        self.recipient = X25519Recipient(private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw))

    def __str__(self) -> str:
        raw = self._key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                      serialization.NoEncryption())
        return _bech32_encode(IDENTITY_HRP, raw).upper()

    def __repr__(self) -> str:  # never the secret
        return f"X25519Identity(recipient={self.recipient})"

    def _exchange(self, peer: bytes) -> bytes:
        try:
            return self._key.exchange(X25519PublicKey.from_public_bytes(peer))
        except ValueError:  # all-zero shared secret: a low-order point
            raise HeaderError("X25519 stanza: invalid (low-order) ephemeral share") from None


def generate_identity() -> X25519Identity:
    return X25519Identity(X25519PrivateKey.generate())


def parse_recipient(text: str) -> X25519Recipient:
    """``age1...`` (as ``age-keygen -y`` prints it)."""
    if not isinstance(text, str):
        raise KeyFormatError("recipient must be a string like 'age1...'")
    return X25519Recipient(_bech32_decode(text, RECIPIENT_HRP, "recipient"))


def parse_identity(text: str) -> X25519Identity:
    """``AGE-SECRET-KEY-1...`` (one line of an ``age-keygen`` file)."""
    if not isinstance(text, str):
        raise KeyFormatError("identity must be a string like 'AGE-SECRET-KEY-1...'")
    raw = _bech32_decode(text, IDENTITY_HRP, "identity")
    return X25519Identity(X25519PrivateKey.from_private_bytes(raw))


def parse_identities(text: str) -> list[X25519Identity]:
    """An identity file: one key per line, ``#`` comments and blank lines ignored."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            out.append(parse_identity(line))
        except KeyFormatError as exc:  # never echo the line: it may be a secret
            raise KeyFormatError(f"identity file line {n}: {exc}") from None
    if not out:
        raise KeyFormatError("identity file holds no AGE-SECRET-KEY-1 line")
    return out


def identity_file_text(identity: X25519Identity, created: str | None = None) -> str:
    """The ``age-keygen`` layout, so ``age -d -i`` reads the file as it is."""
    head = f"# created: {created}\n" if created else ""
    return f"{head}# public key: {identity.recipient}\n{identity}\n"


def save_identity(identity: X25519Identity, path: Path, overwrite: bool = False, created: str | None = None) -> None:
    """Write an identity file with mode 0600 from the first byte."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(identity_file_text(identity, created))
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(path, 0o600)


def load_identities(path: Path) -> list[X25519Identity]:
    path = Path(path).expanduser()
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise KeyFormatError(f"{path}: identity file is readable by others (mode {mode:o}); chmod 600 it")
    return parse_identities(path.read_text())


# ----------------------------------------------------------------------------- header


@dataclass(frozen=True)
class Stanza:
    type: str
    args: tuple[str, ...]
    body: bytes

    def encode(self) -> bytes:
        b64 = _b64(self.body)
        lines = [b64[i:i + _BODY_COLUMNS] for i in range(0, len(b64), _BODY_COLUMNS)]
        if not lines or len(lines[-1]) == _BODY_COLUMNS:
            lines.append("")  # the body always ends with a line shorter than 64 columns
        return ("-> " + " ".join((self.type, *self.args)) + "\n" + "\n".join(lines) + "\n").encode()


@dataclass(frozen=True)
class Header:
    stanzas: tuple[Stanza, ...]
    mac: bytes
    raw: bytes  # exactly as read, through the MAC line's newline

    @property
    def mac_input(self) -> bytes:
        """What the MAC covers: the header up to and including ``---``."""
        return self.raw[:self.raw.rindex(b"\n---") + 4]


def _valid_arg(arg: str) -> bool:
    return bool(arg) and all(33 <= ord(c) <= 126 for c in arg)


def _readline(reader: Reader, limit: int) -> bytes:
    """Up to ``limit`` bytes through the next LF; readline when the reader has it, else byte by byte."""
    readline = getattr(reader, "readline", None)
    if readline is not None:
        line: bytes = readline(limit)
        return line
    buf = bytearray()
    while len(buf) < limit:
        b = reader.read(1)
        if not b:
            break
        buf += b
        if b == b"\n":
            break
    return bytes(buf)


def _read_line(reader: Reader, budget: list[int]) -> bytes:
    """One header line including its LF, charged against the header's byte budget."""
    line = _readline(reader, budget[0] + 1)
    budget[0] -= len(line)
    if budget[0] < 0:
        raise HeaderError(f"header longer than {MAX_HEADER_BYTES} bytes")
    if not line.endswith(b"\n"):
        raise HeaderError("header ends before its MAC line (truncated, or not an age file)")
    return line


def _decode_line(line: bytes) -> str:
    try:
        return line[:-1].decode("ascii")
    except UnicodeDecodeError:
        raise HeaderError("header holds a non-ASCII byte") from None


def read_header(reader: Reader) -> Header:
    """Parse the header from the start of ``reader``, leaving it at the payload."""
    budget = [MAX_HEADER_BYTES]
    raw = bytearray()
    first = _read_line(reader, budget)
    raw += first
    if first[:-1] != VERSION_LINE:
        if first.startswith(b"age-encryption.org/"):
            raise HeaderError("unsupported age version " + repr(first[:-1][:40].decode("ascii", "replace")))
        raise HeaderError("not an age v1 file")
    stanzas: list[Stanza] = []
    while True:
        line = _read_line(reader, budget)
        raw += line
        text = _decode_line(line)
        if text.startswith("---"):
            parts = text.split(" ")
            if parts[0] != "---" or len(parts) != 2:
                raise HeaderError("malformed MAC line")
            mac = _unb64(parts[1], "header MAC")
            if len(mac) != 32:
                raise HeaderError("header MAC is not 32 bytes")
            return Header(tuple(stanzas), mac, bytes(raw))
        if not text.startswith("->"):
            raise HeaderError("unexpected line in header")
        parts = text.split(" ")
        if parts[0] != "->" or len(parts) < 2 or not all(_valid_arg(a) for a in parts[1:]):
            raise HeaderError("malformed recipient stanza line")
        body = bytearray()
        while True:
            bline = _read_line(reader, budget)
            raw += bline
            btext = _decode_line(bline)
            if len(btext) > _BODY_COLUMNS:
                raise HeaderError("stanza body line longer than 64 columns")
            try:
                chunk = _unb64(btext, "stanza body")
            except HeaderError:
                if btext.startswith(("---", "->")):
                    raise HeaderError("stanza body ended without a short final line") from None
                raise
            body += chunk
            if len(chunk) < _BODY_LINE_BYTES:
                break
        stanzas.append(Stanza(parts[1], tuple(parts[2:]), bytes(body)))


def parse_header(header: bytes) -> Header:
    """Parse header bytes that must be exactly one header (as ``header_and_payload_offset`` returns)."""
    stream = io.BytesIO(header)
    parsed = read_header(stream)
    if stream.tell() != len(header):
        raise HeaderError("bytes after the header's MAC line")
    return parsed


def header_and_payload_offset(reader: Reader) -> tuple[bytes, int]:
    """The raw header from the start of ``reader`` and the offset where the payload begins."""
    header = read_header(reader)
    return header.raw, len(header.raw)


def _header_mac_key(file_key: bytes) -> bytes:
    return _hkdf(file_key, b"", b"header")


def _wrap(file_key: bytes, recipient: X25519Recipient) -> Stanza:
    ephemeral = X25519PrivateKey.generate()
    share = ephemeral.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    secret = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient.public_key))
    wrap_key = _hkdf(secret, share + recipient.public_key, X25519_LABEL)
    body = ChaCha20Poly1305(wrap_key).encrypt(b"\x00" * 12, file_key, None)
    return Stanza("X25519", (_b64(share),), body)


def _unwrap_stanza(stanza: Stanza, identity: X25519Identity) -> bytes | None:
    """The file key if this identity opens this X25519 stanza, None if it is not for it."""
    if len(stanza.args) != 1:
        raise HeaderError("X25519 stanza: wrong number of arguments")
    share = _unb64(stanza.args[0], "X25519 stanza share")
    if len(share) != 32:
        raise HeaderError("X25519 stanza: share is not 32 bytes")
    if len(stanza.body) != FILE_KEY_SIZE + TAG_SIZE:
        raise HeaderError("X25519 stanza: wrapped file key has the wrong size")
    secret = identity._exchange(share)
    wrap_key = _hkdf(secret, share + identity.recipient.public_key, X25519_LABEL)
    try:
        return ChaCha20Poly1305(wrap_key).decrypt(b"\x00" * 12, stanza.body, None)
    except InvalidTag:
        return None


def _unwrap(header: Header, identities: Sequence[X25519Identity]) -> bytes:
    """Unwrap the file key with one of ``identities`` and check the header MAC."""
    if not identities:
        raise NoIdentityMatchError("no identity given")
    for stanza in header.stanzas:
        if stanza.type != "X25519":
            continue  # other recipient types (scrypt, ssh, plugins, grease) are not ours to open
        for identity in identities:
            file_key = _unwrap_stanza(stanza, identity)
            if file_key is None:
                continue
            expected = hmac.new(_header_mac_key(file_key), header.mac_input, hashlib.sha256).digest()
            if not hmac.compare_digest(expected, header.mac):
                raise HeaderMacError("header MAC does not match: the header was altered")
            return file_key
    raise NoIdentityMatchError("none of the given identities can open this file")


def _build_header(file_key: bytes, recipients: Iterable[X25519Recipient]) -> bytes:
    stanzas = [_wrap(file_key, r) for r in recipients]
    if not stanzas:
        raise AgeError("at least one recipient is needed")
    body = VERSION_LINE + b"\n" + b"".join(s.encode() for s in stanzas) + b"---"
    mac = hmac.new(_header_mac_key(file_key), body, hashlib.sha256).digest()
    return body + b" " + _b64(mac).encode() + b"\n"


def rewrap_header(header: bytes, identities: Sequence[X25519Identity],
                  recipients: Sequence[X25519Recipient]) -> bytes:
    """A fresh header for the same payload, readable only by ``recipients``.

    ``header`` is a file's header exactly (``header_and_payload_offset``); an
    identity among ``identities`` must open it. The payload is not needed: its
    key derives from the file key and the payload's own nonce.
    """
    file_key = _unwrap(parse_header(header), identities)
    return _build_header(file_key, recipients)


# ----------------------------------------------------------------------------- payload (STREAM)


@dataclass(frozen=True)
class StreamResult:
    """What passed through: sizes and SHA-256 (hex) of the plaintext and of the whole age file."""

    plaintext_size: int
    plaintext_sha256: str
    ciphertext_size: int
    ciphertext_sha256: str


def _nonce(counter: int, last: bool) -> bytes:
    if counter > _LAST_COUNTER:
        raise PayloadError("STREAM counter overflow")
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class Encryptor:
    """Push-style encryption: ``write`` plaintext as it is produced, ``close`` to finish.

    The header and payload nonce are written at construction. Only ``close``
    (or a clean ``with`` exit) writes the final chunk, so an interrupted
    recording leaves a file that every age implementation refuses as truncated.

    Memory is two fixed 64 KiB buffers (plaintext chunk, sealed chunk), reused
    for the whole stream: no per-chunk allocation, so a long recording does not
    churn (or fragment) the heap of the thread that encrypts. As with ``io``
    writers, ``writer.write`` must consume the bytes before it returns: the
    buffer it is handed is reused.
    """

    def __init__(self, writer: Writer, recipients: Sequence[X25519Recipient]):
        self._writer = writer
        file_key = secrets.token_bytes(FILE_KEY_SIZE)
        self.header = _build_header(file_key, recipients)
        nonce = secrets.token_bytes(PAYLOAD_NONCE_SIZE)
        self._aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
        self._chunk = bytearray(CHUNK_SIZE)           # plaintext of the chunk being filled
        self._fill = 0
        self._sealed = bytearray(CIPHERTEXT_CHUNK_SIZE)
        self._into = hasattr(self._aead, "encrypt_into")  # cryptography >= 45
        self._counter = 0
        self._pt_hash = hashlib.sha256()
        self._pt_size = 0
        self._ct_hash = hashlib.sha256()
        self._ct_size = 0
        self._result: StreamResult | None = None
        self._emit(self.header + nonce)

    def _emit(self, data: bytes | memoryview) -> None:
        self._ct_hash.update(data)
        self._ct_size += len(data)
        self._writer.write(data)  # type: ignore[arg-type]  # io writers accept any buffer

    def _seal(self, last: bool) -> None:
        nonce = _nonce(self._counter, last)
        with memoryview(self._chunk) as chunk:
            plain = chunk[:self._fill]
            if self._into:
                with memoryview(self._sealed) as out:
                    sealed = out[:self._fill + TAG_SIZE]
                    self._aead.encrypt_into(nonce, plain, None, sealed)
                    self._emit(sealed)
                    sealed.release()
            else:
                self._emit(self._aead.encrypt(nonce, plain, None))
            plain.release()
        self._fill = 0
        self._counter += 1

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._result is not None:
            raise AgeError("write after close")
        with memoryview(data) as raw, raw.cast("B") as view:
            n = len(view)
            self._pt_hash.update(view)
            self._pt_size += n
            pos = 0
            while pos < n:
                if self._fill == CHUNK_SIZE:
                    # A full chunk is sealed only once more data follows: close() seals the last one.
                    self._seal(last=False)
                take = min(CHUNK_SIZE - self._fill, n - pos)
                self._chunk[self._fill:self._fill + take] = view[pos:pos + take]
                self._fill += take
                pos += take
        return n

    def close(self) -> StreamResult:
        if self._result is None:
            self._seal(last=True)
            self._result = StreamResult(self._pt_size, self._pt_hash.hexdigest(),
                                        self._ct_size, self._ct_hash.hexdigest())
        return self._result

    @property
    def result(self) -> StreamResult | None:
        return self._result

    def __enter__(self) -> Encryptor:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()


def encrypt(reader: Reader, writer: Writer, recipients: Sequence[X25519Recipient]) -> StreamResult:
    """Encrypt everything ``reader`` yields to ``recipients``, into ``writer``."""
    enc = Encryptor(writer, recipients)
    while True:
        chunk = reader.read(CHUNK_SIZE)
        if not chunk:
            break
        enc.write(chunk)
    return enc.close()


def _read_full(reader: Reader, n: int) -> bytes:
    data = reader.read(n)
    if len(data) == n or not data:
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = reader.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


class _Hashing:
    """Counts and hashes what is read through it (the ciphertext side of ``decrypt``)."""

    def __init__(self, reader: Reader):
        self._reader = reader
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._reader.read(size)
        self.hash.update(data)
        self.size += len(data)
        return data

    def readline(self, size: int, /) -> bytes:
        if getattr(self._reader, "readline", None) is None:
            return _readline(_ReadOnly(self), size)  # byte reads, through self.read so they are hashed
        data = _readline(self._reader, size)
        self.hash.update(data)
        self.size += len(data)
        return data


class _ReadOnly:
    """Hides ``readline`` so ``_readline`` falls back to ``read``."""

    def __init__(self, reader: Reader):
        self.read = reader.read


def _open_chunk(aead: ChaCha20Poly1305, counter: int, chunk: bytes, last: bool) -> bytes | None:
    try:
        return aead.decrypt(_nonce(counter, last), chunk, None)
    except (InvalidTag, ValueError):
        return None


def decrypt(reader: Reader, writer: Writer, identities: Sequence[X25519Identity]) -> StreamResult:
    """Decrypt an age file from ``reader`` into ``writer``; discard the output if this raises."""
    src = _Hashing(reader)
    try:
        header = read_header(src)
        file_key = _unwrap(header, identities)
        nonce = _read_full(src, PAYLOAD_NONCE_SIZE)
        if len(nonce) != PAYLOAD_NONCE_SIZE:  # age's testkit counts this as a header failure
            raise HeaderError("file ends inside the payload nonce (truncated after the header)")
        aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
        pt_hash = hashlib.sha256()
        pt_size = 0
        counter = 0
        while True:
            chunk = _read_full(src, CIPHERTEXT_CHUNK_SIZE)
            if not chunk:
                raise PayloadError("payload has no chunks (truncated file)" if counter == 0 else
                                   "payload ends without its final chunk (truncated file)")
            # A short chunk must be the last; a full one is normally not, but may be (as age's reader).
            last = len(chunk) < CIPHERTEXT_CHUNK_SIZE
            plain = _open_chunk(aead, counter, chunk, last)
            if plain is None and not last:
                last = True
                plain = _open_chunk(aead, counter, chunk, last)
            if plain is None:
                raise PayloadError(f"payload chunk {counter} fails authentication: the file is damaged, "
                                   "truncated or tampered with")
            if last and not plain and counter > 0:
                raise PayloadError("final payload chunk is empty (not canonical)")
            pt_hash.update(plain)
            pt_size += len(plain)
            writer.write(plain)
            if last:
                if src.read(1):
                    raise PayloadError("data after the final payload chunk")
                break
            counter += 1
    except AgeError as exc:
        log.warning("age decryption refused: %s", exc)
        raise
    return StreamResult(pt_size, pt_hash.hexdigest(), src.size, src.hash.hexdigest())
