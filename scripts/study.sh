#!/usr/bin/env bash
# A study (params/study_<NAME>.yaml), each part run from a clone pinned at its commit so that one
# record never mixes code versions; resumable from any interruption, on any machine.
#
#   bash scripts/study.sh NAME [PART ...]     # e.g. review; default: every part, in the YAML's order
#   bash scripts/study.sh NAME [PART ...] --dry_run   # each part's cells, status and estimated time; runs nothing
#
#   HRL_STUDY_CLONE   the pinned clone (default ../run_<NAME>_<commit> beside this repository, one per commit)
#   HRL_STUDY_RESULTS its results folder (default ../results_<NAME>)
#   HRL_STUDY_COMMIT  the commit to pin where the study file declares none (default: the one the
#                     committed record names, else HEAD)
#
# 1. The commit, per part (hrl_core/lab/pins.py): the part's `commit:` in the study file; else
#    HRL_STUDY_COMMIT; else the one commit of the runs the study already committed in
#    records/results_<NAME> (config.json's versions.git_commit); else HEAD. A clone at another commit
#    is refused, not silently reused. (Runs a study reuses from another record keep their own commit;
#    hrl grid first checks that the pinned code reproduces them: hrl_core/lab/reuse.py.)
# 2. Runs the committed record holds complete but the results folder lacks (a new machine, a
#    lost disk) are copied back (config.json + metrics.json: `hrl grid` then finds them
#    complete and skips them); unfinished cells resume from their snapshots.
# 3. The parts run one after the other with `hrl grid` (1 torch thread per cell, one cell per core);
#    consecutive parts at one commit run as one grid, so no core waits for a part's last cell.
set -euo pipefail
cd "$(dirname "$0")/.."
USAGE="usage: bash scripts/study.sh NAME [PART ...] [--dry_run] (params/study_NAME.yaml)"
DRY=()
ARGS=()
for arg in "$@"; do
    case "$arg" in
        --dry_run | --dry-run) DRY=(--dry_run) ;;
        -*) echo "hrl: error: study.sh takes no option $arg; $USAGE" >&2; exit 2 ;;
        *) ARGS+=("$arg") ;;
    esac
done
[ "${#ARGS[@]}" -gt 0 ] || { echo "hrl: error: $USAGE" >&2; exit 2; }
set -- "${ARGS[@]}"
NAME="$1"
shift
REPO="$(pwd)"
YAML="params/study_$NAME.yaml"
[ -f "$YAML" ] || { echo "hrl: error: $YAML not found; name a study of params/study_*.yaml" >&2; exit 2; }
RESULTS="${HRL_STUDY_RESULTS:-$(cd .. && pwd)/results_$NAME}"
RECORD="$REPO/records/results_$NAME"

# Which commit each part runs at, read by this checkout's package (its environment made if missing).
PY="${HRL_VENV:-$REPO/.venv}/bin/python"
[ -x "$PY" ] || bash scripts/setup_env.sh
PLAN="$("$PY" -m hrl_core.lab.pins "$YAML" "$@")"

# Every part's commit and clone checked before any work: "part full-commit clone" per part.
STEPS=()  # (no mapfile: bash 3.2, macOS's, lacks it)
while IFS= read -r line; do STEPS+=("$line"); done <<<"$PLAN"
CHECKED=()
for step in "${STEPS[@]}"; do
    read -r part commit <<<"$step"
    [ "$commit" = "-" ] && commit="$(git rev-parse HEAD)"
    full="$(git rev-parse --verify -q "$commit^{commit}")" || {
        echo "hrl: error: commit $commit (part $part) is not in this repository; git fetch it first" >&2; exit 2; }
    clone="${HRL_STUDY_CLONE:-$(cd .. && pwd)/run_${NAME}_${full:0:7}}"
    if [ -d "$clone/.git" ] && [ "$(git -C "$clone" rev-parse HEAD)" != "$full" ]; then
        at="$(git -C "$clone" rev-parse HEAD)"
        echo "hrl: error: $clone is at ${at:0:7}, part $part at ${full:0:7}; remove the clone or set HRL_STUDY_CLONE" >&2
        exit 2
    fi
    CHECKED+=("$part $full $clone")
done

restored=0
if [ -d "$RECORD" ] && [ "${#DRY[@]}" -eq 0 ]; then
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
# Consecutive parts pinned at one commit run as one `hrl grid` (its parts' cells in order), so the
# last cells of one part share the cores with the next part's first ones instead of leaving cores idle.
BATCHES=()  # "full clone part [part ...]"
for step in "${CHECKED[@]}"; do
    read -r part full clone <<<"$step"
    last=$((${#BATCHES[@]} - 1))
    if [ "$last" -ge 0 ] && [ "$part" != "-" ]; then
        read -r gfull gclone gparts <<<"${BATCHES[$last]}"
        if [ "$gfull" = "$full" ] && [ "$gclone" = "$clone" ] && [ "$gparts" != "-" ]; then
            BATCHES[$last]="${BATCHES[$last]} $part"
            continue
        fi
    fi
    BATCHES+=("$full $clone $part")
done

ready=" "  # clones whose environment this invocation has set up
for batch in "${BATCHES[@]}"; do
    read -r full clone parts <<<"$batch"
    if [ ! -d "$clone/.git" ]; then
        git clone -q "$REPO" "$clone"
        git -C "$clone" checkout -q "$full"
    fi
    # The clone's own environment, whatever HRL_VENV names for this checkout.
    case "$ready" in *" $clone "*) ;; *) HRL_VENV="$clone/.venv" bash "$clone/scripts/setup_env.sh"; ready="$ready$clone " ;; esac
    label="part"
    case "$parts" in *" "*) label="parts" ;; esac
    echo "study: $NAME, $label $parts ($(date -u +%H:%M) UTC): pinned clone $clone at ${full:0:7}; results in $RESULTS"
    only=()
    # shellcheck disable=SC2206  # part names are single words (the study file's keys)
    [ "$parts" = "-" ] || only=(--part $parts)
    "$clone/.venv/bin/hrl" grid --params "$clone/$YAML" ${only[@]+"${only[@]}"} --save_dir "$RESULTS" \
        --executed_dir "$RESULTS/executed" ${DRY[@]+"${DRY[@]}"}
done
[ "${#DRY[@]}" -eq 0 ] || exit 0
echo "study: done ($(date -u +%H:%M) UTC); record a part with:"
echo "  hrl study --params $YAML --part PART --save_dir $RESULTS --record"
