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
from typing import Literal

import numpy as np
import torch

from hrl_core.data import HybridSampler, OfflineData, ReplayBuffer
from hrl_core.errors import DivergenceError, HrlError
from hrl_core.rl import agents
from hrl_core.rl.agents import make_agent
from hrl_core.rl.envs import dataset_spec
from hrl_core.rl.evaluation import Evaluator
from hrl_core.rl.perf import tune_allocator
from hrl_core.run import files, folder, phase1
from hrl_core.run.config import SEED_MAX, DatasetName, _algorithms, setting
from hrl_core.run.folder import take_folder
from hrl_core.run.phase1 import phase1_run_name
from hrl_core.run.runtime import ThreadGovernor, check_finite, progress_bar, resolve_device, seed_everything, versions

QUICK_STEPS = 20_000  # --quick budget of a Phase I cell (Phase I's quick runs)


@dataclass
class PretrainConfig:
    """One Phase I run (field names as in Phase I's config.json)."""

    algo: str = setting("iql", choices=_algorithms)  # Phase I algorithm
    env_name: DatasetName = setting("hopper-medium-v2")  # D4RL dataset id
    remove_top_k: float = setting(0.0, lo=0, hi=100, hi_open=True)  # % of highest-return trajectories removed
    reward_noise_std: float = setting(0.0, lo=0)  # Gaussian reward noise
    corruption_seed: int = setting(0, lo=0, hi=SEED_MAX)  # seed of the reward noise
    total_steps: int = setting(500_000, lo=1)  # gradient steps (--quick: 20,000)
    batch_size: int = setting(256, lo=1)  # transitions per update
    eval_interval: int = setting(10_000, lo=1)  # steps between evaluations (and checkpoints)
    eval_episodes: int = setting(10, lo=1)  # deterministic episodes per evaluation
    log_interval: int = setting(1_000, lo=1)  # steps between training-statistics records
    seed: int = setting(0, lo=0, hi=SEED_MAX)  # torch / numpy / evaluation seed
    device: str = setting("auto", result=False)  # torch device: auto | cpu | cuda | cuda:N
    save_dir: str = setting("results", result=False)  # where run folders go
    # where the offline data comes from
    dataset_source: Literal["auto", "d4rl", "generated", "minari"] = setting("auto", result=False)
    threads: int | None = setting(None, lo=1, result=False)  # torch CPU threads; None: chosen for the machine

    def __post_init__(self):
        from hrl_core.run.config import check_fields

        check_fields(self)  # types, finiteness, choices and ranges, as for Phase II settings

    @classmethod
    def check_value(cls, name: str, value):
        from hrl_core.run.config import check_value

        return check_value(cls, name, value)

    def result_settings(self) -> dict:
        """Settings that change the trained checkpoint (a complete run is reused only if equal)."""
        skip = {"device", "save_dir", "dataset_source", "threads"}
        return {k: v for k, v in asdict(self).items() if k not in skip}

    @property
    def run_name(self) -> str:
        return phase1_run_name(self.algo, self.env_name, self.remove_top_k, self.reward_noise_std, self.seed)


def pretrain(cfg: PretrainConfig, progress: bool = True) -> Path:
    """Train one Phase I cell offline; returns its run folder. Skips a complete one."""
    from hrl_core.data.sources import load_offline_data, locate_source

    spec = dataset_spec(cfg.env_name)
    run_dir = Path(cfg.save_dir) / cfg.run_name
    device = resolve_device(cfg.device)
    file = locate_source(cfg.env_name, cfg.dataset_source)
    wanted = {"settings": cfg.result_settings(), "dataset_sha256": file.sha256}
    if (run_dir / "metrics.json").exists() and files.read_json(run_dir / "metrics.json").get("status") == "complete":
        diffs = _differences(run_dir, wanted)
        if diffs:
            raise HrlError(
                f"{run_dir} holds a complete Phase I run with other settings or data ({'; '.join(diffs)}); "
                "pass another --save_dir (Phase I run names cannot tell the two apart) or delete that folder"
            )
        print(f"{cfg.run_name}: already complete in {run_dir}")
        return run_dir
    # the data is read (and checked) before the run folder is touched
    data = load_offline_data(file, cfg.remove_top_k, cfg.reward_noise_std, cfg.corruption_seed, cfg.batch_size)
    with take_folder(run_dir) as lock:
        return _pretrain_locked(cfg, spec, run_dir, device, data, wanted, lock, progress)


def _differences(run_dir: Path, wanted: dict) -> list[str]:
    """How a complete Phase I run folder differs from the requested run (Phase I's config.json is flat)."""
    try:
        config = files.read_json(run_dir / "config.json")
    except (OSError, ValueError):
        return ["its config.json is unreadable"]
    # keys an older Phase I config.json lacks are not counted as differences
    recorded = {k: config.get(k, v) for k, v in wanted["settings"].items()}
    sha = config.get("provenance", {}).get("dataset", {}).get("sha256") or wanted["dataset_sha256"]
    here = {"settings": wanted["settings"], "inputs": {"dataset_sha256": wanted["dataset_sha256"]}}
    return folder.identity_differences({"settings": recorded, "inputs": {"dataset_sha256": sha}}, here)


def _pretrain_locked(cfg, spec, run_dir, device, data, wanted, lock, progress) -> Path:
    tune_allocator()
    threads = ThreadGovernor(cfg.threads)
    seed_everything(cfg.seed)
    overrides = dict(agents.get(cfg.algo).pretrain_overrides)  # Phase I's offline values (CQL: alpha 5)
    agent = make_agent(cfg.algo, spec.obs_dim, spec.act_dim, 2, device, **overrides)
    offline = OfflineData(data, device)
    sampler = HybridSampler(offline, ReplayBuffer(1, spec.obs_dim, spec.act_dim, device), cfg.batch_size, 0.0)
    evaluator = Evaluator(cfg.env_name, cfg.eval_episodes, cfg.seed, data.provenance.get("eval_env_id"),
                          data.provenance.get("ref_scores"))  # fmt: skip
    config = asdict(cfg) | {
        "phase": "I (offline pretraining)",
        "cql_alpha": overrides.get("cql_alpha"),  # Phase I's config.json key (None: not CQL)
        "provenance": {"dataset": data.provenance},
        "versions": versions(),
        "command": sys.argv,
        "dataset_sha256": wanted["dataset_sha256"],
    }
    files.write_json(run_dir / "config.json", config)

    metrics: dict = {"status": "running", "step": [], "normalized_return": [], "raw_return_mean": [],
                     "raw_return_std": [], "ep_len_mean": [], "train_step": []}  # fmt: skip
    for key in ("q1_mean_avg", "q1_mean_std", "q2_mean_avg", "q2_mean_std", "critic_loss_avg", "critic_loss_var",
                "critic_loss_rolling_var"):  # fmt: skip
        metrics[key] = []
    window_q, window_loss, recent_loss = [], [], []
    t0 = time.perf_counter()
    bar = progress_bar(cfg.total_steps, cfg.run_name, progress)
    try:
        for step in range(1, cfg.total_steps + 1):
            info = agent.update(sampler.sample())
            check_finite(info, step)
            threads.maybe_adjust()
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
                lock.check()
                files.write_torch(run_dir / "checkpoint.pt", phase1.checkpoint_of(agent, step))
                files.write_json(run_dir / "metrics.json", metrics)
                lock.refresh()
                bar.write(f"{cfg.run_name} step {step}: normalized return {result['normalized_return']:.1f}")
    except DivergenceError as exc:
        metrics.update(status="diverged", diverged_at_step=exc.step, diverged_quantity=exc.quantity)
        files.write_json(run_dir / "metrics.json", metrics)
        raise
    finally:
        bar.close()
        evaluator.close()
    metrics["status"] = "complete"
    files.write_json(run_dir / "metrics.json", metrics)
    return run_dir
