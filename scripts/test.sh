#!/usr/bin/env bash
# The whole test suite: installs what it needs, lints, then runs pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -k spool -x; -n 0 runs in one process).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --test
echo "[test] ruff check" >&2
.venv/bin/ruff check .
echo "[test] lint-imports (the layer contract, .importlinter)" >&2
.venv/bin/lint-imports --no-cache >/dev/null || .venv/bin/lint-imports --no-cache
echo "[test] mypy (mypy.ini)" >&2
.venv/bin/mypy
# Two workers (pytest-xdist), each with its own Mosquitto, SeaweedFS and PostgreSQL: most tests wait
# on real servers and subprocesses, so two workers halve the wall time even on a 2-core machine.
exec .venv/bin/python -m pytest -n 2 "$@"
