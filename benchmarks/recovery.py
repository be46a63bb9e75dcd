"""Ring delivery after a broker outage: how soon rings flow once Mosquitto is back.

    .venv/bin/python benchmarks/recovery.py [--quick] [--runs N] [--json PATH]

The real agent (``doorbell agent run``, its own process) against a real
Mosquitto and SeaweedFS on loopback. Each run stops the broker, lets the
firmware's spool take a ring while it is down, waits a random outage (so the
agent's reconnect backoff is at an arbitrary phase), starts the broker again
and times from "broker accepting connections" to "the ring reaches a
subscriber". The subscriber resumes a persistent session the moment the broker
is back, so only the agent's reconnect and publish are timed. Issue 16's
target: under 5 s (the reconnect backoff is bounded to 4 s in
doorbell/core/mqtt.py).
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from doorbell.core import protocol  # noqa: E402
from doorbell.core.protocol import DeviceEvent  # noqa: E402
from doorbell.core.spool import Spool  # noqa: E402
from doorbell.sandbox.embedded import DoorbellBroker, MqttProbe  # noqa: E402
from doorbell.sandbox.stack import agent_stack  # noqa: E402

DEVICE = "dev-recovery"
WATCHER = "admin"


def _watcher(broker: DoorbellBroker) -> MqttProbe:
    """The subscriber, resuming its persistent session (so rings queued while it was away arrive)."""
    c = broker.client(WATCHER, clean_start=False, session_expiry_s=3600)
    c.sub(protocol.events_topic(DEVICE))
    return c


def run(runs: int, outage_s: tuple[float, float], work: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": runs, "outage_s": list(outage_s), "ring_after_broker_back_s": [],
                           "outages": []}
    with agent_stack(work, DEVICE, "owner-r", admins=(WATCHER,), warm_up=False,
                     config={"agent": {"home_assistant": {"enabled": False}}}) as stack:
        broker = stack.broker
        spool = Spool(stack.cfg.spool.dir)
        watcher = _watcher(broker)
        stack.start_agent()
        first = DeviceEvent(device_id=DEVICE, type="ring")
        spool.publish_event(first)
        _wait_ring(watcher, first.event_id, 60)
        for _ in range(runs):
            watcher.close()
            broker.stop()  # graceful: the subscriber's session is saved
            ring = DeviceEvent(device_id=DEVICE, type="ring")
            spool.publish_event(ring)  # the firmware keeps working during the outage
            outage = random.uniform(*outage_s)
            time.sleep(outage)
            broker.start()
            back = time.monotonic()
            watcher = _watcher(broker)
            got = _wait_ring(watcher, ring.event_id, 60)
            out["ring_after_broker_back_s"].append(round(got - back, 3))
            out["outages"].append(round(outage, 1))
        watcher.close()
    return out


def _wait_ring(watcher: MqttProbe, event_id: str, timeout: float) -> float:
    """paho's receipt timestamp (time.monotonic()) of the ring ``event_id``."""
    deadline = time.monotonic() + timeout
    while True:
        msg = watcher.expect(protocol.events_topic(DEVICE), wait=max(0.01, deadline - time.monotonic()))
        if protocol.decode(DeviceEvent, msg.payload).event_id == event_id:
            return float(msg.timestamp)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 short outages (4-6 s) instead of 6 of 8-20 s")
    ap.add_argument("--runs", type=int, help="outages (default 6, quick 3)")
    ap.add_argument("--json", type=Path, help="write the raw results here instead of printing them")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-recovery-") as d:
        raw = run(a.runs or (2 if a.quick else 6), (4.0, 6.0) if a.quick else (8.0, 20.0), Path(d))
    if a.json:
        a.json.write_text(json.dumps(raw, indent=1))
    else:
        v = raw["ring_after_broker_back_s"]
        print(f"ring after broker back: median {statistics.median(v):.2f} s, max {max(v):.2f} s "
              f"over {len(v)} outages of {raw['outages']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
