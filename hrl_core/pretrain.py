"""Phase I: offline CQL / IQL on the clean or corrupted dataset (``hrl pretrain``).

The same networks and settings that produced the checkpoints under
``../shared/phase1/results``: CQL(H) with alpha = 5.0 on a SAC backbone with double Q,
IQL with expectile 0.7 and temperature 3.0; batch 256, Adam 3e-4, gamma 0.99,
tau 0.005, raw rewards. Output is Phase I's layout exactly,
``results/<algo>_<dataset>_k<k>_noise<sigma>_s<seed>/{checkpoint.pt, config.json,
metrics.json}`` with the same checkpoint keys, so Phase II reads the project's own
Phase I output and a user's the same way.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from hrl_core import io
from hrl_core.agents import make_agent
from hrl_core.checkpoint import phase1_run_name
from hrl_core.data import HybridSampler, OfflineData, ReplayBuffer
from hrl_core.envs import dataset_spec
from hrl_core.errors import DivergenceError, HrlError
from hrl_core.evaluation import Evaluator
from hrl_core.finetune import check_finite, resolve_device, seed_everything, versions
from hrl_core.perf import tune_allocator

PHASE1_CQL_ALPHA = 5.0  # conservative penalty weight offline
QUICK_STEPS = 20_000  # --quick budget of a Phase I cell (Phase I's quick runs)


@dataclass
class PretrainConfig:
    """One Phase I run (field names as in Phase I's config.json)."""

    algo: str = "iql"  # cql | iql
    env_name: str = "hopper-medium-v2"  # D4RL dataset id
    remove_top_k: float = 0.0  # % of highest-return trajectories removed
    reward_noise_std: float = 0.0  # Gaussian reward noise
    corruption_seed: int = 0  # seed of the reward noise
    total_steps: int = 500_000  # gradient steps (--quick: 20,000)
    batch_size: int = 256  # transitions per update
    eval_interval: int = 10_000  # steps between evaluations (and checkpoints)
    eval_episodes: int = 10  # deterministic episodes per evaluation
    log_interval: int = 1_000  # steps between training-statistics records
    seed: int = 0  # torch / numpy / evaluation seed
    device: str = "auto"  # auto | cpu | cuda
    save_dir: str = "results"  # where run folders go
    dataset_source: str = "auto"  # auto | d4rl | generated (where the offline data comes from)

    @property
    def run_name(self) -> str:
        return phase1_run_name(self.algo, self.env_name, self.remove_top_k, self.reward_noise_std, self.seed)


def phase1_checkpoint(agent, step: int) -> dict:
    """The agent in Phase I's checkpoint format (double Q = ensemble members 0-1)."""
    out = {
        "actor": {k: v.detach().cpu().clone() for k, v in agent.actor.state_dict().items()},
        "critic": {k: v.cpu() for k, v in agent.critic.to_double_q().items()},
        "critic_target": {k: v.cpu() for k, v in agent.critic_target.to_double_q().items()},
        "step": step,
    }
    if agent.algo == "cql":
        out["log_alpha"] = agent.log_alpha.detach().cpu().clone()
    else:
        out["value"] = {k: v.detach().cpu().clone() for k, v in agent.value.state_dict().items()}
    return out


def pretrain(cfg: PretrainConfig, progress: bool = True) -> Path:
    """Train one Phase I cell offline; returns its run folder. Skips a complete one."""
    from tqdm.auto import tqdm

    from hrl_core.data.sources import load_offline_data

    spec = dataset_spec(cfg.env_name)
    if cfg.algo not in ("cql", "iql"):
        raise HrlError(f"unknown algo {cfg.algo!r}: use cql or iql")
    run_dir = Path(cfg.save_dir) / cfg.run_name
    if (run_dir / "metrics.json").exists() and io.read_json(run_dir / "metrics.json").get("status") == "complete":
        print(f"{cfg.run_name}: already complete in {run_dir}")
        return run_dir
    tune_allocator()
    device = resolve_device(cfg.device)
    data = load_offline_data(cfg.env_name, cfg.remove_top_k, cfg.reward_noise_std, cfg.corruption_seed,
                             cfg.dataset_source)  # fmt: skip
    seed_everything(cfg.seed)
    overrides = {"cql_alpha": PHASE1_CQL_ALPHA} if cfg.algo == "cql" else {}
    agent = make_agent(cfg.algo, spec.obs_dim, spec.act_dim, 2, device, **overrides)
    offline = OfflineData(data, device)
    sampler = HybridSampler(offline, ReplayBuffer(1, spec.obs_dim, spec.act_dim, device), cfg.batch_size, 0.0)
    evaluator = Evaluator(cfg.env_name, cfg.eval_episodes, cfg.seed, data.provenance.get("eval_env_id"),
                          data.provenance.get("ref_scores"))  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    config = asdict(cfg) | {
        "phase": "I (offline pretraining)",
        "cql_alpha": PHASE1_CQL_ALPHA if cfg.algo == "cql" else None,
        "provenance": {"dataset": data.provenance},
        "versions": versions(),
        "command": sys.argv,
    }
    io.write_json(run_dir / "config.json", config)

    metrics: dict = {"status": "running", "step": [], "normalized_return": [], "raw_return_mean": [],
                     "raw_return_std": [], "ep_len_mean": [], "train_step": []}  # fmt: skip
    for key in ("q1_mean_avg", "q1_mean_std", "q2_mean_avg", "q2_mean_std", "critic_loss_avg", "critic_loss_var",
                "critic_loss_rolling_var"):  # fmt: skip
        metrics[key] = []
    window_q, window_loss, recent_loss = [], [], []
    t0 = time.perf_counter()
    bar = tqdm(total=cfg.total_steps, desc=cfg.run_name, unit="step", disable=not progress,
               mininterval=1.0 if sys.stderr.isatty() else 30.0)  # fmt: skip
    try:
        for step in range(1, cfg.total_steps + 1):
            info = agent.update(sampler.sample())
            check_finite(info, step)
            window_q.append(info["q_member"])
            window_loss.append(info["critic_loss"])
            bar.update(1)
            if step % cfg.log_interval == 0 or step == cfg.total_steps:
                q = torch.stack(window_q).cpu().numpy()  # [steps, 2]
                losses = torch.stack(window_loss).cpu().numpy()
                recent_loss = (recent_loss + losses.tolist())[-10 * cfg.log_interval :]
                metrics["q1_mean_avg"].append(float(q[:, 0].mean()))
                metrics["q1_mean_std"].append(float(q[:, 0].std()))
                metrics["q2_mean_avg"].append(float(q[:, 1].mean()))
                metrics["q2_mean_std"].append(float(q[:, 1].std()))
                metrics["critic_loss_avg"].append(float(losses.mean()))
                metrics["critic_loss_var"].append(float(losses.var()))
                metrics["critic_loss_rolling_var"].append(float(np.var(recent_loss)))
                window_q, window_loss = [], []
            if step % cfg.eval_interval == 0 or step == cfg.total_steps:
                result = evaluator.run(lambda o: agent.act(o, deterministic=True))
                for key in ("normalized_return", "raw_return_mean", "raw_return_std", "ep_len_mean"):
                    metrics[key].append(result[key])
                metrics["step"].append(step)
                metrics["train_step"].append(step)
                metrics["wall_time"] = time.perf_counter() - t0
                io.write_torch(run_dir / "checkpoint.pt", phase1_checkpoint(agent, step))
                io.write_json(run_dir / "metrics.json", metrics)
                bar.write(f"{cfg.run_name} step {step}: normalized return {result['normalized_return']:.1f}")
    except DivergenceError as exc:
        metrics.update(status="diverged", diverged_at_step=exc.step, diverged_quantity=exc.quantity)
        io.write_json(run_dir / "metrics.json", metrics)
        raise
    finally:
        bar.close()
        evaluator.close()
    metrics["status"] = "complete"
    io.write_json(run_dir / "metrics.json", metrics)
    return run_dir
