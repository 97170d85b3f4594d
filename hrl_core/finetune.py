"""Phase II: fine-tune a Phase I checkpoint online with hybrid replay.

One run = one grid cell. The loop owns the environment and the data:

1. load the (corrupted) offline data and the Phase I checkpoint, widen the critic
   to N members (0-1 from the checkpoint, the rest fresh);
2. evaluate the loaded policy (step 0);
3. each online step: act with the stochastic policy, compute the ensemble
   disagreement std(Q)(s, a) of the action taken, store r + lambda * std
   (``bonus_type=ensemble``) or r (``none``) in the online buffer, then one
   gradient update on a hybrid batch;
4. every ``eval_interval`` steps: evaluate, append to ``metrics.json``, write a
   resume snapshot.

A run folder holds ``config.json`` (settings + provenance), ``metrics.json``
(with a ``status``), ``snapshot.pt`` while running and ``checkpoint.pt`` at the end.
Running the same cell again resumes from the last snapshot.
"""

from __future__ import annotations

import datetime as _dt
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hrl_core import io
from hrl_core.agents import make_agent
from hrl_core.checkpoint import load_phase1, load_state
from hrl_core.config import FinetuneConfig
from hrl_core.data import HybridSampler, OfflineData, ReplayBuffer
from hrl_core.envs import dataset_spec, get_env_state, make_env, set_env_state
from hrl_core.errors import DivergenceError, HrlError
from hrl_core.evaluation import Evaluator, eval_seeds
from hrl_core.perf import tune_allocator
from hrl_core.variants import BonusScale, perturb_fresh_members, warmstart_fresh_members

SNAPSHOT = "snapshot.pt"
SNAPSHOT_PREV = "snapshot.prev.pt"
STATUSES = ("running", "complete", "diverged", "failed")


class RunInterrupted(HrlError):
    """SIGTERM / SIGINT: a snapshot was written; the same command resumes."""


@dataclass
class RunResult:
    run_dir: Path  # folder of the run
    status: str  # complete | already_complete
    metrics: dict  # contents of metrics.json
    replay: ReplayBuffer | None = None  # the online buffer (in memory; for inspection)
    offline: OfflineData | None = None  # the offline data as trained on (in memory)


# --------------------------------------------------------------------------------------
# Set-up
# --------------------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise HrlError("device=cuda requested but torch sees no CUDA GPU; use --device cpu or auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise HrlError(
            f"cannot write to save_dir {folder} ({exc.strerror or exc}); pass a writable --save_dir"
        ) from None


def versions() -> dict:
    import gymnasium
    import h5py
    import mujoco

    import hrl_core

    out = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hrl_core": hrl_core.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "gymnasium": gymnasium.__version__,
        "mujoco": mujoco.__version__,
        "h5py": h5py.__version__,
    }
    try:
        out["git_commit"] = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                cwd=Path(__file__).parent,
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        out["git_commit"] = None
    return out


def load_offline(cfg: FinetuneConfig):
    """The offline data exactly as Phase I trained on it (same corruption)."""
    from hrl_core.data.sources import load_offline_data

    return load_offline_data(cfg.env, cfg.remove_top_k, cfg.reward_noise_std, cfg.corruption_seed, cfg.dataset_source)


# --------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------
def empty_metrics(cfg: FinetuneConfig) -> dict:
    return {"run_name": cfg.run_name, "status": "running", "step": []}


def append_point(metrics: dict, point: dict) -> None:
    """Append one evaluation point; every list stays as long as ``step``."""
    n = len(metrics["step"])
    for key, value in point.items():
        metrics.setdefault(key, [None] * n).append(value)
    for value in metrics.values():
        if isinstance(value, list) and len(value) == n:  # key absent from this point
            value.append(None)


class Window:
    """Training statistics between two evaluations, kept as tensors (no host sync)."""

    def __init__(self):
        self.sums: dict = {}  # info key -> running sum tensor
        self.updates = 0
        self.env = {"reward": 0.0, "bonus": 0.0, "disagreement": 0.0, "steps": 0}
        self.episode_returns: list[float] = []

    def add_update(self, info: dict) -> None:
        for k, v in info.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
        self.updates += 1

    def summary(self) -> dict:
        out = {}
        n_env = max(self.env["steps"], 1)
        if self.env["steps"]:
            out["reward_mean"] = self.env["reward"] / n_env
            out["bonus_mean"] = self.env["bonus"] / n_env
            out["ensemble_disagreement"] = self.env["disagreement"] / n_env
        if self.updates:
            for k, v in self.sums.items():
                mean = (v / self.updates).cpu()
                out[f"{k}_avg"] = mean.tolist() if mean.dim() else float(mean)
        out["train_episodes"] = len(self.episode_returns)
        out["train_episode_return"] = float(np.mean(self.episode_returns)) if self.episode_returns else None
        return out

    def state_dict(self) -> dict:
        return {
            "sums": self.sums,
            "updates": self.updates,
            "env": dict(self.env),
            "episode_returns": list(self.episode_returns),
        }

    def load_state_dict(self, s: dict) -> None:
        self.sums, self.updates = dict(s["sums"]), s["updates"]
        self.env, self.episode_returns = dict(s["env"]), list(s["episode_returns"])


# --------------------------------------------------------------------------------------
# Run folder state
# --------------------------------------------------------------------------------------
def read_status(run_dir: Path) -> str | None:
    try:
        return io.read_json(run_dir / "metrics.json").get("status")
    except (OSError, ValueError):
        return None


def load_snapshot(run_dir: Path) -> dict | None:
    """Newest loadable snapshot; a truncated one is reported and the previous used."""
    for name in (SNAPSHOT, SNAPSHOT_PREV):
        path = run_dir / name
        if not path.exists():
            continue
        try:
            return load_state(path)
        except HrlError as exc:
            print(f"hrl: warning: {exc} -- trying the previous snapshot", file=sys.stderr)
    return None


def write_snapshot(run_dir: Path, snapshot: dict) -> None:
    """Keep the last two snapshots so a damaged newest one still leaves a good one."""
    current = run_dir / SNAPSHOT
    tmp = run_dir / f".{SNAPSHOT}.new"
    io.write_torch(tmp, snapshot)
    if current.exists():
        current.replace(run_dir / SNAPSHOT_PREV)
    tmp.replace(current)


class _Signals:
    """Turns SIGTERM/SIGINT into a flag checked once per step (snapshot, then stop)."""

    def __init__(self):
        self.received: str | None = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. a Dask worker): leave as is
                pass
        return self

    def _handle(self, signum, _frame):
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------
def finetune(cfg: FinetuneConfig, restart: bool = False, progress: bool = True) -> RunResult:
    """Run (or resume) one fine-tuning cell; returns when it is complete."""
    cfg.validate()
    spec = dataset_spec(cfg.env)
    save_root = Path(cfg.save_dir)
    check_writable(save_root)
    run_dir = save_root / cfg.run_name
    status = read_status(run_dir)
    if status == "complete" and not restart:
        print(f"{cfg.run_name}: already complete in {run_dir}; pass --restart to run it again")
        return RunResult(run_dir, "already_complete", io.read_json(run_dir / "metrics.json"))
    if status == "diverged" and not restart:
        raise HrlError(
            f"{run_dir} holds a run that diverged; pass --restart (perhaps with other settings) to run it again"
        )

    # Everything that can fail on bad input happens before the run folder is touched.
    device = resolve_device(cfg.device)
    allocator_tuned = tune_allocator()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data = load_offline(cfg)
    ckpt = load_phase1(
        cfg.phase1_dir,
        cfg.algo,
        cfg.env,
        cfg.remove_top_k,
        cfg.reward_noise_std,
        cfg.effective_phase1_seed,
        spec.obs_dim,
        spec.act_dim,
    )
    snapshot = None
    if run_dir.exists() and not restart:
        snapshot = load_snapshot(run_dir)
        if snapshot is not None and snapshot["settings"] != cfg.result_settings():
            raise HrlError(
                f"{run_dir} holds an unfinished run with different settings; pass --restart to discard it "
                "or use another --save_dir"
            )
    if restart and run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    seed_everything(cfg.seed)
    compile_critic = cfg.compile_critic(device.type)
    agent_overrides = {"target_reduce": cfg.target_reduce}
    if cfg.algo == "cql":
        agent_overrides.update(cql_alpha=cfg.cql_alpha, compile_critic=compile_critic)
    agent = make_agent(cfg.algo, spec.obs_dim, spec.act_dim, cfg.n_ensemble, device, **agent_overrides)
    agent.load_phase1(ckpt.state)
    if cfg.member_init == "perturb":
        perturb_fresh_members(agent.critic, cfg.perturb_scale)
        agent.critic_target.load_state_dict(agent.critic.state_dict())  # fresh members: same in target
        agent.critic_target.load_double_q(ckpt.state["critic_target"])
    offline = OfflineData(data, device)
    buffer = ReplayBuffer(cfg.online_steps, spec.obs_dim, spec.act_dim, device)
    sampler = HybridSampler(offline, buffer, cfg.batch_size, cfg.online_ratio)
    # Data that brings its own environment and reference scores (Minari: -v5) is
    # evaluated there; otherwise the D4RL v2 counterparts (-v4) and D4RL's scores.
    env_id = data.provenance.get("eval_env_id") or spec.env_id
    ref_scores = data.provenance.get("ref_scores")
    warmstart = None
    if cfg.member_init == "warmstart" and snapshot is None:
        losses = warmstart_fresh_members(agent, sampler.sample, cfg.warmstart_steps)
        warmstart = {"steps": cfg.warmstart_steps, "loss_first": losses[0] if losses else None,
                     "loss_last": losses[-1] if losses else None}  # fmt: skip
        print(f"warm start: {cfg.warmstart_steps} offline steps on the fresh members, loss {warmstart}")
    env = make_env(cfg.env, env_id)
    evaluator = Evaluator(cfg.env, cfg.eval_episodes, cfg.seed, env_id, ref_scores)

    config = {
        "run_name": cfg.run_name,
        "phase": "II (online fine-tuning)",
        "settings": cfg.to_dict(),
        "agent_config": dict(vars(agent.cfg)),
        "environment": {
            "env_id": env_id,
            "reference_scores": ref_scores or [spec.ref_min_score, spec.ref_max_score],
            "eval_seeds": eval_seeds(cfg.seed, cfg.eval_episodes),
        },
        "provenance": {"dataset": data.provenance, "phase1_checkpoint": ckpt.provenance},
        "versions": versions(),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "speed": {"allocator_tuned": allocator_tuned, "compiled_cql_critic": compile_critic},
        "warmstart": warmstart,
        "command": sys.argv,
        "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    if snapshot is not None:
        old = io.read_json(run_dir / "config.json") if (run_dir / "config.json").exists() else {}
        config["started"] = old.get("started", config["started"])
        config["resumed"] = old.get("resumed", []) + [
            {"at_step": snapshot["step"], "time": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}
        ]
    io.write_json(run_dir / "config.json", config)
    kind = data.provenance.get("kind", "")
    if kind.startswith("not D4RL") or "unverified" in kind:
        print(f"hrl: note: dataset {data.provenance['path']} is {kind}", file=sys.stderr)
    if ckpt.provenance["substituted"]:
        print(f"hrl: note: {ckpt.provenance['substitution_note']}", file=sys.stderr)

    result = _train(cfg, run_dir, agent, buffer, sampler, env, evaluator, snapshot, progress)
    result.replay, result.offline = buffer, offline
    return result


def _train(cfg, run_dir, agent, buffer, sampler, env, evaluator, snapshot, progress) -> RunResult:
    from tqdm.auto import tqdm

    window = Window()
    scaler = BonusScale() if cfg.bonus_scale == "normalized" else None
    if snapshot is None:
        metrics = empty_metrics(cfg)
        step, elapsed_before = 0, 0.0
        obs, _ = env.reset(seed=cfg.seed)
        ep_return, ep_len = 0.0, 0
    else:
        agent.load_state_dict(snapshot["agent"])
        buffer.load_state_dict(snapshot["buffer"])
        window.load_state_dict(snapshot["window"])
        metrics, step, elapsed_before = snapshot["metrics"], snapshot["step"], snapshot["wall_time"]
        metrics["status"] = "running"
        env.reset(seed=cfg.seed)  # arms the wrappers; the state is then overwritten
        set_env_state(env, snapshot["env"])
        obs = snapshot["obs"].numpy()
        ep_return, ep_len = snapshot["episode"]
        random.setstate(snapshot["rng"]["python"])
        np.random.set_state(tuple(snapshot["rng"]["numpy"]))
        torch.set_rng_state(snapshot["rng"]["torch"])
        if scaler is not None:
            scaler.load_state_dict(snapshot["bonus_scale"])
        if torch.cuda.is_available() and snapshot["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state_all(snapshot["rng"]["cuda"])
    t0 = time.perf_counter()
    wall = lambda: elapsed_before + time.perf_counter() - t0  # noqa: E731

    def make_snapshot() -> dict:
        np_state = np.random.get_state()
        return {
            "step": step,
            "settings": cfg.result_settings(),
            "agent": agent.state_dict(),
            "buffer": buffer.state_dict(),
            "window": window.state_dict(),
            "metrics": metrics,
            "wall_time": wall(),
            "env": get_env_state(env),
            "obs": torch.as_tensor(obs),
            "episode": (ep_return, ep_len),
            "bonus_scale": scaler.state_dict() if scaler is not None else None,
            "rng": {
                "python": random.getstate(),
                "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
        }

    def evaluate_and_save() -> None:
        nonlocal window
        t_eval = time.perf_counter()
        result = evaluator.run(lambda o: agent.act(o, deterministic=True))
        point = {"step": step, "train_step": step, **result, **window.summary()}
        point["eval_time"] = time.perf_counter() - t_eval
        point["wall_time"] = wall()
        point["online_buffer_size"] = buffer.size
        point["snapshot_time"] = None  # filled in below, once the snapshot is written
        append_point(metrics, point)
        window = Window()
        t_save = time.perf_counter()
        write_snapshot(run_dir, make_snapshot())
        # Snapshot cost lands between evaluation points; logged so timing is honest.
        metrics["snapshot_time"][-1] = time.perf_counter() - t_save
        io.write_json(run_dir / "metrics.json", metrics)
        if bar is not None:
            bar.set_postfix(norm_return=f"{result['normalized_return']:.1f}", refresh=False)
        log = (
            f"step {step:>7d} | return {result['normalized_return']:6.1f} "
            f"(raw {result['raw_return_mean']:.0f} ± {result['raw_return_std']:.0f})"
        )
        if point.get("critic_loss_avg") is not None:
            log += (
                f" | disagreement {point['ensemble_disagreement']:.3f} | bonus {point['bonus_mean']:.3f}"
                f" vs reward {point['reward_mean']:.3f} | critic_loss {point['critic_loss_avg']:.3f}"
            )
        (bar.write if bar is not None else print)(log)

    bar = None
    # ucb_action explores by choosing actions, not by changing rewards.
    use_bonus = cfg.bonus_type == "ensemble" and cfg.exploration == "reward_bonus"
    use_ucb = cfg.bonus_type == "ensemble" and cfg.exploration == "ucb_action"
    try:
        with _Signals() as signals:
            if step == 0 and not metrics["step"]:
                evaluate_and_save()  # the Phase I policy, before any online step
            bar = tqdm(
                total=cfg.online_steps,
                initial=step,
                desc=cfg.run_name,
                unit="step",
                disable=not progress,
                mininterval=1.0 if sys.stderr.isatty() else 30.0,
            )
            if metrics["normalized_return"]:
                bar.set_postfix(norm_return=f"{metrics['normalized_return'][-1]:.1f}", refresh=False)
            while step < cfg.online_steps:
                if use_ucb:
                    action, disagreement = agent.explore_ucb(obs, cfg.ucb_candidates, cfg.bonus_coeff)
                else:
                    action, disagreement = agent.explore(obs)
                if not np.isfinite(action).all():
                    raise DivergenceError(step + 1, "the policy's action")
                if not np.isfinite(disagreement):
                    raise DivergenceError(step + 1, "Q-values (ensemble disagreement)")
                next_obs, reward, terminated, truncated, _ = env.step(action)
                bonus = 0.0
                if use_bonus:
                    signal_ = disagreement if scaler is None else scaler(disagreement, agent.last_mean_abs_q, reward)
                    bonus = cfg.bonus_coeff * signal_
                    if cfg.bonus_clip > 0:
                        bonus = min(bonus, cfg.bonus_clip)
                buffer.add(obs, action, reward, bonus, next_obs, terminated)
                window.env["reward"] += float(reward)
                window.env["bonus"] += bonus
                window.env["disagreement"] += disagreement
                window.env["steps"] += 1
                ep_return += float(reward)
                ep_len += 1
                if terminated or truncated:
                    window.episode_returns.append(ep_return)
                    obs, _ = env.reset()
                    ep_return, ep_len = 0.0, 0
                else:
                    obs = next_obs

                info = agent.update(sampler.sample())
                check_finite(info, step + 1)
                window.add_update(info)
                step += 1
                bar.update(1)

                if step % cfg.eval_interval == 0 or step == cfg.online_steps:
                    evaluate_and_save()
                elif signals.received:
                    write_snapshot(run_dir, make_snapshot())
                if signals.received:
                    io.write_json(run_dir / "metrics.json", {**metrics, "interrupted_at_step": step})
                    raise RunInterrupted(
                        f"{signals.received} received: snapshot written at step {step} in {run_dir}; "
                        "run the same command again to resume"
                    )
    except DivergenceError as exc:
        metrics.update(status="diverged", diverged_at_step=exc.step, diverged_quantity=exc.quantity)
        io.write_json(run_dir / "metrics.json", metrics)
        raise
    except (RunInterrupted, KeyboardInterrupt):
        raise
    except Exception as exc:
        metrics.update(status="failed", reason=f"{exc.__class__.__name__}: {exc}", failed_at_step=step)
        io.write_json(run_dir / "metrics.json", metrics)
        raise
    finally:
        if bar is not None:
            bar.close()
        evaluator.close()
        env.close()

    final = {"agent": agent.state_dict(), "config": cfg.to_dict(), "step": step}
    io.write_torch(run_dir / "checkpoint.pt", final)
    metrics["status"] = "complete"
    io.write_json(run_dir / "metrics.json", metrics)
    # The snapshot (which includes the replay buffer) is only needed to resume.
    for name in (SNAPSHOT, SNAPSHOT_PREV):
        (run_dir / name).unlink(missing_ok=True)
    return RunResult(run_dir, "complete", metrics)


def check_finite(info: dict, step: int) -> None:
    """Divergence guard: one host sync per step for all scalars of the update."""
    values = torch.cat([v.reshape(-1) for v in info.values()])
    if not bool(torch.isfinite(values).all()):
        bad = [k for k, v in info.items() if not bool(torch.isfinite(v).all())]
        raise DivergenceError(step, ", ".join(bad))
