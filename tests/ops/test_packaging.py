"""The package builds cleanly: no setuptools warnings, and the service's migrations ship with it."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.support.ops import REPO


def test_wheel_builds_without_warnings_and_ships_migrations(tmp_path: Path) -> None:
    src = tmp_path / "src"
    # a clean copy of the tracked tree, so local caches and venvs cannot hide a packaging gap
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(src)], check=True)
    subprocess.run(["git", "-C", str(src), "checkout", "-q", "--detach"], check=True)
    tracked = subprocess.run(["git", "ls-files", "-m", "-o", "--exclude-standard"], cwd=REPO, check=True,
                             capture_output=True, text=True).stdout.split()
    for rel in tracked:  # the working tree's uncommitted files, so the test checks what is being changed
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes((REPO / rel).read_bytes())
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps",
                          "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    log = out.stdout + out.stderr
    for bad in ("is not in the `packages`", "Package would be ignored", "SetuptoolsDeprecationWarning"):
        assert bad not in log, f"packaging warning: {bad}"
    wheel = next((tmp_path / "dist").glob("doorbell-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "sharing_service/migrations/env.py" in names
    assert "sharing_service/migrations/script.py.mako" in names
    assert any(n.startswith("sharing_service/migrations/versions/0001_") for n in names)
    assert "sharing_service/openapi.json" in names
    assert not any("__pycache__" in n or n.startswith("tests/") for n in names)
