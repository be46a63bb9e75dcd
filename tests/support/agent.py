"""Helpers shared by the agent tests and benchmarks (plain functions, no fixtures)."""
from __future__ import annotations

import time
from typing import Any

from tests.support.polling import wait_for  # noqa: F401  (re-exported: the agent tests import it from here)


def expect_kind(client: Any, topic: str, wait: float = 10.0, retained: bool | None = None) -> Any:
    """Next message on ``topic`` (skipping others); ``retained`` filters on the retain flag."""
    deadline = time.monotonic() + wait
    while True:
        msg = client.expect(topic, wait=max(0.01, deadline - time.monotonic()))
        if retained is None or bool(msg.retain) == retained:
            return msg


def write_config_file(cfg: Any, path: Any) -> Any:
    """Write ``cfg`` as a YAML file a subprocess can load (secrets in clear, it is a test)."""
    import yaml
    from pydantic import SecretStr

    def plain(v: Any) -> Any:
        if isinstance(v, SecretStr):
            return v.get_secret_value()
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if hasattr(v, "__fspath__"):
            return str(v)
        return v

    data = plain(cfg.model_dump(mode="python"))
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def collect(client: Any, topic: str, n: int, wait: float = 30.0) -> list[Any]:
    """Exactly the next ``n`` messages on ``topic`` (raises on timeout)."""
    deadline = time.monotonic() + wait
    out = []
    while len(out) < n:
        out.append(client.expect(topic, wait=max(0.01, deadline - time.monotonic())))
    return out
