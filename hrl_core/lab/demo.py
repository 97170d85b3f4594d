"""``hrl demo``: the whole pipeline in one command, from nothing if need be.

On a bare machine (no Phase I results, no D4RL file, no network) it makes everything it
needs: a medium-level dataset rolled out from the behaviour policy shipped with the
package (``hrl data generate``; seconds), quick Phase I pretraining of the two cells it
needs, a Phase II comparison of ensemble bonus vs vanilla (IQL, halfcheetah-medium-v2,
k = 0 and 60) through the papermill + Dask grid, then the figures and the summary. Wherever
real inputs exist (a D4RL file, Phase I checkpoints) it uses them instead, and says so.
Every stage prints its wall time; outputs go to ``demo/`` (git-ignored) unless told.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from hrl_core.data.d4rl import dataset_dir
from hrl_core.rl.envs import dataset_spec
from hrl_core.run.config import FinetuneConfig
from hrl_core.run.phase1 import phase1_run_name

# Both datasets ship a behaviour policy (hrl_core/policies). halfcheetah: its recovery curves
# are the least noisy at a few seeds (hopper's per-seed spread is about ten times larger in
# the grid_cpu record), so a 10-minute demo shows the dynamics rather than noise.
DATASET = "halfcheetah-medium-v2"
ALGO = "iql"
KS = (0.0, 60.0)
SEED = 0


@dataclass
class Budget:
    """Step budgets of one demo."""

    transitions: int  # rolled out from the shipped behaviour policy (generated data only)
    sac_steps: int  # SAC training when no behaviour policy is shipped
    pretrain_steps: int  # Phase I gradient steps per cell
    online_steps: int  # Phase II online steps per cell
    eval_interval: int  # Phase II evaluation interval
    eval_episodes: int  # Phase II episodes per evaluation


QUICK = Budget(transitions=100_000, sac_steps=15_000, pretrain_steps=20_000, online_steps=5_000, eval_interval=1_000,
               eval_episodes=5)  # fmt: skip
TINY = Budget(transitions=4_000, sac_steps=600, pretrain_steps=200, online_steps=100, eval_interval=50,
              eval_episodes=1)  # fmt: skip


def _say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


class _Stage:
    """Prints a stage's wall time when it ends."""

    def __init__(self, name: str, times: dict):
        self.name, self.times = name, times

    def __enter__(self):
        self.t0 = time.time()
        return self

    def __exit__(self, *exc):
        self.times[self.name] = time.time() - self.t0
        _say(f"{self.name}: {self.times[self.name]:.0f} s")


def measured_update_ms(dataset: str, updates: int = 8) -> float:
    """ms per IQL update on this machine now (1 thread, batch 256): the demo's expected time comes from it."""
    import statistics

    import torch

    from hrl_core.rl.agents import make_agent

    spec = dataset_spec(dataset)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        agent = make_agent(ALGO, spec.obs_dim, spec.act_dim, 3, "cpu")
        n, o, a = 256, spec.obs_dim, spec.act_dim
        batch = {"obs": torch.randn(n, o), "act": torch.rand(n, a) * 2 - 1, "rew": torch.randn(n),
                 "next_obs": torch.randn(n, o), "done": torch.zeros(n)}  # fmt: skip
        agent.update(batch)
        times = []
        for _ in range(updates):
            t = time.perf_counter()
            agent.update(batch)
            times.append(time.perf_counter() - t)
    finally:
        torch.set_num_threads(threads)
    return 1000 * statistics.median(times)


def expected_time(budget: Budget, workers: int, dataset: str = DATASET) -> str:
    """The demo's expected wall time on this machine as it is now, from a quick measured rate."""
    ms = measured_update_ms(dataset)
    # Phase I: 2 cells of pretrain_steps updates; Phase II: 4 cells of online_steps (update + env step +
    # evaluation: ~1.4x the update alone, as the grid cells measured); plus ~60 s of kernels and data.
    per_worker = max(workers, 1)
    phase1 = 2 * budget.pretrain_steps * ms / 1000 / min(per_worker, 2)
    phase2 = 4 * budget.online_steps * 1.4 * ms / 1000 / min(per_worker, 4)
    total = phase1 + phase2 + 120  # data, kernels and figures: ~2 min whatever the budget
    from hrl_core.lab.grids import format_duration as d

    return (f"expected: about {d(total)} on this machine now (an IQL update measured {ms:.1f} ms; Phase I "
            f"~{d(phase1)}, Phase II ~{d(phase2)}); README's ~7 min is an idle 2-core machine, and a busy one "
            "takes longer: progress lines follow")  # fmt: skip


def run_demo(out_root: Path, phase1_dir: Path, budget: Budget = QUICK, workers: int | None = None,
             dataset: str = DATASET) -> int:  # fmt: skip
    """Run the chain; results_phase2/, executed/ and figures/ go under ``out_root``."""
    from hrl_core.data.sources import generated_path
    from hrl_core.lab import clusters, execute, grids, plot
    from hrl_core.run.generate import generate, shipped_policy_path
    from hrl_core.run.pretrain import PretrainConfig

    backend = clusters.backend(workers=workers)
    pretrain = grids.grid_kind({"kind": "pretrain"})
    t0, times = time.time(), {}
    spec = dataset_spec(dataset)
    d4rl_file = dataset_dir() / spec.file_name
    _say(f"writes: its results, executed notebooks and figures under {out_root}; Phase I checkpoints it has to make "
         f"under {phase1_dir}; a generated dataset, if no D4RL file is found, under {generated_path(dataset).parent} "
         "(the D4RL cache folder, outside this checkout: set D4RL_DATASET_DIR to put it elsewhere)")  # fmt: skip
    _say(expected_time(budget, backend.concurrent_cells(), dataset))
    # 1. Offline data: the D4RL file if there is one, else a medium-level stand-in.
    with _Stage("data", times):
        if d4rl_file.exists():
            source = "d4rl"
            _say(f"offline data: {d4rl_file} (a D4RL-layout file found locally)")
        else:
            source = "generated"
            gen = generated_path(dataset)
            if gen.exists():
                _say(f"offline data: {gen} (generated earlier; no D4RL file in {dataset_dir()})")
            elif shipped_policy_path(dataset).exists():
                _say(f"no D4RL file in {dataset_dir()}: generating a stand-in at {gen} by rolling out the "
                     f"behaviour policy shipped with hrl ({budget.transitions:,} transitions)")  # fmt: skip
                generate(dataset, gen, n_transitions=budget.transitions, seed=SEED)
            else:  # an install without the policy file: D4RL's recipe from scratch, at a small budget
                _say(f"no D4RL file in {dataset_dir()} and no shipped behaviour policy: generating a stand-in at "
                     f"{gen} by training SAC for {budget.sac_steps:,} steps (weak: expect low returns)")  # fmt: skip
                generate(dataset, gen, from_scratch=True, quick=True, seed=SEED, n_transitions=budget.transitions,
                         max_train_steps=budget.sac_steps, eval_interval=max(budget.sac_steps // 3, 1),
                         random_steps=min(2_000, budget.sac_steps // 3))  # fmt: skip
            import h5py

            with h5py.File(gen) as f:
                _say(f"generated data: mean return {f.attrs['dataset_mean_normalized_return']:.1f} normalized "
                     f"(not D4RL; its behaviour policy scored {f.attrs['sac_eval_normalized_return']:.1f} "
                     f"after {f.attrs['sac_train_steps']:,} SAC steps)")  # fmt: skip

    # 2. Phase I: existing checkpoints are used as they are; missing ones are pretrained, in parallel.
    with _Stage("Phase I", times):
        todo = []
        for k in KS:
            name = phase1_run_name(ALGO, dataset, k, 0.0, SEED)
            if (phase1_dir / name / "checkpoint.pt").exists():
                _say(f"Phase I {name}: using {phase1_dir / name / 'checkpoint.pt'}")
                continue
            cfg = PretrainConfig(algo=ALGO, env_name=dataset, remove_top_k=k, seed=SEED,
                                 total_steps=budget.pretrain_steps,
                                 eval_interval=max(budget.pretrain_steps // 4, 1), eval_episodes=5,
                                 save_dir=str(phase1_dir), dataset_source=source)  # fmt: skip
            todo.append(grids.Cell(cfg, notebook=pretrain.notebook, kind=pretrain))
        if todo:
            _say(f"Phase I: pretraining {len(todo)} cell(s), {budget.pretrain_steps:,} steps each, into {phase1_dir}")
            failed = execute.print_results(execute.run_grid(todo, backend, out_root / "executed", progress=True))
            if failed:
                return 1

    # 3. Phase II: ensemble bonus vs vanilla, through the same grid machinery.
    save_dir = out_root / "results_phase2"
    cells = [
        grids.Cell(
            FinetuneConfig(
                algo=ALGO,
                env=dataset,
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
    with _Stage("Phase II", times):
        _say(f"Phase II: {len(cells)} cells x {budget.online_steps:,} online steps -> {save_dir}")
        results = execute.run_grid(cells, backend, out_root / "executed", progress=True)
        failed = execute.print_results(results)

    # 4. Figures and summary.
    with _Stage("figures", times):
        out = plot.write_all(cells, out_root / "figures")
    figs = out_root / "figures"
    _say(f"done in {time.time() - t0:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in times.items())})")
    _say(f"figures: {figs}/finetune_curves_{ALGO}_{dataset}.png (and .svg/.html), sample_efficiency_{dataset}.png, "
         f"disagreement_{ALGO}_{dataset}.png; summary: {figs}/summary.md")  # fmt: skip
    _say(f"executed notebooks: {out_root / 'executed'}")
    for line in what_it_shows(out["rows"]):
        _say(line)
    return 1 if failed else 0


def what_it_shows(rows: list[dict]) -> list[str]:
    """The summary in words: step 0 -> final per cell, the dip and whether the curve came back to its
    own start, and (a separate question) whether it reached the clean checkpoint's return, which a
    k=60 start below the clean level can do before regaining its own start."""
    lines = ["what the curves show (one seed, quick budget: an illustration, not a conclusion):"]
    for row in rows:
        method = "ensemble bonus" if row.arm == "ensemble" else "vanilla"
        back = row.regain_text.rsplit(" (", 1)[0]
        if back == "never below its start":
            start = "never fell below its own start"
        elif back.startswith("not"):
            start = f"fell to {row.dip_return_mean:.1f} and did not come back to its own start"
        else:
            start = f"fell to {row.dip_return_mean:.1f} and was back at its own start after {back} steps"
        clean = row.clean_text.rsplit(" (", 1)[0]
        clean = ("at or above it at step 0" if clean == "at step 0" else
                 "not reached" if clean.startswith("not") else f"first reached after {clean} steps")  # fmt: skip
        lines.append(f"  k={row.k:g} {method:<14} normalized return {row.step0_return:5.1f} at step 0 -> "
                     f"{row.final_mean:5.1f} at the end (AUC {row.auc_mean:.1f}); it {start}; the clean "
                     f"checkpoint's return ({row.clean_level:.1f}): {clean} (data: {row.data})")  # fmt: skip
    return lines
