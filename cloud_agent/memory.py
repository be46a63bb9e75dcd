"""Keep the agent's resident memory small (a Pi Zero 2 W has 512 MB for everything).

Two glibc knobs, both no-ops where glibc is absent:

- ``M_ARENA_MAX``: glibc gives each thread that mallocs its own arena and
  rarely returns their memory; the agent has a dozen threads (paho, inotify,
  s3transfer's pool), so capping arenas at 2 saves several MB of RSS for no
  measurable throughput cost here. Must run before the threads start.
- ``malloc_trim(0)``: after an upload, hand freed heap pages back to the OS.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

log = logging.getLogger(__name__)

M_ARENA_MAX = -8
M_MMAP_THRESHOLD = -3


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name or "libc.so.6")
    except OSError:
        return None
    return lib if hasattr(lib, "mallopt") and hasattr(lib, "malloc_trim") else None


def limit_arenas(n: int = 2, mmap_threshold: int = 256 * 1024) -> bool:
    """Cap malloc arenas and pin the mmap threshold.

    A fixed ``M_MMAP_THRESHOLD`` stops glibc from raising it after the first
    large free, so the 1 MiB buffers botocore reads a part through (checksum,
    SigV4 payload hash) are mmapped and unmapped again instead of staying in
    the heap: each concurrent part transfer otherwise leaves ~2.5 MB resident.
    """
    lib = _libc()
    if lib is None:
        return False
    ok = bool(lib.mallopt(M_ARENA_MAX, n))
    if mmap_threshold:
        ok = bool(lib.mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and ok
    return ok


def trim() -> None:
    """Collect garbage and return free heap pages to the OS."""
    gc.collect()
    lib = _libc()
    if lib is not None:
        lib.malloc_trim(0)


def shrink_botocore_buffers(size: int = 256 * 1024) -> None:
    """Hash request bodies in ``size`` pieces instead of botocore's 1 MiB.

    botocore reads each part through a 1 MiB buffer twice (flexible checksum,
    then the SigV4 payload hash over plain HTTP); with four parts in flight
    that is ~5 MB of the agent's peak. Smaller reads cost nothing measurable
    (hashlib and the file reads are the same work in more, shorter calls).
    Module constants of botocore 1.3x; skipped silently if they move.
    """
    try:
        import botocore.auth
        import botocore.httpchecksum
    except ImportError:
        return
    if hasattr(botocore.auth, "PAYLOAD_BUFFER"):
        botocore.auth.PAYLOAD_BUFFER = size
    base = getattr(botocore.httpchecksum, "BaseChecksum", None)
    if base is not None and hasattr(base, "_CHUNK_SIZE"):
        base._CHUNK_SIZE = size
