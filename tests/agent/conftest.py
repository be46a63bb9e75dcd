"""Agent test fixtures: an in-process agent wired to the real broker and S3 fixtures."""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterator

import pytest

from doorbell import protocol


@pytest.fixture
def agent_config(device_config: Callable[..., Any]) -> Callable[..., Any]:
    """``agent_config("dev-a", s3={...}, agent={...})``: fast retries for tests."""

    def make(device_id: str = "dev-a", **sections: dict[str, Any]) -> Any:
        agent = {"retry_base_s": 0.2, "retry_max_s": 2.0, "poll_s": 0.5, "session_expiry_s": 300}
        agent.update(sections.pop("agent", {}))
        return device_config(device_id, agent=agent, **sections)

    return make


@pytest.fixture
def start_agent() -> Iterator[Callable[..., Any]]:
    """Start an in-process Agent (threads, no signal handlers); shut down at test end."""
    from cloud_agent.agent import Agent

    started: list[Agent] = []

    def start(cfg: Any) -> Agent:
        agent = Agent(cfg)
        agent.start()
        started.append(agent)
        if not agent.link.connected.wait(10):
            raise AssertionError("agent did not connect to the test broker")
        return agent

    yield start
    for a in started:
        if not a.stop_event.is_set():
            a.shutdown()


@pytest.fixture
def observer(mqtt_client: Callable[..., Any]) -> Callable[[str], Any]:
    """``observer("dev-a")``: an admin client subscribed to everything the device publishes."""

    def make(device_id: str = "dev-a") -> Any:
        c = mqtt_client("admin")
        c.sub(f"{protocol.PREFIX}/devices/{device_id}/#", qos=1)
        return c

    return make


def wait_for(pred: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def expect_kind(client: Any, topic: str, wait: float = 10.0, retained: bool | None = None) -> Any:
    """Next message on ``topic`` (skipping others); ``retained`` filters on the retain flag."""
    deadline = time.monotonic() + wait
    while True:
        msg = client.expect(topic, wait=max(0.01, deadline - time.monotonic()))
        if retained is None or bool(msg.retain) == retained:
            return msg


logging.getLogger("botocore").setLevel(logging.WARNING)


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
