"""``doorbell firmware run|ring|simulate`` as real processes: sd_notify, SIGTERM, exit codes."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from doorbell.core.spool import Spool

DOORBELL = [sys.executable, "-m", "doorbell.cli"]


def write_config(tmp_path: Path, **over) -> Path:
    cfg = {
        "device": {"id": "dev-a"},
        "spool": {"dir": str(tmp_path / "spool")},
        "gpio": {"pin_factory": "mock", "long_press_s": None},
        "camera": {"backend": "synthetic", "source": "demo_loop", "width": 320, "height": 240, "fps": 10},
        "clips": {"pre_roll_s": 1.0, "post_roll_s": 1.0, "max_length_s": 5.0},
        "motion": {"record": False},
        **over,
    }
    path = tmp_path / "device.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def recv_until(sock: socket.socket, needle: str, timeout: float = 20.0) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            msg = sock.recv(4096).decode()
        except TimeoutError:
            break
        got.append(msg)
        if needle in msg:
            return got
    raise AssertionError(f"{needle!r} not received; got {got}")


def test_run_notifies_systemd_rings_on_request_and_stops_cleanly_on_sigterm(tmp_path):
    config = write_config(tmp_path)
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    env = {**os.environ, "NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "2000000"}
    proc = subprocess.Popen([*DOORBELL, "firmware", "run", "--config", str(config)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        recv_until(sock, "READY=1")
        time.sleep(1.5)                                   # let the pre-roll fill (real time)
        out = subprocess.run([*DOORBELL, "firmware", "ring", "--config", str(config)],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        recv_until(sock, "WATCHDOG=1")                    # fed while frames flow
        spool = Spool(tmp_path / "spool")
        deadline = time.monotonic() + 20
        while not [e for e in spool.pending_events() if e.event.type == "ring"] and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        try:
            _out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("no clean exit after SIGTERM:\n" + proc.communicate()[1][-4000:]) from None
        assert proc.returncode == 0, err
        recv_until(sock, "STOPPING=1", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
    [ring] = [e.event for e in spool.pending_events() if e.event.type == "ring"]
    [clip] = spool.pending_clips()                        # finished at once or flushed on SIGTERM
    assert ring.clip_id == clip.clip_id
    assert not list((tmp_path / "spool" / "tmp").iterdir())
    assert "signal SIGTERM" in err


def test_invalid_config_is_refused_with_the_key_and_reason(tmp_path):
    config = write_config(tmp_path, clips={"pre_roll_s": -1}, camera={"backend": "webcam9000"})
    out = subprocess.run([*DOORBELL, "firmware", "run", "--config", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "clips.pre_roll_s" in out.stderr and "camera.backend" in out.stderr
    assert "Traceback" not in out.stderr


def test_simulate_replays_footage_and_presses_at_the_given_times(tmp_path, bikes_video):
    out = subprocess.run([*DOORBELL, "firmware", "simulate", "--video", str(bikes_video), "--ring-at", "5",
                          "--spool", str(tmp_path / "sim"), "--fast"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    clips = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert clips, out.stdout
    rings = [r for c in clips for r in c["rings"]]
    assert len(rings) == 1
    ring_clip = next(c for c in clips if c["rings"])
    assert ring_clip["rings"][0] - ring_clip["started_at"] >= 4.0 - 1.0   # pre-roll (default 4 s) minus one GOP
    assert Path(ring_clip["path"]).is_file()


def test_simulate_refuses_a_missing_video(tmp_path):
    out = subprocess.run([*DOORBELL, "firmware", "simulate", "--video", str(tmp_path / "none.mp4"),
                          "--spool", str(tmp_path / "s")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "no such video file" in out.stderr


def test_ring_on_stdin_presses_once_per_line(tmp_path):
    """How the demo rings: one line on the firmware's stdin = one press through the mock GPIO path."""
    config = write_config(tmp_path, gpio={"pin_factory": "mock", "long_press_s": None, "ring_interval_s": 0.5})
    proc = subprocess.Popen([*DOORBELL, "firmware", "run", "--config", str(config), "--ring-on-stdin"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    spool = Spool(tmp_path / "spool")
    try:
        deadline = time.monotonic() + 30
        while not (spool.dir("state") / "presses").is_dir() and time.monotonic() < deadline:
            time.sleep(0.05)                              # the service exists (its presses dir is made)
        time.sleep(2.0)                                   # imports + pre-roll
        for _ in range(2):
            proc.stdin.write("\n")
            proc.stdin.flush()
            time.sleep(0.8)
        deadline = time.monotonic() + 20
        while len([e for e in spool.pending_events() if e.event.type == "ring"]) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    rings = [e.event for e in spool.pending_events() if e.event.type == "ring"]
    assert len(rings) == 2, err[-2000:]
    assert proc.returncode == 0
