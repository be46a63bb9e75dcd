"""botocore's endpoint table, S3 only, cached on disk.

botocore parses all of ``endpoints.json`` (1.2 MB: every AWS service in every
partition, ~7 MB of Python objects) for each new session and keeps it for the
client's lifetime. The agent talks to one S3 endpoint. Parsing that file in
the agent itself was its peak RSS, and what the parse leaves fragmented stays
resident, so the S3-only table is built once per botocore version **in a
short-lived child process** (``python -m cloud_agent.endpoints PATH``) and
cached in ``{agent.state_dir}/cache``; the agent reads only the ~16 KB result.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

from doorbell.core.fileio import atomic_write

log = logging.getLogger(__name__)


def prune(data: dict[str, Any]) -> dict[str, Any]:
    """Drop every service but S3 from an endpoint table, in place."""
    for partition in data.get("partitions", []):
        services = partition.get("services", {})
        for name in [n for n in services if n != "s3"]:
            del services[name]
    return data


def cache_path(cache_dir: Path) -> Path:
    import botocore

    return Path(cache_dir) / f"endpoints-s3-botocore-{botocore.__version__}.json"


def write_cache(path: Path) -> None:
    """Parse botocore's bundled table, prune it, write it atomically to ``path``."""
    from botocore.loaders import create_loader

    data = prune(create_loader().load_data("endpoints"))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(data).encode())


def s3_endpoints(cache_dir: Path | None, loader: Any) -> dict[str, Any]:
    """The S3-only table: from the cache, else built by a child process, else parsed here."""
    path = cache_path(cache_dir) if cache_dir is not None else None
    if path is not None:
        for attempt in range(2):
            try:
                data = json.loads(path.read_bytes())
                if isinstance(data, dict) and data.get("partitions"):
                    return data
            except (OSError, ValueError):
                pass
            if attempt:
                break
            try:
                done = subprocess.run([sys.executable, "-m", "cloud_agent.endpoints", str(path)],
                                      capture_output=True, timeout=120)
            except (OSError, subprocess.SubprocessError) as exc:
                log.info("cannot build the endpoint cache in a child process: %s", exc)
                break
            if done.returncode != 0:  # e.g. a full disk: parse here, costs memory only
                log.info("cannot cache the endpoint table: %s", done.stderr.decode(errors="replace")[-300:])
                break
    return prune(loader.load_data("endpoints"))


if __name__ == "__main__":
    write_cache(Path(sys.argv[1]))
