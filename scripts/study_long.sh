#!/usr/bin/env bash
# The long study (params/study_long.yaml), run from a clone pinned at one commit so that one
# record never mixes code versions; resumable from any interruption, on any machine.
#
#   bash scripts/study_long.sh [PART ...]     # default: every part, in the YAML's order
#
#   HRL_STUDY_CLONE   the pinned clone (default ../run beside this repository)
#   HRL_STUDY_RESULTS its results folder (default ../results_long)
#   HRL_STUDY_COMMIT  the commit to pin (default: the one the committed record names, else HEAD)
#
# 1. The commit: the runs already committed in records/results_long name the code that made
#    them (config.json's versions.git_commit); the study goes on at that commit, so its record
#    stays one code version. A clone at another commit is refused, not silently reused.
# 2. Runs the committed record holds complete but the results folder lacks (a new machine, a
#    lost disk) are copied back (config.json + metrics.json: `hrl grid` then finds them
#    complete and skips them); unfinished cells resume from their snapshots.
# 3. The parts run one after the other with `hrl grid` (1 torch thread per cell, one cell per core).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
CLONE="${HRL_STUDY_CLONE:-$(cd .. && pwd)/run}"
RESULTS="${HRL_STUDY_RESULTS:-$(cd .. && pwd)/results_long}"
RECORD="$REPO/records/results_long"
PARTS=("$@")
if [ ${#PARTS[@]} -eq 0 ]; then
    PARTS=(iql-hopper iql-halfcheetah cql-hopper cql-halfcheetah cql-double_q)
fi

commit="${HRL_STUDY_COMMIT:-}"
if [ -z "$commit" ] && [ -d "$RECORD" ]; then
    commits="$(python3 - "$RECORD" <<'EOF'
import json, pathlib, sys
found = set()
for config in pathlib.Path(sys.argv[1]).glob("*/config.json"):
    found.add(json.loads(config.read_text()).get("versions", {}).get("git_commit") or "")
print(" ".join(sorted(c for c in found if c)))
EOF
)"
    if [ "$(wc -w <<<"$commits")" -gt 1 ]; then
        echo "hrl: error: $RECORD mixes code versions ($commits); set HRL_STUDY_COMMIT to the one to go on with" >&2
        exit 2
    fi
    commit="$commits"
fi
commit="${commit:-$(git rev-parse HEAD)}"

if [ ! -d "$CLONE/.git" ]; then
    git clone -q "$REPO" "$CLONE"
    git -C "$CLONE" checkout -q "$commit"
fi
at="$(git -C "$CLONE" rev-parse HEAD)"
if [ "$at" != "$(git -C "$CLONE" rev-parse "$commit")" ]; then
    echo "hrl: error: $CLONE is at ${at:0:7}, the study's record at ${commit:0:7}; remove the clone or set HRL_STUDY_CLONE" >&2
    exit 2
fi
echo "study: pinned clone $CLONE at ${at:0:7}; results in $RESULTS"
bash "$CLONE/scripts/setup_env.sh"

restored=0
if [ -d "$RECORD" ]; then
    for run in "$RECORD"/*/; do
        name="$(basename "$run")"
        [ -f "$run/metrics.json" ] || continue
        if [ ! -e "$RESULTS/$name/config.json" ]; then
            mkdir -p "$RESULTS/$name"
            cp "$run/config.json" "$run/metrics.json" "$RESULTS/$name/"
            restored=$((restored + 1))
        fi
    done
fi
[ "$restored" -eq 0 ] || echo "study: $restored complete run(s) copied back from $RECORD (not re-run)"

export D4RL_DATASET_DIR="${D4RL_DATASET_DIR:-$(cd .. && pwd)/shared/d4rl}"
export HRL_PHASE1_DIR="${HRL_PHASE1_DIR:-$(cd .. && pwd)/shared/phase1/results}"
for part in "${PARTS[@]}"; do
    echo "study: part $part ($(date -u +%H:%M) UTC)"
    "$CLONE/.venv/bin/hrl" grid --params "$CLONE/params/study_long.yaml" --part "$part" \
        --save_dir "$RESULTS" --executed_dir "$RESULTS/executed" --no_progress
done
echo "study: done ($(date -u +%H:%M) UTC); record a part with:"
echo "  hrl study --params params/study_long.yaml --part PART --save_dir $RESULTS --record"
