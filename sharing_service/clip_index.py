"""The device role: index the clips devices announce on ``devices/{id}/clips``."""
from __future__ import annotations

import logging

from doorbell.core import protocol as p
from doorbell.core.bucket import device_prefix
from sharing_service.context import ServiceContext
from sharing_service.models import Clip, Device

log = logging.getLogger(__name__)


class ClipIndex:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    def index_clip(self, topic_device: str, payload: bytes) -> bool:
        """Add a clip to the index; False if it was refused (and logged)."""
        try:
            msg = p.decode(p.ClipMessage, payload, "clips")
        except p.ProtocolError as exc:
            if self._sealed(payload):
                # Rule 9: a sealed clip is the owner's to index; the service learns of it only at approval.
                log.debug("sealed clip announcement from %s: not indexed", topic_device)
                return True
            log.warning("clip message from %s dropped: %s", topic_device, exc)
            return False
        if msg.device_id != topic_device:
            log.warning("clip message on %s's topic names device %s; dropped", topic_device, msg.device_id)
            return False
        own = device_prefix(self.ctx.key_prefix, msg.device_id)
        for key in (msg.key, msg.snapshot_key):
            if key is not None and (not key.startswith(own) or "/../" in f"/{key}/" or "//" in key):
                # Otherwise one device could index (and its owner share) another device's object.
                log.warning("clip %s from %s names object %r outside %s; dropped", msg.clip_id, msg.device_id,
                            key[:200], own)
                return False
        with self.ctx.db.write() as s:
            if s.get(Device, msg.device_id) is None:
                log.info("clip %s from unknown device %s ignored (enrol it with 'doorbell sharing device add')",
                         msg.clip_id, msg.device_id)
                return False
            existing = s.get(Clip, msg.clip_id)
            if existing is not None:
                if existing.device_id != msg.device_id:
                    log.warning("clip id %s already indexed for another device; dropped", msg.clip_id)
                    return False
                return True  # QoS 1 redelivery
            s.add(Clip(id=msg.clip_id, device_id=msg.device_id, trigger=msg.trigger, started_at=msg.started_at,
                       ended_at=msg.ended_at, key=msg.key, snapshot_key=msg.snapshot_key, sha256=msg.sha256,
                       size=msg.size, indexed_at=self.ctx.clock()))
        log.debug("indexed clip %s of %s", msg.clip_id, msg.device_id)
        return True

    @staticmethod
    def _sealed(payload: bytes) -> bool:
        try:
            p.decode(p.SealedClipMessage, payload, "clips")
        except p.ProtocolError:
            return False
        return True
