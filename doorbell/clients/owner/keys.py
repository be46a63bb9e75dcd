"""The owner's age keys (issue 12): an X25519 identity next to the Ed25519 signing key, the household's
recipients file, and a recovery key printed once.

Files, next to ``owner.key_file`` (``~/.config/doorbell/`` by default)::

    owner_ed25519.pem   signs decisions and revokes (``doorbell owner keys init``)
    owner_age.txt       opens clips: an age identity, in age-keygen's format (``age -d -i`` reads it), 0600
    recipients.txt      every key the household's devices encrypt to, one ``age1...`` a line with a
                        ``# label`` line above it: what ``age -R`` reads, and what
                        ``doorbell provision device --recipients-file`` writes into a device's config

A household shares one recipients file: each member runs ``keys init`` on
their own machine and the file gathers every member's ``age1...`` (``keys
recipients --add``). ``keys recovery`` makes a key for offline keeping: the
secret half is printed once and never stored, only its public half joins the
file. Lose every identity and the recovery key, and the footage is lost: no
one, the operator included, can open it.
"""
from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from doorbell.core.age import (
    AgeError,
    X25519Identity,
    generate_identity,
    load_identities,
    parse_recipient,
    save_identity,
)
from doorbell.core.errors import DoorbellError
from doorbell.core.fileio import atomic_write

IDENTITY_NAME = "owner_age.txt"
RECIPIENTS_NAME = "recipients.txt"


class KeysError(DoorbellError):
    """An owner key file cannot be made, read or changed; the message says which and why."""


def identity_path(key_file: Path) -> Path:
    return Path(key_file).expanduser().with_name(IDENTITY_NAME)


def recipients_path(key_file: Path) -> Path:
    return Path(key_file).expanduser().with_name(RECIPIENTS_NAME)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ensure_identity(key_file: Path) -> tuple[X25519Identity, bool]:
    """The owner's age identity (made, 0600, on first use, and added to the recipients file); (identity, created).

    An existing identity is never replaced: clips already encrypted to it open only with it.
    """
    path = identity_path(key_file)
    try:
        if path.exists():
            return load_identities(path)[0], False
        ident = generate_identity()
        save_identity(ident, path, created=_now())
    except (OSError, AgeError) as exc:
        raise KeysError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None
    add_recipient(recipients_path(key_file), str(ident.recipient), f"owner key ({path.name}), made {_now()}")
    return ident, True


def read_recipients(path: Path) -> list[tuple[str, str]]:
    """(recipient, label) pairs of a recipients file; a missing file is empty."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise KeysError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    out, label = [], ""
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if line.startswith("#"):
            label = line[1:].strip()
            continue
        if not line:
            continue
        try:
            out.append((str(parse_recipient(line)), label))
        except AgeError as exc:
            raise KeysError(f"{path} line {n}: not an age recipient: {exc}") from None
        label = ""
    return out


def _write(path: Path, entries: list[tuple[str, str]]) -> None:
    text = "# age recipients of this household's doorbells (age -R format; doorbell owner keys)\n"
    text += "".join(f"# {label}\n{key}\n" if label else f"{key}\n" for key, label in entries)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, text.encode(), mode=0o644)


def add_recipient(path: Path, recipient: str, label: str) -> bool:
    """Add ``recipient`` (validated) to the file; False if it was already there."""
    try:
        key = str(parse_recipient(recipient.strip()))
    except AgeError as exc:  # never echo it: it may be a pasted secret key
        raise KeysError(f"not an age recipient (age1...): {exc}") from None
    entries = read_recipients(path)
    if any(k == key for k, _ in entries):
        return False
    _write(path, entries + [(key, " ".join(label.split())[:200])])
    return True


def remove_recipient(path: Path, recipient: str) -> bool:
    """Drop ``recipient`` from the file; devices re-provisioned from it stop encrypting new clips to it."""
    entries = read_recipients(path)
    kept = [(k, label) for k, label in entries if k != recipient.strip()]
    if len(kept) == len(entries):
        return False
    _write(path, kept)
    return True


def make_recovery_key(key_file: Path) -> X25519Identity:
    """A fresh identity whose public half joins the recipients file; the caller prints the secret once."""
    ident = generate_identity()
    add_recipient(recipients_path(key_file), str(ident.recipient), f"recovery key (offline), made {_now()}")
    return ident


# --------------------------------------------------------------------------- CLI

def register(keys: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """``doorbell owner keys recovery|recipients`` (``init``/``show`` live in the owner CLI)."""
    r = keys.add_parser("recovery", parents=[common],
                        help="make an offline recovery key: printed once, never stored; clips open with it")
    r.set_defaults(func=_cmd_recovery)
    m = keys.add_parser("recipients", parents=[common],
                        help="the household's recipients file: list, --add a member's age1..., --remove one")
    m.add_argument("--add", metavar="age1...", help="another household member's age public key")
    m.add_argument("--label", default="household member", help="a name for --add (written as a comment)")
    m.add_argument("--remove", metavar="age1...", help="drop a member (clips made after re-provisioning "
                   "are no longer encrypted to them; clips they could open stay open to them)")
    m.set_defaults(func=_cmd_recipients)


def _key_file(args: argparse.Namespace) -> Path:
    from doorbell.clients.owner.app import load_owner_config

    return Path(load_owner_config(args.config).owner.key_file)


def _fail(args: argparse.Namespace, message: str) -> int:
    from doorbell.clients.owner.cli import _err

    _err(message, args)
    return 1


def _cmd_recovery(args: argparse.Namespace) -> int:
    from doorbell.core.config import ConfigError

    try:
        key_file = _key_file(args)
        ident = make_recovery_key(key_file)
    except (KeysError, ConfigError) as exc:
        return _fail(args, str(exc))
    if args.json:
        print(json.dumps({"recovery_identity": str(ident), "recipient": str(ident.recipient),
                          "recipients_file": str(recipients_path(key_file))}, indent=2))
        return 0
    print("RECOVERY KEY: shown this once and stored nowhere. Write it down or print it, keep it offline.")
    print("With it, `age -d -i FILE` opens every clip recorded after your devices are re-provisioned")
    print("with the recipients file below. If you lose it and every member's key, the footage is lost:")
    print("nobody, the operator included, can open it.\n")
    print(f"  {ident}\n")
    print(f"Its public half {ident.recipient} was added to {recipients_path(key_file)}.")
    print("Next: doorbell provision device ... --recipients-file " + str(recipients_path(key_file)))
    return 0


def _cmd_recipients(args: argparse.Namespace) -> int:
    from doorbell.core.config import ConfigError

    try:
        path = recipients_path(_key_file(args))
        changed: Any = None
        if args.add:
            changed = add_recipient(path, args.add, args.label)
        if args.remove:
            changed = remove_recipient(path, args.remove)
            if not changed:
                return _fail(args, f"{args.remove[:80]} is not in {path}")
        entries = read_recipients(path)
    except (KeysError, ConfigError) as exc:
        return _fail(args, str(exc))
    if args.json:
        print(json.dumps({"recipients_file": str(path), "changed": changed,
                          "recipients": [{"recipient": k, "label": lab} for k, lab in entries]}, indent=2))
        return 0
    print(f"{path} ({len(entries)} recipient{'s' if len(entries) != 1 else ''}):")
    for key, label in entries:
        print(f"  {key}  {label}")
    if changed:
        print("Re-provision each device with --recipients-file so new clips use this list.")
    return 0


__all__ = ["KeysError", "add_recipient", "ensure_identity", "identity_path", "make_recovery_key",
           "read_recipients", "recipients_path", "register", "remove_recipient"]
