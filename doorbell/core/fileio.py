"""Crash-safe file writes, shared by the spool, settings, status, journals and provisioning.

A reader (or a process restarted after power loss) sees the old file or the new
one, never a mix: write a temp file in the same directory with its final mode
from the first byte, fsync it, ``rename`` it over the target, fsync the directory.
"""
from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes | str, tmp_dir: Path | None = None,
                 mode: int = 0o644, gid: int | None = None) -> Path:
    """Atomically replace ``path`` with ``data``.

    ``mode`` applies from creation (a secret is never briefly world-readable);
    ``gid`` sets the group (e.g. so a broker running as ``mosquitto`` reads a 0640
    file); ``tmp_dir`` must be on the same filesystem as ``path``.
    """
    target = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    tmp = Path(tmp_dir or target.parent) / f".{target.name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        if gid is not None:
            os.chown(tmp, -1, gid)
        os.chmod(tmp, mode)  # the umask may have narrowed the creation mode
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(target.parent)
    return target
