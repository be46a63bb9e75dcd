"""The project's one exception root.

Every error the project raises on purpose derives from :class:`DoorbellError`,
so a caller (the ``doorbell`` CLI, a service's main loop, a test) can tell
"refused or failed for a stated reason" apart from a bug with one ``except``.
Subclasses keep a built-in base where callers already rely on it
(``ValueError`` for invalid input, ``RuntimeError`` for a failed device).
"""
from __future__ import annotations


class DoorbellError(Exception):
    """Base of every deliberate error in the project; ``str(exc)`` is the reason shown to a person."""
