"""Owner-changeable settings and privacy mode, persisted in the spool's ``state/settings.json``.

The config file is the maker's baseline; owner commands (``settings``,
``privacy``) override parts of it and must survive a restart or power cut, so
they are written atomically (temp file, fsync, rename). On start the overrides
are re-validated against the config models: a corrupt or out-of-range file is
logged, moved to ``quarantine/`` and ignored, never fatal.
"""
from __future__ import annotations

import json
import logging
import threading
from typing import Any

from pydantic import ValidationError

from doorbell.core.config import ClipsSection, DoorbellConfig, MotionSection
from doorbell.core.errors import DoorbellError
from doorbell.core.fileio import atomic_write
from doorbell.core.protocol import SettingsCommand
from doorbell.core.spool import Spool

log = logging.getLogger(__name__)
SETTINGS_FILE = "settings.json"


class SettingsError(DoorbellError, ValueError):
    """A settings change that is refused; the message is the reason reported back."""


def _errors(exc: ValidationError, prefix: str) -> str:
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{prefix}{'.' + loc if loc else ''}: {err['msg']}")
    return "; ".join(parts)


class SettingsStore:
    """Effective motion/clip settings and privacy mode = config + persisted owner overrides."""

    def __init__(self, spool: Spool, cfg: DoorbellConfig):
        self.path = spool.dir("state") / SETTINGS_FILE
        self.spool = spool
        self.cfg = cfg
        self._lock = threading.Lock()
        self._overrides: dict[str, dict[str, Any]] = {"motion": {}, "clips": {}}
        self._privacy: bool = cfg.privacy.start_in_privacy_mode
        self.motion: MotionSection = cfg.motion
        self.clips: ClipsSection = cfg.clips
        self._load()

    # ------------------------------------------------------------------ persistence
    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_bytes())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            overrides = {k: dict(data.get(k) or {}) for k in ("motion", "clips")}
            motion, clips = self._merge(overrides)
            privacy = data.get("privacy", self._privacy)
            if not isinstance(privacy, bool):
                raise ValueError("privacy must be true or false")
        except (OSError, ValueError, TypeError, SettingsError) as exc:
            log.error("ignoring %s (%s); it is moved to quarantine/", self.path, exc)
            self.spool.quarantine(self.path)
            return
        self._overrides, self.motion, self.clips, self._privacy = overrides, motion, clips, privacy
        log.info("persisted settings loaded: privacy=%s, overrides=%s", privacy, overrides)

    def _save(self) -> None:
        body = {"v": 1, "privacy": self._privacy, **self._overrides}
        atomic_write(self.path, json.dumps(body, indent=1, sort_keys=True).encode(), self.spool.dir("tmp"))

    def _merge(self, overrides: dict[str, dict[str, Any]]) -> tuple[MotionSection, ClipsSection]:
        try:
            motion = MotionSection.model_validate({**self.cfg.motion.model_dump(), **overrides["motion"]})
        except ValidationError as exc:
            raise SettingsError(_errors(exc, "motion")) from None
        try:
            clips = ClipsSection.model_validate({**self.cfg.clips.model_dump(), **overrides["clips"]})
        except ValidationError as exc:
            raise SettingsError(_errors(exc, "clips")) from None
        return motion, clips

    # ------------------------------------------------------------------ changes
    @property
    def privacy(self) -> bool:
        return self._privacy

    def set_privacy(self, enabled: bool) -> None:
        with self._lock:
            self._privacy = enabled
            self._save()

    def apply(self, cmd: SettingsCommand) -> tuple[MotionSection, ClipsSection]:
        """Validate a settings command against the whole config model, persist it, return the new sections."""
        with self._lock:
            overrides = {k: dict(v) for k, v in self._overrides.items()}
            if cmd.motion is not None:
                overrides["motion"].update(cmd.motion.model_dump(exclude_none=True))
            if cmd.clips is not None:
                overrides["clips"].update(cmd.clips.model_dump(exclude_none=True))
            motion, clips = self._merge(overrides)  # raises SettingsError, nothing changed
            self._overrides, self.motion, self.clips = overrides, motion, clips
            self._save()
            return motion, clips
