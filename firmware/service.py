"""The firmware process: button, chime, LED, camera, motion, clips, commands, retention.

Threads, and why each exists:

* **gpio callback** (gpiozero's): turns the chime on synchronously and queues
  the ring; nothing slow ever runs there.
* **gpio-watch** (:class:`~firmware.gpio.DoorbellIO`): chime pulse end, debounce,
  held-button repeats, long press, LED patterns.
* **pipeline**: camera read -> motion detection -> mask -> encode -> clip
  routing, one frame at a time. It owns the detector, encoder and clip store;
  other threads reach them only through :meth:`FirmwareService._in_pipeline`
  (applied before the next frame) or the recorder's locked trigger queue.
* **clip-publisher** (:class:`~firmware.recorder.ClipRecorder`): fsync, sha256
  and the atomic rename of finished clips, so the camera never waits for the
  SD card.
* **events**: writes ring/motion/privacy/... events into the spool at once
  (the agent picks them up over inotify).
* **control**: waits on inotify for the owner-command inbox and the
  simulated-press directory, runs retention every minute.
* **main**: signals (SIGTERM/SIGINT stop cleanly), sd_notify READY/STOPPING;
  the systemd watchdog is fed only while the pipeline delivers frames.

Shutdown: stop flag -> pipeline finishes the open clip -> publisher drains ->
camera, GPIO and threads are closed; nothing half-written is ever published
(the spool's staging guarantees that even on kill -9).
"""
from __future__ import annotations

import concurrent.futures
import faulthandler
import logging
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from doorbell.core.age import parse_recipient
from doorbell.core.config import ConfigError, DoorbellConfig, MotionSection
from doorbell.core.protocol import BBox, DeviceEvent, PrivacyCommand, SettingsCommand, SnapshotCommand
from doorbell.core.sdnotify import Notifier, Watchdog
from doorbell.core.signing import SignatureError, load_private_key
from doorbell.core.spool import Sealing, Spool, SpoolClip
from firmware.camera import Camera, CameraError, EndOfStream, Frame, create_camera
from firmware.commands import CommandProcessor, CommandRefused, InboxWatcher, handler
from firmware.gpio import DoorbellIO
from firmware.masks import PrivacyMasker
from firmware.recorder import ClipRecorder, SoftwareClipStore
from firmware.retention import Retention
from firmware.settings import SettingsError, SettingsStore

if TYPE_CHECKING:  # imported at run time only when the camera starts (_start_camera)
    from firmware.motion import MotionDetector

log = logging.getLogger(__name__)

PRESSES_DIR = "presses"          # <spool>/state/presses/: one file = one simulated button press
MAX_CAMERA_ERRORS = 20
CAMERA_STALL_S = 10.0
CAMERA_RETRY_S = 10.0           # a live camera that failed to start is retried this often
SHUTDOWN_DUMP_S = 15.0           # dump thread stacks to stderr if a shutdown takes longer


class EventWriter:
    """A thread that writes events into the spool in order, so callers never wait for fsync."""

    def __init__(self, spool: Spool):
        self.spool = spool
        self._q: queue.Queue[DeviceEvent | None] = queue.Queue()
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)
        self._thread.start()

    def put(self, event: DeviceEvent) -> None:
        self._q.put(event)

    def _run(self) -> None:
        while (event := self._q.get()) is not None:
            for attempt in range(3):
                try:
                    self.spool.publish_event(event)
                    self.written += 1
                    break
                except OSError as exc:
                    log.error("event %s not written (attempt %d): %s", event.type, attempt + 1, exc)
                    time.sleep(0.2)

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(timeout=10)


def sealing_from_config(cfg: DoorbellConfig) -> Sealing | None:
    """The recipients and manifest-signing key when ``encryption.enabled``; a ConfigError names what is wrong."""
    enc = cfg.encryption
    if not enc.enabled:
        return None
    try:
        key = load_private_key(enc.device_key_file)
    except (OSError, ValueError, SignatureError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        problem = (f"cannot load the device's signing key {enc.device_key_file}: {reason} "
                   "(doorbell provision device makes it)")
        raise ConfigError(cfg.source, [("encryption.device_key_file", problem)]) from None
    return Sealing(tuple(parse_recipient(r) for r in enc.recipients), key)


def _bbox(box: tuple[float, float, float, float] | None) -> BBox | None:
    if box is None:
        return None
    x0, y0, x1, y1 = (min(1.0, max(0.0, float(v))) for v in box)
    return BBox(x=x0, y=y0, w=max(0.0, x1 - x0), h=max(0.0, y1 - y0))


class FirmwareService:
    """Everything the doorbell does on the Pi, wired together; see the module docstring.

    ``realtime=False`` (file/synthetic cameras) runs on the camera's virtual
    clock as fast as the CPU allows; ``press_at`` lists seconds into the video
    at which the (mock) button is pressed (``doorbell firmware simulate``).
    """

    def __init__(self, cfg: DoorbellConfig, *, realtime: bool | None = None, pin_factory: Any = None,
                 camera: Camera | None = None, press_at: list[float] | None = None,
                 free_bytes: Callable[[], int] | None = None, retention_interval_s: float = 60.0,
                 notifier: Notifier | None = None):
        self.cfg = cfg
        self.device_id = cfg.device.id
        self.spool = Spool(cfg.spool.dir)
        recovered = self.spool.recover()
        if recovered.quarantined or recovered.removed:
            log.warning("spool recovery: %d quarantined, %d removed", len(recovered.quarantined),
                        len(recovered.removed))
        self.settings = SettingsStore(self.spool, cfg)
        self.sealing = sealing_from_config(cfg)
        if self.sealing is not None:
            log.info("clips are encrypted to %d recipient(s) and signed; HA snapshot %s",
                     len(self.sealing.recipients), "in clear" if cfg.encryption.snapshot_in_clear else "off")
        self.masker = PrivacyMasker(cfg.privacy.masks)
        self.camera = camera or create_camera(cfg.camera, realtime=realtime, masker=self.masker)
        self.pin_factory = pin_factory
        self.press_at = sorted(press_at or [])
        self.retention = Retention(self.spool, cfg.retention, self.device_id, publish=self._event,
                                   free_bytes=free_bytes)
        self.retention_interval_s = retention_interval_s
        self.notifier = notifier or Notifier.from_env()
        self.watchdog = Watchdog(self.notifier, check=self._healthy)
        self.events: EventWriter | None = None
        self.recorder: ClipRecorder | None = None
        self.detector: MotionDetector | None = None
        self.io: DoorbellIO | None = None
        self.commands = CommandProcessor(self.spool, self.device_id, {
            "snapshot": handler(SnapshotCommand, self._cmd_snapshot),
            "privacy": handler(PrivacyCommand, self._cmd_privacy),
            "settings": handler(SettingsCommand, self._cmd_settings),
        }, publish=self._event)
        self.presses_dir = self.spool.dir("state") / PRESSES_DIR
        self.presses_dir.mkdir(exist_ok=True)
        self._stop = threading.Event()
        self.ended = threading.Event()          # set when a non-looping source ran out
        self.running = threading.Event()        # set once start() completed (buttons can be pressed)
        self.failed: str | None = None
        self._threads: list[threading.Thread] = []
        self._calls: queue.Queue[Callable[[], None]] = queue.Queue()
        self._snapshots: list[concurrent.futures.Future] = []
        self._snap_lock = threading.Lock()
        self._last_frame_mono = time.monotonic()
        self._first_ts: float | None = None
        self.frames = 0
        self.rings: deque[float] = deque(maxlen=100)              # recent, for status and tests
        self.motion_events: deque[DeviceEvent] = deque(maxlen=100)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """GPIO first (the chime must work even without a camera), then the camera and the threads."""
        self.events = EventWriter(self.spool)
        if self.cfg.camera.audio:
            log.warning("camera.audio is set, but the firmware never records audio (sharing rule 7): ignored")
        clock = time.monotonic if self.camera.realtime else self.camera.now
        self.io = DoorbellIO(self.cfg.gpio, on_ring=self._on_ring, on_long_press=self._on_long_press,
                             pin_factory=self.pin_factory, clock=clock, wall=self.camera.now)
        if self.settings.privacy:
            self.io.set_privacy(True)
            log.info("starting in privacy mode: not recording, not detecting")
        try:
            self._start_camera()
        except CameraError as exc:
            if not self.camera.live:
                raise
            log.error("camera unavailable (%s): the bell still rings; retrying every %.0f s", exc, CAMERA_RETRY_S)
        for name, target in (("pipeline", self._pipeline_loop), ("control", self._control_loop)):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        self.watchdog.start()
        self.notifier.ready(f"{self.camera.backend_name} camera {'up' if self.camera.started else 'DOWN'}, "
                            f"privacy {'on' if self.settings.privacy else 'off'}")
        self.running.set()
        log.info("firmware running: device %s, spool %s", self.device_id, self.spool.root)

    def _start_camera(self) -> None:
        """Start the camera and build what depends on it (frame rate, sizes): store, recorder, detector."""
        from firmware.motion import MotionDetector

        self.camera.start()
        self._last_frame_mono = time.monotonic()
        clips = self.settings.clips
        if self.camera.encodes_itself:
            store = self.camera.clip_store(pre_roll_s=clips.pre_roll_s)
        else:
            store = SoftwareClipStore(self.camera.fps, self.cfg.camera.bitrate,
                                      self.cfg.camera.keyframe_interval_s, clips.pre_roll_s)
        recorder = ClipRecorder(self.spool, self.device_id, clips, store, self.masker, fps=self.camera.fps,
                                on_published=self._published, on_recording=self._recording_changed,
                                want_main=self.camera.want_main, sealing=self.sealing,
                                clear_snapshot=self.cfg.encryption.snapshot_in_clear)
        recorder.set_paused(self.settings.privacy)
        lw, lh = self.camera.lores_size
        self.detector = MotionDetector(self._detection_section(self.settings.motion), lw, lh)
        self.recorder = recorder

    def stop(self) -> None:
        """Ask every thread to stop (safe from signal handlers and any thread)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._stop.wait(timeout)

    def shutdown(self) -> None:
        """Stop threads, finish and publish the open clip, release the camera and pins."""
        self._stop.set()
        self.notifier.stopping("finishing the open clip")
        for t in self._threads:
            t.join(timeout=30)
            if t.is_alive():
                log.error("thread %s did not stop", t.name)
        self._threads.clear()
        self.watchdog.stop()
        if self.recorder is not None:
            self.recorder.close()
        try:
            self.camera.stop()
        except Exception:
            log.exception("camera stop failed")
        if self.io is not None:
            self.io.close()
        if self.events is not None:
            self.events.close()
        log.info("firmware stopped")

    def run(self) -> int:
        """Start, serve until SIGTERM/SIGINT (or the end of a non-looping source), shut down."""
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                handlers[sig] = signal.signal(sig, lambda signum, _frame: self._signal(signum))
        try:
            try:
                self.start()
            except CameraError as exc:
                self.failed = f"camera cannot start: {exc}"
                return 1
            except Exception as exc:  # e.g. no GPIO on this machine: say so, exit non-zero, no traceback spam
                hint = " (off a Pi, set gpio.pin_factory: mock)" if "pin" in str(exc).lower() or \
                    type(exc).__module__.startswith("gpiozero") else ""
                log.debug("start failed", exc_info=True)
                self.failed = f"cannot start: {type(exc).__name__}: {exc}{hint}"
                return 1
            while not self._stop.wait(0.5):  # a timed wait: the signal handler never races a held lock
                pass
        finally:
            faulthandler.dump_traceback_later(SHUTDOWN_DUMP_S, exit=False)  # say where a stuck stop hangs
            try:
                self.shutdown()
            finally:
                faulthandler.cancel_dump_traceback_later()
            for sig, old in handlers.items():
                signal.signal(sig, old)
            if self.failed:
                log.error("firmware failed: %s", self.failed)
        return 1 if self.failed else 0

    def _signal(self, signum: int) -> None:
        log.info("signal %s: shutting down", signal.Signals(signum).name)
        self.stop()

    def __enter__(self) -> "FirmwareService":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    # ------------------------------------------------------------------ helpers
    def _event(self, event: DeviceEvent) -> None:
        if self.events is not None:
            self.events.put(event)
        else:
            self.spool.publish_event(event)

    def _detection_section(self, motion: MotionSection) -> MotionSection:
        """Privacy-masked areas are never analysed either (their pixels are black in clips anyway)."""
        if not self.cfg.privacy.masks:
            return motion
        return motion.model_copy(update={"masks": [*motion.masks, *self.cfg.privacy.masks]})

    def _in_pipeline(self, fn: Callable[[], None]) -> None:
        self._calls.put(fn)

    def _healthy(self) -> bool:
        """Threads alive and, while the camera is running, frames flowing (a wedged camera gets a restart).

        A camera that failed to start is retried in-process instead, so the chime keeps working."""
        stalled = self.camera.started and time.monotonic() - self._last_frame_mono >= CAMERA_STALL_S
        return not stalled and all(t.is_alive() for t in self._threads)

    def thread_alive(self) -> bool:
        """Whether the pipeline and control threads still run (health checks, tests)."""
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def _recording_changed(self, recording: bool) -> None:
        if self.io is not None:
            self.io.set_recording(recording)

    def _published(self, clip: SpoolClip) -> None:
        m = clip.clear
        log.info("clip %s ready for upload (%s%s, %.1f s, rings %d)", clip.clip_id, m.trigger,
                 ", sealed" if clip.sealed else "", m.duration_s, len(m.rings))

    # ------------------------------------------------------------------ button
    def _on_ring(self, ts: float) -> None:
        """GPIO thread: the chime already sounds; open/extend a clip and queue the ring event."""
        self.rings.append(ts)
        clip_id = None
        detail = None
        if self.settings.privacy:
            detail = "privacy mode: not recorded"
        elif self.recorder is None:
            detail = "camera unavailable: not recorded"
        else:
            clip_id = self.recorder.trigger("ring", ts)
        self._event(DeviceEvent(device_id=self.device_id, type="ring", ts=ts, clip_id=clip_id, detail=detail))

    def _on_long_press(self, ts: float) -> None:
        self.set_privacy(not self.settings.privacy, source="long press")

    def press_button(self) -> None:
        """Simulated press (demo/tests): the mock pin is driven, so it takes the real GPIO path."""
        if self.io is None:
            raise RuntimeError("service not started")
        self.io.press()

    # ------------------------------------------------------------------ privacy / settings
    def set_privacy(self, enabled: bool, source: str = "command") -> None:
        """Privacy mode on: finish the open clip, drop the pre-roll, stop detection; persisted."""
        self.settings.set_privacy(enabled)
        if self.recorder is not None:
            self.recorder.set_paused(enabled)
        if self.io is not None:
            self.io.set_privacy(enabled)
        if self.detector is not None:
            if enabled:
                self._in_pipeline(lambda: self._end_motion("privacy mode"))
            else:
                self._in_pipeline(self.detector.reset)  # the background is stale after a pause
        log.info("privacy mode %s (%s)", "ON" if enabled else "off", source)
        self._event(DeviceEvent(device_id=self.device_id, type="privacy_mode", enabled=enabled, detail=source))

    def _cmd_privacy(self, cmd: PrivacyCommand) -> str:
        self.set_privacy(cmd.enabled, source="owner command")
        return f"privacy mode {'on' if cmd.enabled else 'off'}"

    def _cmd_settings(self, cmd: SettingsCommand) -> str:
        try:
            motion, clips = self.settings.apply(cmd)
        except SettingsError as exc:
            raise CommandRefused(f"invalid settings: {exc}") from None
        if self.detector is not None:
            detector, section = self.detector, self._detection_section(motion)

            def reconfigure() -> None:
                if not section.enabled:
                    self._end_motion("motion detection disabled")
                detector.configure(section)

            self._in_pipeline(reconfigure)
        if self.recorder is not None:
            self.recorder.set_clips(clips)
        changed = cmd.model_dump(exclude_none=True, exclude={"command_id", "v"})
        return f"settings applied and saved: {changed}"

    def _cmd_snapshot(self, cmd: SnapshotCommand) -> str:
        if self.settings.privacy:
            raise CommandRefused("privacy mode is on: no snapshot")
        if not self.cfg.encryption.snapshot_in_clear:
            raise CommandRefused("clips are end-to-end encrypted and encryption.ha_snapshot_plaintext is off: "
                                 "no snapshot leaves the device in clear")
        jpeg = self.take_snapshot()
        path = self.spool.publish_snapshot(jpeg)
        return f"snapshot {path.name} ({len(jpeg)} bytes)"

    def take_snapshot(self, timeout: float = 5.0) -> bytes:
        """A privacy-masked JPEG of the next frame (blocks the caller, not the pipeline)."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        with self._snap_lock:
            self._snapshots.append(fut)
        self.camera.want_main()
        try:
            return fut.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            with self._snap_lock:
                if fut in self._snapshots:
                    self._snapshots.remove(fut)
            raise CommandRefused("no camera frame within %.0f s" % timeout) from None

    # ------------------------------------------------------------------ pipeline thread
    def _pipeline_loop(self) -> None:
        errors = 0
        while not self._stop.is_set():
            if not self.camera.started:
                if self._stop.wait(CAMERA_RETRY_S):
                    break
                try:
                    self._start_camera()
                    log.info("camera is back")
                except CameraError as exc:
                    log.error("camera still unavailable: %s", exc)
                continue
            try:
                frame = self.camera.read(timeout=1.0)
            except EndOfStream as exc:
                log.info("camera source ended: %s", exc)
                self.ended.set()
                break
            except CameraError as exc:
                errors += 1
                log.error("camera error %d/%d: %s", errors, MAX_CAMERA_ERRORS, exc)
                if errors >= MAX_CAMERA_ERRORS:
                    self.failed = f"camera failed: {exc}"
                    break
                time.sleep(0.1)
                continue
            if frame is None:
                continue
            errors = 0
            try:
                self._process(frame)
            except Exception:  # keep the doorbell alive; the log has the bug
                log.exception("frame %d failed", frame.index)
        try:
            if self.recorder is not None:
                self.recorder.flush()
        finally:
            self._stop.set()

    def _process(self, frame: Frame) -> None:
        self.frames += 1
        self._last_frame_mono = time.monotonic()
        self.watchdog.beat()
        while True:
            try:
                self._calls.get_nowait()()
            except queue.Empty:
                break
        if self._first_ts is None:
            self._first_ts = frame.ts
        while self.press_at and frame.ts - self._first_ts >= self.press_at[0]:
            self.press_at.pop(0)
            self.press_button()
        paused = self.settings.privacy
        assert self.recorder is not None
        if self.recorder.paused != paused:  # the persisted setting is the one source of truth
            self.recorder.set_paused(paused)
        if not paused:
            self._detect(frame)
        self.recorder.on_frame(frame)  # masks frame.main in place before encoding
        if self._snapshots and frame.main is not None and not paused:
            self._serve_snapshots(frame)

    def _detect(self, frame: Frame) -> None:
        if self.detector is None:
            return
        try:
            result = self.detector.update(frame.lores, frame.ts)
        except ValueError as exc:
            log.error("motion detector refused frame %d: %s; resetting it", frame.index, exc)
            self.detector.reset()
            return
        if result is None:
            return
        assert self.recorder is not None
        if result.event == "motion_start":
            clip_id = None
            if self.settings.motion.record:
                clip_id = self.recorder.trigger("motion", frame.ts, result.score)
            ev = DeviceEvent(device_id=self.device_id, type="motion_start", ts=frame.ts, clip_id=clip_id,
                             score=result.score, bbox=_bbox(result.bbox))
            self.motion_events.append(ev)
            self._event(ev)
        elif result.event == "motion_end":
            ev = DeviceEvent(device_id=self.device_id, type="motion_end", ts=frame.ts, score=result.score,
                             bbox=_bbox(result.bbox))
            self.motion_events.append(ev)
            self._event(ev)
        if result.active:
            self.recorder.motion_active(frame.ts, result.score)

    def _end_motion(self, reason: str) -> None:
        """Pipeline thread: close an open motion event (Home Assistant's sensor must not stay 'on')."""
        if self.detector is None:
            return
        if self.detector.active:
            ev = DeviceEvent(device_id=self.device_id, type="motion_end", ts=self.camera.now(), detail=reason)
            self.motion_events.append(ev)
            self._event(ev)
        self.detector.reset()

    def _serve_snapshots(self, frame: Frame) -> None:
        import cv2

        with self._snap_lock:
            waiting, self._snapshots = self._snapshots, []
        assert frame.main is not None
        self.masker.apply(frame.main)  # already masked by the recorder; cheap and explicit
        ok, buf = cv2.imencode(".jpg", frame.main, [cv2.IMWRITE_JPEG_QUALITY, self.settings.clips.snapshot_quality])
        for fut in waiting:
            if ok:
                fut.set_result(buf.tobytes())
            else:
                fut.set_exception(CommandRefused("JPEG encoding failed"))

    # ------------------------------------------------------------------ control thread
    def _control_loop(self) -> None:
        watcher = InboxWatcher([self.spool.dir("commands"), self.presses_dir])
        next_retention = 0.0
        try:
            while not self._stop.is_set():
                self._take_presses()
                try:
                    self.commands.process_pending()
                except Exception:
                    log.exception("command inbox failed")
                if time.monotonic() >= next_retention:
                    next_retention = time.monotonic() + self.retention_interval_s
                    try:
                        self.retention.run()
                    except Exception:
                        log.exception("retention run failed")
                watcher.wait(0.25)
        finally:
            watcher.close()

    def _take_presses(self) -> None:
        for path in sorted(self.presses_dir.iterdir()):
            if path.name.startswith("."):
                continue
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            log.info("simulated button press (%s)", path.name)
            try:
                self.press_button()
            except Exception:
                log.exception("simulated press failed")


def request_press(spool_dir: str | Path) -> Path:
    """Ask a running firmware (same spool) to press its button once: ``doorbell firmware ring``."""
    from doorbell.core.fileio import atomic_write

    spool = Spool(spool_dir)
    d = spool.dir("state") / PRESSES_DIR
    d.mkdir(exist_ok=True)
    target = d / f"{time.time_ns():020d}.press"
    atomic_write(target, b"press\n", spool.dir("tmp"))
    return target
