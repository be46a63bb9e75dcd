"""The spool: the only contract between the firmware and the cloud agent.

The firmware never touches the network; it publishes finished clips and events
here. The agent reads them, uploads, publishes over MQTT, and deletes nothing it
has not confirmed. Layout under the spool root::

    tmp/                      staging; whatever is here after a crash is quarantined
    clips/<clip_id>/          published, not yet confirmed in the bucket
        clip.mp4  snapshot.jpg  meta.json                 (encryption off)
        clip.mp4.age  snapshot.jpg.age  meta.json.age  manifest.json.age  meta.json
                                                          (encryption on: "sealed" clips)
    uploaded/<clip_id>/       confirmed in the bucket (retention deletes these first)
    events/<ns>-<event_id>.json   pending events, oldest first
    snapshots/<ns>.jpg        on-demand snapshots waiting to be published
    commands/<ns>-<id>.json   owner commands, agent -> firmware inbox
    state/                    firmware's persisted settings and modes
    quarantine/               crash leftovers and corrupt items, never published

Every publish is atomic: files are written under ``tmp/``, fsynced, and moved
into place with one ``rename`` (a directory rename for clips), then the parent
directory is fsynced. A reader therefore sees a whole item or nothing.

Sealed clips (``encryption.enabled``, issue 12): the video, the snapshot, the
full metadata and the device-signed manifest exist on disk only as age files
encrypted to the household's recipients, written while the clip is recorded
(plaintext stays in RAM). The clear ``meta.json`` (:class:`SealedClipMeta`)
holds only what the agent needs to upload: ids, names, ciphertext sizes and
SHA-256. The same atomic publish applies: everything is fsynced under ``tmp/``
and the directory is renamed into ``clips/`` in one step; an age file cut off
by a crash has no final chunk, so every age reader refuses it.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from doorbell.core import manifest as mf
from doorbell.core.age import Encryptor, StreamResult, X25519Recipient
from doorbell.core.bucket import sealed_keys
from doorbell.core.errors import DoorbellError
from doorbell.core.fileio import atomic_write, fsync_dir  # noqa: F401  (re-exported for spool users)
from doorbell.core.protocol import (
    CLIP_ID_PATTERN,
    ClipMessage,
    DeviceEvent,
    Message,
    SealedClipMessage,
    SealedObject,
    Trigger,
)

log = logging.getLogger(__name__)

CLIP_FILE = "clip.mp4"
SNAPSHOT_FILE = "snapshot.jpg"
META_FILE = "meta.json"
AGE_SUFFIX = ".age"
MANIFEST_FILE = "manifest.json"
SealedKind = Literal["video", "snapshot", "metadata", "manifest"]
SEALED_FILES: dict[str, str] = {"video": CLIP_FILE + AGE_SUFFIX, "snapshot": SNAPSHOT_FILE + AGE_SUFFIX,
                                "metadata": META_FILE + AGE_SUFFIX, "manifest": MANIFEST_FILE + AGE_SUFFIX}
OBJECT_ID_PATTERN = r"^[0-9a-f]{32}$"
SUBDIRS = ("tmp", "clips", "uploaded", "events", "snapshots", "commands", "state", "quarantine")


class SpoolError(DoorbellError):
    """A spool item is missing, corrupt or cannot be written."""


def new_clip_id(ts: float | None = None) -> str:
    """Time-sortable, unique clip id such as ``20261123T212719123Z-1a2b3c``."""
    t = time.time() if ts is None else ts
    dt = datetime.fromtimestamp(t, tz=UTC)
    return f"{dt:%Y%m%dT%H%M%S}{dt.microsecond // 1000:03d}Z-{secrets.token_hex(3)}"


class ClipMeta(BaseModel):
    """``meta.json`` of a clip: what the agent uploads and announces."""

    model_config = ConfigDict(extra="forbid")

    v: int = 1
    clip_id: str = Field(pattern=CLIP_ID_PATTERN)
    device_id: str
    trigger: Trigger
    started_at: float
    ended_at: float
    trigger_at: float
    pre_roll_s: float = Field(ge=0)
    duration_s: float = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=1)
    snapshot_sha256: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    codec: str = "h264"
    rings: list[float] = Field(default_factory=list)
    motion_score: float | None = None
    privacy_masks: int = 0
    created_at: float = Field(default_factory=time.time)

    def to_message(self, key: str, snapshot_key: str | None) -> ClipMessage:
        return ClipMessage(clip_id=self.clip_id, device_id=self.device_id, trigger=self.trigger,
                           started_at=self.started_at, ended_at=self.ended_at, trigger_at=self.trigger_at,
                           pre_roll_s=min(self.pre_roll_s, 60), key=key, snapshot_key=snapshot_key,
                           sha256=self.sha256, size=self.size, rings=self.rings[:100])


class SealedFile(BaseModel):
    """One age file of a sealed clip, as the agent needs it: name, ciphertext size and SHA-256."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z]+\.[a-z0-9]+\.age$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=1)


class SealedClipMeta(BaseModel):
    """Clear ``meta.json`` of a sealed clip: no time, trigger or plaintext digest, only what the upload needs.

    ``object_id`` is random (128 bits): the bucket's object names derive from it
    (doorbell.core.bucket.sealed_keys), so they say nothing about the clip.
    """

    model_config = ConfigDict(extra="forbid")
    v: Literal[2] = 2
    sealed: Literal[True] = True
    clip_id: str = Field(pattern=CLIP_ID_PATTERN)
    object_id: str = Field(pattern=OBJECT_ID_PATTERN)
    files: dict[SealedKind, SealedFile]

    @model_validator(mode="after")
    def _complete(self) -> SealedClipMeta:
        for kind in ("video", "metadata", "manifest"):
            if kind not in self.files:
                raise ValueError(f"sealed clip has no {kind}")
        for kind, f in self.files.items():
            if f.name != SEALED_FILES[kind]:  # never a path of the index's choosing
                raise ValueError(f"{kind} is named {f.name!r}, not {SEALED_FILES[kind]!r}")
        return self


def _parse_meta(data: bytes) -> ClipMeta | SealedClipMeta:
    doc = json.loads(data)
    if isinstance(doc, dict) and doc.get("sealed") is True:
        return SealedClipMeta.model_validate(doc)
    return ClipMeta.model_validate(doc)


@dataclass(frozen=True)
class SpoolClip:
    """A published clip directory and its validated metadata (clear, or sealed)."""

    path: Path
    meta: ClipMeta | SealedClipMeta
    # Only in the process that just sealed the clip (never on disk in clear): its full metadata and manifest.
    plain: ClipMeta | None = field(default=None, compare=False, repr=False)
    manifest: mf.ClipManifest | None = field(default=None, compare=False, repr=False)

    @property
    def clip_id(self) -> str:
        return self.meta.clip_id

    @property
    def sealed(self) -> SealedClipMeta | None:
        """The clear index of an encrypted clip, or None for a clip stored in clear."""
        return self.meta if isinstance(self.meta, SealedClipMeta) else None

    def sealed_message(self, key_prefix: str, device_id: str) -> SealedClipMessage:
        """The ``clips`` announcement of a sealed clip: object keys, ciphertext digests, encrypted metadata."""
        sealed = self.sealed
        if sealed is None:
            raise SpoolError(f"clip {self.path.name} is not sealed")
        keys = sealed_keys(key_prefix, device_id, sealed.object_id)
        objects = {kind: SealedObject(key=keys[kind], sha256=f.sha256, size=f.size) for kind, f in sealed.files.items()}
        blob = (self.path / sealed.files["metadata"].name).read_bytes()
        return SealedClipMessage(device_id=device_id, objects=objects,
                                 metadata=base64.b64encode(blob).decode())

    @property
    def clear(self) -> ClipMeta:
        """The metadata of a clip stored in clear (SpoolError for a sealed one: its metadata is encrypted)."""
        if isinstance(self.meta, SealedClipMeta):
            if self.plain is not None:
                return self.plain
            raise SpoolError(f"clip {self.clip_id} is encrypted: its metadata is not readable on the device")
        return self.meta

    @property
    def video(self) -> Path:
        return self.path / (SEALED_FILES["video"] if self.sealed else CLIP_FILE)

    @property
    def snapshot(self) -> Path | None:
        p = self.path / (SEALED_FILES["snapshot"] if self.sealed else SNAPSHOT_FILE)
        return p if p.exists() else None

    @property
    def finished_at(self) -> float:
        """When the clip ended (clear clips), or when it was published (sealed: the file's mtime)."""
        if isinstance(self.meta, SealedClipMeta):
            return self.meta_file.stat().st_mtime
        return self.meta.ended_at

    @property
    def meta_file(self) -> Path:
        return self.path / META_FILE

    def total_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())


@dataclass(frozen=True)
class SpoolEvent:
    path: Path
    event: DeviceEvent


@dataclass(frozen=True)
class SpoolCommand:
    path: Path
    name: str
    payload: dict[str, Any]


@dataclass
class RecoveryReport:
    quarantined: list[str]
    removed: list[str]


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


@dataclass(frozen=True)
class Sealing:
    """How a device seals clips: the recipients' public keys, and its own key that signs manifests.

    Nothing here opens a sealed file: the device cannot read back what it recorded.
    """

    recipients: tuple[X25519Recipient, ...]
    device_key: Ed25519PrivateKey

    def __post_init__(self) -> None:
        if not self.recipients:
            raise SpoolError("sealing needs at least one recipient")


class SealedWriter:
    """Write-only, non-seekable file object: plaintext in (e.g. a fragmented MP4 from PyAV), age file out.

    Only one 64 KiB chunk of plaintext is ever held (in RAM); :meth:`close`
    seals the final chunk and fsyncs. A writer that is never closed leaves a
    truncated age file, which no age reader accepts.
    """

    def __init__(self, path: Path, recipients: Sequence[X25519Recipient]):
        self.path = path
        self.name = str(path)
        self._fh = open(path, "xb")
        try:
            self._enc = Encryptor(self._fh, recipients)
        except BaseException:
            self._fh.close()
            raise
        self.result: StreamResult | None = None

    def write(self, data: bytes | bytearray | memoryview) -> int:
        return self._enc.write(data)

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def flush(self) -> None:
        """Nothing to do: chunks go to disk as they fill (and are fsynced at close)."""

    @property
    def closed(self) -> bool:
        return self._fh.closed

    def close(self) -> StreamResult:
        if self.result is None:
            self.result = self._enc.close()
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
        return self.result

    def abort(self) -> None:
        """Stop without the final chunk (the file stays unreadable); used on discard."""
        if not self._fh.closed:
            self._fh.close()




class ClipStaging:
    """A clip being assembled under ``tmp/``; invisible until :meth:`publish`.

    The recorder writes the video into :meth:`open_video` (a path in clear, an
    encrypting :class:`SealedWriter` when ``sealing`` is set), optionally the
    snapshot, then calls ``publish`` with the metadata; sha256 and size are
    computed here so they always describe the bytes that were actually fsynced.
    """

    def __init__(self, spool: "Spool", clip_id: str, sealing: Sealing | None = None):
        self.spool = spool
        self.clip_id = clip_id
        self.sealing = sealing
        self.dir = spool.root / "tmp" / f"{clip_id}.{secrets.token_hex(3)}.partial"
        self.dir.mkdir(parents=True)
        self.published: SpoolClip | None = None
        self._video: SealedWriter | None = None
        self._sealed: dict[str, StreamResult] = {}

    @property
    def video_path(self) -> Path:
        return self.dir / (SEALED_FILES["video"] if self.sealing else CLIP_FILE)

    @property
    def snapshot_path(self) -> Path:
        return self.dir / (SEALED_FILES["snapshot"] if self.sealing else SNAPSHOT_FILE)

    def open_video(self) -> Path | SealedWriter:
        """Where the muxer writes the MP4: its path in clear; a non-seekable encrypting file when sealed."""
        if self.sealing is None:
            return self.video_path
        if self._video is None:
            self._video = SealedWriter(self.video_path, self.sealing.recipients)
        return self._video

    def write_snapshot(self, jpeg: bytes) -> None:
        if self.sealing is None:
            _write_synced(self.snapshot_path, jpeg)
        else:
            self._sealed["snapshot"] = self._seal_bytes("snapshot", jpeg)

    def _seal_bytes(self, kind: str, data: bytes) -> StreamResult:
        assert self.sealing is not None
        writer = SealedWriter(self.dir / SEALED_FILES[kind], self.sealing.recipients)
        try:
            writer.write(data)
            return writer.close()
        finally:
            writer.abort()

    def publish(self, **meta_fields: Any) -> SpoolClip:
        """fsync everything, write meta.json last, and rename the directory into ``clips/``."""
        if self.sealing is not None:
            return self._publish_sealed(meta_fields)
        video = self.video_path
        if not video.exists() or video.stat().st_size == 0:
            raise SpoolError(f"clip {self.clip_id}: no video was written")
        with open(video, "rb+") as fh:
            os.fsync(fh.fileno())
        meta_fields.setdefault("clip_id", self.clip_id)
        meta_fields["sha256"] = sha256_file(video)
        meta_fields["size"] = video.stat().st_size
        if self.snapshot_path.exists():
            meta_fields["snapshot_sha256"] = sha256_file(self.snapshot_path)
        meta = ClipMeta.model_validate(meta_fields)
        _write_synced(self.dir / META_FILE, meta.model_dump_json(indent=1).encode())
        return self._rename(SpoolClip(self.dir, meta))

    def _publish_sealed(self, meta_fields: dict[str, Any]) -> SpoolClip:
        """Seal the metadata and the signed manifest next to the video and snapshot, then publish.

        Order: video closed (final chunk, fsync), metadata sealed, manifest
        (plaintext and ciphertext digests of video, snapshot, metadata) signed
        and sealed, clear index written last, one rename.
        """
        assert self.sealing is not None
        if self._video is None:
            raise SpoolError(f"clip {self.clip_id}: no video was written")
        video = self._video.close()
        if video.plaintext_size == 0:
            raise SpoolError(f"clip {self.clip_id}: no video was written")
        meta_fields.setdefault("clip_id", self.clip_id)
        meta_fields["sha256"] = video.plaintext_sha256
        meta_fields["size"] = video.plaintext_size
        files: dict[str, StreamResult] = {"video": video}
        if "snapshot" in self._sealed:
            meta_fields["snapshot_sha256"] = self._sealed["snapshot"].plaintext_sha256
            files["snapshot"] = self._sealed["snapshot"]
        meta = ClipMeta.model_validate(meta_fields)
        files["metadata"] = self._seal_bytes("metadata", meta.model_dump_json(indent=1).encode())
        manifest = mf.sign_manifest(mf.build_manifest(
            clip_id=meta.clip_id, device_id=meta.device_id, trigger=meta.trigger, started_at=meta.started_at,
            ended_at=meta.ended_at, trigger_at=meta.trigger_at, pre_roll_s=min(meta.pre_roll_s, 60.0),
            files=files), self.sealing.device_key)
        files["manifest"] = self._seal_bytes("manifest", mf.manifest_json(manifest))
        index = SealedClipMeta(clip_id=meta.clip_id, object_id=secrets.token_hex(16), files={
            k: SealedFile(name=SEALED_FILES[k], sha256=r.ciphertext_sha256, size=r.ciphertext_size)
            for k, r in files.items()})
        _write_synced(self.dir / META_FILE, index.model_dump_json(indent=1).encode())
        return self._rename(SpoolClip(self.dir, index, plain=meta, manifest=manifest))

    def _rename(self, staged: SpoolClip) -> SpoolClip:
        fsync_dir(self.dir)
        target = self.spool.root / "clips" / self.clip_id
        if target.exists():
            raise SpoolError(f"clip {self.clip_id} already published")
        os.rename(self.dir, target)
        fsync_dir(target.parent)
        fsync_dir(self.dir.parent)
        self.published = SpoolClip(target, staged.meta, plain=staged.plain, manifest=staged.manifest)
        m = staged.plain or staged.meta
        log.info("published %sclip %s (%s)", "sealed " if staged.sealed else "", self.clip_id,
                 getattr(m, "trigger", "?"))
        return self.published

    def discard(self) -> None:
        if self._video is not None:
            self._video.abort()
        if self.published is None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "ClipStaging":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.discard()


class Spool:
    """Typed access to a spool directory; safe for one writer and one reader process."""

    def __init__(self, root: str | os.PathLike[str], create: bool = True):
        self.root = Path(root)
        if create:
            for sub in SUBDIRS:
                (self.root / sub).mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ paths
    def dir(self, name: str) -> Path:
        if name not in SUBDIRS:
            raise ValueError(name)
        return self.root / name

    # ------------------------------------------------------------------ writer side
    def stage_clip(self, clip_id: str | None = None, ts: float | None = None,
                   sealing: Sealing | None = None) -> ClipStaging:
        return ClipStaging(self, clip_id or new_clip_id(ts), sealing)

    def publish_event(self, event: DeviceEvent) -> Path:
        return self._publish_json("events", event.event_id, event.model_dump(mode="json", exclude_none=True))

    def publish_snapshot(self, jpeg: bytes) -> Path:
        name = f"{time.time_ns():020d}.jpg"
        tmp = self.root / "tmp" / (name + ".partial")
        _write_synced(tmp, jpeg)
        target = self.root / "snapshots" / name
        os.rename(tmp, target)
        fsync_dir(target.parent)
        return target

    def write_command(self, name: str, payload: Message) -> Path:
        """Agent side of the owner-command inbox (the firmware never opens a socket)."""
        body = {"name": name, "payload": payload.model_dump(mode="json", exclude_none=True)}
        # Staged inside commands/ (as a dot-file), not tmp/: tmp/ belongs to the firmware, whose
        # start-up recovery must never race with a command the agent is writing.
        return self._publish_json("commands", getattr(payload, "command_id", secrets.token_hex(8)), body,
                                  staging=self.root / "commands")

    def _publish_json(self, sub: str, ident: str, body: dict[str, Any], staging: Path | None = None) -> Path:
        name = f"{time.time_ns():020d}-{ident}.json"
        tmp = (staging or self.root / "tmp") / f".{name}.partial"
        _write_synced(tmp, json.dumps(body, separators=(",", ":")).encode())
        target = self.root / sub / name
        os.rename(tmp, target)
        fsync_dir(target.parent)
        return target

    # ------------------------------------------------------------------ reader side
    def _load_clip(self, path: Path) -> SpoolClip:
        try:
            meta = _parse_meta((path / META_FILE).read_bytes())
        except (OSError, ValidationError, ValueError) as exc:
            raise SpoolError(f"{path.name}: unreadable metadata: {exc}") from None
        if meta.clip_id != path.name:
            raise SpoolError(f"{path.name}: metadata names clip {meta.clip_id}")
        names = [f.name for f in meta.files.values()] if isinstance(meta, SealedClipMeta) else [CLIP_FILE]
        for name in names:
            if not (path / name).is_file():
                raise SpoolError(f"{path.name}: {name} is missing")
        return SpoolClip(path, meta)

    def _clips_in(self, sub: str) -> list[SpoolClip]:
        out = []
        for path in sorted(p for p in (self.root / sub).iterdir() if p.is_dir()):
            try:
                out.append(self._load_clip(path))
            except SpoolError as exc:
                log.error("quarantining corrupt clip: %s", exc)
                self.quarantine(path)
        return out

    def pending_clips(self) -> list[SpoolClip]:
        """Clips not yet confirmed in the bucket, oldest first (ids sort by time)."""
        return self._clips_in("clips")

    def uploaded_clips(self) -> list[SpoolClip]:
        return self._clips_in("uploaded")

    def get_clip(self, clip_id: str) -> SpoolClip:
        for sub in ("clips", "uploaded"):
            path = self.root / sub / clip_id
            if path.is_dir():
                return self._load_clip(path)
        raise SpoolError(f"no clip {clip_id}")

    def pending_events(self) -> list[SpoolEvent]:
        out = []
        for path in sorted((self.root / "events").glob("*.json")):
            try:
                event = DeviceEvent.model_validate_json(path.read_bytes())
            except (OSError, ValidationError, ValueError) as exc:
                log.error("quarantining corrupt event %s: %s", path.name, exc)
                self.quarantine(path)
                continue
            out.append(SpoolEvent(path, event))
        return out

    def pending_snapshots(self) -> list[Path]:
        return sorted((self.root / "snapshots").glob("*.jpg"))

    def take_commands(self) -> list[SpoolCommand]:
        """Commands in arrival order; the caller deletes each with :meth:`done` once applied."""
        out = []
        for path in sorted((self.root / "commands").glob("*.json")):
            try:
                body = json.loads(path.read_bytes())
                out.append(SpoolCommand(path, str(body["name"]), dict(body["payload"])))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("quarantining corrupt command %s: %s", path.name, exc)
                self.quarantine(path)
        return out

    # ------------------------------------------------------------------ state changes
    def mark_uploaded(self, clip_id: str) -> SpoolClip:
        """Move a clip to ``uploaded/``; call only after the bucket confirmed it."""
        src = self.root / "clips" / clip_id
        dst = self.root / "uploaded" / clip_id
        os.rename(src, dst)
        fsync_dir(dst.parent)
        fsync_dir(src.parent)
        return self._load_clip(dst)

    def done(self, path: Path) -> None:
        """Remove a handled event, snapshot or command file."""
        with contextlib.suppress(FileNotFoundError):
            Path(path).unlink()
            fsync_dir(Path(path).parent)

    def delete_clip(self, clip: SpoolClip) -> None:
        shutil.rmtree(clip.path, ignore_errors=True)

    def quarantine(self, path: Path) -> Path:
        target = self.root / "quarantine" / f"{Path(path).name}.{time.time_ns()}"
        try:
            os.rename(path, target)
        except FileNotFoundError:
            return target
        fsync_dir(target.parent)
        return target

    def recover(self) -> RecoveryReport:
        """Run at start-up by the writer: nothing left in ``tmp/`` is ever published."""
        report = RecoveryReport([], [])
        for path in sorted((self.root / "tmp").iterdir()):
            if path.is_dir() and any(path.iterdir()):
                report.quarantined.append(path.name)
                self.quarantine(path)
                log.warning("crash leftover %s quarantined", path.name)
            else:
                if path.is_dir():
                    path.rmdir()
                else:
                    path.unlink()
                report.removed.append(path.name)
                log.warning("crash leftover %s removed", path.name)
        for path in (self.root / "commands").glob(".*.partial"):
            # the agent's half-written command from a crash (a live write takes milliseconds)
            with contextlib.suppress(FileNotFoundError):
                if time.time() - path.stat().st_mtime > 60:
                    path.unlink()
                    report.removed.append(path.name)
        for path in (self.root / "clips").iterdir():
            if not path.is_dir():
                self.quarantine(path)
                report.quarantined.append(path.name)
                continue
            try:
                self._load_clip(path)
            except SpoolError as exc:
                log.error("quarantining %s", exc)
                self.quarantine(path)
                report.quarantined.append(path.name)
        return report

    # ------------------------------------------------------------------ space
    def bytes_used(self) -> int:
        total = 0
        for dirpath, _dirs, files in os.walk(self.root):
            for f in files:
                with contextlib.suppress(FileNotFoundError):
                    total += os.stat(os.path.join(dirpath, f)).st_size
        return total

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def watch_paths(self) -> Iterator[Path]:
        """Directories the agent watches (inotify) for new work."""
        for sub in ("clips", "events", "snapshots"):
            yield self.root / sub
