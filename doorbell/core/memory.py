"""Process-wide memory knobs for the long-running services (a Pi Zero 2 W has 512 MB for everything).

All are no-ops where glibc or Linux is absent; each returns whether it took effect.

- :func:`limit_arenas`: glibc gives each thread that mallocs its own arena and
  rarely returns their memory; capping arenas and pinning the mmap threshold
  (so large buffers are mmapped and unmapped, not left in the heap) saves
  several MB of RSS. Call before the service's threads start.
- :func:`disable_thp`: libx264 (and others) ask for transparent huge pages
  for big buffers, which rounds each up to 2 MiB of resident memory; video
  encoding at 720p thereby holds ~8 MB more. ``PR_SET_THP_DISABLE`` turns that
  off for this process (and its children).
- :func:`trim`: collect garbage and hand freed heap pages back to the OS.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys

M_ARENA_MAX = -8
M_MMAP_THRESHOLD = -3
PR_SET_THP_DISABLE = 41


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name or "libc.so.6", use_errno=True)
    except OSError:
        return None


def limit_arenas(n: int = 2, mmap_threshold: int = 256 * 1024) -> bool:
    """Cap malloc arenas at ``n`` and pin the mmap threshold (0 leaves it dynamic)."""
    lib = _libc()
    if lib is None or not hasattr(lib, "mallopt"):
        return False
    ok = bool(lib.mallopt(M_ARENA_MAX, n))
    if mmap_threshold:
        ok = bool(lib.mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and ok
    return ok


def disable_thp() -> bool:
    """No transparent huge pages for this process (Linux >= 3.15)."""
    lib = _libc()
    if lib is None or not hasattr(lib, "prctl"):
        return False
    return bool(lib.prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0)


def trim() -> None:
    """Collect garbage and return free heap pages to the OS."""
    gc.collect()
    lib = _libc()
    if lib is not None and hasattr(lib, "malloc_trim"):
        lib.malloc_trim(0)
