"""`doorbell motion scan`: the firmware's detector over a real encoded video file."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import pytest

from firmware.scene import PorchScene


def encode_scene(path: Path, preset: str, seconds: float | None = None) -> list:
    """Encode a synthetic scene to H.264 MP4 (real encode; the scan decodes it again)."""
    scene = PorchScene(width=320, height=240, fps=10, seed=3, script=preset)
    limit = int(seconds * 10) if seconds else None
    truths = []
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "20"}
        for bgr, truth in scene.frames(limit=limit):
            truths.append(truth)
            for packet in stream.encode(av.VideoFrame.from_ndarray(bgr, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return truths


def scan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "doorbell.cli", "motion", "scan", *args],
                          capture_output=True, text=True, timeout=120)


def test_walkup_is_found_where_the_visitor_is(tmp_path: Path) -> None:
    video = tmp_path / "walkup.mp4"
    truths = encode_scene(video, "walkup")
    r = scan(str(video), "--json")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert events, "the walk-up was missed"
    present = [t.t for t in truths if t.person]
    first, last = min(present), max(present)
    for e in events:
        assert set(e) == {"start_s", "end_s", "peak_score", "bbox", "open_at_end"}
        assert e["start_s"] <= e["end_s"] and 0 < e["peak_score"] <= 1
        x0, y0, x1, y1 = e["bbox"]
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
    # the detected event overlaps the visit
    assert any(e["start_s"] <= last and e["end_s"] >= first for e in events)


def test_lighting_only_footage_gives_no_event(tmp_path: Path) -> None:
    video = tmp_path / "ramp.mp4"
    encode_scene(video, "lighting_ramp")
    r = scan(str(video), "--json")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""
    human = scan(str(video))
    assert "0 motion event(s)" in human.stderr


def test_config_and_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-video.mp4"
    bad.write_bytes(b"definitely not video")
    r = scan(str(bad))
    assert r.returncode == 2 and "cannot decode" in r.stderr
    r = scan(str(tmp_path / "missing.mp4"))
    assert r.returncode == 2 and "no such video file" in r.stderr
    video = tmp_path / "walkup.mp4"
    encode_scene(video, "walkup", seconds=2)
    assert scan(str(video), "--sensitivity", "3").returncode == 2
    cfg = tmp_path / "device.yaml"
    cfg.write_text("motion:\n  sensitivty: 0.5\n")
    r = scan(str(video), "--config", str(cfg))
    assert r.returncode == 2 and "motion.sensitivty" in r.stderr and "unknown key" in r.stderr


@pytest.mark.parametrize("name", ["bikes.mp4"])
def test_real_footage(sample_videos, name: str) -> None:
    path = next(p for p in sample_videos if p.name == name)
    r = scan(str(path), "--json")
    assert r.returncode == 0, r.stderr
    assert [json.loads(line) for line in r.stdout.splitlines()], "a cyclist crossing the frame is motion"
