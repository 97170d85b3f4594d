"""The clean level: the return of the clean (k=0) Phase I checkpoint, the line a corrupted
checkpoint must reach to have recovered.

It is an offline evaluation: the k=0 checkpoint's actor, evaluated exactly as a run's
step 0 is (deterministic ``tanh(mean)`` actions, the run's evaluation environment and
reference scores, episodes on the run's own evaluation seeds), so no online run is
needed. Per (algo, dataset) of a record, the level is the mean over the record's online
seeds of that evaluation. For a seed with a k=0 run in the record, the run's step 0 *is*
that evaluation and is used as it is; for the others the clean checkpoint is evaluated
here and the result is kept in ``clean_levels.json`` beside the runs (keyed by the
checkpoint's sha256 and the evaluation seeds), so a record read back later, or on a
machine without the checkpoints, finds it there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

STORE = "clean_levels.json"  # beside the runs of a record


@dataclass
class CleanLevel:
    """The clean level of one (algo, dataset) of a record."""

    algo: str
    dataset: str
    level: float  # mean over the seeds of ``per_seed`` (nan: unknown)
    per_seed: dict = field(default_factory=dict)  # online seed -> normalized return of the clean checkpoint
    sources: dict = field(default_factory=dict)  # online seed -> where its value came from
    note: str = ""  # why a seed has no level, when one has none
    missing: list = field(default_factory=list)  # online seeds of the record without a level

    def text(self) -> str:
        """The level as a table cell: a level over only some of the record's seeds says so
        (the mean of fewer evaluation episodes, not the record's level)."""
        if math.isnan(self.level):
            return "—"
        only = f" (seeds {', '.join(map(str, self.per_seed))} of {len(self.per_seed) + len(self.missing)})"
        return f"{self.level:.1f}" + (only if self.missing else "")


def _key(entry: dict) -> tuple:
    return entry["checkpoint_sha256"], entry["env_id"], tuple(entry["eval_seeds"])


def _read_store(path: Path) -> list[dict]:
    from hrl_core.run import files

    try:
        data = files.read_json(path)
    except (OSError, ValueError):
        return []
    return data.get("evaluations", []) if isinstance(data, dict) else []


def _write_store(path: Path, entries: list[dict]) -> None:
    from hrl_core.run import files

    note = ("Offline evaluations of clean (k=0) Phase I checkpoints, as a run's step 0 is evaluated; "
            "written by hrl_core.lab.clean_level.")  # fmt: skip
    files.write_json(path, {"about": note, "evaluations": entries})


def clean_checkpoint(run) -> Path:
    """The k=0 Phase I checkpoint of a run's algorithm, dataset and Phase I seed."""
    from hrl_core.run.phase1 import phase1_run_name

    s, used = run.config["settings"], run.config["provenance"]["phase1_checkpoint"]
    seed = used.get("used_seed", s.get("phase1_seed") if s.get("phase1_seed") is not None else s["seed"])
    return (
        Path(s["phase1_dir"])
        / phase1_run_name(s["algo"], s["env"], 0, s.get("reward_noise_std", 0.0), seed)
        / ("checkpoint.pt")
    )


def evaluate_checkpoint(path: Path, algo: str, dataset: str, env_id: str, ref_scores, eval_seeds: list[int]) -> dict:
    """The clean checkpoint's actor evaluated on these seeds (one batched evaluation)."""
    import torch

    from hrl_core.data.d4rl import sha256_of
    from hrl_core.rl.envs import dataset_spec
    from hrl_core.rl.evaluation import Evaluator
    from hrl_core.rl.networks import TanhGaussianPolicy
    from hrl_core.run.phase1 import load_state, validate

    spec = dataset_spec(dataset)
    state = load_state(path)
    validate(state, algo, spec.obs_dim, spec.act_dim, path)
    actor = TanhGaussianPolicy(spec.obs_dim, spec.act_dim)
    actor.load_state_dict(state["actor"])
    evaluator = Evaluator(dataset, len(eval_seeds), 0, env_id, ref_scores)
    evaluator.seeds = list(eval_seeds)  # the run's own evaluation seeds

    @torch.no_grad()
    def policy(obs):
        return actor.deterministic(torch.as_tensor(obs, dtype=torch.float32)).numpy()

    try:
        result = evaluator.run(policy)
    finally:
        evaluator.close()
    return {
        "algo": algo,
        "dataset": dataset,
        "checkpoint": str(path),
        "checkpoint_sha256": sha256_of(path),
        "env_id": env_id,
        "reference_scores": list(ref_scores) if ref_scores else None,
        "eval_seeds": list(eval_seeds),
        "normalized_return": result["normalized_return"],
        "episode_returns": result["episode_returns"],
    }


def _stored(entries: list[dict], algo: str, dataset: str, env_id: str, seeds: list, path: Path) -> dict | None:
    """A stored evaluation of this clean checkpoint (by its Phase I run name) on these seeds."""
    for e in entries:
        same = (e["algo"], e["dataset"], e["env_id"], e["eval_seeds"]) == (algo, dataset, env_id, list(seeds))
        if same and Path(e["checkpoint"]).parent.name == path.parent.name:
            return e
    return None


def _for_seed(run, entries: list[dict], evaluate: bool) -> tuple[dict | None, bool, str]:
    """(evaluation, newly made?, note) of the clean checkpoint on one run's evaluation seeds."""
    env = run.config.get("environment", {})
    seeds, env_id = env.get("eval_seeds"), env.get("env_id")
    if not seeds:
        return None, False, f"{run.run_name} records no evaluation seeds"
    path = clean_checkpoint(run)
    if path.exists() and evaluate:
        from hrl_core.data.d4rl import sha256_of

        sha = sha256_of(path)
        for e in entries:  # the same file (by sha256) evaluated on the same seeds
            if _key(e) == (sha, env_id, tuple(seeds)):
                return e, False, ""
        return evaluate_checkpoint(path, run.algo, run.dataset, env_id, env.get("reference_scores"), seeds), True, ""
    hit = _stored(entries, run.algo, run.dataset, env_id, seeds, path)
    note = "" if hit else f"clean checkpoint {path} not found and no stored evaluation of it"
    return hit, False, note


def clean_levels(runs, store_dir: str | Path | None = None, evaluate: bool = True) -> dict[tuple, CleanLevel]:
    """(algo, dataset) -> :class:`CleanLevel` over the complete runs of a record.

    ``store_dir``: the record's results folder, where ``clean_levels.json`` is read and
    written (its committed copy in ``records/`` is read too); ``evaluate=False`` never
    loads a checkpoint (only runs and stored evaluations are read)."""
    from hrl_core.lab.records import record_dir

    done = [r for r in runs if r.status == "complete"]
    store = Path(store_dir) / STORE if store_dir else None
    entries = _read_store(store) if store else []
    if store_dir:
        entries += [e for e in _read_store(record_dir(store_dir) / STORE) if _key(e) not in {_key(x) for x in entries}]
    added = False
    out = {}
    from hrl_core.lab.analysis import stratum_of

    for algo, dataset in sorted({(r.algo, r.dataset) for r in done}):
        group = [r for r in done if (r.algo, r.dataset) == (algo, dataset)]
        cl = CleanLevel(algo, dataset, math.nan)
        # one level per online seed and Phase I checkpoint (a record with one checkpoint: per seed, as always)
        pairs = sorted({(r.seed, stratum_of(r)) for r in group})
        # per seed and checkpoint only where a seed has runs from several checkpoints (a checkpoint that
        # follows the online seed, phase1_seed=None, is one per seed: keyed by seed, as always)
        several = len(pairs) > len({seed for seed, _ in pairs})
        for seed, ck in pairs:
            key = f"{seed}/ckpt {ck}" if several else seed
            mine = [r for r in group if r.seed == seed and stratum_of(r) == ck]
            k0 = [r for r in mine if r.k == 0]
            if k0:  # its step 0 is the clean checkpoint evaluated on this seed's episodes
                cl.per_seed[key] = float(k0[0].returns[0])
                cl.sources[key] = f"step 0 of {k0[0].run_name}"
                continue
            hit, new, note = _for_seed(mine[0], entries, evaluate)
            if hit is None:
                cl.note = f"seed {key}: {note}"
                cl.missing.append(key)
                continue
            if new:
                entries.append(hit)
                added = True
            cl.per_seed[key] = float(hit["normalized_return"])
            cl.sources[key] = f"offline evaluation of {hit['checkpoint']}"
        if cl.per_seed:  # the seeds that have it (a seed without one is named in the note)
            cl.level = float(np.mean(list(cl.per_seed.values())))
        out[(algo, dataset)] = cl
    if added and store is not None:
        store.parent.mkdir(parents=True, exist_ok=True)
        _write_store(store, entries)
    return out


def levels_by_checkpoint(runs, store_dir: str | Path | None = None) -> dict[tuple, CleanLevel]:
    """(algo, dataset, Phase I seed) -> the clean level of that checkpoint's clean twin, over the
    online seeds of the runs that start from it (stored evaluations only: nothing is evaluated)."""
    from hrl_core.lab.analysis import stratum_of

    out = {}
    for ck in sorted({stratum_of(r) for r in runs if r.status == "complete"}):
        mine = [r for r in runs if r.status == "complete" and stratum_of(r) == ck]
        for (algo, dataset), cl in clean_levels(mine, store_dir, evaluate=False).items():
            out[(algo, dataset, ck)] = cl
    return out


def clean_levels_markdown(levels: dict[tuple, CleanLevel]) -> str:
    """Where each clean level came from (one line per algo and dataset)."""
    from hrl_core.lab.record import shown

    levels = {k: v for k, v in levels.items() if len(k) == 2}  # per-checkpoint levels have their own table
    if not levels:
        return "No clean level (no complete runs)."
    lines = ["**Clean level** (100% of the k=0 Phase I return of the same algorithm and dataset; mean over seeds):"]
    for (algo, dataset), cl in sorted(levels.items()):
        if math.isnan(cl.level):
            lines.append(f"- {algo} {dataset}: **unknown** ({cl.note})")
            continue
        runs_used = sum(s.startswith("step 0") for s in cl.sources.values())
        offline = sorted({shown(s.split("offline evaluation of ")[1]) for s in cl.sources.values() if "offline" in s})
        how = [f"{runs_used} from the step 0 of k=0 runs"] if runs_used else []
        how += [f"{len(cl.sources) - runs_used} by offline evaluation of {', '.join(offline)}"] if offline else []
        lines.append(f"- {algo} {dataset}: **{cl.level:.1f}** over seeds {', '.join(map(str, cl.per_seed))} "
                     f"({'; '.join(how)})" + (f"; {cl.note}" if cl.note else ""))  # fmt: skip
    return "\n".join(lines)
