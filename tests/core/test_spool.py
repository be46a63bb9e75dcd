"""The spool contract: atomic publish, ordering, uploaded marking, crash recovery."""
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from doorbell.core.protocol import DeviceEvent, PrivacyCommand
from doorbell.core.spool import Spool, SpoolError, new_clip_id, sha256_file


def publish(spool, data=b"\x00\x00\x00\x18ftypmp42" + b"x" * 1000, ts=None, trigger="ring"):
    st = spool.stage_clip(ts=ts)
    st.video_path.write_bytes(data)
    st.write_snapshot(b"\xff\xd8\xff snapshot")
    return st.publish(device_id="dev-a", trigger=trigger, started_at=1.8e9, ended_at=1.8e9 + 12,
                      trigger_at=1.8e9 + 4, pre_roll_s=4, duration_s=12)


def test_clip_ids_sort_by_time():
    ids = [new_clip_id(1.8e9 + i * 0.001) for i in range(50)]
    assert ids == sorted(ids)


def test_publish_is_complete_and_described(tmp_path):
    spool = Spool(tmp_path)
    clip = publish(spool)
    assert clip.path.parent.name == "clips"
    assert clip.meta.sha256 == sha256_file(clip.video) and clip.meta.size == clip.video.stat().st_size
    assert clip.meta.snapshot_sha256 == sha256_file(clip.snapshot)
    assert list((tmp_path / "tmp").iterdir()) == []
    assert [c.clip_id for c in spool.pending_clips()] == [clip.clip_id]
    # the clip message for MQTT derives from the metadata
    msg = clip.meta.to_message("dev-a/x.mp4", None)
    assert msg.sha256 == clip.meta.sha256


def test_unpublished_staging_is_invisible_and_discarded(tmp_path):
    spool = Spool(tmp_path)
    with spool.stage_clip() as st:
        st.video_path.write_bytes(b"half a clip")
        assert spool.pending_clips() == []
    assert list((tmp_path / "tmp").iterdir()) == []
    with pytest.raises(SpoolError, match="no video"):
        spool.stage_clip().publish(device_id="dev-a", trigger="ring", started_at=1, ended_at=1,
                                   trigger_at=1, pre_roll_s=0, duration_s=0)


def test_pending_order_and_mark_uploaded(tmp_path):
    spool = Spool(tmp_path)
    clips = [publish(spool, ts=1.8e9 + i) for i in (3, 1, 2)]
    assert [c.clip_id for c in spool.pending_clips()] == sorted(c.clip_id for c in clips)
    spool.mark_uploaded(clips[1].clip_id)
    assert clips[1].clip_id not in [c.clip_id for c in spool.pending_clips()]
    assert [c.clip_id for c in spool.uploaded_clips()] == [clips[1].clip_id]
    assert spool.get_clip(clips[1].clip_id).meta == clips[1].meta


def test_events_in_order_and_done(tmp_path):
    spool = Spool(tmp_path)
    sent = [spool.publish_event(DeviceEvent(device_id="dev-a", type=t)) for t in ("motion_start", "ring", "motion_end")]
    pending = spool.pending_events()
    assert [e.event.type for e in pending] == ["motion_start", "ring", "motion_end"]
    spool.done(pending[0].path)
    assert [e.path for e in spool.pending_events()] == sent[1:]


def test_commands_inbox(tmp_path):
    spool = Spool(tmp_path)
    spool.write_command("privacy", PrivacyCommand(enabled=True))
    (cmd,) = spool.take_commands()
    assert cmd.name == "privacy" and cmd.payload["enabled"] is True
    spool.done(cmd.path)
    assert spool.take_commands() == []


def test_corrupt_items_are_quarantined_not_served(tmp_path):
    spool = Spool(tmp_path)
    good = publish(spool)
    bad = publish(spool)
    (bad.path / "meta.json").write_text("{not json")
    (tmp_path / "events" / "00000000000000000001-x.json").write_text('{"type": "ring"}')
    assert [c.clip_id for c in spool.pending_clips()] == [good.clip_id]
    assert spool.pending_events() == []
    assert len(list((tmp_path / "quarantine").iterdir())) == 2


def test_recover_quarantines_leftovers(tmp_path):
    spool = Spool(tmp_path)
    st = spool.stage_clip()
    st.video_path.write_bytes(b"partial")
    (tmp_path / "tmp" / "x.json.partial").write_bytes(b"{")
    report = spool.recover()
    assert len(report.quarantined) == 1 and report.removed == ["x.json.partial"]
    assert list((tmp_path / "tmp").iterdir()) == []
    assert spool.pending_clips() == []


def _check_visible_items(root: Path) -> int:
    spool = Spool(root, create=False)
    clips = spool.pending_clips()
    for clip in clips:
        expected = hashlib.sha256(clip.clip_id.encode()).digest() * 4096 * 4
        data = clip.video.read_bytes()
        assert data == expected, f"{clip.clip_id}: visible clip has wrong content"
        assert clip.meta.sha256 == hashlib.sha256(data).hexdigest()
        assert clip.snapshot is not None
    spool.pending_events()  # parses all; corrupt ones would be quarantined
    # recovery quarantines staging leftovers (*.partial); anything else means a reader saw a half item
    seen_corrupt = [q.name for q in (root / "quarantine").iterdir() if ".partial" not in q.name]
    assert not seen_corrupt, f"a reader saw a corrupt item: {seen_corrupt}"
    return len(clips)


def test_kill_9_mid_publish_never_leaves_a_visible_half_item(tmp_path):
    """Kill a writer at random moments, many times: every visible item stays whole."""
    rng = random.Random(1234)
    root = tmp_path / "spool"
    Spool(root)
    writer = Path(__file__).with_name("spool_writer.py")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    kills = 0
    for _ in range(25):
        proc = subprocess.Popen([sys.executable, str(writer), str(root)], env=env, stdout=subprocess.PIPE)
        assert proc.stdout.readline() == b"ready\n"
        time.sleep(rng.random() * 0.08)  # a random point in the publish loop (a publish takes a few ms)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        _check_visible_items(root)
        Spool(root).recover()
        assert list((root / "tmp").iterdir()) == []
    published = _check_visible_items(root)
    assert kills == 25 and published > 0


def test_agent_command_staging_does_not_race_firmware_recovery(tmp_path):
    """Commands are staged in commands/ as dot-files, so the firmware's recovery of tmp/
    never removes a command the agent is writing; stale ones (agent crash) are cleaned."""
    spool = Spool(tmp_path)
    half = tmp_path / "commands" / ".00000000000000000001-abc.json.partial"
    half.write_bytes(b'{"name": "privacy"')
    spool.recover()
    assert half.exists() and spool.take_commands() == []
    os.utime(half, (time.time() - 120, time.time() - 120))
    report = spool.recover()
    assert not half.exists() and half.name in report.removed
    spool.write_command("privacy", PrivacyCommand(enabled=False))
    assert not list((tmp_path / "tmp").iterdir())
    assert [c.name for c in spool.take_commands()] == ["privacy"]
