"""The firmware's process-wide memory settings take effect (figures: benchmarks/firmware.py --rss-only)."""
from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, os, sys
from firmware.memory import tune_process
tune_process()
import numpy
status = dict(l.split(':', 1) for l in open('/proc/self/status') if ':' in l)
print(json.dumps({'thp': status.get('THP_enabled', '').strip(), 'blas': os.environ.get('OPENBLAS_NUM_THREADS')}))
"""


def test_tune_process_turns_off_huge_pages_and_blas_threads():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["blas"] == "1"
    if got["thp"]:  # kernels before 6.0 do not report it
        assert got["thp"] == "0"


def test_operator_blas_setting_is_kept():
    env_probe = "import os; os.environ['OPENBLAS_NUM_THREADS'] = '3'\n" + PROBE
    out = subprocess.run([sys.executable, "-c", env_probe], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1])["blas"] == "3"
