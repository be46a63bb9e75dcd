"""The cloud agent: spool -> S3 and MQTT, durable through outages and crashes.

Threads (all stop on SIGTERM, see :meth:`Agent.shutdown`):

- **watcher**: inotify on ``clips/``, ``events/``, ``snapshots/``; a new file
  wakes the right worker within a millisecond. Without inotify the workers
  simply rescan every ``agent.poll_s``.
- **publisher**: events first (oldest first, ``late=true`` past
  ``agent.late_after_s``), then the outbox of ``clips`` messages and the
  retained snapshot. Up to :data:`WINDOW` QoS 1 messages are in flight; each
  spool file is deleted only after its PUBACK, in order.
- **uploader**: one clip at a time, oldest first; on failure it retries the
  same clip after an exponential backoff with jitter, capped at
  :data:`UPLOAD_RETRY_MAX_S` so uploads resume within seconds of the bucket
  returning, and order is kept. Once
  the bucket confirmed all three objects, the ``clips`` message is written to
  the outbox (``{state_dir}/outbox``, atomic), then the clip moves to
  ``uploaded/``.
- **status**: ``{state_dir}/status.json`` once a second.

Owner commands arrive on paho's thread, are validated and handed to the
firmware through the spool inbox (``Spool.write_command``); the firmware never
opens a socket.
"""
from __future__ import annotations

import contextlib
import gc
import json
import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from cloud_agent.backoff import Backoff
from cloud_agent.memory import trim
from cloud_agent.mqtt_link import MqttLink, Pending, PublishRefused
from cloud_agent.status import OUTBOX_DIR, StatusBoard, StatusWriter
from doorbell.core import __version__, protocol
from doorbell.core.config import DoorbellConfig
from doorbell.core.fileio import atomic_write
from doorbell.core.protocol import DeviceEvent, ProtocolError
from doorbell.core.spool import SNAPSHOT_FILE, Spool, SpoolClip

if TYPE_CHECKING:  # the uploader imports boto3 lazily, to keep the agent's start-up memory low
    from cloud_agent.uploader import Uploader, UploadOutcome
    from doorbell.core.sdnotify import Notifier

log = logging.getLogger(__name__)

WINDOW = 64  # QoS 1 messages in flight at once while draining a backlog
PIPELINE = 2  # clips uploading at once (confirmed strictly in order)
# Longest wait between upload retries, whatever ``agent.retry_max_s`` says: a failing attempt
# against a dead endpoint returns at once, so an uncapped exponential backoff reaches a minute
# within a short outage and the clip then waits up to that long after the bucket is back.
# With at most 4 s (jittered, so a fleet does not retry in step) uploads resume within about
# 5 s of the bucket returning (benchmarks/recovery.py).
UPLOAD_RETRY_MAX_S = 4.0


class Outbox:
    """Durable queue of MQTT messages the agent itself produced (``clips`` messages, snapshots).

    One JSON file per message, named by a nanosecond counter so they sort in
    the order they were written; written atomically, deleted after PUBACK.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # full disk: put() fails and is retried; reading needs no directory
            log.warning("cannot create %s: %s", self.root, exc)

    def put(self, body: dict[str, Any]) -> Path:
        path = self.root / f"{time.time_ns():020d}-{body.get('kind', 'msg')}.json"
        atomic_write(path, json.dumps(body).encode())
        return path

    def items(self, limit: int) -> list[tuple[Path, dict[str, Any]]]:
        out: list[tuple[Path, dict[str, Any]]] = []
        try:
            paths = sorted(self.root.glob("*.json"))[:limit]
        except OSError:
            return out
        for path in paths:
            try:
                out.append((path, json.loads(path.read_bytes())))
            except (OSError, ValueError) as exc:
                log.error("dropping unreadable outbox file %s: %s", path.name, exc)
                path.unlink(missing_ok=True)
        return out

    def done(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    def put_all(self, bodies: list[dict[str, Any]]) -> None:
        """Queue several messages, all or none: a full disk half-way removes the ones written."""
        written: list[Path] = []
        try:
            for body in bodies:
                written.append(self.put(body))
        except OSError:
            for path in written:
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
            raise


@dataclass
class _Item:
    """One message to publish and what to do once the broker acknowledged it."""

    key: str
    topic: str
    payload: bytes
    retain: bool
    on_acked: Callable[[], None]
    on_refused: Callable[[str], None]


class Agent:
    """The agent process; :meth:`run` blocks until SIGTERM/SIGINT or :meth:`request_stop`."""

    def __init__(self, cfg: DoorbellConfig, notifier: Notifier | None = None,
                 uploader: Uploader | None = None):
        self.cfg = cfg
        self.device_id = cfg.device.id
        self.spool = Spool(cfg.spool.dir)
        self.state_dir = Path(cfg.agent.state_dir)
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a full disk degrades the agent (status, outbox retried), never stops it
            log.warning("cannot create the state directory %s: %s", self.state_dir, exc)
        self.outbox = Outbox(self.state_dir / OUTBOX_DIR)
        self.stop_event = threading.Event()
        self.events_wake = threading.Event()
        self.clips_wake = threading.Event()
        self.board = StatusBoard(self.device_id)
        self.notifier = notifier
        self.link = MqttLink(cfg, on_message=self._on_message, on_connect=self._on_connect,
                             on_state=self._on_mqtt_state, session_expiry_s=cfg.agent.session_expiry_s)
        self.link.subscribe_on_connect(f"{protocol.PREFIX}/devices/{self.device_id}/commands/+", 1)
        self.ha = cfg.agent.home_assistant
        if self.ha.enabled:
            self.link.subscribe_on_connect(protocol.ha_status_topic(self.ha.discovery_prefix), 1)
        if uploader is None:
            from cloud_agent.uploader import Uploader
            uploader = Uploader(cfg.s3, self.device_id, self.state_dir, cfg.agent.conditional_writes)
        self.uploader = uploader
        self._outstanding: dict[str, tuple[Pending, _Item]] = {}
        # Acknowledged by the broker but not yet removed from disk (e.g. a read-only remount):
        # never published again by this process; removal is retried.
        self._acked_undeleted: dict[str, Callable[[], None]] = {}
        self._threads: list[threading.Thread] = []
        self._status = StatusWriter(self.board, self.spool.root, self.state_dir, self.stop_event)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._threads = [
            threading.Thread(target=self._guard(self._watch), name="agent-watch", daemon=True),
            threading.Thread(target=self._guard(self._publish_loop), name="agent-publish", daemon=True),
            threading.Thread(target=self._guard(self._upload_loop), name="agent-upload", daemon=True),
        ]
        for t in self._threads:
            t.start()
        self.link.start()  # after the workers, so nothing announced "online" before it is served
        self._status.start()
        trim()  # drop what building the clients left behind
        # Move the start-up object graph (botocore's models, pydantic's validators) out of the
        # collector's reach: full collections then skip it, so no GC pause stalls a ring.
        gc.freeze()
        self.board.set("state", "running")
        self._status.write_safe()  # a full disk must not stop the start: rings still flow
        log.info("agent %s started (device %s, spool %s, bucket %s)", __version__, self.device_id,
                 self.spool.root, self.cfg.s3.bucket)

    def healthy(self) -> bool:
        """All workers alive (the systemd watchdog is fed only while this holds)."""
        return all(t.is_alive() for t in self._threads)

    def request_stop(self, *_args: Any) -> None:
        self.stop_event.set()
        self.events_wake.set()
        self.clips_wake.set()

    def run(self) -> int:
        """Start, serve until asked to stop, shut down cleanly; returns the exit code."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
        from doorbell.core.sdnotify import Notifier, Watchdog
        notifier = self.notifier or Notifier.from_env()
        self.start()
        code = 0
        with Watchdog(notifier, check=self.healthy) as wd:
            notifier.ready(f"device {self.device_id}")
            while not self.stop_event.wait(1.0):
                if not self.healthy():
                    log.error("a worker thread died; exiting so systemd restarts the agent")
                    code = 1
                    break
                wd.beat()
                q = self.board.snapshot().get("queue", {})
                notifier.status(f"mqtt {'up' if self.link.connected.is_set() else 'down'}, "
                                f"{q.get('clips', 0)} clips, {q.get('events', 0)} events queued")
            notifier.stopping("shutting down")
        self.shutdown()
        return code

    def shutdown(self) -> None:
        """Stop workers (an upload in flight is cancelled and retried next start), go offline, disconnect."""
        self.request_stop()
        self.uploader.cancel()
        for t in self._threads:
            t.join(timeout=15)
            if t.is_alive():
                log.warning("thread %s did not stop in time", t.name)
        self.link.stop()
        self.uploader.close()
        self.board.mqtt(False, "stopped")
        self.board.set("state", "stopped")
        self._status.write_safe()
        log.info("agent stopped")

    def _guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except Exception:
                log.exception("worker %s crashed", threading.current_thread().name)
                self.board.error(threading.current_thread().name, "worker crashed; see the log")
        return run

    # ------------------------------------------------------------------ MQTT callbacks (paho thread)
    def _on_mqtt_state(self, connected: bool, detail: str) -> None:
        self.board.mqtt(connected, detail)
        if connected:
            self.events_wake.set()
        elif detail and not self.stop_event.is_set():
            self.board.error("mqtt", detail)

    def _on_connect(self) -> None:
        if self.ha.enabled:
            self.announce()

    def announce(self) -> None:
        """Home Assistant device discovery, retained (re-sent whenever HA comes online)."""
        payload = protocol.ha_discovery_payload(self.device_id, self.cfg.device.name,
                                                self.ha.discovery_prefix, sw_version=__version__)
        self.link.publish(protocol.ha_discovery_topic(self.device_id, self.ha.discovery_prefix),
                          json.dumps(payload, separators=(",", ":")).encode(), retain=True)
        log.info("announced to Home Assistant under %s",
                 protocol.ha_discovery_topic(self.device_id, self.ha.discovery_prefix))

    def _on_message(self, topic: str, payload: bytes) -> None:
        if self.ha.enabled and topic == protocol.ha_status_topic(self.ha.discovery_prefix):
            if payload.strip() == b"online":
                self.announce()
            return
        self.handle_command(topic, payload)

    def handle_command(self, topic: str, payload: bytes) -> Path | None:
        """Validate an owner command and put it into the firmware's spool inbox; None if refused."""
        try:
            parsed = protocol.parse_topic(topic)
            if parsed.kind != "command" or parsed.device_id != self.device_id:
                raise ProtocolError(f"not a command for device {self.device_id}")
            assert parsed.name is not None
            command = protocol.decode_command(parsed.name, payload)
        except ProtocolError as exc:
            log.warning("refused command on %s: %s", topic[:200], exc)
            self.board.count("commands_refused")
            self.board.error("command", f"refused command on {topic[:120]}: {exc}")
            return None
        path = self.spool.write_command(parsed.name, command)
        self.board.count("commands_accepted")
        log.info("command %s %s handed to the firmware (%s)", parsed.name,
                 getattr(command, "command_id", ""), path.name)
        return path

    # ------------------------------------------------------------------ watcher
    def _watch(self) -> None:
        try:
            from inotify_simple import INotify, flags
            ino = INotify()
        except (ImportError, OSError) as exc:
            log.info("inotify unavailable (%s); rescanning the spool every %.1fs", exc, self.cfg.agent.poll_s)
            return
        mask = flags.MOVED_TO | flags.CLOSE_WRITE | flags.CREATE
        wakes: dict[int, threading.Event] = {}
        for name, wake in (("clips", self.clips_wake), ("events", self.events_wake),
                           ("snapshots", self.events_wake)):
            wakes[ino.add_watch(str(self.spool.dir(name)), mask)] = wake
        # Files that arrived before the watches existed raised no event: rescan once now.
        self.events_wake.set()
        self.clips_wake.set()
        try:
            while not self.stop_event.is_set():
                for ev in ino.read(timeout=500):
                    woken = wakes.get(ev.wd)
                    if woken is not None:
                        woken.set()
        finally:
            ino.close()

    # ------------------------------------------------------------------ publisher
    def _publish_loop(self) -> None:
        poll = self.cfg.agent.poll_s
        while not self.stop_event.is_set():
            self.events_wake.wait(poll)
            self.events_wake.clear()
            if self.stop_event.is_set():
                break
            if not self.link.connected.is_set():
                self.link.connected.wait(min(poll, 0.5))
                if not self.link.connected.is_set():
                    continue
            more = self._pump(self._event_items) or self._pump(self._outbox_items) or self._pump(self._snapshot_items)
            if more:
                self.events_wake.set()

    def _pump(self, source: Callable[[int], list[_Item]]) -> bool:
        """Publish up to WINDOW items from ``source``, then retire acknowledged ones in order.

        Returns True when work remains (window full, or a PUBACK is still missing).
        """
        self._retry_acked_removals()
        items = source(WINDOW + len(self._outstanding))
        for item in items:
            if item.key in self._outstanding or item.key in self._acked_undeleted:
                continue
            if len(self._outstanding) >= WINDOW:
                break
            self._outstanding[item.key] = (self.link.publish(item.topic, item.payload, retain=item.retain), item)
        for key, (pending, item) in list(self._outstanding.items()):
            try:
                acked = self.link.wait(pending, 2.0 if self.link.connected.is_set() else 0.1)
            except PublishRefused as exc:
                log.error("%s", exc)
                self.board.error("mqtt", str(exc))
                item.on_refused(str(exc))
                del self._outstanding[key]
                continue
            if not acked:
                return True  # paho re-sends it after reconnecting; keep order, do not publish again
            del self._outstanding[key]
            try:
                item.on_acked()
            except OSError as exc:
                log.error("cannot remove acknowledged %s (%s); it is not sent again, removal retried", key, exc)
                self.board.error("spool", f"cannot remove acknowledged {Path(key).name}: {exc}")
                self._acked_undeleted[key] = item.on_acked
        return len(items) >= WINDOW

    def _retry_acked_removals(self) -> None:
        for key, on_acked in list(self._acked_undeleted.items()):
            try:
                on_acked()
            except OSError:
                continue
            del self._acked_undeleted[key]

    def _event_items(self, limit: int) -> list[_Item]:
        items = []
        late_after = self.cfg.agent.late_after_s
        topic = protocol.events_topic(self.device_id)
        for path in sorted(self.spool.dir("events").glob("*.json"))[:limit]:
            key = str(path)
            if key in self._outstanding:
                items.append(self._outstanding[key][1])
                continue
            if key in self._acked_undeleted:
                continue
            try:
                event = DeviceEvent.model_validate_json(path.read_bytes())
            except FileNotFoundError:
                continue
            except (OSError, ValidationError, ValueError) as exc:
                log.error("quarantining corrupt event %s: %s", path.name, exc)
                self.spool.quarantine(path)
                self.board.count("quarantined")
                continue
            if event.device_id != self.device_id:
                log.error("quarantining event %s of another device %s", path.name, event.device_id)
                self.spool.quarantine(path)
                continue
            if not event.late and time.time() - event.ts > late_after:
                event = event.model_copy(update={"late": True})
                self.board.count("late_events")
            items.append(_Item(key, topic, event.to_json(), False,
                               on_acked=self._event_done(path), on_refused=self._quarantine(path)))
        return items

    def _event_done(self, path: Path) -> Callable[[], None]:
        def done() -> None:
            self.spool.done(path)
            self.board.count("events_published")
        return done

    def _quarantine(self, path: Path) -> Callable[[str], None]:
        def refuse(_reason: str) -> None:
            self.spool.quarantine(path)
            self.board.count("quarantined")
        return refuse

    def _outbox_acked(self, path: Path) -> Callable[[], None]:
        def done() -> None:
            self.outbox.done(path)
        return done

    def _outbox_drop(self, path: Path) -> Callable[[str], None]:
        def drop(_reason: str) -> None:
            self.outbox.done(path)
        return drop

    def _outbox_items(self, limit: int) -> list[_Item]:
        items: list[_Item] = []
        for path, body in self.outbox.items(limit):
            key = str(path)
            if key in self._outstanding:
                items.append(self._outstanding[key][1])
                continue
            if key in self._acked_undeleted:
                continue
            drop = self._outbox_drop(path)
            if body.get("kind") == "clip":
                items.append(_Item(key, body["topic"], body["payload"].encode(), False,
                                   on_acked=self._outbox_acked(path), on_refused=drop))
            elif body.get("kind") == "snapshot":
                # written just before mark_uploaded renames the clip: look in both places
                jpeg = None
                for sub in ("uploaded", "clips", "uploaded"):
                    jpeg = self._read_snapshot(self.spool.root / sub / body["clip_id"] / SNAPSHOT_FILE)
                    if jpeg is not None:
                        break
                if jpeg is None:
                    self.outbox.done(path)
                    continue
                items.append(_Item(key, protocol.snapshot_topic(self.device_id), jpeg, True,
                                   on_acked=self._outbox_acked(path), on_refused=drop))
            else:
                log.error("dropping outbox item of unknown kind %r", body.get("kind"))
                self.outbox.done(path)
        return items

    def _snapshot_items(self, _limit: int) -> list[_Item]:
        """Only the newest on-demand snapshot matters (it is retained); older ones go with it."""
        snaps = self.spool.pending_snapshots()
        if not snaps:
            return []
        newest = snaps[-1]
        key = str(newest)
        if key in self._outstanding:
            return [self._outstanding[key][1]]
        jpeg = self._read_snapshot(newest)

        def done(paths: list[Path] = snaps) -> None:
            for p in paths:
                self.spool.done(p)

        if jpeg is None:
            done()
            return []
        return [_Item(key, protocol.snapshot_topic(self.device_id), jpeg, True,
                      on_acked=done, on_refused=lambda _r: done())]

    def _read_snapshot(self, path: Path) -> bytes | None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return protocol.decode_snapshot(data)
        except ProtocolError as exc:
            log.warning("not publishing snapshot %s: %s", path.name, exc)
            return None

    # ------------------------------------------------------------------ uploader
    def _upload_loop(self) -> None:
        """Upload pending clips, up to PIPELINE at once, and confirm them strictly in order.

        Overlapping clips keeps the link busy while one clip hashes, HEADs or
        waits for its last part (the TransferManager still caps parts in flight
        at ``s3.max_concurrency``). A clip is finalized (outbox, ``uploaded/``)
        only after every older clip was; on a transient failure everything in
        flight is dropped and retried from the oldest clip after the backoff,
        and whatever already reached the bucket is recognised by its hash.
        """
        from concurrent.futures import ThreadPoolExecutor
        from concurrent.futures import TimeoutError as FutureTimeout

        from cloud_agent.uploader import LocalCorruption, UploadCancelled, UploadConflict

        base = min(self.cfg.agent.retry_base_s, UPLOAD_RETRY_MAX_S)
        backoff = Backoff(base, max(base, min(self.cfg.agent.retry_max_s, UPLOAD_RETRY_MAX_S)))
        recovered = False
        unannounced: tuple[SpoolClip, UploadOutcome] | None = None  # in the bucket, but its announcement not yet queued
        inflight: deque[tuple[SpoolClip, Future[UploadOutcome]]] = deque()
        pool = ThreadPoolExecutor(max_workers=PIPELINE, thread_name_prefix="agent-clip")

        def drop_inflight() -> None:
            for _clip, fut in inflight:
                try:
                    fut.result()
                except Exception:  # noqa: BLE001 - they are retried from scratch anyway
                    pass
            inflight.clear()

        try:
            while not self.stop_event.is_set():
                if unannounced is not None:
                    if not self._try_finalize(*unannounced, backoff):
                        continue
                    unannounced = None
                clip = None
                try:
                    if not recovered:
                        n = self.uploader.recover()
                        recovered = True
                        if n:
                            log.info("aborted %d stale multipart upload(s)", n)
                    if len(inflight) < PIPELINE:
                        busy = {c.clip_id for c, _ in inflight}
                        for clip in self.spool.pending_clips():
                            if len(inflight) >= PIPELINE:
                                break
                            if clip.clip_id not in busy:
                                inflight.append((clip, pool.submit(self.uploader.upload_clip, clip)))
                    if not inflight:
                        self.clips_wake.wait(self.cfg.agent.poll_s)
                        self.clips_wake.clear()
                        continue
                    clip, fut = inflight[0]
                    try:
                        outcome = fut.result(timeout=0.5)
                    except FutureTimeout:
                        continue  # meanwhile, look for newly published clips
                    inflight.popleft()
                except UploadCancelled:
                    break
                except (UploadConflict, LocalCorruption) as exc:
                    assert clip is not None  # raised by fut.result() of the oldest clip
                    inflight.popleft()
                    log.error("quarantining clip %s: %s", clip.clip_id, exc)
                    self.board.error("upload", f"{clip.clip_id}: {exc}")
                    self.spool.quarantine(clip.path)
                    self.board.count("quarantined")
                    continue
                except FileNotFoundError as exc:
                    if clip is not None and inflight and inflight[0][0] is clip:
                        inflight.popleft()
                    log.warning("clip vanished while uploading (retention?): %s", exc)
                    continue
                except Exception as exc:  # endpoint down, credentials, network: retry in order later
                    drop_inflight()
                    renew = getattr(self.uploader, "renew_transfers", None)
                    if renew is not None:
                        renew()  # nothing in flight now; see Uploader.renew_transfers
                    delay = backoff.next()
                    log.warning("upload failed (%s: %s); retrying in %.1fs", type(exc).__name__, exc, delay)
                    self.board.error("upload", f"{type(exc).__name__}: {exc}")
                    self.board.s3(False)
                    self.stop_event.wait(delay)
                    continue
                backoff.reset()
                self.board.s3(True)
                if not self._try_finalize(clip, outcome, backoff):
                    drop_inflight()  # younger clips wait: announcements keep the clips' order
                    unannounced = (clip, outcome)
        finally:
            self.uploader.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    def _sealed_message(self, clip: SpoolClip, outcome: UploadOutcome) -> protocol.SealedClipMessage:
        """The ``clips`` announcement of a sealed clip: object keys, ciphertext digests, encrypted metadata."""
        message: protocol.SealedClipMessage = clip.sealed_message(self.cfg.s3.prefix, self.device_id)
        return message

    def _try_finalize(self, clip: SpoolClip, outcome: UploadOutcome, backoff: Backoff) -> bool:
        """_finalize; on a full disk the clip stays pending (already in the bucket, so it is not
        uploaded again) and the announcement is retried after the backoff. False then."""
        try:
            self._finalize(clip, outcome)
            return True
        except FileNotFoundError as exc:  # retention removed the clip meanwhile; its objects are in the bucket
            log.warning("clip %s vanished before it was announced: %s", clip.clip_id, exc)
            return True
        except OSError as exc:
            delay = backoff.next()
            log.warning("clip %s is in the bucket but its announcement cannot be queued (%s); retrying in %.1fs",
                        clip.clip_id, exc, delay)
            self.board.error("outbox", f"cannot queue the announcement of {clip.clip_id}: {exc}")
            self.stop_event.wait(delay)
            return False

    def _finalize(self, clip: SpoolClip, outcome: UploadOutcome) -> None:
        """The bucket confirmed the clip: queue its announcement, then move it to ``uploaded/``."""
        if clip.sealed is not None:
            # Sealed: announce ciphertexts only; a clear snapshot for HA, if allowed, came from the firmware.
            message: protocol.Message = self._sealed_message(clip, outcome)
        else:
            message = clip.clear.to_message(outcome.keys.video, outcome.snapshot_key)
        bodies: list[dict[str, Any]] = [{"kind": "clip", "topic": protocol.clips_topic(self.device_id),
                                         "payload": message.to_json().decode(), "clip_id": clip.clip_id}]
        if outcome.snapshot_key and clip.sealed is None and self.cfg.encryption.snapshot_in_clear:
            bodies.append({"kind": "snapshot", "clip_id": clip.clip_id})
        self.outbox.put_all(bodies)  # all or none: a full disk half-way must not announce twice on retry
        self.spool.mark_uploaded(clip.clip_id)
        self.board.uploaded(clip.clip_id, outcome.keys.video, outcome.bytes_sent, outcome.seconds,
                            len(outcome.skipped))
        log.info("clip %s confirmed in the bucket (%d bytes in %.2fs%s)", clip.clip_id, outcome.bytes_sent,
                 outcome.seconds, f", {len(outcome.skipped)} already there" if outcome.skipped else "")
        self.events_wake.set()
        trim()  # the transfer's buffers are free now; give the pages back
