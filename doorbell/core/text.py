"""The one policy for text that a person reads and another party wrote.

An agency's request fields (case number, legal basis, reason) end up in the
prompt an owner signs. Terminal control sequences (ESC, BEL, BS, 0x9b CSI...)
could redraw that prompt, bidirectional overrides could reorder it, and a
field made only of zero-width characters looks filled in while saying nothing.

* :func:`refusal` is for intake: it names what is wrong with a text, or
  returns None. The sharing service refuses such text with a 422.
* :func:`neutralise` is for display: every control, bidi or format character
  that still reaches a screen (older rows, another writer) is shown visibly as
  ``\\u{XXXX}`` instead of acting on the terminal. Every renderer uses it.
"""
from __future__ import annotations

import unicodedata

# Bidirectional embeddings/overrides (U+202A-202E) and isolates (U+2066-2069); both are Cf,
# listed here to give the refusal a precise reason.
BIDI_CONTROLS = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)))
# Letters and symbols that render as nothing (not Cf, so listed by hand).
BLANK_LOOKALIKES = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def _is_control(ch: str) -> bool:
    """C0/C1 controls and DEL (Cc), line/paragraph separators (Zl, Zp)."""
    return unicodedata.category(ch) in ("Cc", "Zl", "Zp")


def _is_hidden(ch: str) -> bool:
    """Shown as nothing: format characters (Cf: zero-width, BOM, word joiner, bidi), private,
    unassigned or surrogate code points."""
    return unicodedata.category(ch) in ("Cf", "Co", "Cn", "Cs")


def _is_invisible(ch: str) -> bool:
    return ch.isspace() or _is_control(ch) or _is_hidden(ch) or ch in BLANK_LOOKALIKES \
        or unicodedata.category(ch) in ("Mn", "Me", "Zs")


def refusal(text: str) -> str | None:
    """Why ``text`` may not be shown to an owner as written, or None if it may."""
    for ch in text:
        if _is_control(ch):
            return f"contains the control character U+{ord(ch):04X} (terminal controls and line breaks " \
                   "are not allowed)"
        if ch in BIDI_CONTROLS:
            return f"contains the bidirectional control U+{ord(ch):04X} (it reorders what the owner reads)"
    # Whitespace-only text is left to the caller, which reports it as missing.
    if text.strip() and all(_is_invisible(ch) for ch in text):
        return "contains only invisible characters"
    return None


def _escaped(ch: str) -> bool:
    return _is_control(ch) or _is_hidden(ch) or ch in BLANK_LOOKALIKES


def neutralise(text: str) -> str:
    """``text`` with every control, bidi, format, blank-looking and unassigned character
    shown as ``\\u{XXXX}``."""
    if not any(_escaped(ch) for ch in text):
        return text
    return "".join(f"\\u{{{ord(ch):04x}}}" if _escaped(ch) else ch for ch in text)
