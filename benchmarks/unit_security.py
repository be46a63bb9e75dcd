"""Exposure scores of the shipped systemd units, as `systemd-analyze security` rates them.

    .venv/bin/python benchmarks/unit_security.py

Each unit is copied with ExecStart pointed at this checkout's `doorbell` (the
analysis wants an existing binary) and analysed offline; prints one row per
unit with the score (0 = fully sandboxed, 10 = not at all) and the settings
that still cost exposure. The figures are quoted in docs/security.md.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def analyse(unit: Path, scratch: Path) -> tuple[float, str, list[str]]:
    exe = Path(sys.executable).parent / "doorbell"
    copy = scratch / unit.name
    copy.write_text(unit.read_text().replace("/opt/doorbell/venv/bin/doorbell", str(exe)))
    out = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(copy)],
                         capture_output=True, text=True, timeout=60).stdout
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", out)
    if not m:
        raise SystemExit(f"no score for {unit.name}:\n{out}")
    left = [line.split()[1].replace("|", "\\|") for line in out.splitlines() if line.startswith("✗")]
    return float(m.group(1)), m.group(2), left


def main() -> int:
    if not shutil.which("systemd-analyze"):
        print("systemd-analyze not found (apt install systemd)", file=sys.stderr)
        return 1
    version = subprocess.run(["systemd-analyze", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    print(f"# {version}")
    print("| unit | exposure | rating | settings still costing exposure |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for unit in sorted((REPO / "systemd").glob("*.service")):
            score, rating, left = analyse(unit, Path(tmp))
            print(f"| {unit.name} | {score:.1f} | {rating} | {', '.join(left)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
