"""Runs the picamera2 clip store on picamera2's REAL pure-Python output classes (subprocess helper).

picamera2's package ``__init__`` needs libcamera, but ``outputs/output.py``,
``outputs/circularoutput2.py`` and ``outputs/pyavoutput.py`` are plain Python
(+ PyAV). This script loads those three installed modules under stub parent
packages, feeds CircularOutput2 the way picamera2's H264Encoder does
(``_add_stream("video", "h264", ...)`` then ``outputframe(bytes, keyframe,
timestamp_us)``) with H.264 from PyAV, and drives :class:`Picamera2ClipStore`
through the normal :class:`ClipRecorder`. Frames carry their index as a
black/white bar code so the test can tell which frames reached the MP4.

Usage: python picam_outputs_harness.py SPOOL_DIR RING_FRAME STOP_FRAME [AGE_IDENTITY_FILE]   (prints one JSON line)

With AGE_IDENTITY_FILE the clip is sealed (encryption on: a fragmented MP4 streamed
into the age writer); the harness then decrypts it with that identity and reports
the plaintext copy and the decrypted metadata, next to the sealed file's path.
"""
from __future__ import annotations

import importlib
import importlib.util
import io
import json
import sys
import types
from pathlib import Path

import numpy as np

FPS, W, H = 15.0, 320, 240
T0 = 1_800_000_000.0


def load_picamera2_outputs():
    spec = importlib.util.find_spec("picamera2")
    root = Path(list(spec.submodule_search_locations)[0])
    for name, path in (("picamera2", root), ("picamera2.outputs", root / "outputs")):
        mod = types.ModuleType(name)
        mod.__path__ = [str(path)]
        sys.modules[name] = mod
    circ = importlib.import_module("picamera2.outputs.circularoutput2")
    pyav = importlib.import_module("picamera2.outputs.pyavoutput")
    sys.modules["picamera2.outputs"].CircularOutput2 = circ.CircularOutput2
    sys.modules["picamera2.outputs"].PyavOutput = pyav.PyavOutput
    return circ.CircularOutput2


def barcode(index: int) -> np.ndarray:
    img = np.full((H, W, 3), 90, np.uint8)
    for bit in range(10):
        if index >> bit & 1:
            img[200:232, 8 + bit * 30: 8 + bit * 30 + 24] = 255
        else:
            img[200:232, 8 + bit * 30: 8 + bit * 30 + 24] = 0
    return img


class FakeCamera:
    """Just what Picamera2ClipStore reads from its camera: config, fps, the circular output, the clock."""

    def __init__(self, cfg, circular):
        self.cfg, self.fps, self.circular, self.ts = cfg, FPS, circular, T0

    def now(self) -> float:
        return self.ts


def main() -> int:
    spool_dir, ring_frame, stop_frame = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    identity_file = Path(sys.argv[4]) if len(sys.argv) > 4 else None
    CircularOutput2 = load_picamera2_outputs()
    from doorbell.core.config import CameraSection, ClipsSection
    from doorbell.core.spool import Spool
    from firmware.camera.base import Frame
    from firmware.camera.picamera2_backend import Picamera2ClipStore
    from firmware.recorder import ClipRecorder, SoftwareEncoder

    cam_cfg = CameraSection(backend="picamera2", width=W, height=H, fps=FPS, keyframe_interval_s=1.0)
    clips = ClipsSection(pre_roll_s=2.0, post_roll_s=2.0, max_length_s=20.0)
    circular = CircularOutput2(buffer_duration_ms=5000)
    camera = FakeCamera(cam_cfg, circular)
    store = Picamera2ClipStore(camera, clips.pre_roll_s)
    encoder = SoftwareEncoder(W, H, FPS, 500_000, 1.0)
    circular._add_stream("video", "h264", width=W, height=H)     # what H264Encoder._send_streams does
    circular.start()                                             # what start_encoder does
    sealing = None
    if identity_file is not None:
        from doorbell.core import age, signing
        from doorbell.core.spool import Sealing
        identity = age.load_identities(identity_file)[0]
        sealing = Sealing((identity.recipient,), signing.generate_key())
    rec = ClipRecorder(Spool(spool_dir), "dev-a", clips, store, fps=FPS, start_publisher=False, sealing=sealing)
    trigger_ts = None
    for i in range(stop_frame):
        ts = T0 + i / FPS
        camera.ts = ts
        img = barcode(i)
        for pkt in encoder.encode(img, ts):                      # the camera's encoder thread
            circular.outputframe(pkt.data, pkt.keyframe, int(round(pkt.ts * 1e6)))
        if i == ring_frame:
            trigger_ts = ts
            rec.trigger("ring", ts)
        rec.on_frame(Frame(ts=ts, index=i, lores=img[:, :, 0], main=img))   # the pipeline thread
    rec.close()                                                  # shutdown: drains what is buffered
    [clip] = Spool(spool_dir).pending_clips()
    if clip.sealed is None:
        print(json.dumps({"video": str(clip.video), "meta": clip.meta.model_dump(mode="json"),
                          "trigger_ts": trigger_ts, "t0": T0, "fps": FPS}))
        return 0
    plain = Path(spool_dir).with_name("opened.mp4")
    with open(clip.video, "rb") as src, open(plain, "wb") as dst:
        age.decrypt(src, dst, [identity])
    meta = io.BytesIO()
    with open(clip.path / "meta.json.age", "rb") as src:
        age.decrypt(src, meta, [identity])
    print(json.dumps({"video": str(plain), "sealed_video": str(clip.video), "meta": json.loads(meta.getvalue()),
                      "trigger_ts": trigger_ts, "t0": T0, "fps": FPS}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
