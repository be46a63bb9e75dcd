"""The owner-command inbox: ``spool/commands/`` (written by the agent, read here).

The firmware has no network, so owner commands (snapshot, privacy, settings;
see doorbell.core.protocol) reach it as files the agent drops into the spool. Each
is validated against the protocol's command model; anything unknown or invalid
is refused with a reason. Every command, applied or refused, yields one
``command_result`` event whose ``detail`` is a small JSON object
``{"command", "command_id", "ok", "detail"}`` the agent relays to the owner.
The file is removed only after its result event is written, so a crash in
between replays the command (all three are idempotent).

:class:`InboxWatcher` waits on inotify (``inotify_simple``) for new files and
falls back to a short poll where inotify is unavailable.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

from doorbell.core.errors import DoorbellError
from doorbell.core.protocol import COMMAND_MODELS, DeviceEvent, Message
from doorbell.core.spool import Spool, SpoolCommand

log = logging.getLogger(__name__)


class CommandRefused(DoorbellError):
    """Raised by a handler: the command is valid but cannot be applied now (the message says why)."""


Handler = Callable[[Message], str]
M = TypeVar("M", bound=Message)


def handler(model: type[M], fn: Callable[[M], str]) -> Handler:
    """A :data:`Handler` from a function that takes one command model.

    The processor validates each payload against ``COMMAND_MODELS`` before calling
    the handler, so the message is already a ``model``; the check makes that typed.
    """
    def run(message: Message) -> str:
        if not isinstance(message, model):
            raise CommandRefused(f"expected a {model.__name__}, got a {type(message).__name__}")
        return fn(message)
    return run


def _validation_reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_input=False, include_url=False)[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


class CommandProcessor:
    """Validates and applies inbox commands through per-name handlers."""

    def __init__(self, spool: Spool, device_id: str, handlers: dict[str, Handler],
                 publish: Callable[[DeviceEvent], None] | None = None):
        self.spool = spool
        self.device_id = device_id
        self.handlers = handlers
        self.publish = publish or spool.publish_event
        self.applied = 0
        self.refused = 0

    def process_pending(self) -> int:
        """Handle every command waiting in the inbox, oldest first; returns how many."""
        commands = self.spool.take_commands()
        for cmd in commands:
            self.handle(cmd)
        return len(commands)

    def handle(self, cmd: SpoolCommand) -> tuple[bool, str]:
        command_id = str(cmd.payload.get("command_id", ""))[:64] if isinstance(cmd.payload, dict) else ""
        ok, detail = False, ""
        model = COMMAND_MODELS.get(cmd.name)
        handler = self.handlers.get(cmd.name)
        if model is None or handler is None:
            detail = f"unknown command {cmd.name[:40]!r}; known: {', '.join(sorted(self.handlers))}"
        else:
            try:
                message = model.model_validate(cmd.payload)
                command_id = getattr(message, "command_id", command_id)
                detail = handler(message)
                ok = True
            except ValidationError as exc:
                detail = "invalid payload: " + _validation_reason(exc)
            except CommandRefused as exc:
                detail = str(exc)
            except Exception as exc:  # a handler bug must not kill the inbox
                log.exception("command %s failed", cmd.name)
                detail = f"internal error: {type(exc).__name__}"
        if ok:
            self.applied += 1
            log.info("command %s %s applied: %s", cmd.name, command_id, detail)
        else:
            self.refused += 1
            log.warning("command %s %s refused: %s", cmd.name[:40], command_id, detail)
        body = {"command": cmd.name[:40], "command_id": command_id, "ok": ok, "detail": detail[:1500]}
        try:
            self.publish(DeviceEvent(device_id=self.device_id, type="command_result",
                                     detail=json.dumps(body, separators=(",", ":"))))
        except Exception as exc:
            log.error("command_result for %s not written (%s); the command will be retried", cmd.path.name, exc)
            return ok, detail
        self.spool.done(cmd.path)
        return ok, detail


class InboxWatcher:
    """Blocks until something appears in the watched directories (inotify), or a timeout passes."""

    def __init__(self, dirs: list[Path]):
        self.dirs = dirs
        self._inotify = None
        try:
            from inotify_simple import INotify, flags

            ino = INotify()
            for d in dirs:
                ino.add_watch(str(d), flags.MOVED_TO | flags.CLOSE_WRITE | flags.CREATE)
            self._inotify = ino
        except (ImportError, OSError) as exc:
            log.warning("inotify unavailable (%s): polling the command inbox instead", exc)

    def wait(self, timeout_s: float) -> bool:
        """True if an event arrived (or we cannot know: poll mode wakes after the timeout)."""
        if self._inotify is None:
            import time

            time.sleep(timeout_s)
            return True
        events = self._inotify.read(timeout=int(timeout_s * 1000))
        return bool(events)

    def close(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
