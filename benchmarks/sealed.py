"""Sealed clips (issue 12): what encrypting and signing on the device costs.

    .venv/bin/python benchmarks/sealed.py [--quick] [--json PATH]

Measures, with ``encryption.enabled``:

- clip finished -> in the bucket, by clip size: from the moment the recorder
  closes a clip (``ClipStaging.publish``: the video's last age chunk, the
  sealed metadata, the signed and sealed manifest, fsync, rename) to the
  agent's ``clips`` message, which the agent sends only after the bucket
  confirmed every ciphertext. The agent is a real subprocess against real
  Mosquitto and SeaweedFS; the video reaches the age writer in 256 KiB
  writes, as the muxer's fragments do while recording (not timed: that
  happens during the clip);
- firmware peak RSS, encryption on vs off: ``doorbell firmware simulate``
  (the whole firmware service, a real process) on the same 1280x720 footage
  with the same three presses; peak RSS from ``wait4``'s ``ru_maxrss``;
  runs alternate between the two modes. Target: on - off < 5 MB.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from doorbell.core import age, protocol, signing  # noqa: E402
from doorbell.core.spool import SealedClipMeta, SealedWriter, Sealing, Spool  # noqa: E402
from doorbell.sandbox.embedded import MqttProbe  # noqa: E402
from doorbell.sandbox.media import make_jpeg, make_mp4, make_noise_mp4  # noqa: E402
from doorbell.sandbox.stack import agent_stack  # noqa: E402

DEVICE = "dev-bench"
MB = 1024 * 1024
BLOCK = 256 * 1024


def publish_sealed(spool: Spool, video: Path, sealing: Sealing) -> tuple[SealedClipMeta, float]:
    """Stage a sealed clip as the recorder would (video streamed in), then time only the publish onwards;
    returns the clip's clear index and the monotonic time the publish started."""
    t = time.time()
    st = spool.stage_clip(ts=t, sealing=sealing)
    sink = st.open_video()
    if not isinstance(sink, SealedWriter):
        raise TypeError("a sealed stage opens an encrypting SealedWriter, not a path")
    with open(video, "rb") as fh:
        while block := fh.read(BLOCK):
            sink.write(block)
    st.write_snapshot(make_jpeg(1, 1280, 720))
    t0 = time.monotonic()
    clip = st.publish(device_id=DEVICE, trigger="ring", started_at=t, ended_at=t + 10, trigger_at=t + 4,
                      pre_roll_s=4, duration_s=10)
    if clip.sealed is None:
        raise TypeError(f"clip {clip.clip_id} was published in clear, not sealed")
    return clip.sealed, t0


def wait_sealed(obs: MqttProbe, video_sha: str, timeout: float = 120) -> float:
    deadline = time.monotonic() + timeout
    while True:
        msg = obs.expect(protocol.clips_topic(DEVICE), wait=max(0.01, deadline - time.monotonic()))
        m = protocol.decode(protocol.SealedClipMessage, msg.payload, "clips")
        if m.objects["video"].sha256 == video_sha:
            return float(msg.timestamp)  # paho stamps receipt with time.monotonic()


def clip_to_bucket(work: Path, quick: bool, recipients: list[age.X25519Recipient],
                   device_key: Ed25519PrivateKey) -> list[dict[str, Any]]:
    with agent_stack(work, DEVICE, "owner-bench", s3_options={"volume_size_limit_mb": 128, "max_volumes": 16},
                     config={"s3": {"prefix": "devices/"}, "encryption": {
                         "enabled": True, "recipients": [str(r) for r in recipients]}}) as stack:
        spool = Spool(stack.cfg.spool.dir)
        obs = stack.broker.client("admin")
        obs.sub(f"{protocol.PREFIX}/devices/{DEVICE}/#")
        stack.start_agent(obs)
        sealing = Sealing(tuple(recipients), device_key)
        media = stack.work / "media"
        media.mkdir()
        sizes: list[tuple[str, int | None]] = [("real 1280x720 clip (10 s)", None), ("1 MB", 1),
                                               ("8 MB (multipart)", 8)] + ([] if quick else [("32 MB", 32)])
        rows = []
        for label, mb in sizes:
            f = media / f"lat-{label.split()[0]}.mp4"
            if mb is None:
                make_mp4(f, frames=150, width=1280, height=720)
            else:
                make_noise_mp4(f, mb * MB, seed=mb)
            vals = []
            for _ in range(3 if quick else 5):
                sealed, t0 = publish_sealed(spool, f, sealing)
                vals.append(wait_sealed(obs, sealed.files["video"].sha256) - t0)
            rows.append({"label": label, "bytes": f.stat().st_size, "median_s": round(statistics.median(vals), 3),
                         "max_s": round(max(vals), 3), "values_s": [round(v, 3) for v in vals]})
        return rows


def firmware_rss(work: Path, quick: bool, recipients: list[age.X25519Recipient], key_file: Path) -> dict[str, Any]:
    """Peak RSS of ``doorbell firmware simulate`` with encryption off and on, alternating runs."""
    video = make_mp4(work / "fw-720p.mp4", frames=15 * 36, width=1280, height=720)
    base = {"device": {"id": DEVICE}, "camera": {"fps": 15}, "logging": {"level": "WARNING"}}
    configs = {"off": base, "on": {**base, "encryption": {
        "enabled": True, "device_key_file": str(key_file), "recipients": [str(r) for r in recipients]}}}
    for mode, data in configs.items():
        (work / f"fw-{mode}.yaml").write_text(yaml.safe_dump(data))
    out: dict[str, list[float]] = {"off": [], "on": []}
    clips: dict[str, list[int]] = {"off": [], "on": []}
    runs = 1 if quick else 6  # service-level peak RSS varies by a few MB run to run (thread timing)
    for i in range(runs):
        for mode in (("off", "on") if i % 2 == 0 else ("on", "off")):
            spool = work / f"fw-spool-{mode}-{i}"
            stdout = work / f"fw-{mode}-{i}.out"
            with open(stdout, "wb") as so, open(work / "firmware.log", "ab") as se:
                p = subprocess.Popen([sys.executable, "-m", "doorbell.cli", "firmware", "simulate", "--video",
                                      str(video), "--ring-at", "3", "--ring-at", "15", "--ring-at", "27",
                                      "--spool", str(spool), "--fast", "--config", str(work / f"fw-{mode}.yaml")],
                                     stdout=so, stderr=se)
                _pid, status, usage = os.wait4(p.pid, 0)
                p.returncode = os.waitstatus_to_exitcode(status)
            if p.returncode != 0:
                raise RuntimeError(f"firmware simulate ({mode}) exited {p.returncode}; see firmware.log")
            lines = [json.loads(x) for x in stdout.read_text().splitlines() if x.startswith("{")]
            if not lines or any(bool(x.get("sealed")) != (mode == "on") for x in lines):
                raise RuntimeError(f"firmware simulate ({mode}) recorded {len(lines)} clips of the wrong kind")
            clips[mode].append(len(lines))
            out[mode].append(usage.ru_maxrss / 1024)  # KiB -> MiB
    return {"runs": runs, "peak_rss_mb": {k: [round(v, 1) for v in vs] for k, vs in out.items()},
            "clips": clips, "video": "1280x720 15 fps 36 s, 3 presses",
            "growth_mb": round(statistics.median(out["on"]) - statistics.median(out["off"]), 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer sizes and runs")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sealed-bench-") as tmp:
        results = run(Path(tmp), args.quick)
    text = json.dumps(results, indent=1)
    if args.json:
        Path(args.json).write_text(text)
    print(text)
    return 0


def run(work: Path, quick: bool) -> dict[str, Any]:
    """Both measurements in ``work``, which the caller removes (footage, spools, SeaweedFS data)."""
    members = [age.generate_identity() for _ in range(2)]
    recipients = [m.recipient for m in members] + [age.generate_identity().recipient]  # 2 members + recovery
    key_file = work / "device_ed25519.pem"
    device_key = signing.ensure_device_key(key_file)
    results: dict[str, Any] = {"quick": quick, "recipients": len(recipients)}
    results["firmware"] = firmware_rss(work, quick, recipients, key_file)
    results["clip_to_bucket"] = clip_to_bucket(work, quick, recipients, device_key)
    return results


if __name__ == "__main__":
    sys.exit(main())
