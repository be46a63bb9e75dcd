"""The owner's browser app ships as package data: a wheel built from a clean copy plus the built
``dist/`` carries the app's files and nothing of its sources or node_modules, so a Python
install serves it without Node.js."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from doorbell.clients.owner.web import dist_dir

REPO = Path(__file__).resolve().parents[2]


def test_wheel_ships_the_built_web_app(tmp_path: Path) -> None:
    src = tmp_path / "src"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(src)], check=True)
    shutil.copytree(dist_dir(), src / "doorbell" / "clients" / "web" / "dist")  # what `npm run build` writes
    for rel in ("setup.py", "doorbell/clients/web/__init__.py"):  # the working tree's versions
        (src / rel).write_bytes((REPO / rel).read_bytes())
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path / "dist"), str(src)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    names = set(zipfile.ZipFile(next((tmp_path / "dist").glob("doorbell-*.whl"))).namelist())
    web = {n for n in names if n.startswith("doorbell/clients/web/")}
    for f in ("index.html", "app.js", "app.css", "manifest.webmanifest", "sw.js", "icon.svg"):
        assert f"doorbell/clients/web/dist/{f}" in web, f
    assert not any("/src/" in n or "node_modules" in n or n.endswith(("package.json", "build.mjs")) for n in web)
