#!/usr/bin/env bash
# The main job: the whole product on this machine, on embedded defaults.
# Extra arguments go to `doorbell-demo` (e.g. --non-interactive, --video FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/doorbell-demo "$@"
