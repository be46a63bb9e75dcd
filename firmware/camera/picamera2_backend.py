"""``picamera2`` backend: the Pi camera through libcamera, hardware H.264, lores YUV420 for detection.

Thin on purpose: picamera2 does the work. ``picamera2`` and ``libcamera`` are
imported inside :meth:`Picamera2Camera._open`, so this module imports anywhere
(the package exists only on Raspberry Pi OS). Its calls are checked against the
installed picamera2 sources by tests/firmware/test_picamera2_api.py.

* One video configuration: ``main`` (RGB888, camera.width x height) feeds the
  hardware H264Encoder; ``lores`` (YUV420, 320x240) is read by the pipeline for
  motion detection; the main image is copied only when a snapshot needs it.
* Privacy masks are drawn into the main buffer in ``pre_callback`` (before the
  encoder sees the frame), so they are burned into every recorded frame.
* Pre-roll: the encoder writes into a ``CircularOutput2``. Opening a
  ``PyavOutput`` on it starts an MP4 from the buffered past. CircularOutput2
  hands a frame on only once it is older than ``buffer_duration_ms``, so:
  the buffer is ``pre_roll + one keyframe interval`` (the first frame written
  is the first keyframe in the buffer, at or before trigger - pre_roll), and a
  clip meant to end at ``t`` is closed only when the camera reaches
  ``t + buffer`` (otherwise its last seconds would never reach the file).
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from doorbell.core.config import CameraSection
from firmware.camera.base import Camera, CameraError, Frame, register_backend
from firmware.masks import PrivacyMasker
from firmware.recorder import FRAGMENTED_MP4, StoreResult, VideoTarget

if TYPE_CHECKING:  # imported at run time only in _open (picamera2 exists only on Raspberry Pi OS)
    from picamera2 import Picamera2
    from picamera2.encoders import H264Encoder
    from picamera2.outputs import CircularOutput2

log = logging.getLogger(__name__)


def _sensor_to_wall(sensor_ns: int) -> float:
    """libcamera's SensorTimestamp (CLOCK_BOOTTIME ns) -> epoch seconds."""
    now_wall = time.time()
    age = (time.clock_gettime_ns(time.CLOCK_BOOTTIME) - sensor_ns) / 1e9
    if not 0 <= age < 2:  # not boottime on this kernel/libcamera: fall back to arrival time
        age = 0.0
    return now_wall - age


@register_backend("picamera2")
class Picamera2Camera(Camera):
    encodes_itself = True
    live = True

    def __init__(self, cfg: CameraSection, masker: PrivacyMasker | None = None, camera_num: int = 0,
                 **kwargs: Any):
        super().__init__(cfg, **kwargs)
        self.realtime = True
        self.masker = masker or PrivacyMasker([])
        self.camera_num = camera_num
        self.picam2: Picamera2 | None = None
        self.encoder: H264Encoder | None = None
        self.circular: CircularOutput2 | None = None

    def _open(self) -> None:
        try:
            from libcamera import Transform
            from picamera2 import MappedArray, Picamera2
            from picamera2.encoders import H264Encoder
            from picamera2.outputs import CircularOutput2
        except ImportError as exc:
            raise CameraError(f"picamera2 is not available ({exc}); on Raspberry Pi OS: "
                              "sudo apt install python3-picamera2 and a venv with --system-site-packages") from None
        cfg = self.cfg
        frame_us = int(1_000_000 / cfg.fps)
        picam2 = self.picam2 = Picamera2(camera_num=self.camera_num)
        video_config = picam2.create_video_configuration(
            main={"size": (cfg.width, cfg.height), "format": "RGB888"},
            lores={"size": (cfg.lores_width, cfg.lores_height), "format": "YUV420"},
            transform=Transform(hflip=int(cfg.hflip), vflip=int(cfg.vflip)),
            controls={"FrameDurationLimits": (frame_us, frame_us)},
            encode="main",
        )
        picam2.configure(video_config)
        masker = self.masker

        def burn_masks(request) -> None:  # camera thread, before the encoder
            if len(masker):
                with MappedArray(request, "main") as m:
                    masker.apply(m.array)

        picam2.pre_callback = burn_masks
        self.encoder = H264Encoder(bitrate=cfg.bitrate, repeat=True,
                                   iperiod=max(1, round(cfg.keyframe_interval_s * cfg.fps)))
        self.circular = CircularOutput2(buffer_duration_ms=5000)
        picam2.start()
        picam2.start_encoder(self.encoder, self.circular)

    def _close(self) -> None:
        if self.picam2 is None:
            return
        try:
            self.picam2.stop_encoder()
            self.picam2.stop()
        finally:
            self.picam2.close()
            self.picam2 = None

    def read(self, timeout: float = 1.0) -> Frame | None:
        if self.picam2 is None:
            raise CameraError("camera not started")
        request = self.picam2.capture_request()
        try:
            meta = request.get_metadata()
            lores = request.make_array("lores")[: self.cfg.lores_height, : self.cfg.lores_width]
            main = None
            if self._main_wanted.is_set():
                self._main_wanted.clear()
                main = request.make_array("main")
        finally:
            request.release()
        ts = _sensor_to_wall(int(meta["SensorTimestamp"])) if "SensorTimestamp" in meta else self._wall()
        frame = Frame(ts=ts, index=self._index, lores=np.ascontiguousarray(lores), main=main)
        self._index += 1
        self._last_ts = ts
        return frame

    def clip_store(self, pre_roll_s: float) -> Picamera2ClipStore:
        return Picamera2ClipStore(self, pre_roll_s)


class _ClipOutput(Protocol):
    """What the store reads back from its PyavOutput subclass (defined in ``begin``, where picamera2 is imported)."""

    first_wall: float | None
    last_wall: float | None
    frames: int
    _output_name: Any  # PyavOutput's target: a path, or the age writer's file object


class Picamera2ClipStore:
    """:class:`firmware.recorder.ClipStore` on top of CircularOutput2 + PyavOutput."""

    def __init__(self, camera: Picamera2Camera, pre_roll_s: float):
        self.camera = camera
        self.size: tuple[int, int] | None = (camera.cfg.width, camera.cfg.height)
        self.kf_s = camera.cfg.keyframe_interval_s
        self.set_pre_roll(pre_roll_s)
        self._output: _ClipOutput | None = None
        self._closing: tuple[float, StoreResult, _ClipOutput] | None = None
        self._lock = threading.Lock()

    def set_pre_roll(self, pre_roll_s: float) -> None:
        self.buffer_s = pre_roll_s + self.kf_s
        if self.camera.circular is not None:
            self.camera.circular.buffer_duration_ms = int(self.buffer_s * 1000)

    def push(self, frame: Frame) -> None:
        circular = self.camera.circular
        if circular is not None and not circular.recording:
            circular.start()  # resumed after privacy mode
        closing = self._closing
        if closing is not None and frame.ts >= closing[0] + self.buffer_s:
            self._close_now()

    def _close_now(self) -> None:
        closing, self._closing = self._closing, None
        if closing is None:
            return
        _until, result, output = closing
        circular = self.camera.circular
        try:
            if circular is None:
                raise CameraError("the camera is closed")
            circular.close_output()
        except Exception as exc:
            result.error = f"close_output failed: {exc}"
        result.start_ts = output.first_wall or result.start_ts
        result.end_ts = (output.last_wall or result.end_ts) + 1.0 / self.camera.fps
        result.frames = output.frames
        result.done.set()

    def finish_pending(self) -> None:
        """Shutdown: write what is still buffered into the draining clip and finish it now.

        ``CircularOutput2.stop()`` flushes the whole buffer into an open output
        (documented), so a clip ended just before SIGTERM keeps its post-roll
        instead of waiting ``buffer_s`` for frames that will never come.
        """
        closing, self._closing = self._closing, None
        if closing is None:
            return
        _until, result, output = closing
        circular = self.camera.circular
        try:
            if circular is not None and circular.recording:
                circular.stop()
            elif circular is not None:
                circular.close_output()
        except Exception as exc:
            result.error = f"flushing the circular buffer failed: {exc}"
        result.start_ts = output.first_wall or result.start_ts
        result.end_ts = (output.last_wall or result.end_ts) + 1.0 / self.camera.fps
        result.frames = output.frames
        result.done.set()

    def begin(self, path: VideoTarget, from_ts: float) -> float:
        from picamera2.outputs import PyavOutput

        circular = self.camera.circular
        if circular is None:
            raise CameraError("camera not started")
        if self._closing is not None:
            log.warning("new clip while the previous one drains: its last %.1f s go to the new clip", self.buffer_s)
            self._close_now()
        buffer_s = self.buffer_s
        clock = self.camera.now

        class TimedOutput(PyavOutput):
            """Knows when the frames it wrote were captured.

            The first frame leaves CircularOutput2 when it is ``buffer_s`` old; later
            ones are placed by their encoder timestamps (µs), which stay correct when
            ``CircularOutput2.stop()`` flushes the rest of the buffer all at once.
            """

            first_wall: float | None = None
            last_wall: float | None = None
            first_us: int | None = None
            frames = 0

            def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
                super().outputframe(frame, keyframe, timestamp, packet, audio)
                if audio:
                    return
                if self.first_wall is None:
                    self.first_wall = clock() - buffer_s
                    self.first_us = timestamp
                if timestamp is not None and self.first_us is not None:
                    self.last_wall = self.first_wall + (timestamp - self.first_us) / 1e6
                else:
                    self.last_wall = clock() - buffer_s
                self.frames += 1

        if isinstance(path, Path):
            output = TimedOutput(str(path), format="mp4")
        else:  # a sealed clip: a fragmented MP4 streamed into the age writer, plaintext only in RAM
            output = TimedOutput(path, format="mp4", options=FRAGMENTED_MP4)
        circular.open_output(output)
        self._output = output
        return self.camera.now() - buffer_s

    def end(self, until_ts: float) -> StoreResult:
        output, self._output = self._output, None
        if output is None:
            raise RuntimeError("no clip is open")
        result = StoreResult(Path(getattr(output._output_name, "name", output._output_name)), until_ts, until_ts, 0)
        self._closing = (until_ts, result, output)
        return result

    def clear(self) -> None:
        """Privacy mode: finish a draining clip with everything up to now, then stop buffering."""
        self.finish_pending()
        circular = self.camera.circular
        if circular is not None and circular.recording:
            circular.stop()

    def close(self) -> None:
        self.finish_pending()
