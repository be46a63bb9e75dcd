"""Smoke run of the benchmark suite (``scripts/bench.sh --quick``): every figure is
produced, in the table and in the JSON. No timing is asserted: speed figures
live in benchmarks/ and docs/performance.md, never in tests."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Every figure issue 8 asks for, by the id the runner gives it.
EXPECTED = [
    "motion_cost_us", "motion_precision", "motion_recall", "motion_false_triggers_lighting",
    "motion_false_triggers_all", "motion_missed_visits",
    "chime_p50_ms", "chime_p99_ms", "chime_max_ms", "spool_event_write_p50_ms", "spool_event_write_p99_ms",
    "edge_mqtt_p50_ms", "edge_mqtt_p99_ms", "leg_firmware_p99_ms", "leg_agent_p99_ms",
    "e2e_owner_p50_ms", "e2e_owner_p99_ms",
    "firmware_peak_rss_mb", "agent_peak_rss_e2e_mb",
    "agent_throughput_MBps", "agent_peak_rss_mb", "agent_ring_leg_p99_ms",
    "sharing_create_rps", "sharing_create_p99_ms", "sharing_status_rps", "sharing_status_p99_ms",
    "sharing_rule2_timing_diff_ms",  # issue 15
    # issue 14: 1..3 instances on PostgreSQL, scaling ratio, CPU per request
    "scale_status_rps_1", "scale_status_rps_3", "scale_status_p99_ms_3", "scale_status_ratio", "scale_status_cpu_ms",
    "scale_create_rps_3", "scale_create_cpu_ms", "scale_decision_rps_1", "scale_decision_p99_ms_1",
    "scale_decision_cpu_ms",
    "encrypt_MBps_per_core_1_5", "decrypt_MBps_per_core_1_5", "encrypt_peak_alloc_kb",  # issue 12
    "sealed_clip_to_bucket_s_real", "sealed_clip_to_bucket_s_8", "firmware_rss_growth_sealed_mb",  # issue 12
    "ring_after_broker_restart_s",  # issue 16 finding 7
    # issue 16: uploads after a bucket outage, firmware RSS with a real camera backend
    "upload_after_bucket_outage_s", "upload_after_bucket_outage_mid_multipart_s",
    "firmware_peak_rss_synthetic_mb", "firmware_peak_rss_file_mb",
    "owner_match_p99_ms", "owner_index_ingest_ms",  # issue 12: the owner matches, the cloud keeps no index
    "webapp_press_shown_p50_ms", "webapp_press_shown_p99_ms",  # issue 13: button press -> ring drawn in the app
    "webapp_ring_shown_p50_ms", "webapp_ring_shown_p99_ms", "webapp_shell_gz_kb", "webapp_cold_load_ms",  # issue 13
]


def _runner():
    spec = importlib.util.spec_from_file_location("bench_run_all", ROOT / "benchmarks" / "run_all.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_run_all", mod)  # dataclasses look their module up here
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict, Path]:
    out = tmp_path_factory.mktemp("bench") / "latest.json"
    proc = subprocess.run([str(ROOT / "scripts" / "bench.sh"), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=1500, cwd=ROOT)
    assert proc.returncode == 0, f"bench.sh --quick failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc, json.loads(out.read_text()), out


@pytest.mark.slow
@pytest.mark.timeout(1600)
def test_quick_run_produces_every_figure(quick_run):
    proc, doc, out = quick_run
    assert doc["errors"] == {}
    assert doc["mode"] == "quick" and doc["machine"]["cpu"] and doc["date"].endswith("UTC")
    rows = {r["id"]: r for r in doc["figures"]}
    missing = [f for f in EXPECTED if f not in rows]
    assert not missing, f"figures missing: {missing}"
    sizes = [i for i in rows if i.startswith("clip_to_bucket_s_")]
    assert len(sizes) >= 2, "clip finished -> bucket needs several clip sizes"
    for r in rows.values():
        assert isinstance(r["median"], (int, float)) and r["min"] <= r["median"] <= r["max"], r
        if r["target"] is not None:
            assert r["result"] in ("pass", "miss"), r
    # peers measured in the same run, with a ratio
    assert {p["name"] for p in rows["motion_cost_us"]["peers"]} == {
        "OpenCV MOG2", "picamera2 example", "Frigate-style"}
    assert all(p["ratio"] is not None and p["ratio"] > 0 for p in rows["motion_cost_us"]["peers"])
    tp = rows["agent_throughput_MBps"]["peers"][0]
    assert "aws s3 cp" in tp["name"] and tp["ratio"] > 0
    enc = rows["encrypt_MBps_per_core_1_5"]["peers"][0]
    assert "age -r" in enc["name"] and enc["ratio"] > 0
    # one markdown table on stdout, the same as the .md file next to the JSON, one line per figure
    table = [line for line in proc.stdout.splitlines() if line.startswith("|")]
    assert table[0].startswith("| figure | ours (median)") and len(table) == 2 + len(doc["figures"])
    assert out.with_suffix(".md").read_text().strip() == doc["markdown"].strip()
    assert doc["machine"]["cpu"] in proc.stdout and doc["date"] in proc.stdout


def test_target_verdicts():
    """Pass/miss follows the target's direction, on the median or on the peer ratio."""
    m = _runner()
    row = m.Figure("x", "x", "ms", [3.0, 4.0, 9.0], target=("<", 5.0)).row()
    assert (row["median"], row["min"], row["max"], row["result"]) == (4.0, 3.0, 9.0, "pass")
    assert m.Figure("x", "x", "ms", [6.0], target=("<", 5.0)).row()["result"] == "miss"
    assert m.Figure("x", "x", "ms", [6.0]).row()["result"] == "info"
    tput = m.Figure("t", "t", "MB/s", [80.0, 90.0], [m.Peer("aws", [100.0, 100.0], [0.8, 0.9])],
                    (">=", 0.9), target_on="ratio").row()
    assert tput["peers"][0]["ratio"] == pytest.approx(0.85) and tput["result"] == "miss"
    md = m.render_markdown({"machine": {"cpu": "CPU X", "cpus": 2, "machine": "x86_64", "python": "3"},
                            "mode": "quick", "date": "2026-01-01 00:00 UTC", "loadavg_start": "0",
                            "loadavg_end": "0", "elapsed_s": 1.0, "command": "scripts/bench.sh",
                            "figures": [row, tput], "errors": {"sharing": "boom"}})
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert len(lines) == 5 and "CPU X" in md and "0.85x" in md and "not measured" in lines[-1]
