"""The owner's own clip index (issue 12 item 5, sharing rule 9): the cloud keeps none.

Devices announce each sealed clip on ``devices/{id}/clips`` as a
:class:`~doorbell.core.protocol.SealedClipMessage`: object keys and digests in
clear, the clip's metadata (id, times, trigger) age-encrypted to the
household. The owner's app decrypts that metadata with the owner's identity
and keeps one row per clip in a SQLite file under ``$XDG_STATE_HOME/doorbell``
(:class:`SealedIndex`). A police request names a window; the app matches it
here (:meth:`SealedIndex.match`) and offers the owner only what matches; the
service hears of a clip only when the owner approves it.
"""
from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from doorbell.core import age
from doorbell.core import protocol as p
from doorbell.core.errors import DoorbellError
from doorbell.core.spool import ClipMeta

log = logging.getLogger(__name__)

MAX_CLIP_LENGTH_S = 600.0  # clips.max_length_s is at most 600: bounds the window scan
_SCHEMA = """
CREATE TABLE IF NOT EXISTS sealed_clips (
    clip_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    trigger TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL NOT NULL,
    size INTEGER NOT NULL,
    objects TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_sealed_started ON sealed_clips (started_at);
"""


class SealedIndexError(DoorbellError):
    """An announcement the owner's app cannot index (logged, never fatal)."""


@dataclass(frozen=True)
class IndexedClip:
    clip_id: str
    device_id: str
    trigger: str
    started_at: float
    ended_at: float
    size: int
    objects: dict[str, dict[str, object]]  # kind -> {key, sha256, size} as announced


def default_path(owner_id: str, state_dir: Path | None = None) -> Path:
    import os

    state = state_dir or Path(os.environ.get("XDG_STATE_HOME") or "~/.local/state").expanduser() / "doorbell"
    return state / f"owner-{owner_id}-clips.sqlite"


class SealedIndex:
    """One SQLite file (mode 0600: clip times are exactly what the cloud must not hold)."""

    def __init__(self, path: Path, identities: Sequence[age.X25519Identity]):
        self.path = path
        self.identities = list(identities)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.touch(mode=0o600, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False)
        # WAL with synchronous=NORMAL: a crash may lose the last announcements (the broker's persistent
        # session redelivers unacknowledged ones), never corrupt the index; commits stay cheap.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SealedIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ingest(self, topic_device: str, payload: bytes) -> IndexedClip | None:
        """Index one announcement; None (logged) if it is not a sealed clip of ``topic_device`` we can open."""
        try:
            clip = self._open(topic_device, payload)
        except SealedIndexError as exc:
            log.warning("clip announcement from %s not indexed: %s", topic_device, exc)
            return None
        self._db.execute("INSERT OR IGNORE INTO sealed_clips VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (clip.clip_id, clip.device_id, clip.trigger, clip.started_at, clip.ended_at, clip.size,
                          json.dumps(clip.objects, sort_keys=True)))
        self._db.commit()
        return clip

    def _open(self, topic_device: str, payload: bytes) -> IndexedClip:
        try:
            msg = p.decode(p.SealedClipMessage, payload, "clips")
        except p.ProtocolError as exc:
            raise SealedIndexError(str(exc)) from None
        if msg.device_id != topic_device:
            raise SealedIndexError(f"names device {msg.device_id} on {topic_device}'s topic")
        own = re.compile(rf"(?:.*/)?{re.escape(msg.device_id)}/o/[0-9a-f]{{32}}/[vsmn]")
        for obj in msg.objects.values():
            if not own.fullmatch(obj.key) or "/../" in f"/{obj.key}/":
                raise SealedIndexError(f"names object {obj.key[:200]!r} outside {msg.device_id}'s sealed objects")
        try:
            blob = base64.b64decode(msg.metadata, validate=True)
        except binascii.Error:
            raise SealedIndexError("metadata is not base64") from None
        out = io.BytesIO()
        try:
            age.decrypt(io.BytesIO(blob), out, self.identities)
        except age.AgeError as exc:
            raise SealedIndexError(f"metadata does not open with your keys ({exc})") from None
        try:
            meta = ClipMeta.model_validate_json(out.getvalue())
        except ValidationError as exc:
            raise SealedIndexError(f"metadata is not a clip's: {exc.errors()[0]['msg']}") from None
        if meta.device_id != msg.device_id:
            raise SealedIndexError(f"metadata names device {meta.device_id}, announced by {msg.device_id}")
        return IndexedClip(clip_id=meta.clip_id, device_id=meta.device_id, trigger=meta.trigger,
                           started_at=meta.started_at, ended_at=meta.ended_at, size=meta.size,
                           objects={k: o.model_dump(mode="json") for k, o in msg.objects.items()})

    def match(self, window_start: float, window_end: float, devices: Iterable[str] | None = None,
              limit: int = 200) -> list[IndexedClip]:
        """Clips overlapping ``[window_start, window_end]``, oldest first (an index range scan)."""
        rows = self._db.execute(
            "SELECT * FROM sealed_clips WHERE started_at >= ? AND started_at <= ? AND ended_at >= ? "
            "ORDER BY started_at", (window_start - MAX_CLIP_LENGTH_S, window_end, window_start)).fetchall()
        wanted = set(devices) if devices is not None else None
        out = [_row(r) for r in rows if wanted is None or r[1] in wanted]
        return out[:limit]

    def get(self, clip_id: str) -> IndexedClip | None:
        row = self._db.execute("SELECT * FROM sealed_clips WHERE clip_id = ?", (clip_id,)).fetchone()
        return _row(row) if row else None

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM sealed_clips").fetchone()[0])


def _row(r: tuple[str, str, str, float, float, int, str]) -> IndexedClip:
    return IndexedClip(clip_id=r[0], device_id=r[1], trigger=r[2], started_at=r[3], ended_at=r[4], size=r[5],
                       objects=json.loads(r[6]))
