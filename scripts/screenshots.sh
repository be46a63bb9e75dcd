#!/usr/bin/env bash
# Regenerate docs/owner-app/*.png: every screen of the owner web app at phone and laptop size,
# from the end-to-end test harness (real Mosquitto, sharing service, SeaweedFS, Debian chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[[ -x $PY ]] || PY=python3
(cd doorbell/clients/web && { [[ -d node_modules ]] || npm ci --no-audit --no-fund --loglevel=error; } && npm run --silent build)
mkdir -p docs/owner-app
DOORBELL_SCREENSHOTS_DIR="$PWD/docs/owner-app" PYTHONPATH="$PWD" \
  "$PY" -m pytest -q -p no:cacheprovider tests/clients/web/test_screenshots.py tests/clients/web/test_screenshots_clips.py
ls -la docs/owner-app/*.png
