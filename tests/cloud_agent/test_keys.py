"""The documented bucket key layout, and the backoff schedule."""
from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from cloud_agent.backoff import Backoff
from doorbell.core.bucket import clip_keys, device_prefix

CLIP = "20261123T235959123Z-1a2b3c"


def test_layout_is_prefix_device_utc_date_clip_id():
    started = datetime(2026, 11, 23, 23, 59, 59, tzinfo=UTC).timestamp()
    k = clip_keys("clips/", "dev-a", CLIP, started)
    assert k.video == f"clips/dev-a/2026/11/23/{CLIP}.mp4"
    assert k.snapshot == f"clips/dev-a/2026/11/23/{CLIP}.jpg"
    assert k.meta == f"clips/dev-a/2026/11/23/{CLIP}.json"
    assert k.day_prefix == "clips/dev-a/2026/11/23/"
    assert clip_keys("", "dev-a", CLIP, started + 2).video.startswith("dev-a/2026/11/24/")  # UTC day, not local


def test_device_prefix_is_fleet_prefix_plus_device():
    assert device_prefix("devices/", "dev-a") == "devices/dev-a/"
    assert device_prefix("x/not-dev-a/", "dev-a") == "x/not-dev-a/dev-a/"


@pytest.mark.parametrize("device,clip", [("Dev A", CLIP), ("../etc", CLIP), ("dev-a", "../../x"), ("dev-a", "")])
def test_ids_that_could_escape_the_layout_are_refused(device, clip):
    with pytest.raises(ValueError):
        clip_keys("", device, clip, 1.8e9)


def test_backoff_grows_with_jitter_and_resets():
    b = Backoff(0.5, 8.0, rng=random.Random(1))
    delays = [b.next() for _ in range(8)]
    assert delays[0] == 0.5
    assert all(0.25 <= d <= 8.0 for d in delays)
    assert max(delays[4:]) > max(delays[:2])
    assert len(set(delays[1:])) == len(delays) - 1  # jittered, not lock-step
    b.reset()
    assert b.next() == 0.5
