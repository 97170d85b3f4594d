#!/usr/bin/env bash
# The main job: the whole chain at a quick budget, on any machine.
#   bash scripts/demo.sh [--tiny]
# Uses real inputs where they exist (D4RL files in $D4RL_DATASET_DIR, Phase I results in
# $HRL_PHASE1_DIR or results/), makes the rest (generated data, quick Phase I), then
# runs Phase II ensemble-vs-vanilla cells into executed/ and writes figures/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec "${HRL_VENV:-.venv}/bin/hrl" demo "$@"
