"""Agent test fixtures: an in-process agent wired to the real broker and S3 fixtures."""
from __future__ import annotations

import errno
import logging
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from doorbell.core import protocol


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
    """``observer("dev-a")``: an admin client (user ``observer``) subscribed to everything the device publishes."""

    def make(device_id: str = "dev-a") -> Any:
        c = mqtt_client("observer")
        c.sub(f"{protocol.PREFIX}/devices/{device_id}/#", qos=1)
        return c

    return make


logging.getLogger("botocore").setLevel(logging.WARNING)




class FullDisk:
    """A small tmpfs mounted for one test, filled to the last byte by ``fill()``."""

    def __init__(self, path: Any):
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> None:
        with open(self.filler, "ab", buffering=0) as fh:
            chunk = b"\0" * 4096
            try:
                while True:
                    fh.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
        for n in (512, 64, 1):  # the last partial block too
            try:
                with open(self.filler, "ab", buffering=0) as fh:
                    while True:
                        fh.write(b"\0" * n)
            except OSError:
                pass

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


@pytest.fixture
def full_disk(tmp_path: Any) -> Iterator[FullDisk]:
    """A real filesystem that can be filled (a 1 MiB tmpfs); skipped where mounting is not allowed."""
    mnt = tmp_path / "small-fs"
    mnt.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(mnt)],
                       check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a small tmpfs here (needs root / CAP_SYS_ADMIN): {exc}")
    try:
        yield FullDisk(mnt)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False, capture_output=True, timeout=10)
