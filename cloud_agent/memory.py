"""Keep the agent's resident memory small (a Pi Zero 2 W has 512 MB for everything).

Two glibc knobs, both no-ops where glibc is absent:

- ``M_ARENA_MAX``: glibc gives each thread that mallocs its own arena and
  rarely returns their memory; the agent has a dozen threads (paho, inotify,
  s3transfer's pool), so capping arenas at 2 saves several MB of RSS for no
  measurable throughput cost here. Must run before the threads start.
- ``malloc_trim(0)``: after an upload, hand freed heap pages back to the OS.
"""
from __future__ import annotations

import logging

# The glibc knobs are shared with the firmware (doorbell.core.memory); re-exported for the agent.
from doorbell.core.memory import disable_thp, limit_arenas, trim

__all__ = ["disable_thp", "limit_arenas", "shrink_botocore_buffers", "trim"]

log = logging.getLogger(__name__)


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
