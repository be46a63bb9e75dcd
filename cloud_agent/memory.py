"""Keep the agent's resident memory small (a Pi Zero 2 W has 512 MB for everything).

The process-wide knobs (malloc arenas and mmap threshold, no transparent huge
pages, ``malloc_trim``) live in :mod:`doorbell.core.memory`, shared with the
firmware, and are re-exported here; what is the agent's own is the size of the
buffers botocore reads request bodies through. Measured with
``benchmarks/agent.py`` (see docs/performance.md).
"""
from __future__ import annotations

import logging

# The glibc knobs are shared with the firmware (doorbell.core.memory); re-exported for the agent.
from doorbell.core.memory import disable_thp, limit_arenas, trim

__all__ = ["disable_thp", "limit_arenas", "shrink_botocore_buffers", "trim"]

log = logging.getLogger(__name__)


def shrink_botocore_buffers(size: int = 64 * 1024) -> None:
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
