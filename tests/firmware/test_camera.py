"""Camera backends off the Pi: file (PyAV), opencv (cv2.VideoCapture on a file), synthetic (scene)."""
from __future__ import annotations

import time

import pytest

from firmware.camera import BACKEND_MODULES, CameraError, EndOfStream, create_camera, registered_backends


def read_n(cam, n):
    out = []
    while len(out) < n:
        f = cam.read()
        if f is not None:
            out.append(f)
    return out


def test_file_backend_loops_with_a_monotonic_virtual_clock(fw_config, sample_videos):
    carphone = next(p for p in sample_videos if p.name == "carphone_pristine.mp4")   # 120 frames, 176x144
    cfg = fw_config(camera={"backend": "file", "source": str(carphone), "loop": True})
    with create_camera(cfg.camera, realtime=False) as cam:
        frames = read_n(cam, 300)
        assert cam.loops == 2
        assert (cam.width, cam.height) == (176, 144) and cam.fps == pytest.approx(29.97, abs=0.01)
    ts = [f.ts for f in frames]
    assert all(b - a == pytest.approx(1 / cam.fps, abs=1e-5) for a, b in zip(ts, ts[1:]))
    assert frames[0].main.shape == (144, 176, 3) and frames[0].lores.shape == (240, 320)
    assert [f.index for f in frames] == list(range(300))


def test_file_backend_without_loop_ends(fw_config, sample_videos):
    carphone = next(p for p in sample_videos if p.name == "carphone_pristine.mp4")
    cfg = fw_config(camera={"backend": "file", "source": str(carphone), "loop": False})
    with create_camera(cfg.camera, realtime=False) as cam:
        read_n(cam, 120)
        with pytest.raises(EndOfStream):
            cam.read()


def test_file_backend_paces_to_the_video_fps_in_real_time(fw_config, sample_videos):
    carphone = next(p for p in sample_videos if p.name == "carphone_pristine.mp4")
    cfg = fw_config(camera={"backend": "file", "source": str(carphone)})
    with create_camera(cfg.camera, realtime=True) as cam:
        t0 = time.monotonic()
        frames = read_n(cam, 16)
        elapsed = time.monotonic() - t0
    assert elapsed >= 15 / 29.97 - 0.02
    assert frames[-1].ts - frames[0].ts == pytest.approx(15 / 29.97, abs=0.1)


def test_opencv_backend_reads_a_file_with_flips(fw_config, bikes_video):
    cfg = fw_config(camera={"backend": "opencv", "source": str(bikes_video), "hflip": True, "vflip": True})
    plain = fw_config(camera={"backend": "opencv", "source": str(bikes_video)})
    with create_camera(cfg.camera) as cam, create_camera(plain.camera) as ref:
        a, b = cam.read(), ref.read()
    assert a.main.shape == (272, 640, 3)
    assert (a.main == b.main[::-1, ::-1]).all()              # hflip + vflip = 180 degrees
    assert a.lores.shape == (240, 320)


def test_opencv_backend_refuses_a_missing_source(fw_config, tmp_path):
    cfg = fw_config(camera={"backend": "opencv", "source": str(tmp_path / "missing.mp4")})
    with pytest.raises(CameraError):
        create_camera(cfg.camera).start()


def test_synthetic_backend_renders_the_scene_with_ground_truth(fw_config):
    cfg = fw_config(camera={"backend": "synthetic", "source": "walkup", "loop": False})
    with create_camera(cfg.camera, realtime=False) as cam:
        frames = read_n(cam, 10)
        assert cam.truth is not None and cam.truth.index == 9
        assert frames[0].main.shape == (240, 320, 3)
        n = cam.scene.n_frames
        read_n(cam, n - 10)
        with pytest.raises(EndOfStream):
            cam.read()


def test_unknown_scene_preset_is_a_camera_error(fw_config):
    cfg = fw_config(camera={"backend": "synthetic", "source": "moon_landing"})
    with pytest.raises(CameraError, match="moon_landing"):
        create_camera(cfg.camera).start()


def test_backends_are_registered_lazily_by_name():
    assert set(BACKEND_MODULES) == {"picamera2", "opencv", "file", "synthetic"}
    assert "picamera2" not in registered_backends() or registered_backends()["picamera2"].encodes_itself
