#!/usr/bin/env bash
# The whole test suite: installs what it needs, lints, then runs pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -k spool -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --test
echo "[test] ruff check" >&2
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
