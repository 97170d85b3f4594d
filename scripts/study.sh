#!/usr/bin/env bash
# A study (params/study_<NAME>.yaml), run from a clone pinned at one commit so that one record
# never mixes code versions; resumable from any interruption, on any machine.
#
#   bash scripts/study.sh NAME [PART ...]     # e.g. review; default: every part, in the YAML's order
#
#   HRL_STUDY_CLONE   the pinned clone (default ../run_<NAME> beside this repository)
#   HRL_STUDY_RESULTS its results folder (default ../results_<NAME>)
#   HRL_STUDY_COMMIT  the commit to pin (default: the one the committed record names, else HEAD)
#
# 1. The commit: the runs this study already committed in records/results_<NAME> name the code
#    that made them (config.json's versions.git_commit); the study goes on at that commit, so its
#    record stays one code version. A clone at another commit is refused, not silently reused.
#    (Runs a study reuses from another record keep their own commit; hrl grid first checks that
#    the pinned code reproduces them: hrl_core/lab/reuse.py.)
# 2. Runs the committed record holds complete but the results folder lacks (a new machine, a
#    lost disk) are copied back (config.json + metrics.json: `hrl grid` then finds them
#    complete and skips them); unfinished cells resume from their snapshots.
# 3. The parts run one after the other with `hrl grid` (1 torch thread per cell, one cell per core).
set -euo pipefail
cd "$(dirname "$0")/.."
NAME="${1:?usage: bash scripts/study.sh NAME [PART ...] (params/study_NAME.yaml)}"
shift
REPO="$(pwd)"
YAML="params/study_$NAME.yaml"
[ -f "$YAML" ] || { echo "hrl: error: $YAML not found; name a study of params/study_*.yaml" >&2; exit 2; }
CLONE="${HRL_STUDY_CLONE:-$(cd .. && pwd)/run_$NAME}"
RESULTS="${HRL_STUDY_RESULTS:-$(cd .. && pwd)/results_$NAME}"
RECORD="$REPO/records/results_$NAME"
PARTS=("$@")

commit="${HRL_STUDY_COMMIT:-}"
if [ -z "$commit" ] && [ -d "$RECORD" ]; then
    commits="$(python3 - "$RECORD" <<'PY'
import json, pathlib, sys
found = set()
for config in pathlib.Path(sys.argv[1]).glob("*/config.json"):
    found.add(json.loads(config.read_text()).get("versions", {}).get("git_commit") or "")
print(" ".join(sorted(c for c in found if c)))
PY
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
echo "study: $NAME, pinned clone $CLONE at ${at:0:7}; results in $RESULTS"
bash "$CLONE/scripts/setup_env.sh"
if [ ${#PARTS[@]} -eq 0 ]; then
    read -r -a PARTS <<<"$("$CLONE/.venv/bin/python" -c "import sys, yaml; print(' '.join(yaml.safe_load(open(sys.argv[1]))['parts']))" "$CLONE/$YAML")"
fi

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
    for extra in clean_levels.json reuse_check.json; do
        if [ -f "$RECORD/$extra" ] && [ ! -e "$RESULTS/$extra" ]; then mkdir -p "$RESULTS"; cp "$RECORD/$extra" "$RESULTS/"; fi
    done
fi
[ "$restored" -eq 0 ] || echo "study: $restored complete run(s) copied back from $RECORD (not re-run)"

export D4RL_DATASET_DIR="${D4RL_DATASET_DIR:-$(cd .. && pwd)/shared/d4rl}"
export HRL_PHASE1_DIR="${HRL_PHASE1_DIR:-$(cd .. && pwd)/shared/phase1/results}"
for part in "${PARTS[@]}"; do
    echo "study: part $part ($(date -u +%H:%M) UTC)"
    "$CLONE/.venv/bin/hrl" grid --params "$CLONE/$YAML" --part "$part" \
        --save_dir "$RESULTS" --executed_dir "$RESULTS/executed"
done
echo "study: done ($(date -u +%H:%M) UTC); record a part with:"
echo "  hrl study --params $YAML --part PART --save_dir $RESULTS --record"
