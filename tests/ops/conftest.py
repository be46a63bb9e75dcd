"""Fixtures for the platform tests: a broker provisioned by ``doorbell provision``
and served by the real Mosquitto with exactly the generated mosquitto.conf."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.ops import Fleet, provisioned_fleet


@pytest.fixture(scope="session")
def fleet() -> Iterator[Fleet]:
    with provisioned_fleet() as f:
        yield f
