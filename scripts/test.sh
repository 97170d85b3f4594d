#!/usr/bin/env bash
# The test command: sets up the environment, lints, then runs the whole suite.
#   bash scripts/test.sh [pytest args]
# Tests that need the real data find it through D4RL_DATASET_DIR and HRL_PHASE1_DIR
# (default: ../shared/d4rl and ../shared/phase1/results beside the clone) and are
# skipped, with the reason, when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
VENV="${HRL_VENV:-.venv}"
"$VENV/bin/ruff" check hrl_core tests
"$VENV/bin/ruff" format --check hrl_core tests
# --durations: the slowest tests are listed, so a suite creeping past its budget shows where.
# -n 2 --dist loadfile: two pytest workers, each test file whole on one of them (module fixtures are
# built once, and a file's tests never race each other); most tests wait on kernels and subprocesses,
# so two workers on 2 cores cut the suite by about a quarter (768 s against 964-1083 s sequential).
# Pass -n 0 to run in one process (e.g. with --pdb).
exec "$VENV/bin/python" -m pytest -rs --durations=15 -n 2 --dist loadfile "$@"
