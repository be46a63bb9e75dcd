"""A real Home Assistant core against the real stack, set up the way docs/home-assistant.md says.

Mosquitto runs the config ``doorbell provision broker`` generated (TLS, client
certificates required); HA logs in with exactly what ``doorbell provision service
--role ha`` issued (CA, client certificate and key, user and password); the agent
is the real ``doorbell agent run`` process with the device's provisioned bundle.
HA's view is read through its REST API with a token from its own onboarding.

The example automation is read from docs/home-assistant.md, so the doc and this
test cannot drift apart. The HA venv is built once per machine (see
tests/support/home_assistant.py); later runs start HA in seconds.
"""
from __future__ import annotations

import copy
import io
import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from doorbell.core.protocol import DeviceEvent
from doorbell.core.spool import Spool
from doorbell.sandbox.embedded import EmbeddedError, ServerProcess
from tests.support.home_assistant import HomeAssistant, HomeAssistantUnavailable, ensure_venv
from tests.support.ops import REPO, Fleet, provisioned_fleet
from tests.support.polling import wait_for as _wait_for

DOC = REPO / "docs" / "home-assistant.md"
RING = "event.front_door_doorbell"
MOTION = "binary_sensor.front_door_motion"
SNAPSHOT = "image.front_door_snapshot"
COUNTER = "counter.doorbell_rang"

pytestmark = pytest.mark.timeout(1800)  # a first run builds HA's venv (about a minute with uv)


def wait_for(pred: Any, timeout: float, what: str) -> Any:
    """Poll HA's REST API four times a second (not the default 50)."""
    return _wait_for(pred, timeout=timeout, interval=0.25, what=what)


def doc_automation() -> dict[str, Any]:
    """The example automation, exactly as docs/home-assistant.md shows it."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S)
    found = [yaml.safe_load(re.sub(r"^ {3}", "", b, flags=re.M)) for b in blocks if "alias: Doorbell rang" in b]
    assert len(found) == 1, "docs/home-assistant.md must show one example automation 'Doorbell rang'"
    return found[0]


def counted(automation: dict[str, Any]) -> dict[str, Any]:
    """The doc's automation with a first action that counts its runs (its own actions kept)."""
    a = copy.deepcopy(automation)
    a["id"] = "doorbell_rang"
    a["actions"] = [{"action": "counter.increment", "target": {"entity_id": COUNTER}}, *a["actions"]]
    return a


class AgentProcess(ServerProcess):
    """``doorbell agent run`` as its own process, so SIGKILL is a real crash (the broker sends the LWT)."""

    name = "agent"

    def __init__(self, workdir: Path, config: Path, state_dir: Path):
        super().__init__(workdir)
        self.config = config
        self.state_dir = state_dir

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "doorbell.cli", "agent", "run", "--config", str(self.config)]

    def _retryable(self) -> bool:
        return False

    def _wait_ready(self, deadline: float) -> None:
        status = self.state_dir / "status.json"
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                current = json.loads(status.read_text())
                if current["pid"] == self.pid and current["mqtt"]["connected"]:
                    return
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        raise EmbeddedError(f"agent did not connect; see {self.log_path}")


@pytest.fixture(scope="module")
def ha_venv() -> Path:
    try:
        return ensure_venv()
    except HomeAssistantUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def ha_fleet() -> Iterator[Fleet]:
    with provisioned_fleet(devices=(("dev-a", "owner-a"),), services=(("homeassistant", "ha"),)) as f:
        yield f


@pytest.fixture
def agent(ha_fleet: Fleet, tmp_path: Path) -> Iterator[AgentProcess]:
    """The device's provisioned bundle, with local spool and state dirs; no bucket (HA sees MQTT only)."""
    cfg = ha_fleet.config("dev-a")
    tls = ha_fleet.bundle("dev-a") / "tls"
    cfg["mqtt"]["tls"].update(ca_file=str(tls / "ca.crt"), cert_file=str(tls / "client.crt"),
                              key_file=str(tls / "client.key"))
    cfg["s3"].pop("access_key_id", None)
    cfg["spool"] = {"dir": str(tmp_path / "spool")}
    cfg["agent"] = {"state_dir": str(tmp_path / "state"), "retry_base_s": 0.2, "retry_max_s": 2.0}
    path = tmp_path / "device.yaml"
    path.write_text(yaml.safe_dump(cfg))
    path.chmod(0o600)
    proc = AgentProcess(tmp_path / "agent-run", path, tmp_path / "state")
    proc.start(timeout=60)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def home_assistant(ha_venv: Path, ha_fleet: Fleet, tmp_path: Path) -> Iterator[HomeAssistant]:
    bundle = ha_fleet.bundle("homeassistant") / "home-assistant.yaml"
    mqtt = yaml.safe_load(bundle.read_text())["mqtt"]
    ha = HomeAssistant(tmp_path / "ha", ha_venv, mqtt, automations=[counted(doc_automation())],
                       counters=[COUNTER.split(".", 1)[1]])
    ha.start(timeout=300)
    try:
        yield ha
    finally:
        ha.stop(timeout=60)


def jpeg(seed: int) -> bytes:
    import numpy as np
    from PIL import Image
    pixels = np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG")
    return out.getvalue()


def test_home_assistant_sees_the_doorbell_as_documented(home_assistant: HomeAssistant, agent: AgentProcess,
                                                        tmp_path: Path) -> None:
    ha = home_assistant
    spool = Spool(tmp_path / "spool")

    def state(entity: str) -> str | None:
        s = ha.state(entity)
        return s["state"] if s else None

    # Discovery: three entities, one device, named as the doc says.
    wait_for(lambda: all(state(e) not in (None, "unavailable") for e in (RING, MOTION, SNAPSHOT)),
             timeout=120, what=f"HA discovers the three entities (log {ha.log_path})")
    device = ha.template("{{ device_id('%s') }}" % RING)
    assert sorted(json.loads(ha.template("{{ device_entities('%s') | tojson }}" % device))) == \
        sorted([MOTION, RING, SNAPSHOT])
    assert ha.template("{{ device_attr('%s', 'name') }}" % device) == "Front door"
    assert ha.template("{{ device_attr('%s', 'manufacturer') }}" % device) == "Consent-first doorbell"
    assert state(COUNTER) == "0"

    # A ring: the event entity's state is when HA received it; the ring time is in `ts`.
    ring = DeviceEvent(device_id="dev-a", type="ring", ts=time.time() - 1.5)
    spool.publish_event(ring)
    wait_for(lambda: state(RING) not in ("unknown", None), timeout=30, what="the ring in HA")
    attrs = ha.state(RING)["attributes"]
    assert attrs["event_type"] == "ring" and attrs["late"] is False
    assert abs(attrs["ts"] - ring.ts) < 1e-3
    wait_for(lambda: state(COUNTER) == "1", timeout=30, what="the documented automation to run")

    # Motion on and off; a ring in between does not touch it.
    spool.publish_event(DeviceEvent(device_id="dev-a", type="motion_start"))
    wait_for(lambda: state(MOTION) == "on", timeout=30, what="motion on")
    spool.publish_event(DeviceEvent(device_id="dev-a", type="motion_end"))
    wait_for(lambda: state(MOTION) == "off", timeout=30, what="motion off")

    # The snapshot's bytes, through HA's image proxy.
    picture = jpeg(7)
    spool.publish_snapshot(picture)

    def served() -> bool:
        status, body = ha.image(SNAPSHOT)
        return status == 200 and body == picture
    wait_for(served, timeout=30, what="HA serving the snapshot's exact bytes")

    # LWT: a crashed agent (SIGKILL, no goodbye) makes every entity unavailable.
    agent.kill()
    wait_for(lambda: all(state(e) == "unavailable" for e in (RING, MOTION, SNAPSHOT)), timeout=60,
             what="entities unavailable after the agent died")
    agent.start(timeout=60)
    wait_for(lambda: all(state(e) not in (None, "unavailable") for e in (RING, MOTION, SNAPSHOT)),
             timeout=60, what="entities back after the agent restarted")
    # A clean stop says offline too (not only the LWT).
    agent.stop()
    wait_for(lambda: state(RING) == "unavailable", timeout=30, what="unavailable after a clean stop")
    agent.start(timeout=60)
    wait_for(lambda: state(RING) not in (None, "unavailable"), timeout=60, what="available again")

    # One ring plus agent restarts: the documented automation ran exactly once. A marker
    # event after the restarts proves HA has processed everything before it.
    spool.publish_event(DeviceEvent(device_id="dev-a", type="motion_start"))
    wait_for(lambda: state(MOTION) == "on", timeout=30, what="marker event")
    assert state(COUNTER) == "1", f"the documented automation ran {state(COUNTER)} times for one ring"
    assert "Error" not in "".join(ln for ln in ha.log_text().splitlines() if "mqtt" in ln.lower()), \
        "HA's MQTT integration logged an error"
