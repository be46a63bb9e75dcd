"""Retention: age and total-bytes limits hit uploaded clips first; un-uploaded clips go only below the floor."""
from __future__ import annotations

import pytest

from doorbell.core.config import RetentionSection
from doorbell.core.spool import Spool
from firmware.retention import Retention

DAY = 86400.0
NOW = 1_900_000_000.0
MB = 1024 * 1024


def add_clip(spool: Spool, age_days: float, size: int, uploaded: bool) -> str:
    ended = NOW - age_days * DAY
    staging = spool.stage_clip(ts=ended - 10)
    staging.video_path.write_bytes(b"\0" * size)
    clip = staging.publish(device_id="dev-a", trigger="ring", started_at=ended - 10, ended_at=ended,
                           trigger_at=ended - 6, pre_roll_s=4, duration_s=10)
    if uploaded:
        spool.mark_uploaded(clip.clip_id)
    return clip.clip_id


class Disk:
    """A pretend card: free space = capacity - what the spool holds."""

    def __init__(self, spool: Spool, capacity: int):
        self.spool, self.capacity = spool, capacity

    def __call__(self) -> int:
        return self.capacity - self.spool.bytes_used()


def make(spool, capacity=10_000 * MB, **cfg):
    base = {"max_age_days": 30, "max_bytes": 1000 * MB, "min_free_bytes": 0}
    return Retention(spool, RetentionSection(**{**base, **cfg}), "dev-a", free_bytes=Disk(spool, capacity),
                     clock=lambda: NOW)


def ids(clips):
    return {c.clip_id for c in clips}


def test_age_deletes_only_uploaded_clips(tmp_spool):
    old_up = add_clip(tmp_spool, 40, 1000, uploaded=True)
    new_up = add_clip(tmp_spool, 5, 1000, uploaded=True)
    old_pending = add_clip(tmp_spool, 50, 1000, uploaded=False)
    report = make(tmp_spool).run()
    assert report.deleted_uploaded == [old_up]
    assert ids(tmp_spool.uploaded_clips()) == {new_up}
    assert ids(tmp_spool.pending_clips()) == {old_pending}      # never uploaded: kept however old
    assert report.deleted_pending == [] and tmp_spool.pending_events() == []


def test_total_bytes_deletes_oldest_uploaded_first(tmp_spool):
    a = add_clip(tmp_spool, 3, 2 * MB, uploaded=True)
    b = add_clip(tmp_spool, 2, 2 * MB, uploaded=True)
    c = add_clip(tmp_spool, 1, 2 * MB, uploaded=True)
    p = add_clip(tmp_spool, 4, 2 * MB, uploaded=False)          # oldest of all, but not uploaded
    report = make(tmp_spool, max_bytes=5 * MB).run()
    assert report.deleted_uploaded == [a, b]
    assert ids(tmp_spool.uploaded_clips()) == {c} and ids(tmp_spool.pending_clips()) == {p}
    assert report.bytes_after <= 5 * MB


def test_over_max_bytes_with_only_pending_clips_warns_but_keeps_them(tmp_spool):
    pending = {add_clip(tmp_spool, d, 3 * MB, uploaded=False) for d in (1, 2)}
    r = make(tmp_spool, max_bytes=2 * MB)
    report = r.run()
    assert ids(tmp_spool.pending_clips()) == pending
    [ev] = [e.event for e in tmp_spool.pending_events()]
    assert ev.type == "storage_warning" and "not uploaded" in ev.detail
    r.run()                                                    # an unchanged warning is not repeated at once
    assert len(tmp_spool.pending_events()) == 1
    assert report.warnings


def test_below_free_floor_deletes_uploaded_then_oldest_pending_and_says_so(tmp_spool, caplog):
    up = add_clip(tmp_spool, 1, 2 * MB, uploaded=True)
    p_old = add_clip(tmp_spool, 3, 2 * MB, uploaded=False)
    p_mid = add_clip(tmp_spool, 2, 2 * MB, uploaded=False)
    p_new = add_clip(tmp_spool, 0.5, 2 * MB, uploaded=False)
    # card of 10 MiB holding ~8 MiB of clips; floor 7 MiB free -> must free 5+ MiB (three clips)
    report = make(tmp_spool, capacity=10 * MB, min_free_bytes=7 * MB).run()
    assert report.deleted_uploaded == [up]
    assert report.deleted_pending == [p_old, p_mid]
    assert ids(tmp_spool.pending_clips()) == {p_new}
    warnings = [e.event for e in tmp_spool.pending_events() if e.event.type == "storage_warning"]
    assert warnings and p_old in warnings[0].detail and p_mid in warnings[0].detail
    assert any("NOT uploaded" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)


def test_floor_never_touches_pending_while_uploaded_suffice(tmp_spool):
    ups = [add_clip(tmp_spool, d, 2 * MB, uploaded=True) for d in (3, 2)]
    p = add_clip(tmp_spool, 5, 2 * MB, uploaded=False)
    report = make(tmp_spool, capacity=8 * MB, min_free_bytes=3 * MB).run()
    assert report.deleted_uploaded == [ups[0]]              # one uploaded clip frees enough
    assert ids(tmp_spool.pending_clips()) == {p}
    assert report.deleted_pending == []


@pytest.mark.parametrize("bad", [{"max_bytes": 10}, {"max_age_days": 0}, {"min_free_bytes": -1}])
def test_invalid_retention_config_is_refused(bad):
    from doorbell.core.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as err:
        parse_config({"retention": bad}, "<test>", env={})
    assert "retention." in str(err.value)
