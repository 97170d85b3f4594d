#!/usr/bin/env bash
# The main job, quick: fine-tune one corrupted Phase I checkpoint for 5,000 online
# steps with the ensemble bonus (IQL, hopper-medium-v2, top 60% removed, seed 1).
#   bash scripts/quick.sh [extra hrl finetune flags, e.g. --algo cql]
# Inputs: Phase I results in $HRL_PHASE1_DIR (default results/), D4RL files in
# $D4RL_DATASET_DIR (default ~/.d4rl/datasets). Outputs: results_phase2/<run>/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec "${HRL_VENV:-.venv}/bin/hrl" finetune --algo iql --env hopper-medium-v2 --remove_top_k 60 \
    --bonus_type ensemble --seed 1 --quick --phase1_dir "${HRL_PHASE1_DIR:-results}" "$@"
