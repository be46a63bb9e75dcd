"""Clip recording: continuous H.264 encoding, a bounded pre-roll, clips published to the spool.

Pipeline (off the Pi; the picamera2 backend swaps in its own :class:`ClipStore`)::

    frame --mask--> PyAV libx264 --packets--> PacketRing (pre_roll + 1 GOP)
                                        \\--> ClipWriter (MP4) while a clip is open

* Encoding runs all the time, so a clip can begin *before* the press: at the
  latest keyframe at or before ``trigger - pre_roll`` (keyframes every
  ``camera.keyframe_interval_s``). The ring keeps whole GOPs only as long as
  needed for that, so memory is bounded by pre_roll + one GOP of packets.
* Packet timestamps come from capture time (``Frame.ts``), not from a frame
  counter, so dropped frames and a slow Pi do not stretch or shrink time.
* Privacy masks are burned into the frame before it is encoded and before the
  snapshot JPEG is made: the clip never contains the masked pixels at all.
* All store/encoder calls happen on the pipeline thread (:meth:`ClipRecorder.on_frame`);
  triggers from other threads are queued under a lock and applied at the next
  frame. Finishing a clip (fsync, sha256, atomic rename) runs on a publisher
  thread so the camera never waits for the SD card.
"""
from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

import numpy as np

from doorbell.core.config import ClipsSection
from doorbell.core.spool import ClipStaging, SealedWriter, Sealing, Spool, SpoolClip, new_clip_id
from firmware.camera.base import Frame
from firmware.masks import PrivacyMasker

if TYPE_CHECKING:  # av is imported lazily, where it encodes
    from av.video.codeccontext import VideoCodecContext

log = logging.getLogger(__name__)

TIME_BASE = Fraction(1, 90000)  # MPEG's 90 kHz clock
# Into an encrypting, non-seekable writer (sealed clips): a fragmented MP4, one fragment per GOP, so the
# muxer never seeks back and holds at most one GOP; plaintext never touches the SD card.
FRAGMENTED_MP4 = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}
VideoTarget = Path | SealedWriter   # where a store writes a clip: an MP4 path, or a sealed (age) file
ENCODERS = ("libx264", "h264_v4l2m2m", "libopenh264", "h264")


# --------------------------------------------------------------------------- encoded packets
@dataclass(frozen=True)
class EncodedPacket:
    ts: float       # capture time of the frame (epoch seconds)
    data: bytes     # Annex B H.264 access unit (SPS/PPS repeated on keyframes)
    keyframe: bool


class PacketRing:
    """The last ``keep_s`` seconds of encoded packets, trimmed in whole GOPs.

    Invariant after :meth:`trim`: the oldest packet is the latest keyframe at or
    before ``now - keep_s`` (or the oldest keyframe if history is shorter), so a
    clip can always start on a keyframe at least ``keep_s`` before ``now``.
    """

    def __init__(self, keep_s: float):
        self.keep_s = keep_s
        self._packets: deque[EncodedPacket] = deque()
        self._key_ts: deque[float] = deque()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._packets)

    def push(self, pkt: EncodedPacket) -> None:
        if not self._packets and not pkt.keyframe:
            return  # a clip cannot start on a P-frame; wait for the next keyframe
        self._packets.append(pkt)
        self.bytes += len(pkt.data)
        if pkt.keyframe:
            self._key_ts.append(pkt.ts)
        self.trim(pkt.ts)

    def trim(self, now: float) -> None:
        while len(self._key_ts) >= 2 and self._key_ts[1] <= now - self.keep_s:
            self._key_ts.popleft()
            # drop the oldest GOP: everything before the (new) first keyframe
            while self._packets and not (self._packets[0].keyframe and self._packets[0].ts == self._key_ts[0]):
                self.bytes -= len(self._packets.popleft().data)

    def clear(self) -> None:
        self._packets.clear()
        self._key_ts.clear()
        self.bytes = 0

    def since(self, start_ts: float) -> list[EncodedPacket]:
        """Packets from the latest keyframe at or before ``start_ts`` (else the oldest keyframe) on."""
        start = 0
        for i, pkt in enumerate(self._packets):
            if pkt.ts > start_ts:
                break
            if pkt.keyframe:
                start = i
        return list(self._packets)[start:]

    @property
    def oldest_ts(self) -> float | None:
        return self._packets[0].ts if self._packets else None


class SoftwareEncoder:
    """PyAV H.264 encoder with no B-frames (one packet out per frame in, no reordering)."""

    def __init__(self, width: int, height: int, fps: float, bitrate: int, keyframe_interval_s: float):
        import av

        self.width, self.height, self.fps = width, height, fps
        last_exc: Exception | None = None
        for name in ENCODERS:
            try:
                # an H.264 name: a video context (the stubs type only known names so)
                ctx = cast("VideoCodecContext", av.CodecContext.create(name, "w"))
            except (av.FFmpegError, ValueError) as exc:  # codec not built into this libav
                last_exc = exc
                continue
            ctx.width, ctx.height = width, height
            ctx.pix_fmt = "yuv420p"
            ctx.time_base = TIME_BASE
            ctx.framerate = Fraction(fps).limit_denominator(1001)
            ctx.bit_rate = bitrate
            ctx.gop_size = max(1, round(keyframe_interval_s * fps))
            ctx.max_b_frames = 0
            if name == "libx264":
                ctx.options = {"preset": "ultrafast", "tune": "zerolatency",
                               "x264-params": "repeat-headers=1:scenecut=0"}
            try:
                ctx.open()
            except av.FFmpegError as exc:
                last_exc = exc
                continue
            self.ctx, self.codec_name = ctx, name
            break
        else:
            raise RuntimeError(f"no usable H.264 encoder in this PyAV build: {last_exc}")
        self._t0: float | None = None
        self._pending: dict[int, float] = {}
        self._last_pts = -1
        self._VideoFrame = av.VideoFrame

    def encode(self, bgr: np.ndarray, ts: float) -> list[EncodedPacket]:
        if self._t0 is None:
            self._t0 = ts
        pts = round((ts - self._t0) / TIME_BASE)
        if pts <= self._last_pts:
            pts = self._last_pts + 1  # timestamps must increase strictly
        self._last_pts = pts
        vf = self._VideoFrame.from_ndarray(bgr, format="bgr24").reformat(format="yuv420p")
        vf.pts = pts
        vf.time_base = TIME_BASE
        self._pending[pts] = ts
        if len(self._pending) > 256:  # an encoder that swallowed frames must not grow this forever
            for stale in sorted(self._pending)[:-64]:
                del self._pending[stale]
        return self._collect(self.ctx.encode(vf))

    def flush(self) -> list[EncodedPacket]:
        try:
            return self._collect(self.ctx.encode(None))
        except Exception:  # already flushed / closed
            return []

    def _collect(self, packets) -> list[EncodedPacket]:
        out = []
        for p in packets:
            ts = self._pending.pop(p.pts, None)
            if ts is None:
                ts = (self._t0 or 0.0) + float(p.pts * TIME_BASE)
            out.append(EncodedPacket(ts, bytes(p), bool(p.is_keyframe)))
        return out


class ClipWriter:
    """Muxes encoded packets into an MP4 with pts relative to the clip's first packet."""

    def __init__(self, path: VideoTarget, width: int, height: int, fps: float, start_ts: float):
        import av

        self.path = path if isinstance(path, Path) else Path(path.name)
        self.start_ts = start_ts
        if isinstance(path, Path):
            self.container = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
        else:
            self.container = av.open(path, "w", format="mp4", options=FRAGMENTED_MP4)
        self.stream = self.container.add_stream("h264", rate=Fraction(fps).limit_denominator(1001))
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p"
        self.stream.time_base = TIME_BASE
        self._Packet = av.Packet
        self._last_pts = -1
        self.frames = 0
        self.first_ts: float | None = None
        self.last_ts: float | None = None

    def write(self, pkt: EncodedPacket) -> None:
        pts = round((pkt.ts - self.start_ts) / TIME_BASE)
        if pts <= self._last_pts:
            return  # never write a non-increasing timestamp (a broken file is worse than a lost frame)
        packet = self._Packet(pkt.data)
        packet.pts = packet.dts = pts
        packet.time_base = TIME_BASE
        packet.is_keyframe = pkt.keyframe
        packet.stream = self.stream
        self.container.mux(packet)
        self._last_pts = pts
        self.frames += 1
        if self.first_ts is None:
            self.first_ts = pkt.ts
        self.last_ts = pkt.ts

    def close(self) -> None:
        self.container.close()


# --------------------------------------------------------------------------- stores
@dataclass
class StoreResult:
    """What a store wrote for one clip; ``done`` is set once the file is complete."""

    path: Path
    start_ts: float
    end_ts: float
    frames: int
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


class ClipStore(Protocol):
    """Where encoded video lives: the PyAV ring here, picamera2's CircularOutput2 on a Pi."""

    size: tuple[int, int] | None

    def push(self, frame: Frame) -> None: ...
    def begin(self, path: VideoTarget, from_ts: float) -> float: ...
    def end(self, until_ts: float) -> StoreResult: ...
    def clear(self) -> None: ...
    def set_pre_roll(self, pre_roll_s: float) -> None: ...
    def finish_pending(self) -> None: ...
    def close(self) -> None: ...


class SoftwareClipStore:
    """PyAV encoder + :class:`PacketRing` + :class:`ClipWriter`; everything on the pipeline thread."""

    def __init__(self, fps: float, bitrate: int, keyframe_interval_s: float, pre_roll_s: float):
        self.fps, self.bitrate, self.kf_s = fps, bitrate, keyframe_interval_s
        self.ring = PacketRing(pre_roll_s)
        self.encoder: SoftwareEncoder | None = None
        self.writer: ClipWriter | None = None
        self.size: tuple[int, int] | None = None
        self.encode_errors = 0

    def set_pre_roll(self, pre_roll_s: float) -> None:
        self.ring.keep_s = pre_roll_s

    def push(self, frame: Frame) -> None:
        if frame.main is None:
            return
        h, w = frame.main.shape[:2]
        if self.encoder is None or self.size != (w, h):
            if self.encoder is not None:
                log.warning("frame size changed to %dx%d: restarting the encoder", w, h)
                self.ring.clear()
            self.encoder = SoftwareEncoder(w, h, self.fps, self.bitrate, self.kf_s)
            self.size = (w, h)
            log.info("encoding %dx%d @ %.2f fps with %s", w, h, self.fps, self.encoder.codec_name)
        try:
            packets = self.encoder.encode(frame.main, frame.ts)
        except Exception as exc:  # one bad frame must not stop the doorbell
            self.encode_errors += 1
            log.error("encoding frame %d failed: %s", frame.index, exc)
            return
        for pkt in packets:
            self.ring.push(pkt)
            if self.writer is not None:
                self.writer.write(pkt)

    def begin(self, path: VideoTarget, from_ts: float) -> float:
        if self.writer is not None:
            raise RuntimeError("a clip is already open")
        if self.size is None:
            raise RuntimeError("no frame encoded yet")
        backlog = self.ring.since(from_ts)
        start = backlog[0].ts if backlog else from_ts
        self.writer = ClipWriter(path, self.size[0], self.size[1], self.fps, start)
        for pkt in backlog:
            self.writer.write(pkt)
        return start

    def end(self, until_ts: float) -> StoreResult:
        writer, self.writer = self.writer, None
        if writer is None:
            raise RuntimeError("no clip is open")
        result = StoreResult(writer.path, writer.first_ts or writer.start_ts,
                             (writer.last_ts or writer.start_ts) + 1.0 / self.fps, writer.frames)
        try:
            writer.close()
        except Exception as exc:
            result.error = f"closing the MP4 failed: {exc}"
        result.done.set()
        return result

    def clear(self) -> None:
        self.ring.clear()

    def finish_pending(self) -> None:
        """Nothing drains here: :meth:`end` completes the file at once."""

    def close(self) -> None:
        if self.writer is not None:
            self.end(self.writer.last_ts or 0.0)
        if self.encoder is not None:
            self.encoder.flush()


# --------------------------------------------------------------------------- recorder
@dataclass
class ActiveClip:
    clip_id: str
    trigger: str
    trigger_at: float
    staging: ClipStaging | None = None
    started_at: float = 0.0              # first frame written by the store
    deadline: float = 0.0                # post-roll end
    cap: float = 0.0                     # max_length end
    rings: list[float] = field(default_factory=list)
    motion_score: float | None = None
    snapshot_done: bool = False


@dataclass
class RecorderStats:
    clips_published: int = 0
    clips_failed: int = 0
    frames: int = 0


class ClipRecorder:
    """Decides when clips start and end, and publishes them with snapshot and metadata.

    ``trigger("ring"|"motion"|"manual", ts)`` opens a clip (or extends the open
    one, recording a ring in its ``rings``); ``motion_active(ts)`` keeps
    extending post-roll while motion lasts; ``max_length_s`` caps the clip.
    """

    def __init__(self, spool: Spool, device_id: str, clips: ClipsSection, store: ClipStore,
                 masker: PrivacyMasker | None = None, fps: float = 15.0,
                 on_published: Callable[[SpoolClip], None] | None = None,
                 on_recording: Callable[[bool], None] | None = None,
                 want_main: Callable[[], None] | None = None, start_publisher: bool = True,
                 sealing: Sealing | None = None, clear_snapshot: bool = False):
        self.spool = spool
        self.device_id = device_id
        self.clips = clips
        self.store = store
        self.masker = masker or PrivacyMasker([])
        self.fps = fps
        self.on_published = on_published
        self.on_recording = on_recording
        self.want_main = want_main
        self.sealing = sealing                  # encrypt + sign clips as they are written (issue 12)
        self.clear_snapshot = clear_snapshot    # sealed clips: also hand HA a clear snapshot (its own setting)
        self.stats = RecorderStats()
        self.published: deque[SpoolClip] = deque(maxlen=64)  # recent clips, for callers and tests
        self._lock = threading.Lock()
        self._pending: list[tuple[str, float, float | None, str]] = []  # (kind, ts, score, clip_id)
        self._motion_until: float | None = None
        self._active: ActiveClip | None = None
        self._next_id: str | None = None          # id reserved for the clip the next trigger opens
        self._finished_ids: deque[str] = deque(maxlen=64)
        self._deferred: list[tuple[ActiveClip, StoreResult]] = []
        self._last_frame: Frame | None = None
        self._paused = False
        self._publish_q: queue.Queue = queue.Queue()
        self._publisher: threading.Thread | None = None
        if start_publisher:
            self._publisher = threading.Thread(target=self._publish_loop, name="clip-publisher", daemon=True)
            self._publisher.start()

    # ------------------------------------------------------------------ any thread
    def trigger(self, kind: str, ts: float, score: float | None = None) -> str | None:
        """Ask for a clip around ``ts``; returns the id of the clip that will hold it (None when paused)."""
        with self._lock:
            if self._paused:
                return None
            if self._active is not None and ts <= self._active.cap:
                clip_id = self._active.clip_id
            else:
                if self._next_id is None:
                    self._next_id = new_clip_id(ts)
                clip_id = self._next_id
            self._pending.append((kind, ts, score, clip_id))
            return clip_id

    def motion_active(self, ts: float, score: float | None = None) -> None:
        """Motion still going on at ``ts``: keep the open clip's post-roll running."""
        with self._lock:
            self._motion_until = ts
            if score is not None and self._active is not None:
                self._active.motion_score = max(self._active.motion_score or 0.0, score)

    def set_paused(self, paused: bool) -> None:
        """Privacy mode: finish the open clip at the next frame, drop the pre-roll, record nothing."""
        with self._lock:
            self._paused = paused
            if paused:
                self._pending.clear()
                self._next_id = None

    def set_clips(self, clips: ClipsSection) -> None:
        """New pre/post-roll and max length (owner settings); applies to the next clip decisions."""
        with self._lock:
            self.clips = clips
            self.store.set_pre_roll(clips.pre_roll_s)

    @property
    def recording(self) -> bool:
        return self._active is not None

    @property
    def paused(self) -> bool:
        return self._paused

    # ------------------------------------------------------------------ pipeline thread
    def on_frame(self, frame: Frame) -> None:
        """Mask, encode and route one frame; start/stop clips; snapshot at the trigger."""
        with self._lock:
            paused = self._paused
            pending, self._pending = self._pending, []
            motion_until = self._motion_until
        if paused:
            if self._active is not None:
                self._finish(frame.ts, reason="privacy mode")
            self.store.clear()
            return
        if frame.main is not None:
            self.masker.apply(frame.main)
        # Triggers first: the ring still holds the keyframe at or before trigger - pre_roll. Pushing this
        # (later) frame first could trim it, and a press between two frames would get a frame less pre-roll.
        pushed = self.store.size is None   # nothing encoded yet: a clip needs at least this frame
        if pushed:
            self.store.push(frame)
        for kind, ts, score, clip_id in pending:
            self._apply_trigger(kind, ts, score, clip_id, frame)
        if not pushed:
            self.store.push(frame)         # encodes into the ring and, if a clip is open, into its MP4
        self.stats.frames += 1
        self._last_frame = frame
        if self._deferred:
            self._publish_deferred()
        clip = self._active
        if clip is None:
            return
        if motion_until is not None:
            clip.deadline = min(max(clip.deadline, motion_until + self.clips.post_roll_s), clip.cap)
        if not clip.snapshot_done:
            if frame.main is not None and frame.ts >= clip.trigger_at - 0.5 / self.fps:
                self._snapshot(clip, frame)
            elif self.want_main is not None:
                self.want_main()
        if frame.ts >= min(clip.deadline, clip.cap):
            with self._lock:
                if any(p[3] == clip.clip_id for p in self._pending):
                    return  # a ring for this clip arrived meanwhile: it extends the clip next frame
                self._active = None
            self._finish_clip(clip, frame.ts, "max length" if clip.cap <= clip.deadline else "post-roll over")

    def _apply_trigger(self, kind: str, ts: float, score: float | None, clip_id: str, frame: Frame) -> None:
        clip = self._active
        if clip is not None and clip.clip_id == clip_id:
            if kind == "ring":
                clip.rings.append(ts)
                log.info("ring at %.3f recorded in open %s clip %s", ts, clip.trigger, clip.clip_id)
            if score is not None:
                clip.motion_score = max(clip.motion_score or 0.0, score)
            clip.deadline = min(max(clip.deadline, ts + self.clips.post_roll_s), clip.cap)
            return
        if clip_id in self._finished_ids:
            # a trigger that named a clip which has ended meanwhile: it belongs to the open clip, or a new one
            if clip is not None:
                self._apply_trigger(kind, ts, score, clip.clip_id, frame)
                return
            clip_id = new_clip_id(ts)
        if clip is not None:
            self._finish(frame.ts, reason="capped; a new clip follows")
        trigger = kind if kind in ("ring", "motion", "manual") else "manual"
        clip = ActiveClip(clip_id=clip_id, trigger=trigger, trigger_at=ts,
                          rings=[ts] if kind == "ring" else [], motion_score=score)
        try:
            clip.staging = self.spool.stage_clip(clip_id, sealing=self.sealing)
            clip.started_at = self.store.begin(clip.staging.open_video(), ts - self.clips.pre_roll_s)
        except Exception as exc:
            log.error("cannot start clip %s: %s", clip_id, exc)
            if clip.staging is not None:
                clip.staging.discard()
            self.stats.clips_failed += 1
            with self._lock:
                if self._next_id == clip_id:
                    self._next_id = None
            return
        clip.cap = clip.started_at + self.clips.max_length_s
        clip.deadline = min(ts + self.clips.post_roll_s, clip.cap)
        with self._lock:  # one step: a trigger sees either the reserved id or the open clip, never neither
            self._active = clip
            if self._next_id == clip_id:
                self._next_id = None
        log.info("clip %s started (%s at %.3f, pre-roll %.2f s)", clip_id, trigger, ts, ts - clip.started_at)
        if self.on_recording:
            self.on_recording(True)

    def _snapshot(self, clip: ActiveClip, frame: Frame) -> None:
        import cv2

        clip.snapshot_done = True
        assert frame.main is not None
        ok, jpeg = cv2.imencode(".jpg", frame.main, [cv2.IMWRITE_JPEG_QUALITY, self.clips.snapshot_quality])
        if ok and clip.staging is not None:
            try:
                clip.staging.write_snapshot(jpeg.tobytes())
                if self.sealing is not None and self.clear_snapshot:
                    self.spool.publish_snapshot(jpeg.tobytes())  # the retained HA snapshot, outside E2E
            except OSError as exc:
                log.error("snapshot for %s not written: %s", clip.clip_id, exc)

    def _finish(self, now: float, reason: str) -> None:
        with self._lock:
            clip, self._active = self._active, None
        if clip is not None:
            self._finish_clip(clip, now, reason)

    def _finish_clip(self, clip: ActiveClip, now: float, reason: str) -> None:
        self._finished_ids.append(clip.clip_id)
        result = self.store.end(now)
        if result.done.is_set():
            log.info("clip %s ends (%s): %d frames", clip.clip_id, reason, result.frames)
        else:
            log.info("clip %s ends (%s); the camera's buffer is still draining into it", clip.clip_id, reason)
        if self.on_recording:
            self.on_recording(False)
        if self._publisher is not None:
            self._publish_q.put((clip, result))
        elif result.done.is_set():
            self._publish(clip, result)
        else:
            self._deferred.append((clip, result))  # no publisher thread: publish once the store drained it

    def _publish_deferred(self) -> None:
        while self._deferred and self._deferred[0][1].done.is_set():
            self._publish(*self._deferred.pop(0))

    def flush(self, timeout: float = 30.0) -> None:
        """Finish the open clip now and wait until every finished clip is published."""
        self._finish(self._last_frame.ts if self._last_frame else 0.0, reason="flush")
        self.store.finish_pending()  # picamera2: no more frames will come to drain the buffer
        self._publish_deferred()
        if self._publisher is not None:
            done = threading.Event()
            self._publish_q.put(done)
            done.wait(timeout)

    def close(self) -> None:
        self.flush()
        if self._publisher is not None:
            self._publish_q.put(None)
            self._publisher.join(timeout=30)
            self._publisher = None
        self.store.close()

    # ------------------------------------------------------------------ publisher thread
    def _publish_loop(self) -> None:
        while True:
            item = self._publish_q.get()
            if item is None:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            try:
                self._publish(*item)
            except Exception:
                log.exception("publishing a clip failed")

    def _publish(self, clip: ActiveClip, result: StoreResult) -> None:
        staging = clip.staging
        assert staging is not None
        if not result.done.wait(timeout=60):
            result.error = "the camera's encoder never finished the clip"
        if result.error or result.frames == 0:
            log.error("clip %s discarded: %s", clip.clip_id, result.error or "no frames")
            staging.discard()
            self.stats.clips_failed += 1
            return
        started = result.start_ts
        width, height = self.store.size or (None, None)
        try:
            published = staging.publish(
                device_id=self.device_id, trigger=clip.trigger, started_at=started, ended_at=result.end_ts,
                trigger_at=clip.trigger_at, pre_roll_s=max(0.0, clip.trigger_at - started),
                duration_s=max(0.0, result.end_ts - started), width=width, height=height,
                fps=self.fps, rings=clip.rings, motion_score=clip.motion_score,
                privacy_masks=len(self.masker))
        except Exception as exc:
            log.error("clip %s not published: %s", clip.clip_id, exc)
            staging.discard()
            self.stats.clips_failed += 1
            return
        self.stats.clips_published += 1
        self.published.append(published)
        if self.on_published:
            try:
                self.on_published(published)
            except Exception:
                log.exception("on_published callback failed")
