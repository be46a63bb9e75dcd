"""The whole firmware process wired together: MockFactory pins, synthetic/real footage, a real spool."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from doorbell.core.protocol import PrivacyCommand, SettingsCommand, SnapshotCommand
from doorbell.core.spool import Spool
from firmware.service import FirmwareService, request_press
from tests.support.firmware import decode_frames
from tests.support.polling import wait_for


def events(spool: Spool, kind: str | None = None):
    return [e.event for e in spool.pending_events() if kind is None or e.event.type == kind]


def results(spool: Spool) -> list[dict]:
    return [json.loads(e.detail) for e in events(spool, "command_result")]


def test_press_rings_chime_writes_event_and_clip(fw_config, mock_pins):
    """press -> chime output pulses -> ring event -> clip (with pre-roll) in the spool."""
    cfg = fw_config(camera={"loop": False}, motion={"enabled": False})  # the walkup scene, once; no motion extension
    svc = FirmwareService(cfg, realtime=False, pin_factory=mock_pins, press_at=[4.0])
    assert svc.run() == 0                                       # ends with the scene
    chime = mock_pins.pin(27)
    states = [s.state for s in chime.states]
    assert states[:3] == [False, True, False]                   # one pulse
    [ring] = events(svc.spool, "ring")
    [clip] = svc.spool.pending_clips()
    assert ring.clip_id == clip.clip_id
    m = clip.meta
    assert m.trigger == "ring" and m.rings == [pytest.approx(ring.ts)]
    assert m.trigger_at - m.started_at >= cfg.clips.pre_roll_s - cfg.camera.keyframe_interval_s
    frames = decode_frames(clip.video)
    assert frames[-1][0] == pytest.approx(m.trigger_at + cfg.clips.post_roll_s - m.started_at, abs=0.15)
    assert clip.snapshot is not None and clip.snapshot.read_bytes()[:3] == b"\xff\xd8\xff"


def test_walkup_motion_makes_events_and_a_motion_clip(fw_config, mock_pins):
    cfg = fw_config(camera={"loop": False}, motion={"record": True})
    svc = FirmwareService(cfg, realtime=False, pin_factory=mock_pins)
    assert svc.run() == 0
    starts = events(svc.spool, "motion_start")
    ends = events(svc.spool, "motion_end")
    assert starts and len(ends) <= len(starts)
    assert starts[0].bbox is not None and starts[0].score > 0
    clips = svc.spool.pending_clips()
    assert clips and clips[0].meta.trigger == "motion" and clips[0].clip_id == starts[0].clip_id


def test_privacy_mode_stops_recording_and_survives_restart(fw_config, mock_pins):
    cfg = fw_config(camera={"source": "demo_loop"})
    spool = Spool(cfg.spool.dir)
    with FirmwareService(cfg, realtime=False, pin_factory=mock_pins, retention_interval_s=3600) as svc:
        wait_for(lambda: svc.frames > 30)
        spool.write_command("privacy", PrivacyCommand(enabled=True))
        wait_for(lambda: results(spool))
        assert results(spool)[0]["ok"] is True
        assert svc.io.led_state == "privacy"
        [ev] = events(spool, "privacy_mode")
        assert ev.enabled is True
        svc.press_button()
        ring = wait_for(lambda: events(spool, "ring"))[0]
        frames_then = svc.frames
        wait_for(lambda: svc.frames > frames_then + 100)        # 10 s of camera time pass
        assert ring.clip_id is None and "privacy" in ring.detail
        assert svc.recorder.stats.clips_published == 0
        assert not list(spool.dir("tmp").iterdir())              # nothing even staged
    assert spool.pending_clips() == []
    assert json.loads((spool.dir("state") / "settings.json").read_text())["privacy"] is True
    # restart: still private; switching it off records again
    with FirmwareService(cfg, realtime=False, pin_factory=mock_pins, retention_interval_s=3600) as svc:
        assert svc.settings.privacy and svc.io.led_state == "privacy"
        spool.write_command("privacy", PrivacyCommand(enabled=False))
        wait_for(lambda: len(results(spool)) == 2)
        assert svc.io.led_state != "privacy"
        f0 = svc.frames
        wait_for(lambda: svc.frames > f0 + 30)
        svc.press_button()
        wait_for(lambda: spool.pending_clips(), timeout=30)
    [clip] = spool.pending_clips()
    assert clip.meta.trigger == "ring"


def test_long_press_toggles_privacy(fw_config, mock_pins):
    cfg = fw_config(camera={"source": "demo_loop"}, gpio={"long_press_s": 2.0})
    with FirmwareService(cfg, realtime=False, pin_factory=mock_pins, retention_interval_s=3600) as svc:
        wait_for(lambda: svc.frames > 5)
        mock_pins.pin(17).drive_low()
        f0 = svc.frames
        wait_for(lambda: svc.frames > f0 + 40)               # hold 4 s of camera time
        mock_pins.pin(17).drive_high()
        wait_for(lambda: events(svc.spool, "privacy_mode"))
        assert svc.settings.privacy is True
        assert events(svc.spool, "privacy_mode")[0].detail == "long press"


def test_snapshot_command_publishes_a_masked_jpeg(fw_config, mock_pins):
    mask = [[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [0.0, 0.5]]
    cfg = fw_config(camera={"source": "demo_loop"}, privacy={"masks": [{"points": mask}]})
    spool = Spool(cfg.spool.dir)
    with FirmwareService(cfg, realtime=False, pin_factory=mock_pins, retention_interval_s=3600) as svc:
        wait_for(lambda: svc.frames > 3)
        spool.write_command("snapshot", SnapshotCommand(command_id="snap-001"))
        wait_for(lambda: results(spool))
    [res] = results(spool)
    assert res == {"command": "snapshot", "command_id": "snap-001", "ok": True, "detail": res["detail"]}
    [snap] = spool.pending_snapshots()
    img = cv2.imdecode(np.frombuffer(snap.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert img.shape[:2] == (240, 320)
    assert img[:115, :155].max() <= 20                       # the masked quarter is black
    assert img[130:, 170:].mean() > 20                       # the rest is the porch


def test_settings_are_validated_applied_and_persisted(fw_config, mock_pins):
    cfg = fw_config(camera={"source": "demo_loop"})
    spool = Spool(cfg.spool.dir)
    cmd_dir = spool.dir("commands")
    bad = [
        ("settings", {"command_id": "bad-range", "motion": {"sensitivity": 5}}),      # out of range
        ("settings", {"command_id": "bad-cross", "clips": {"post_roll_s": 100}}),     # > max_length_s (10)
        ("settings", {"command_id": "bad-empty"}),                                     # changes nothing
        ("settings", {"command_id": "bad-key1", "motion": {"zones": []}}),            # not owner-adjustable
        ("reboot", {"command_id": "bad-name"}),                                        # unknown command
        ("privacy", {"command_id": "bad-type", "enabled": "maybe"}),
    ]
    for i, (name, payload) in enumerate(bad):
        (cmd_dir / f"{i:020d}-x.json").write_text(json.dumps({"name": name, "payload": payload}))
    (cmd_dir / f"{99:020d}-junk.json").write_text("{not json")
    with FirmwareService(cfg, realtime=False, pin_factory=mock_pins, retention_interval_s=3600) as svc:
        wait_for(lambda: len(results(spool)) == len(bad))
        spool.write_command("settings", SettingsCommand(command_id="good-0001",
                                                        motion={"sensitivity": 0.9, "cooldown_s": 2},
                                                        clips={"post_roll_s": 3.0}))
        wait_for(lambda: len(results(spool)) == len(bad) + 1)
        wait_for(lambda: svc.detector.config.sensitivity == 0.9)
        assert svc.recorder.clips.post_roll_s == 3.0
        assert svc.thread_alive()
    res = {r["command_id"]: r for r in results(spool)}
    for _name, payload in bad:
        r = res[payload["command_id"]]
        assert r["ok"] is False and r["detail"], r
    assert "sensitivity" in res["bad-range"]["detail"]
    assert "max_length_s" in res["bad-cross"]["detail"]
    assert "unknown command" in res["bad-name"]["detail"]
    assert res["good-0001"]["ok"] is True
    assert list(spool.dir("quarantine").iterdir())             # the junk file, kept aside
    assert list(cmd_dir.iterdir()) == []                       # every command answered and removed
    saved = json.loads((spool.dir("state") / "settings.json").read_text())
    assert saved["motion"] == {"sensitivity": 0.9, "cooldown_s": 2.0} and saved["clips"] == {"post_roll_s": 3.0}
    svc2 = FirmwareService(cfg, realtime=False, pin_factory=mock_pins)   # survives a restart
    assert svc2.settings.motion.sensitivity == 0.9 and svc2.settings.clips.post_roll_s == 3.0


def test_corrupt_settings_file_is_ignored_not_fatal(fw_config, mock_pins):
    cfg = fw_config()
    spool = Spool(cfg.spool.dir)
    (spool.dir("state") / "settings.json").write_text('{"motion": {"sensitivity": 7}}')
    svc = FirmwareService(cfg, realtime=False, pin_factory=mock_pins)
    assert svc.settings.motion.sensitivity == cfg.motion.sensitivity
    assert any(p.name.startswith("settings.json") for p in spool.dir("quarantine").iterdir())


def test_missing_video_fails_cleanly(fw_config, mock_pins, tmp_path):
    cfg = fw_config(camera={"backend": "file", "source": str(tmp_path / "nope.mp4")})
    svc = FirmwareService(cfg, realtime=False, pin_factory=mock_pins)
    assert svc.run() == 1
    assert "not found" in svc.failed


def test_request_press_file_presses_the_button(fw_config, mock_pins):
    cfg = fw_config(camera={"source": "demo_loop"})
    with FirmwareService(cfg, realtime=False, pin_factory=mock_pins, retention_interval_s=3600) as svc:
        wait_for(lambda: svc.frames > 25)
        request_press(cfg.spool.dir)
        wait_for(lambda: events(svc.spool, "ring"))
        assert not list(svc.presses_dir.iterdir())
        wait_for(lambda: svc.spool.pending_clips(), timeout=30)


def test_bell_rings_while_a_live_camera_is_down(fw_config, mock_pins):
    """A broken camera must not silence the doorbell: chime + ring event, retried camera, no crash."""
    cfg = fw_config(camera={"backend": "opencv", "source": "rtsp://127.0.0.1:9/none"})
    with FirmwareService(cfg, realtime=True, pin_factory=mock_pins, retention_interval_s=3600) as svc:
        assert not svc.camera.started and svc.thread_alive()
        svc.press_button()
        assert mock_pins.pin(27).state                     # the chime rang at once
        ring = wait_for(lambda: events(svc.spool, "ring"))[0]
        assert ring.clip_id is None and "camera unavailable" in ring.detail
        assert svc._healthy()                              # no watchdog restart loop over a dead camera


def test_privacy_mode_closes_an_open_motion_event(fw_config, mock_pins):
    """Home Assistant's motion sensor must not stay 'on' when detection stops for privacy."""
    cfg = fw_config(camera={"source": "walkup", "loop": True}, motion={"record": False, "cooldown_s": 30})
    with FirmwareService(cfg, realtime=False, pin_factory=mock_pins, retention_interval_s=3600) as svc:
        wait_for(lambda: events(svc.spool, "motion_start"), timeout=30)
        assert svc.detector.active
        svc.set_privacy(True, source="test")
        end = wait_for(lambda: events(svc.spool, "motion_end"))[0]
        assert end.detail == "privacy mode"
        f0 = svc.frames
        wait_for(lambda: svc.frames > f0 + 50)
        assert len(events(svc.spool, "motion_start")) == 1     # no detection while private
