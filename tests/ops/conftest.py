"""Fixtures for the platform tests: a broker provisioned by ``doorbell provision``
and served by the real Mosquitto with exactly the generated mosquitto.conf."""
from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from doorbell.ops import provision
from doorbell.sandbox.embedded import LOOPBACK, free_port
from tests.support.ops import Fleet, ProvisionedMosquitto, run_cli, world_traversable_tmp


@pytest.fixture(scope="session")
def fleet() -> Iterator[Fleet]:
    root = world_traversable_tmp()
    data = root / "data"
    data.mkdir()
    group = provision.default_broker_group()
    if group:
        shutil.chown(data, user="mosquitto", group=group)
    port = free_port()
    bdir = root / "broker"
    run_cli("provision", "broker", "--out", str(bdir), "--port", str(port), "--bind", LOOPBACK,
            "--ip", LOOPBACK, "--hostname", "localhost", "--data-dir", str(data), check=True)
    for owner in ("owner-a", "owner-b"):
        run_cli("provision", "owner", "--broker-dir", str(bdir), "--id", owner,
                "--config-dir", str(bdir / "clients" / owner), check=True)
    for dev, owner in (("dev-a", "owner-a"), ("dev-b", "owner-b")):
        run_cli("provision", "device", "--broker-dir", str(bdir), "--id", dev, "--owner", owner,
                "--config-dir", str(bdir / "clients" / dev), check=True)
    server = ProvisionedMosquitto(root / "run", bdir / "mosquitto.conf", port)
    server.start()
    try:
        yield Fleet(root, provision.BrokerDir(bdir), port, server)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)

