"""``hrl bench``: what one online step costs, part by part, against the hardware floor.

For each (algo, N, dataset) it times, with the real components and real shapes:
the gradient update, acting + bonus (one no-grad pass), hybrid batch sampling and the
MuJoCo env step; then one full evaluation. It counts the update's floating-point
operations analytically and measures this machine's large fp32 GEMM rate, so
``efficiency = FLOP / GEMM rate / measured update time`` says how close the update is
to what the matmuls alone would cost at peak. All figures are medians of repeats.
"""

from __future__ import annotations

import json
import statistics
import time

import numpy as np
import torch

from hrl_core.data import HybridSampler, OfflineData, ReplayBuffer
from hrl_core.data.d4rl import Transitions
from hrl_core.rl import agents
from hrl_core.rl.agents import make_agent
from hrl_core.rl.envs import dataset_spec, make_env
from hrl_core.rl.evaluation import Evaluator
from hrl_core.rl.explorers import RewardBonus
from hrl_core.rl.perf import tune_allocator


def _median_ms(fn, repeats: int, warmup: int = 3, device: torch.device | None = None) -> float:
    """Median wall milliseconds of ``fn()``; on CUDA each call is waited for (kernels
    are asynchronous, so without the wait only the launch would be timed)."""
    sync = torch.cuda.synchronize if device is not None and device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return 1000.0 * statistics.median(times)


def gemm_gflops(n: int = 2048, repeats: int = 7, device: torch.device | None = None) -> float:
    """Measured fp32 GEMM rate (GFLOP/s) of an n x n x n matmul on ``device``."""
    device = device or torch.device("cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32, as the runs compute
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    ms = _median_ms(lambda: a @ b, repeats, device=device)
    return 2 * n**3 / (ms / 1000) / 1e9


def update_flops(algo: str, obs_dim: int, act_dim: int, n: int, batch: int) -> float:
    """FLOPs of one gradient update (matmuls only), as the algorithm's module declares them."""
    return agents.get(algo).update_flops(obs_dim, act_dim, n, batch)


def _offline_stub(spec, device, size: int = 50_000) -> OfflineData:
    """Random transitions of the dataset's shapes: timing depends on shapes only."""
    rng = np.random.default_rng(0)
    data = Transitions(
        observations=rng.standard_normal((size, spec.obs_dim)).astype(np.float32),
        actions=rng.uniform(-1, 1, (size, spec.act_dim)).astype(np.float32),
        rewards=rng.standard_normal(size).astype(np.float32),
        next_observations=rng.standard_normal((size, spec.obs_dim)).astype(np.float32),
        terminals=np.zeros(size, bool),
        timeouts=np.zeros(size, bool),
    )
    return OfflineData(data, device)


def bench_cell(
    algo: str, dataset: str, n: int, batch: int, repeats: int, gflops: float, compile_cql: bool, device: torch.device
) -> dict:
    spec = dataset_spec(dataset)
    torch.manual_seed(0)
    overrides = {"compile_critic": compile_cql} if "compile_critic" in agents.settings_of(algo) else {}
    agent = make_agent(algo, spec.obs_dim, spec.act_dim, n, device, **overrides)
    online = ReplayBuffer(10_000, spec.obs_dim, spec.act_dim, device)
    env = make_env(dataset)
    obs, _ = env.reset(seed=0)
    for _ in range(2 * batch):  # enough online data for true hybrid batches
        a = env.action_space.sample()
        nxt, r, term, trunc, _ = env.step(a)
        online.add(obs, a, r, 0.0, nxt, term)
        obs = env.reset()[0] if term or trunc else nxt
    sampler = HybridSampler(_offline_stub(spec, device), online, batch, 0.5)
    batch_data = sampler.sample()
    t_first = time.perf_counter()
    agent.update(batch_data)  # compiles, when compiling
    first_update_s = time.perf_counter() - t_first

    def env_step():
        nonlocal obs
        nxt, _, term, trunc, _ = env.step(env.action_space.sample())
        obs = env.reset()[0] if term or trunc else nxt

    explorer = RewardBonus(coeff=1.0)

    def act_and_bonus():
        explorer.act(agent, obs)
        explorer.bonus(1.0)

    parts = {
        "update": _median_ms(lambda: agent.update(batch_data), repeats, device=device),
        "act_and_bonus": _median_ms(act_and_bonus, 5 * repeats, device=device),
        "sample_batch": _median_ms(sampler.sample, 5 * repeats, device=device),
        "env_step": _median_ms(env_step, 5 * repeats),
        "buffer_add": _median_ms(
            lambda: online.add(obs, np.zeros(spec.act_dim), 0.0, 0.0, obs, False), 5 * repeats, device=device
        ),
    }
    online.size = 2 * batch  # undo the timing adds
    flops = update_flops(algo, spec.obs_dim, spec.act_dim, n, batch)
    floor_ms = flops / (gflops * 1e9) * 1000
    env.close()
    return {
        "algo": algo,
        "dataset": dataset,
        "n_ensemble": n,
        "batch_size": batch,
        "ms_per_step": sum(parts.values()),
        "parts_ms": parts,
        "update_gflop": flops / 1e9,
        "update_floor_ms": floor_ms,
        "update_efficiency": floor_ms / parts["update"],
        "compiled": bool(overrides.get("compile_critic")),
        "first_update_seconds": first_update_s,
    }


def bench_eval(dataset: str, episodes: int = 10, repeats: int = 3, device: torch.device | None = None) -> dict:
    """Worst-case evaluation time: ``episodes`` full 1,000-step episodes through the
    real :class:`Evaluator` (median of ``repeats``).

    An untrained policy makes hopper fall within a few steps, so a real evaluation of
    it would time almost nothing; the bench's environments are built with
    ``terminate_when_unhealthy=False`` (where the env has it), which runs the same step
    code for the full time limit: the cost of a policy that never falls.
    """
    spec = dataset_spec(dataset)
    torch.manual_seed(0)
    agent = make_agent("iql", spec.obs_dim, spec.act_dim, 2, device or "cpu")
    full_length = {"terminate_when_unhealthy": False} if spec.env_id.startswith("Hopper") else {}
    evaluator = Evaluator(dataset, episodes, seed=0, **full_length)
    times, steps = [], 0
    for _ in range(repeats):
        t = time.perf_counter()
        result = evaluator.run(lambda o: agent.act(o, deterministic=True))
        times.append(time.perf_counter() - t)
        steps = int(round(result["ep_len_mean"] * episodes))
    evaluator.close()
    return {"dataset": dataset, "episodes": episodes, "env_steps": steps, "seconds": statistics.median(times)}


def run_bench(
    algos,
    datasets,
    ensembles,
    batch: int = 256,
    repeats: int = 15,
    threads: int | None = None,
    compile_cql: bool | None = None,
    device: str = "auto",
) -> dict:
    """``compile_cql=None`` does what a run would: compile the CQL critic on CUDA only."""
    from hrl_core.run.runtime import resolve_device

    dev = resolve_device(device)
    tune_allocator()  # as every run does
    from hrl_core.run.runtime import set_threads

    set_threads(threads)  # None: the idle cores, as a run without --threads starts
    if compile_cql is None:
        compile_cql = dev.type == "cuda"
    gflops = gemm_gflops(device=dev)
    cells = [
        bench_cell(a, d, n, batch, repeats, gflops, compile_cql, dev)
        for a in algos
        for n in ensembles
        for d in datasets
    ]
    evals = [bench_eval(d, device=dev) for d in datasets]
    return {
        "torch": torch.__version__,
        "device": str(dev) if dev.type == "cpu" else f"{dev} ({torch.cuda.get_device_name(dev)})",
        "threads": torch.get_num_threads(),
        "gemm_gflops": gflops,
        "cells": cells,
        "evaluation": evals,
    }


# --------------------------------------------------------------------------------------
# Populations: P cells as one computation (hrl_core.rl.population), per cell-step
# --------------------------------------------------------------------------------------
def _dispatched_ops(fn, calls: int = 3) -> float:
    """Operators dispatched to a kernel per call of ``fn``: every aten op of the forward and the
    backward, counted by a dispatch mode (what the torch profiler lists as aten:: events, without
    its start and stop lines on the terminal)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.n += 1
            return func(*args, **(kwargs or {}))

    fn()
    with Count():
        for _ in range(calls):
            fn()
    return Count.n / calls


def _population_setup(algo: str, spec, n: int, batch: int, size: int, device, offline):
    """The update, acting and sampling of ``size`` cells: a run alone (size 1) or a stacked population."""
    from hrl_core.rl.population import Stack

    cells = []
    for p in range(size):
        torch.manual_seed(p)
        cells.append(make_agent(algo, spec.obs_dim, spec.act_dim, n, device))
    gens = [torch.Generator(device=device).manual_seed(p) for p in range(size)]
    online = ReplayBuffer(4 * batch, spec.obs_dim, spec.act_dim, device)
    rng = np.random.default_rng(0)
    for _ in range(2 * batch):
        o = rng.standard_normal(spec.obs_dim)
        online.add(o, rng.uniform(-1, 1, spec.act_dim), 1.0, 0.0, o, False)
    sampler = HybridSampler(offline, online, batch, 0.5)
    obs = rng.standard_normal((size, spec.obs_dim)).astype(np.float32)
    if size == 1:
        agent, explorer = cells[0], RewardBonus(coeff=1.0)
        data = sampler.sample()

        def act():
            explorer.act(agent, obs[0])
            explorer.bonus(1.0)

        return agent, (lambda: agent.update(data)), act, sampler.sample
    agent = Stack(cells, gens).agent
    data = {k: torch.stack([sampler.sample(g)[k] for g in gens]) for k in sampler.sample()}

    @torch.no_grad()
    def act():  # as the population loop acts (hrl_core.run.population._Loop._act)
        o = torch.as_tensor(obs, device=device).unsqueeze(1)
        a = agent.actor.sample(o)[0]
        q = agent.critic(o, a)[..., 0]
        stats = torch.stack([torch.stack([q[p].std(), q[p].abs().mean()]) for p in range(size)])
        torch.cat([a[:, 0], stats], -1).cpu().numpy()

    def sample():
        batches = [sampler.sample(g) for g in gens]
        return {k: torch.stack([b[k] for b in batches]) for k in batches[0]}

    return agent, (lambda: agent.update(data)), act, sample


def bench_population(algo: str, dataset: str, n: int, batch: int, sizes: list[int], repeats: int, gflops: float,
                     device: torch.device, paths=("auto",)) -> list[dict]:  # fmt: skip
    """Per cell-step cost of a population of each size, measured side by side: the sizes' updates
    alternate within every repeat, so a change of the machine's load falls on all of them alike.
    ``paths``: how stacked layers run (auto: as runs do; per_cell / batched: forced, to compare)."""
    import contextlib

    from hrl_core.rl.population import cell_path

    spec = dataset_spec(dataset)
    offline = _offline_stub(spec, device)
    variants = [(size, path) for size in sizes for path in (("auto",) if size == 1 else paths)]

    def mode(path):
        return contextlib.nullcontext() if path == "auto" else cell_path(path)

    setups = {v: _population_setup(algo, spec, n, batch, v[0], device, offline) for v in variants}
    for v, (_, update, act, sample) in setups.items():
        with mode(v[1]):
            for _ in range(3):
                update(), act(), sample()
    times = {v: {"update": [], "act": [], "sample": []} for v in variants}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(repeats):
        for v, (_, update, act, sample) in setups.items():
            with mode(v[1]):
                for part, fn, calls in (("update", update, 1), ("act", act, 5), ("sample", sample, 5)):
                    sync()
                    t = time.perf_counter()
                    for _ in range(calls):
                        fn()
                    sync()
                    times[v][part].append((time.perf_counter() - t) / calls)
    env = make_env(dataset)
    env.reset(seed=0)
    env_ms = _median_ms(lambda: env.step(env.action_space.sample()) and None, 5 * repeats)
    env.close()
    floor_ms = update_flops(algo, spec.obs_dim, spec.act_dim, n, batch) / (gflops * 1e9) * 1000
    out = []
    for (size, path), (_, update, _, _) in setups.items():
        med = {k: 1000 * statistics.median(v) / size for k, v in times[(size, path)].items()}  # per cell-step
        with mode(path):
            ops = _dispatched_ops(update) / size
        out.append({
            "algo": algo, "dataset": dataset, "n_ensemble": n, "batch_size": batch, "population": size, "path": path,
            "update_ms": med["update"], "act_ms": med["act"], "sample_ms": med["sample"], "env_ms": env_ms,
            "ms_per_cell_step": med["update"] + med["act"] + med["sample"] + env_ms,
            "update_floor_ms": floor_ms, "update_efficiency": floor_ms / med["update"],
            "ops_per_cell_step": ops,
        })  # fmt: skip
    solo = out[0]["ms_per_cell_step"] if sizes[0] == 1 else float("nan")
    for row in out:
        row["speedup_vs_solo"] = solo / row["ms_per_cell_step"]
    return out


def format_population(report: dict) -> str:
    lines = [
        f"torch {report['torch']} on {report['device']}, {report['threads']} CPU thread(s), measured GEMM rate "
        f"{report['gemm_gflops']:.0f} GFLOP/s (fp32, 2048^3); per cell-step, medians of {report['repeats']} "
        "side-by-side repeats",
        "",
        "algo  dataset                N   P  layers    update  floor  of floor  act   sample  env   ms/cell-step"
        "  ops/cell-step  vs solo",
    ]
    for r in report["population"]:
        lines.append(
            f"{r['algo']:<5} {r['dataset']:<22} {r['n_ensemble']} {r['population']:>3}  {r['path']:<8}"
            f"  {r['update_ms']:6.2f}"
            f"  {r['update_floor_ms']:5.2f}  {r['update_efficiency']:7.0%}  {r['act_ms']:5.2f}  {r['sample_ms']:5.2f}"
            f"  {r['env_ms']:4.2f}  {r['ms_per_cell_step']:12.2f}  {r['ops_per_cell_step']:13.0f}"
            f"  {r['speedup_vs_solo']:6.2f}x"
        )
    return "\n".join(lines)


def eval_share(ms_per_step: float, eval_seconds: float, eval_interval: int = 5000) -> float:
    """Fraction of a run's wall time spent evaluating at the default schedule."""
    train = ms_per_step / 1000 * eval_interval
    return eval_seconds / (train + eval_seconds)


def format_report(report: dict) -> str:
    lines = [
        f"torch {report['torch']} on {report['device']}, {report['threads']} CPU threads, measured GEMM rate "
        f"{report['gemm_gflops']:.0f} GFLOP/s (fp32, 2048^3)",
        "",
        "algo  dataset                N  ms/step  update  act+bonus  sample  env   GFLOP  floor  efficiency  compiled",
    ]
    for c in report["cells"]:
        p = c["parts_ms"]
        lines.append(
            f"{c['algo']:<5} {c['dataset']:<22} {c['n_ensemble']}  {c['ms_per_step']:7.1f}  {p['update']:6.1f}"
            f"  {p['act_and_bonus']:9.2f}  {p['sample_batch']:6.2f}  {p['env_step']:4.2f}"
            f"  {c['update_gflop']:5.2f}  {c['update_floor_ms']:5.1f}  {c['update_efficiency']:9.0%}"
            + (f"  yes ({c['first_update_seconds']:.0f} s to compile)" if c["compiled"] else "  no")
        )
    lines.append("")
    evals = {e["dataset"]: e for e in report["evaluation"]}
    for e in report["evaluation"]:
        lines.append(f"evaluation {e['dataset']}: {e['episodes']} x 1,000-step episodes: {e['seconds']:.2f} s")
    for c in report["cells"]:
        share = eval_share(c["ms_per_step"], evals[c["dataset"]]["seconds"])
        c["eval_share_default_schedule"] = share
    worst = max(report["cells"], key=lambda c: c["eval_share_default_schedule"])
    lines.append(
        f"evaluation share of wall time at eval_interval=5000: at most {worst['eval_share_default_schedule']:.1%} "
        f"({worst['algo']} {worst['dataset']} N={worst['n_ensemble']})"
    )
    return "\n".join(lines)


def main_bench(args) -> int:
    if args.population:
        return _main_population(args)
    compile_cql = True if args.compile else None  # None: as a run would (compile on CUDA only)
    report = run_bench(
        args.algo, args.env, args.n_ensemble, args.batch_size, args.repeats, args.threads, compile_cql, args.device
    )
    text = format_report(report)
    print(json.dumps(report, indent=2) if args.json else text)
    return 0


def _main_population(args) -> int:
    from hrl_core.run.runtime import resolve_device, set_threads

    dev = resolve_device(args.device)
    tune_allocator()
    set_threads(args.threads or 1)  # grid cells run with 1 thread each
    sizes = sorted(set(args.population) | {1})
    gflops = gemm_gflops(device=dev)
    rows = []
    for algo in args.algo:
        for n in args.n_ensemble:
            for dataset in args.env:
                rows += bench_population(algo, dataset, n, args.batch_size, sizes, args.repeats, gflops, dev,
                                         tuple(args.layers))  # fmt: skip
    report = {"torch": torch.__version__, "device": str(dev), "threads": torch.get_num_threads(),
              "gemm_gflops": gflops, "repeats": args.repeats, "population": rows}  # fmt: skip
    print(json.dumps(report, indent=2) if args.json else format_population(report))
    return 0
