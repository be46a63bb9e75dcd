"""What ``doorbell agent status`` shows: live state written atomically by the agent.

The running agent keeps a :class:`StatusBoard` in memory and a thread writes it
to ``{agent.state_dir}/status.json`` once a second (atomic rename, so a reader
never sees half a file). ``status`` reads that file *and* counts the spool
itself, so it tells the truth about the queue even when the agent is down.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from doorbell.core.fileio import atomic_write
from doorbell.core.spool import CLIP_FILE, SEALED_FILES

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"
OUTBOX_DIR = "outbox"


def queue_depth(spool_root: Path, state_dir: Path) -> dict[str, int]:
    """Work waiting to go out, by kind; cheap (directory listings and one stat per clip)."""
    root = Path(spool_root)
    clips = clip_bytes = 0
    try:
        with os.scandir(root / "clips") as it:
            for entry in it:
                if entry.is_dir():
                    clips += 1
                    for name in (CLIP_FILE, SEALED_FILES["video"]):  # clear or sealed (encrypted) clip
                        try:
                            clip_bytes += os.stat(os.path.join(entry.path, name)).st_size
                        except OSError:
                            pass
    except FileNotFoundError:
        pass

    def count(path: Path, suffix: str) -> int:
        try:
            with os.scandir(path) as it:
                return sum(1 for e in it if e.name.endswith(suffix) and not e.name.startswith("."))
        except FileNotFoundError:
            return 0

    return {
        "clips": clips,
        "clip_bytes": clip_bytes,
        "events": count(root / "events", ".json"),
        "snapshots": count(root / "snapshots", ".jpg"),
        "outbox": count(Path(state_dir) / OUTBOX_DIR, ".json"),
    }


class StatusBoard:
    """Thread-safe live state of the agent."""

    def __init__(self, device_id: str):
        self._lock = threading.Lock()
        now = time.time()
        self._data: dict[str, Any] = {
            "device_id": device_id,
            "pid": os.getpid(),
            "state": "starting",
            "started_at": now,
            "updated_at": now,
            "mqtt": {"connected": False, "since": None, "detail": ""},
            "s3": {"ok": None, "since": None},
            "queue": {},
            "backlog": {"peak": 0, "drained": 0},
            "last_upload": None,
            "last_error": None,
            "counters": {"events_published": 0, "clips_uploaded": 0, "objects_skipped": 0,
                         "bytes_uploaded": 0, "commands_accepted": 0, "commands_refused": 0,
                         "late_events": 0, "quarantined": 0},
        }

    def set(self, key: str, value: Any) -> None:
        with self._lock:
            self._data[key] = value

    def mqtt(self, connected: bool, detail: str = "") -> None:
        with self._lock:
            if self._data["mqtt"]["connected"] != connected:
                self._data["mqtt"] = {"connected": connected, "since": time.time(), "detail": detail}

    def s3(self, ok: bool) -> None:
        with self._lock:
            if self._data["s3"]["ok"] != ok:
                self._data["s3"] = {"ok": ok, "since": time.time()}

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._data["counters"][name] = self._data["counters"].get(name, 0) + n

    def error(self, where: str, message: str) -> None:
        with self._lock:
            self._data["last_error"] = {"at": time.time(), "where": where, "message": message[:500]}

    def uploaded(self, clip_id: str, key: str, nbytes: int, seconds: float, skipped: int) -> None:
        with self._lock:
            self._data["last_upload"] = {"at": time.time(), "clip_id": clip_id, "key": key,
                                         "bytes": nbytes, "seconds": round(seconds, 3)}
            c = self._data["counters"]
            c["clips_uploaded"] += 1
            c["bytes_uploaded"] += nbytes
            c["objects_skipped"] += skipped

    def update_queue(self, queue: dict[str, int]) -> None:
        """Track the backlog: its peak since the queue was last empty, and how much of it drained."""
        depth = queue.get("clips", 0) + queue.get("events", 0) + queue.get("outbox", 0)
        with self._lock:
            b = self._data["backlog"]
            b["peak"] = 0 if depth == 0 else max(b["peak"], depth)
            b["drained"] = b["peak"] - depth
            self._data["queue"] = queue

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            self._data["updated_at"] = time.time()
            return json.loads(json.dumps(self._data))


class StatusWriter(threading.Thread):
    """Refreshes the queue figures and writes ``status.json`` every ``interval`` seconds."""

    def __init__(self, board: StatusBoard, spool_root: Path, state_dir: Path, stop: threading.Event,
                 interval: float = 1.0):
        super().__init__(name="agent-status", daemon=True)
        self.board = board
        self.spool_root = Path(spool_root)
        self.state_dir = Path(state_dir)
        self.stop_event = stop
        self.interval = interval
        self._failing = False

    def write_now(self) -> None:
        self.board.update_queue(queue_depth(self.spool_root, self.state_dir))
        atomic_write(self.state_dir / STATUS_FILE, json.dumps(self.board.snapshot(), indent=1).encode())

    def write_safe(self) -> bool:
        """write_now, but a full or read-only disk only degrades the agent: logged once per
        outage (not every second), retried on the next tick, and its end is logged too."""
        try:
            self.write_now()
        except OSError as exc:
            if not self._failing:
                log.warning("cannot write %s (%s); the agent keeps running and retries every %.0fs",
                            self.state_dir / STATUS_FILE, exc, self.interval)
                self.board.error("status", f"cannot write status: {exc}")
            self._failing = True
            return False
        if self._failing:
            log.info("status file written again")
            self._failing = False
        return True

    def run(self) -> None:
        while not self.stop_event.wait(self.interval):
            self.write_safe()


def read_status(state_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(state_dir) / STATUS_FILE).read_bytes())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def progress_bar(done: int, total: int, width: int = 30) -> str:
    """``[##########----------]  10/20 (50%)``"""
    total = max(total, 1)
    filled = int(round(width * min(done, total) / total))
    return f"[{'#' * filled}{'-' * (width - filled)}] {done}/{total} ({100 * done // total}%)"


def _ago(ts: float | None, now: float) -> str:
    if not ts:
        return "never"
    s = max(0.0, now - ts)
    if s < 120:
        return f"{s:.0f}s ago"
    if s < 7200:
        return f"{s / 60:.0f}min ago"
    return f"{s / 3600:.1f}h ago"


def _size(n: int) -> str:
    v: float = n
    for unit in ("B", "KB", "MB", "GB"):
        if v < 1024 or unit == "GB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    return f"{v} B"


def _mqtt_line(m: dict[str, Any], alive: bool, updated_at: float | None, now: float) -> str:
    """The broker connection as the reader should see it.

    ``mqtt.since`` is when the connection last changed *as the agent saw it*. If
    the agent died (kill -9, power cut) while connected, the file still says
    "connected since <connect time>": that time is the connect, not the
    disconnect. The disconnect then happened at the latest when the agent last
    wrote its status, so that is the time shown, labelled as such.
    """
    if m.get("connected") and alive:
        return f"connected since {_ago(m.get('since'), now)}"
    if m.get("connected"):
        return (f"disconnected: agent not running or not responding, last seen connected "
                f"{_ago(updated_at, now)} (connected since {_ago(m.get('since'), now)})")
    detail = f" ({m['detail']})" if m.get("detail") else ""
    if not m.get("since"):
        return f"not connected yet{detail}"
    return f"disconnected since {_ago(m.get('since'), now)}{detail}"


def render_status(status: dict[str, Any] | None, queue: dict[str, int], now: float | None = None) -> str:
    """Human-readable status for ``doorbell agent status``."""
    now = time.time() if now is None else now
    lines = []
    running = bool(status and pid_alive(status.get("pid")) and status.get("state") != "stopped")
    if not status:
        lines.append("agent:        never ran with this state_dir (no status.json)")
    else:
        stale = now - status.get("updated_at", 0) > 10
        state = "running" if running and not stale else ("not responding" if running else "stopped")
        lines.append(f"agent:        {state} (pid {status.get('pid')}, device {status.get('device_id')}, "
                     f"started {_ago(status.get('started_at'), now)}, "
                     f"status written {_ago(status.get('updated_at'), now)})")
        lines.append("mqtt:         " + _mqtt_line(status.get("mqtt", {}), running and not stale,
                                                   status.get("updated_at"), now))
        s3 = status.get("s3", {})
        s3state = {True: "ok", False: "failing", None: "not tried yet"}[s3.get("ok")]
        lines.append(f"bucket:       {s3state}" + (f" since {_ago(s3.get('since'), now)}" if s3.get("since") else ""))
    lines.append(f"queue:        {queue['clips']} clip(s) ({_size(queue['clip_bytes'])}), {queue['events']} event(s), "
                 f"{queue['snapshots']} snapshot(s), {queue['outbox']} message(s) to announce")
    depth = queue["clips"] + queue["events"] + queue["outbox"]
    if depth:
        peak = max(depth, (status or {}).get("backlog", {}).get("peak", 0)) if running else depth
        lines.append(f"backlog:      {progress_bar(peak - depth, peak)} drained")
    if status:
        up = status.get("last_upload")
        if up:
            rate = up["bytes"] / up["seconds"] / 1e6 if up.get("seconds") else 0
            lines.append(f"last upload:  {up['clip_id']} {_size(up['bytes'])} in {up['seconds']:.2f}s "
                         f"({rate:.1f} MB/s), {_ago(up['at'], now)} -> {up['key']}")
        else:
            lines.append("last upload:  none yet")
        err = status.get("last_error")
        lines.append(f"last error:   {err['where']}: {err['message']} ({_ago(err['at'], now)})" if err
                     else "last error:   none")
        c = status.get("counters", {})
        lines.append("totals:       " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in c.items()))
    return "\n".join(lines)
