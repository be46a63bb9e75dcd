#!/usr/bin/env bash
# Run every benchmark of the product on this machine and print one markdown table
# (also written to benchmarks/results/latest.json and latest.md, with the CPU model and date).
#   scripts/bench.sh                 # full run (under 15 minutes on a 2-core machine)
#   scripts/bench.sh --quick         # tiny sizes: a smoke run of the whole suite
#   scripts/bench.sh --only motion,agent
# Not part of the test suite's pass/fail; tests/benchmarks/ smoke-runs --quick.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --test >&2
exec .venv/bin/python benchmarks/run_all.py "$@"
