"""Reusing another study's committed runs, only where this code reproduces them.

A grid file's ``reuse: [results_long]`` lets a cell be read from that committed record
instead of being run, when the record holds the cell's run complete with the same identity
(settings and input digests; ``grids.cell_status``). The identity says the same experiment was
asked for; it does not say this code computes what the other code did. So before a grid relies
on a reused record, one reused cell per (part, arm) is re-run here through its first two
evaluations (step 0 and the first interval) and every number both runs logged there is compared
bit for bit (timings excepted); a step 0 that already differs (another machine's floating point,
another MuJoCo) ends the check there. The outcome is kept in ``reuse_check.json`` beside the runs (and
copied into the record): an arm that matches is reused; an arm that does not is run again by this
study (its reused cells become ``new``), and the check says what differed.

One cell per arm is not enough: another machine's last-bit differences show in some episodes and not
in others. The long study's CQL hopper cells (one machine, not this one) of seed 0 reproduced here,
those of seeds 1 and 2 did not (their step 0 differed from the same checkpoint's step 0 computed here
by 0.27 and 1e-4 points). So every reused cell's step 0
is checked too (:func:`sweep_step0`): step 0 evaluates the loaded Phase I actor on the seed's own
episodes before any training, the same for every arm, so it is compared bit for bit with step 0
of a run this study computed here from the same checkpoint and seed, or, where there is none, with
step 0 computed here for the purpose (the cheapest arm: no warm start). An arm with a reused cell
whose step 0 differs is run again, like an arm whose two-evaluation check failed.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import replace
from pathlib import Path

from hrl_core.run import files

STORE = "reuse_check.json"
EVALUATIONS = 2  # step 0 and the first evaluation interval
TIMING = {"eval_time", "wall_time", "snapshot_time", "torch_threads"}  # differ between any two processes


def _store(save_dir: Path) -> Path:
    return Path(save_dir) / STORE


def read(save_dir: str | Path) -> dict:
    """(part, arm) -> the check's entry, from the results folder, else its committed record."""
    from hrl_core.lab import records

    for path in (_store(Path(save_dir)), records.record_dir(save_dir) / STORE):
        try:
            data = files.read_json(path)
        except (OSError, ValueError):
            continue
        return {(e["part"], e["arm"]): e for e in data.get("checks", [])}
    return {}


def reused_from(cell) -> Path | None:
    """The reused record a cell's complete run would be read from (None: not a reused cell)."""
    from hrl_core.lab import grids, records

    if not cell.reuse:
        return None
    if grids.cell_status(cell, check_reuse=False).kind is not grids.Kind.IN_RECORD:
        return None
    own = records.record_dir(cell.run_dir.parent)
    for root in records.record_dirs(cell)[1:]:
        if root != own and (root / cell.run_name / "metrics.json").exists():
            return root
    return None


def compare(reused: dict, fresh: dict, points: int = EVALUATIONS) -> list[str]:
    """What differs between two runs' first ``points`` evaluation points ([]: bit for bit equal).
    Keys only one run logged (a metric added later) are not compared; timings never are."""
    out = []
    for key in sorted(set(reused) & set(fresh)):
        a, b = reused[key], fresh[key]
        if key in TIMING or not isinstance(a, list) or not isinstance(b, list):
            continue
        if len(a) < points or len(b) < points:
            out.append(f"{key}: fewer than {points} points")
            continue
        for i in range(points):
            if not _same(a[i], b[i]):
                out.append(f"{key}[{i}]: {a[i]!r} (reused) vs {b[i]!r} (here)")
    return out


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _run_here(cell, scratch: Path, stop_at: int):
    """The cell run by this code in ``scratch`` up to ``stop_at`` (resumed from its snapshot when it was
    run there before): its result and metrics."""
    from hrl_core.run.finetune import finetune

    cfg = replace(cell.config, save_dir=str(scratch), threads=1)
    cfg.validate()
    result = finetune(cfg, progress=False, stop_at=stop_at)
    return result, files.read_json(Path(result.run_dir) / "metrics.json")


def check_cell(cell, scratch: Path, record: Path) -> dict:
    """Re-run one reused cell here through its first two evaluations; compare with the record."""
    from hrl_core.run import runtime

    stop_at = cell.config.eval_interval * (EVALUATIONS - 1)
    kept_dir = record / cell.run_name
    kept = files.read_json(kept_dir / "metrics.json")
    kept_config = files.read_json(kept_dir / "config.json")
    # Step 0 first (the loaded checkpoint's evaluation, no training): where it already differs, the
    # machine or libraries compute differently and training further would only cost time. Resuming
    # from its snapshot to the next evaluation is exact (the resume tests), so the two stages are one run.
    result, here = _run_here(cell, scratch, 0)
    differences = compare(kept, here, points=1)
    compared = [0]
    if not differences:
        result, here = _run_here(cell, scratch, stop_at)
        differences = compare(kept, here)
        compared = [0, stop_at]
    here_config = files.read_json(Path(result.run_dir) / "config.json")
    entry = {
        "part": cell.part,
        "arm": cell.arm,
        "run_name": cell.run_name,
        "reused_from": record.name,
        "steps_compared": compared,
        "matches": not differences,
        "differences": differences[:20],
        "commit_reused": (kept_config.get("versions") or {}).get("git_commit"),
        "commit_here": (here_config.get("versions") or {}).get("git_commit"),
        "versions_differ": runtime.versions_changed(
            kept_config.get("versions") or {}, here_config.get("versions") or {}
        ),  # fmt: skip
    }
    shutil.rmtree(result.run_dir, ignore_errors=True)  # only the verdict is kept
    return entry


# What step 0 reports: the evaluation of the loaded actor (training metrics have no step-0 value)
STEP0_KEYS = ("normalized_return", "normalized_return_std", "raw_return_mean", "raw_return_std", "ep_len_mean",
              "episode_returns")  # fmt: skip


def step0_key(cell) -> tuple:
    """What step 0 depends on: the Phase I checkpoint (algorithm, data, corruption, its seed), the
    evaluation's episodes (the online seed, how many) — not the arm."""
    c = cell.config
    return (c.algo, c.env, float(c.remove_top_k), float(c.reward_noise_std), c.effective_phase1_seed, c.seed,
            c.eval_episodes)  # fmt: skip


def _step0(metrics: dict) -> dict:
    return {k: metrics[k][:1] for k in STEP0_KEYS if isinstance(metrics.get(k), list) and metrics[k]}


def _computed_here(cells) -> dict[tuple, dict]:
    """step0_key -> step 0 of a run this study computed in its own results folder."""
    out = {}
    for cell in cells:
        try:
            metrics = files.read_json(Path(cell.run_dir) / "metrics.json")
        except (OSError, ValueError):
            continue
        if metrics.get("step") and metrics["step"][0] == 0:
            out.setdefault(step0_key(cell), _step0(metrics))
    return out


def sweep_step0(cells, save_dir: Path, checks: dict, scratch: Path, echo=print) -> dict:
    """Every reused cell's step 0 against step 0 here (see the module's docstring); an arm with one
    that differs fails its check. Arms already failing, or swept before, are left as they are."""
    reused = [(c, r) for c in cells if (r := reused_from(c)) is not None]
    todo = [(c, r) for c, r in reused if (c.part, c.arm) in checks and checks[(c.part, c.arm)].get("matches")
            and "step0_sweep" not in checks[(c.part, c.arm)]]  # fmt: skip
    if not todo:
        return checks
    here = _computed_here(cells)
    swept: dict[tuple, list] = {}
    for cell, record in sorted(todo, key=lambda cr: cr[0].config.member_init == "warmstart"):  # cheapest first
        key = step0_key(cell)
        if key not in here:  # computed for the purpose: the loaded actor's evaluation, no training
            echo(f"reuse check: step 0 of {cell.run_name} computed here", flush=True)
            result, metrics = _run_here(cell, scratch, 0)
            here[key] = _step0(metrics)
            shutil.rmtree(result.run_dir, ignore_errors=True)
        kept = _step0(files.read_json(record / cell.run_name / "metrics.json"))
        differs = compare(kept, here[key], points=1)
        swept.setdefault((cell.part, cell.arm), []).append(
            f"seed {cell.config.seed} (checkpoint {cell.config.effective_phase1_seed}): " + "; ".join(differs[:2])
            if differs else ""
        )  # fmt: skip
    for key, results in swept.items():
        entry = checks[key]
        bad = [r for r in results if r]
        entry["step0_sweep"] = {"cells": len(results), "differ": bad}
        if bad:
            entry["matches"] = False
            entry["differences"] = [f"step 0 of a reused cell differs from step 0 here: {b}" for b in bad][:20]
        echo(f"reuse check: {key[0] or '-'} / {key[1]}: step 0 of {len(results)} reused cell(s) "
             + ("matches bit for bit" if not bad else f"DIFFERS at {len(bad)}: {bad[0]} -> the arm is run again here"),
             flush=True)  # fmt: skip
    _write(save_dir, checks)
    return checks


def ensure_checked(cells, save_dir: str | Path, echo=print) -> dict:
    """Check every (part, arm) with reused cells that has no check yet, then every reused cell's
    step 0 (:func:`sweep_step0`); returns all checks."""
    save_dir = Path(save_dir)
    done = read(save_dir)
    todo = {}
    for cell in cells:
        key = (cell.part, cell.arm)
        if key in done or key in todo:
            continue
        record = reused_from(cell)
        if record is not None:
            todo[key] = (cell, record)
    for key, (cell, record) in todo.items():
        echo(f"reuse check: {cell.run_name} ({cell.part or '-'} / {cell.arm}) from {record.name}: re-running "
             f"its first {EVALUATIONS} evaluations here", flush=True)  # fmt: skip
        entry = check_cell(cell, save_dir / "reuse_check_runs", record)
        done[key] = entry
        at = entry["steps_compared"][-1]
        verdict = (
            "matches bit for bit"
            if entry["matches"]
            else f"DIFFERS at step {at}: " + "; ".join(entry["differences"][:3])
        )
        echo(f"reuse check: {cell.part or '-'} / {cell.arm}: {verdict}"
             + ("" if entry["matches"] else " -> the arm's reused cells are run again here"), flush=True)  # fmt: skip
        _write(save_dir, done)
    return sweep_step0(cells, save_dir, done, save_dir / "reuse_check_runs", echo)


def ensure_checked_all(cells, echo=print) -> dict:
    """:func:`ensure_checked` for each results folder the cells live in; all their checks."""
    out = {}
    for save_dir in sorted({c.run_dir.parent for c in cells}):
        out.update(ensure_checked([c for c in cells if c.run_dir.parent == save_dir], save_dir, echo))
    return out


def _write(save_dir: Path, checks: dict) -> None:
    note = ("One reused cell per (part, arm), re-run through its first two evaluations by this study's code and "
            "compared bit for bit with the record it is reused from; then every reused cell's step 0 against step 0 "
            "of the same checkpoint and seed computed here (step0_sweep) (hrl_core.lab.reuse).")  # fmt: skip
    save_dir.mkdir(parents=True, exist_ok=True)
    files.write_json(_store(save_dir), {"about": note, "checks": list(checks.values())})


def allowed(cell, checks: dict) -> bool:
    """Whether a cell may be read from a reused record: its (part, arm) passed the check (or
    has not been checked yet: the grid checks before it runs anything)."""
    entry = checks.get((cell.part, cell.arm))
    return entry is None or bool(entry.get("matches"))
