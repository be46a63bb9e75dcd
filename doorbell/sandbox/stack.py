"""One device's cloud agent (and its firmware) as real processes on a loopback broker and bucket, for the benchmarks.

The agent, sealed, recovery, bucket-recovery and web app benchmarks each measure the
real ``doorbell agent run`` (the web app one also ``doorbell firmware run``) against
real Mosquitto and SeaweedFS; this is the one place that starts that stack, writes
the device's config and takes it all down.
"""
from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from doorbell.core import protocol
from doorbell.core.config import DoorbellConfig, parse_config
from doorbell.sandbox.embedded import DoorbellBroker, MqttProbe, SeaweedS3


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Terminate a product process if it still runs, giving it ``timeout`` seconds to finish; then kill it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def mock_firmware_config(width: int, height: int, fps: float) -> dict[str, Any]:
    """The firmware's sections for a benchmark press: gpiozero's MockFactory driven by
    ``--ring-on-stdin`` (every press rings: no ring interval, no long press), the synthetic
    porch camera at ``width`` x ``height`` and clips recorded around each ring."""
    return {
        "gpio": {"pin_factory": "mock", "ring_interval_s": 0.0, "long_press_s": None},
        "camera": {"backend": "synthetic", "source": "demo_loop", "width": width, "height": height, "fps": fps},
        "clips": {"pre_roll_s": 4.0, "post_roll_s": 4.0, "max_length_s": 60.0},
    }


def merged(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in, section by section (a nested dict merges, anything else replaces)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merged(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


@dataclass
class AgentStack:
    """The servers, the agent's config (``config``, written to ``cfg_file``) and, once started, its process."""

    work: Path
    device: str
    broker: DoorbellBroker
    s3: SeaweedS3
    config: dict[str, Any]
    cfg_file: Path
    agent: subprocess.Popen[bytes] | None = None
    firmware: subprocess.Popen[bytes] | None = None
    _logs: list[Any] = field(default_factory=list)

    @property
    def cfg(self) -> DoorbellConfig:
        return parse_config(self.config, source=str(self.cfg_file), env={})

    @property
    def log_file(self) -> Path:
        return self.work / "agent.log"

    def _spawn(self, args: list[str], log_file: Path, stdin: int | None = None) -> subprocess.Popen[bytes]:
        """``doorbell <args> --config <cfg_file>``, its output appended to ``log_file``."""
        log = open(log_file, "ab")  # noqa: SIM115 - the child writes to it until stop()
        self._logs.append(log)
        return subprocess.Popen([sys.executable, "-m", "doorbell.cli", *args, "--config", str(self.cfg_file)],
                                stdin=stdin, stdout=log, stderr=subprocess.STDOUT)

    def start_firmware(self) -> subprocess.Popen[bytes]:
        """Start ``doorbell firmware run --ring-on-stdin`` on the same config (see
        :func:`mock_firmware_config`): each line written to its stdin is one button press."""
        self.firmware = self._spawn(["firmware", "run", "--ring-on-stdin"], self.work / "firmware.log",
                                    stdin=subprocess.PIPE)
        return self.firmware

    def start_agent(self, observer: MqttProbe | None = None, timeout: float = 30.0) -> subprocess.Popen[bytes]:
        """Start ``doorbell agent run``; with an ``observer`` subscribed to the device's status,
        return only once the agent has said ``online`` (RuntimeError after ``timeout``)."""
        self.agent = self._spawn(["agent", "run"], self.log_file)
        if observer is not None:
            deadline = time.monotonic() + timeout
            topic = protocol.status_topic(self.device)
            while observer.expect(topic, wait=max(0.01, deadline - time.monotonic())).payload != b"online":
                pass
        return self.agent

    def stop_agent(self) -> None:
        """Stop the firmware (if started) and the agent, each given 20 s to finish."""
        for proc in (self.firmware, self.agent):
            if proc is not None:
                stop_process(proc)
        for log in self._logs:
            log.close()
        self._logs.clear()


@contextmanager
def agent_stack(work: Path, device: str, owner: str, *, admins: tuple[str, ...] = ("admin",),
                s3_options: Mapping[str, Any] | None = None, broker_options: Mapping[str, Any] | None = None,
                config: Mapping[str, Any] | None = None,
                warm_up: bool = True, s3_timeout: float = 60.0) -> Iterator[AgentStack]:
    """Start a broker (``device`` of ``owner``, plus ``admins``; ``broker_options`` such as ``tls`` and
    ``websockets`` go to :class:`DoorbellBroker`) and a bucket in ``work``, write the
    agent's config (``config`` merged over the defaults) and yield the stack; the agent (if started),
    the bucket and the broker are stopped on exit. ``work`` itself is the caller's to remove.

    ``warm_up``: SeaweedFS allocates its first volume on the first write (up to ~1 s), so one
    object is written first and the first measured clip times the agent, not the fresh server.
    """
    broker = DoorbellBroker(work / "mqtt", {device: owner}, [owner], admins=list(admins),
                            **dict(broker_options or {}))
    s3 = SeaweedS3(work / "s3", access_key="AK" + secrets.token_hex(9).upper(), secret_key=secrets.token_urlsafe(30),
                   **dict(s3_options or {}))
    stack: AgentStack | None = None
    try:
        broker.start()
        s3.start(timeout=s3_timeout)
        if warm_up:
            s3.client().put_object(Bucket=s3.bucket, Key="benchmark-warm-up", Body=b"x")
        data = merged({
            "device": {"id": device, "owner_id": owner},
            "spool": {"dir": str(work / "spool")},
            "mqtt": {"host": broker.host, "port": broker.port, "username": device,
                     "password": broker.users[device], "client_id": device},
            "s3": {"endpoint_url": s3.endpoint_url, "bucket": s3.bucket, "access_key_id": s3.access_key,
                   "secret_access_key": s3.secret_key},
            "agent": {"state_dir": str(work / "agent")},
            "logging": {"level": "WARNING"},
        }, config or {})
        cfg_file = work / "agent.yaml"
        parse_config(data, source=str(cfg_file), env={})  # a typo in a benchmark's config fails here, named
        cfg_file.write_text(yaml.safe_dump(data))
        stack = AgentStack(work, device, broker, s3, data, cfg_file)
        yield stack
    finally:
        if stack is not None:
            stack.stop_agent()
        s3.stop()
        broker.stop()
