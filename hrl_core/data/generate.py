"""``hrl data generate``: a D4RL-layout "medium" dataset made here, with no network.

D4RL's recipe for "medium": train a SAC policy online until it reaches about one
third of expert performance, then roll out its stochastic policy. Here SAC is the
project's CQL agent with the penalty weight set to 0 (two critics, learned
temperature), trained in the Gymnasium environment; training stops at
``target_score`` normalized return or after ``max_train_steps``, whichever comes
first, and the measured score is written into the file. The output passes the same
reader as the real D4RL files, and every run that uses it says ``generated``.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import torch

from hrl_core.agents import make_agent
from hrl_core.data.buffers import ReplayBuffer
from hrl_core.envs import dataset_spec, make_env
from hrl_core.evaluation import Evaluator
from hrl_core.finetune import check_finite, seed_everything
from hrl_core.perf import tune_allocator

MEDIUM_TARGET = 100.0 / 3  # D4RL "medium": about a third of expert normalized return
QUICK = {"n_transitions": 50_000, "max_train_steps": 15_000, "random_steps": 2_000, "eval_interval": 5_000}
FULL = {"n_transitions": 1_000_000, "max_train_steps": 500_000, "random_steps": 10_000, "eval_interval": 10_000}


def train_sac(dataset: str, max_train_steps: int, random_steps: int, eval_interval: int, target: float,
              seed: int, batch_size: int = 256, progress: bool = True):  # fmt: skip
    """Online SAC until ``target`` normalized return or the step budget. Returns (agent, steps, score)."""
    from tqdm.auto import tqdm

    spec = dataset_spec(dataset)
    agent = make_agent("cql", spec.obs_dim, spec.act_dim, 2, cql_alpha=0.0)  # SAC
    buffer = ReplayBuffer(max_train_steps, spec.obs_dim, spec.act_dim)
    env = make_env(dataset)
    evaluator = Evaluator(dataset, 5, seed)
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    score, step = -np.inf, 0
    bar = tqdm(total=max_train_steps, desc=f"SAC {dataset}", unit="step", disable=not progress,
               mininterval=1.0 if sys.stderr.isatty() else 30.0)  # fmt: skip
    for step in range(1, max_train_steps + 1):
        action = env.action_space.sample() if step <= random_steps else agent.act(obs)
        nxt, reward, terminated, truncated, _ = env.step(action)
        buffer.add(obs, action, reward, 0.0, nxt, terminated)
        obs = env.reset()[0] if terminated or truncated else nxt
        if buffer.size >= batch_size:
            idx = buffer.sample_idx(batch_size)
            info = agent.update({k: v[idx] for k, v in buffer.tensors.items()})
            check_finite(info, step)
        bar.update(1)
        if step % eval_interval == 0:
            score = evaluator.run(lambda o: agent.act(o, deterministic=True))["normalized_return"]
            bar.write(f"SAC {dataset} step {step}: normalized return {score:.1f} (target {target:.1f})")
            if score >= target:
                break
    bar.close()
    evaluator.close()
    env.close()
    return agent, step, score


def rollout(agent, dataset: str, n_transitions: int, seed: int) -> dict[str, np.ndarray]:
    """Stochastic-policy transitions in D4RL's layout (time limit 1,000 -> timeouts)."""
    spec = dataset_spec(dataset)
    env = make_env(dataset)
    out = {
        "observations": np.empty((n_transitions, spec.obs_dim), np.float32),
        "actions": np.empty((n_transitions, spec.act_dim), np.float32),
        "rewards": np.empty(n_transitions, np.float32),
        "next_observations": np.empty((n_transitions, spec.obs_dim), np.float32),
        "terminals": np.zeros(n_transitions, bool),
        "timeouts": np.zeros(n_transitions, bool),
    }
    obs, _ = env.reset(seed=seed + 1)
    for i in range(n_transitions):
        action = agent.act(obs)
        nxt, reward, terminated, truncated, _ = env.step(action)
        out["observations"][i], out["actions"][i], out["rewards"][i] = obs, action, reward
        out["next_observations"][i], out["terminals"][i] = nxt, terminated
        out["timeouts"][i] = truncated and not terminated
        obs = env.reset()[0] if terminated or truncated else nxt
    out["timeouts"][-1] |= not out["terminals"][-1]  # the file ends a trajectory
    env.close()
    return out


def generate(dataset: str, out_path: Path, quick: bool = False, seed: int = 0, progress: bool = True,
             **overrides) -> Path:  # fmt: skip
    """Train, roll out and write the file atomically; returns its path."""
    budget = {**(QUICK if quick else FULL), **{k: v for k, v in overrides.items() if v is not None}}
    tune_allocator()
    seed_everything(seed)
    agent, steps, score = train_sac(dataset, budget["max_train_steps"], budget["random_steps"],
                                    budget["eval_interval"], MEDIUM_TARGET, seed, progress=progress)  # fmt: skip
    data = rollout(agent, dataset, budget["n_transitions"], seed)
    from hrl_core.data.corruption import trajectory_ids, trajectory_returns
    from hrl_core.envs import normalized_score

    rets = trajectory_returns(data["rewards"], trajectory_ids(data["terminals"], data["timeouts"]))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            for key, value in data.items():
                f.create_dataset(key, data=value, compression="gzip", compression_opts=1)
            f.attrs.update({
                "generator": "hrl data generate",
                "policy": "SAC (hrl CQL agent with cql_alpha=0), stochastic rollouts",
                "env_id": dataset_spec(dataset).env_id,
                "d4rl_name": dataset,
                "sac_train_steps": steps,
                "sac_eval_normalized_return": float(score),
                "target_normalized_return": MEDIUM_TARGET,
                "reached_target": bool(score >= MEDIUM_TARGET),
                "dataset_mean_normalized_return": float(normalized_score(dataset, rets).mean()),
                "n_transitions": budget["n_transitions"],
                "seed": seed,
                "quick": quick,
                "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                "torch": str(torch.__version__),
            })  # fmt: skip
        os.replace(tmp, out_path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out_path
