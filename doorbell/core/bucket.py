"""Where a clip lives in the bucket: one place, so every reader and writer agrees.

The agent writes these keys, the sharing service only indexes clips whose keys lie
under the announcing device's prefix, provisioning scopes each device's S3 policy
to :func:`device_prefix`, and ``doorbell wipe``/``doctor`` name that prefix.
``s3.prefix`` is the *fleet* prefix, the same on every host (``devices/`` from
``doorbell provision``; empty by default). Layout (see docs/agent.md)::

    {s3.prefix}{device_id}/{YYYY}/{MM}/{DD}/{clip_id}.mp4    the clip
    {s3.prefix}{device_id}/{YYYY}/{MM}/{DD}/{clip_id}.jpg    its snapshot (if any)
    {s3.prefix}{device_id}/{YYYY}/{MM}/{DD}/{clip_id}.json   its meta.json, uploaded last

The date is the clip's ``started_at`` in UTC, so a clip never moves between
days when the Pi's time zone changes, and a per-device, per-day prefix makes
lifecycle rules and listings cheap. ``s3.prefix`` is used verbatim: end it with
``/`` if it should be a folder.

Sealed (encrypted) clips, ``encryption.enabled`` (issue 12), use opaque names
instead: no clip id (it encodes the recording time), no date, no file type::

    {s3.prefix}{device_id}/o/{object_id}/v    the clip's video (age file)
    {s3.prefix}{device_id}/o/{object_id}/s    its snapshot (age file, if any)
    {s3.prefix}{device_id}/o/{object_id}/m    its metadata (age file)
    {s3.prefix}{device_id}/o/{object_id}/n    its signed manifest (age file), uploaded last

``object_id`` is 128 random bits the firmware draws when it seals the clip. The
device prefix stays (each device's S3 policy is scoped to it), so these keys name
the home and are never handed to an agency. What an agency gets a link to is a
copy the sharing service makes under an opaque name (issue 15, rule 2)::

    {s3.prefix}_shared/{token}          one approved clip under one grant

``token`` is a keyed hash of the grant and clip ids (:func:`shared_key`): one per
clip and grant, unrelated to the device, the owner or the other clips of the same
home. ``_shared`` cannot be a device id (ids start with a letter or digit), so no
device's S3 policy, scoped to its own prefix, reaches the copies.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from doorbell.core.protocol import CLIP_ID_PATTERN, ID_PATTERN

_CLIP_RE = re.compile(CLIP_ID_PATTERN)
_OBJECT_RE = re.compile(r"^[0-9a-f]{32}$")
SEALED_SUFFIXES = {"video": "v", "snapshot": "s", "metadata": "m", "manifest": "n"}
_DEV_RE = re.compile(ID_PATTERN)
SHARED_DIR = "_shared/"
_SHARED_DOMAIN = b"doorbell shared object v1\x00"


@dataclass(frozen=True)
class ClipKeys:
    """The three object keys of one clip."""

    video: str
    snapshot: str
    meta: str

    @property
    def day_prefix(self) -> str:
        return self.video.rsplit("/", 1)[0] + "/"


def device_prefix(prefix: str, device_id: str) -> str:
    """``{prefix}{device_id}/``: everything this device ever writes is below it."""
    if not _DEV_RE.match(device_id):
        raise ValueError(f"invalid device id {device_id!r}")
    return f"{prefix}{device_id}/"


def clip_keys(prefix: str, device_id: str, clip_id: str, started_at: float) -> ClipKeys:
    """Object keys of a clip (see the module docstring for the layout)."""
    if not _CLIP_RE.match(clip_id):
        raise ValueError(f"invalid clip id {clip_id!r}")
    day = datetime.fromtimestamp(started_at, tz=UTC)
    base = f"{device_prefix(prefix, device_id)}{day:%Y/%m/%d}/{clip_id}"
    return ClipKeys(video=base + ".mp4", snapshot=base + ".jpg", meta=base + ".json")


def sealed_keys(prefix: str, device_id: str, object_id: str) -> dict[str, str]:
    """Object keys of a sealed clip by file kind (video, snapshot, metadata, manifest); see the docstring."""
    if not _OBJECT_RE.match(object_id):
        raise ValueError(f"invalid object id {object_id!r}")
    base = f"{device_prefix(prefix, device_id)}o/{object_id}/"
    return {kind: base + suffix for kind, suffix in SEALED_SUFFIXES.items()}


def shared_key(prefix: str, grant_id: str, clip_id: str) -> str:
    """``{prefix}_shared/{token}``: the opaque name of a clip's copy shared under a grant.

    The token is SHA-256 over a domain string, the grant id and the clip id. Grant ids
    are 128-bit secrets the agency never sees, so a token is unpredictable to it and
    two clips of one home share nothing but the fleet prefix.
    """
    if not grant_id or not clip_id or "\x00" in grant_id + clip_id:
        raise ValueError("grant and clip ids are required")
    token = hashlib.sha256(_SHARED_DOMAIN + grant_id.encode() + b"\x00" + clip_id.encode()).hexdigest()
    return f"{prefix}{SHARED_DIR}{token}"
