"""Local retention of clips on the SD card.

Rules, in order (each run is cheap; the service runs it every minute):

1. Uploaded clips (spool ``uploaded/``, confirmed in the bucket) older than
   ``retention.max_age_days`` are deleted.
2. While clips use more than ``retention.max_bytes``, the oldest *uploaded*
   clips are deleted. Clips not uploaded yet are never deleted for this
   reason; if they alone exceed the limit, a ``storage_warning`` says so.
3. Only when free space is below ``retention.min_free_bytes`` (the hard floor:
   a full card stops all recording) are clips deleted regardless: uploaded
   ones first, then the oldest un-uploaded ones, each named in the log at
   ERROR and in a ``storage_warning`` event.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from doorbell.core.config import RetentionSection
from doorbell.core.protocol import DeviceEvent
from doorbell.core.spool import Spool, SpoolClip

log = logging.getLogger(__name__)
WARNING_INTERVAL_S = 3600.0  # repeat an unchanged "over the limit" warning at most hourly


@dataclass
class RetentionReport:
    deleted_uploaded: list[str] = field(default_factory=list)
    deleted_pending: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    bytes_before: int = 0
    bytes_after: int = 0


class Retention:
    def __init__(self, spool: Spool, cfg: RetentionSection, device_id: str,
                 publish: Callable[[DeviceEvent], None] | None = None,
                 free_bytes: Callable[[], int] | None = None, clock: Callable[[], float] = time.time):
        self.spool = spool
        self.cfg = cfg
        self.device_id = device_id
        self.publish = publish or spool.publish_event
        self.free_bytes = free_bytes or spool.free_bytes
        self.clock = clock
        self._last_warning: dict[str, float] = {}

    def _warn(self, key: str, detail: str, report: RetentionReport, force: bool = False) -> None:
        report.warnings.append(detail)
        now = self.clock()
        if not force and now - self._last_warning.get(key, -1e18) < WARNING_INTERVAL_S:
            return
        self._last_warning[key] = now
        try:
            self.publish(DeviceEvent(device_id=self.device_id, type="storage_warning", detail=detail[:2000]))
        except Exception as exc:  # the warning is also in the log; never crash retention over it
            log.error("storage_warning event not written: %s", exc)

    @staticmethod
    def _age_key(clip: SpoolClip) -> tuple[float, str]:
        return (clip.finished_at, clip.clip_id)

    def run(self) -> RetentionReport:
        report = RetentionReport()
        now = self.clock()
        uploaded = sorted(self.spool.uploaded_clips(), key=self._age_key)
        pending = sorted(self.spool.pending_clips(), key=self._age_key)
        sizes = {c.clip_id: c.total_bytes() for c in uploaded + pending}
        total = sum(sizes.values())
        report.bytes_before = total

        def delete(clip: SpoolClip, why: str, was_uploaded: bool) -> None:
            nonlocal total
            self.spool.delete_clip(clip)
            total -= sizes[clip.clip_id]
            if was_uploaded:
                report.deleted_uploaded.append(clip.clip_id)
                log.info("retention: deleted uploaded clip %s (%s)", clip.clip_id, why)
            else:
                report.deleted_pending.append(clip.clip_id)
                log.error("retention: deleted clip %s that was NOT uploaded yet (%s)", clip.clip_id, why)

        # 1. age (uploaded only)
        max_age_s = self.cfg.max_age_days * 86400
        for clip in list(uploaded):
            if now - clip.finished_at > max_age_s:
                delete(clip, f"older than {self.cfg.max_age_days:g} days", True)
                uploaded.remove(clip)
        # 2. total bytes (uploaded only)
        while total > self.cfg.max_bytes and uploaded:
            delete(uploaded.pop(0), f"clips use more than {self.cfg.max_bytes} bytes", True)
        if total > self.cfg.max_bytes:
            self._warn("over_max_bytes", f"{len(pending)} clips not uploaded yet use {total} bytes, more than "
                       f"retention.max_bytes={self.cfg.max_bytes}; kept until uploaded", report)
            log.warning("retention: %s", report.warnings[-1])
        # 3. hard floor on free space
        free = self.free_bytes()
        floor = self.cfg.min_free_bytes
        if free < floor:
            while free < floor and uploaded:
                clip = uploaded.pop(0)
                delete(clip, f"free space {free} < floor {floor}", True)
                free = self.free_bytes()
            lost = []
            while free < floor and pending:
                clip = pending.pop(0)
                delete(clip, f"free space {free} < floor {floor}", False)
                lost.append(clip.clip_id)
                free = self.free_bytes()
            if lost:
                self._warn("floor", f"free space fell below retention.min_free_bytes={floor}: deleted "
                           f"{len(lost)} clip(s) that were not uploaded: {', '.join(lost)}", report, force=True)
            if free < floor:
                self._warn("floor_still", f"free space {free} is below retention.min_free_bytes={floor} "
                           "with no clips left to delete", report)
                log.error("retention: %s", report.warnings[-1])
        report.bytes_after = total
        return report
