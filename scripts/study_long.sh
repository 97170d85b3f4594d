#!/usr/bin/env bash
# The long study (params/study_long.yaml): scripts/study.sh long, with its clone and results
# where they have always been (../run, ../results_long).
#   bash scripts/study_long.sh [PART ...]
set -euo pipefail
cd "$(dirname "$0")/.."
export HRL_STUDY_CLONE="${HRL_STUDY_CLONE:-$(cd .. && pwd)/run}"
exec bash scripts/study.sh long "$@"
