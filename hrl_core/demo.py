"""``hrl demo``: the whole pipeline in one command, from nothing if need be.

On a bare machine (no Phase I results, no D4RL file, no network) it makes everything
it needs at a quick budget: generated data (SAC, D4RL's "medium" recipe), Phase I
pretraining for the cells it needs, a Phase II comparison of ensemble bonus vs vanilla
(IQL, hopper-medium-v2, k = 0 and 60) through the papermill + Dask grid, then the
figures and the summary. Wherever real inputs exist (a D4RL file, a Phase I
checkpoint) it uses them instead, and it says which it used.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from hrl_core.checkpoint import phase1_run_name
from hrl_core.config import FinetuneConfig
from hrl_core.data.d4rl import dataset_dir
from hrl_core.envs import dataset_spec

DATASET = "hopper-medium-v2"
ALGO = "iql"
KS = (0.0, 60.0)
SEED = 0


@dataclass
class Budget:
    """Step budgets of one demo."""

    sac_steps: int  # SAC behaviour-policy training (generated data only)
    transitions: int  # generated transitions
    pretrain_steps: int  # Phase I gradient steps per cell
    online_steps: int  # Phase II online steps per cell
    eval_interval: int  # Phase II evaluation interval
    eval_episodes: int  # Phase II episodes per evaluation


QUICK = Budget(sac_steps=15_000, transitions=50_000, pretrain_steps=20_000, online_steps=5_000,
               eval_interval=1_000, eval_episodes=5)  # fmt: skip
TINY = Budget(sac_steps=600, transitions=4_000, pretrain_steps=200, online_steps=100, eval_interval=50,
              eval_episodes=1)  # fmt: skip


def _say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def run_demo(out_root: Path, phase1_dir: Path, budget: Budget = QUICK, workers: int | None = None) -> int:
    """Run the chain; results_phase2/, executed/ and figures/ go under ``out_root``."""
    from hrl_core import grid, plots
    from hrl_core.data.sources import generated_path
    from hrl_core.generate import generate
    from hrl_core.pretrain import PretrainConfig, pretrain

    t0 = time.time()
    spec = dataset_spec(DATASET)
    d4rl_file = dataset_dir() / spec.file_name
    # 1. Offline data: the D4RL file if there is one, else a generated stand-in.
    if d4rl_file.exists():
        source = "d4rl"
        _say(f"offline data: {d4rl_file} (a D4RL-layout file found locally)")
    else:
        source = "generated"
        gen = generated_path(DATASET)
        if gen.exists():
            _say(f"offline data: {gen} (generated earlier; no D4RL file in {dataset_dir()})")
        else:
            _say(f"no D4RL file in {dataset_dir()}: generating a stand-in at {gen} (SAC, {budget.sac_steps} steps)")
            sac = {
                "max_train_steps": budget.sac_steps,
                "n_transitions": budget.transitions,
                "eval_interval": max(budget.sac_steps // 3, 1),
                "random_steps": min(2_000, budget.sac_steps // 3),
            }
            generate(DATASET, gen, from_scratch=True, quick=True, **sac)
            _say(f"generated {gen} in {time.time() - t0:.0f} s")

    # 2. Phase I: existing checkpoints are used as they are; missing ones are pretrained.
    for k in KS:
        name = phase1_run_name(ALGO, DATASET, k, 0.0, SEED)
        if (phase1_dir / name / "checkpoint.pt").exists():
            _say(f"Phase I {name}: using {phase1_dir / name / 'checkpoint.pt'}")
            continue
        _say(f"Phase I {name}: pretraining {budget.pretrain_steps} steps on {source} data into {phase1_dir}")
        pretrain(PretrainConfig(algo=ALGO, env_name=DATASET, remove_top_k=k, seed=SEED,
                                total_steps=budget.pretrain_steps,
                                eval_interval=max(budget.pretrain_steps // 4, 1), eval_episodes=5,
                                save_dir=str(phase1_dir), dataset_source=source), progress=False)  # fmt: skip

    # 3. Phase II: ensemble bonus vs vanilla, through the same grid machinery.
    save_dir = out_root / "results_phase2"
    cells = [
        grid.Cell(
            FinetuneConfig(
                algo=ALGO,
                env=DATASET,
                remove_top_k=k,
                bonus_type=b,
                seed=SEED,
                online_steps=budget.online_steps,
                eval_interval=budget.eval_interval,
                eval_episodes=budget.eval_episodes,
                phase1_dir=str(phase1_dir),
                save_dir=str(save_dir),
                dataset_source=source,
            )
        )  # fmt: skip
        for k in KS
        for b in ("ensemble", "none")
    ]
    _say(f"Phase II: {len(cells)} cells x {budget.online_steps} online steps -> {save_dir}, notebooks -> executed/")
    results = grid.run_grid(cells, executed_dir=out_root / "executed", workers=workers, progress=False)
    failed = grid.print_results(results)

    # 4. Figures and summary.
    out = plots.write_all(cells, out_root / "figures")
    figs = out_root / "figures"
    _say(f"figures and summary: {figs} ({len(out['files'])} files)")
    for row in out["rows"]:
        _say(f"  {row['algo']} k={row['k']:g} {row['bonus_type']:<8} step 0 {row['step0_return']:5.1f} -> "
             f"final {row['final_return_mean']:5.1f} (data: {row['data']})")  # fmt: skip
    _say(f"done in {time.time() - t0:.0f} s; executed notebooks in {out_root / 'executed'}")
    return 1 if failed else 0
