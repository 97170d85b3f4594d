"""Phase II: fine-tune a Phase I checkpoint online with hybrid replay.

One run = one grid cell. The loop owns the environment and the data:

1. find the inputs (Phase I checkpoint, dataset file) and compare the run's identity
   with what its folder holds (``hrl_core.run.folder``); take the folder's lock;
2. load the (corrupted) offline data and the checkpoint, widen the critic to N
   members (0-1 from the checkpoint, the rest fresh);
3. evaluate the loaded policy (step 0);
4. each online step: the explorer acts and measures the ensemble disagreement
   std(Q)(s, a) at the action taken; the transition is stored with r + bonus
   (``bonus_type=ensemble``) or r (``none``); one gradient update on a hybrid batch;
5. every ``eval_interval`` steps: evaluate, append to ``metrics.json``, write a
   resume snapshot.

Running the same cell again resumes from the last snapshot; see ``hrl_core.run.folder``
for the folder's files.
"""

from __future__ import annotations

import datetime as _dt
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hrl_core.data import HybridSampler, OfflineData, ReplayBuffer
from hrl_core.errors import AlreadyComplete, DivergenceError, HrlError
from hrl_core.rl import agents
from hrl_core.rl.ensemble import perturb_fresh_members, warmstart_fresh_members
from hrl_core.rl.envs import dataset_spec, get_env_state, make_env, set_env_state
from hrl_core.rl.evaluation import Evaluator, eval_seeds
from hrl_core.rl.explorers import make_explorer
from hrl_core.rl.perf import tune_allocator
from hrl_core.run import files, folder, phase1
from hrl_core.run.config import FinetuneConfig
from hrl_core.run.folder import RunResult
from hrl_core.run.lock import LOCK_NAME, RunLocked, describe, live_holder
from hrl_core.run.phase1 import load_phase1_file
from hrl_core.run.runtime import (
    ThreadGovernor,
    check_finite,
    check_memory,
    check_writable,
    progress_bar,
    resolve_device,
    seed_everything,
    versions,
    versions_changed,
)

FLOAT32_MAX = float(np.finfo(np.float32).max)  # rewards are stored as float32


class RunInterrupted(HrlError):
    """SIGTERM / SIGINT: a snapshot was written; the same command resumes."""


def load_offline(cfg: FinetuneConfig, dataset_file=None):
    """The offline data exactly as Phase I trained on it (same corruption)."""
    from hrl_core.data.sources import load_offline_data, locate_source

    file = dataset_file or locate_source(cfg.env, cfg.dataset_source)
    return load_offline_data(file, cfg.remove_top_k, cfg.reward_noise_std, cfg.corruption_seed, cfg.batch_size)


# --------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------
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
        self.env = {"reward": 0.0, "bonus": 0.0, "disagreement": 0.0, "steps": 0, "multiplier": 0.0}
        self.episode_returns: list[float] = []

    def add_env_step(self, reward: float, bonus: float, disagreement: float, multiplier: float | None = None) -> None:
        if multiplier is not None:  # runs with a bonus: bonus / (lambda * std(Q)), the normalizer's factor
            self.env["multiplier"] += multiplier
        self.env["reward"] += float(reward)
        self.env["bonus"] += bonus
        self.env["disagreement"] += disagreement
        self.env["steps"] += 1

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
            if self.env["multiplier"]:
                out["bonus_multiplier"] = self.env["multiplier"] / n_env
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

    def load_state_dict(self, s: dict, device: torch.device) -> None:
        # Snapshots load on the CPU; the sums join the agent's tensors on its device.
        self.sums = {k: v.to(device) for k, v in s["sums"].items()}
        self.updates = s["updates"]
        # snapshots written before the multiplier was logged lack its sum
        self.env, self.episode_returns = {"multiplier": 0.0, **s["env"]}, list(s["episode_returns"])


# --------------------------------------------------------------------------------------
# The run's state: everything a snapshot holds, saved and restored in one place
# --------------------------------------------------------------------------------------
@dataclass
class Parts:
    """What the loop works with, built once per run."""

    agent: object  # hrl_core.rl.agents.EnsembleAgent
    buffer: ReplayBuffer  # online transitions (rewards include the bonus)
    sampler: HybridSampler  # online + offline batches
    env: object  # the training environment
    evaluator: Evaluator  # deterministic evaluation environments
    explorer: object  # hrl_core.rl.explorers.Explorer
    threads: ThreadGovernor  # torch CPU threads (fixed, or following the machine's load)


@dataclass
class RunState:
    """The loop's own variables; :meth:`snapshot` and :meth:`restore` are exact inverses."""

    metrics: dict
    step: int = 0
    obs: np.ndarray | None = None
    episode_return: float = 0.0
    episode_len: int = 0
    elapsed_before: float = 0.0  # wall time of earlier sessions of this run
    window: Window = field(default_factory=Window)
    t0: float = field(default_factory=time.perf_counter)

    def wall(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.t0

    def snapshot(self, parts: Parts, ident: dict, rng: dict | None = None) -> dict:
        """``rng``: the run's generator states (python, numpy, torch) when they are not the
        process's: a population's cell keeps its own (``hrl_core.run.population``)."""
        np_state = np.random.get_state()
        return {
            "step": self.step,
            "identity": ident,
            "settings": ident["settings"],
            "agent": parts.agent.state_dict(),
            "buffer": parts.buffer.state_dict(),
            "window": self.window.state_dict(),
            "metrics": self.metrics,
            "wall_time": self.wall(),
            "env": get_env_state(parts.env),
            "obs": torch.as_tensor(self.obs),
            "episode": (self.episode_return, self.episode_len),
            "explorer": parts.explorer.state_dict(),
            "rng": rng
            or {
                "python": random.getstate(),
                "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
        }

    @classmethod
    def restore(cls, snap: dict, parts: Parts, seed: int) -> RunState:
        device = parts.agent.device
        parts.agent.load_state_dict(snap["agent"])
        parts.buffer.load_state_dict(snap["buffer"])
        # snapshots written before explorers had their own key kept the state under "bonus_scale"
        parts.explorer.load_state_dict(snap["explorer"] if "explorer" in snap else snap.get("bonus_scale"))
        parts.env.reset(seed=seed)  # arms the wrappers; the state is then overwritten
        set_env_state(parts.env, snap["env"])
        state = cls(metrics=snap["metrics"], step=snap["step"], obs=snap["obs"].numpy(),
                    elapsed_before=snap["wall_time"])  # fmt: skip
        state.episode_return, state.episode_len = snap["episode"]
        state.window.load_state_dict(snap["window"], device)
        state.metrics["status"] = "running"
        random.setstate(snap["rng"]["python"])
        np.random.set_state(tuple(snap["rng"]["numpy"]))
        torch.set_rng_state(snap["rng"]["torch"])
        if torch.cuda.is_available() and snap["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state_all(snap["rng"]["cuda"])
        return state

    @classmethod
    def fresh(cls, cfg: FinetuneConfig, parts: Parts) -> RunState:
        obs, _ = parts.env.reset(seed=cfg.seed)
        return cls(metrics={"run_name": cfg.run_name, "status": "running", "step": []}, obs=obs)


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
def finetune(cfg: FinetuneConfig, restart: bool = False, progress: bool = True, grid_cell: bool = False,
             stop_at: int | None = None) -> RunResult:  # fmt: skip
    """Run (or resume) one fine-tuning cell; returns when it is complete.

    ``grid_cell``: a complete run raises :class:`AlreadyComplete` instead of being returned,
    so a grid never re-records a cell that another process finished meanwhile. ``stop_at``:
    stop (status ``stopped``, resumable from its snapshot) once this many online steps are done,
    as the same run would have been at that step; used to check that code reproduces a
    committed run (``hrl_core.lab.reuse``) without running it to the end.

    A population (``hrl_core.run.population``) runs the same three stages for each of its cells:
    :func:`open_run`, :func:`start_run` under the folder's lock, then its own loop."""
    opened = open_run(cfg, restart, grid_cell)
    if isinstance(opened, RunResult):
        return opened
    with folder.take_folder(opened.run_dir) as lock:
        started = start_run(opened, lock)
        if isinstance(started, RunResult):
            return started
        try:
            result = train(cfg, opened.run_dir, started.parts, started.state, opened.ident, lock, started.logger,
                           progress, stop_at)  # fmt: skip
        finally:
            started.logger.close()
        result.replay, result.offline = started.parts.buffer, started.offline
        return result


@dataclass
class Opened:
    """A run whose inputs and folder were checked, not yet locked: what :func:`start_run` needs."""

    cfg: FinetuneConfig
    run_dir: Path
    device: torch.device
    inputs: object  # folder.Inputs
    ident: dict
    data: object  # the corrupted offline data
    ckpt: object  # the Phase I checkpoint, read
    restart: bool
    grid_cell: bool


def replay_need(cfg: FinetuneConfig) -> tuple[str, int]:
    """What a run's online replay buffer preallocates: (description, bytes)."""
    spec = dataset_spec(cfg.env)
    row = ReplayBuffer.row_bytes(spec.obs_dim, spec.act_dim)
    return f"a replay buffer of {cfg.online_steps:,} rows x {row} bytes", cfg.online_steps * row


def open_run(cfg: FinetuneConfig, restart: bool = False, grid_cell: bool = False) -> Opened | RunResult:
    """Every check of a run's input before its folder is touched: the settings (in FinetuneConfig),
    the device, the logger's extra, the files and what the folder holds, then the data and the
    checkpoint themselves (finite, the environment's sizes). A complete run is returned as such."""
    save_root = Path(cfg.save_dir)
    check_writable(save_root)
    run_dir = save_root / cfg.run_name
    device = resolve_device(cfg.device)
    from hrl_core.run.loggers import require

    require(cfg.logger)
    check_memory([replay_need(cfg)], device, f"{cfg.run_name}: online_steps={cfg.online_steps:,} ")
    inputs = folder.resolve_inputs(cfg)  # the Phase I checkpoint first, then the data file
    ident = folder.identity(cfg, inputs)
    found = folder.existing(run_dir, ident)
    if found.status == "other" and not restart:
        raise found.conflict_error(run_dir)
    if found.status == "damaged" and not restart:
        raise found.damaged_error(run_dir)
    if found.status == "complete" and not restart:
        return _already_complete(cfg, run_dir, grid_cell)
    if found.status == "diverged" and not restart:
        raise HrlError(
            f"{run_dir} holds a run that diverged; pass --restart (perhaps with other settings) to run it again"
        )
    holder = live_holder(run_dir)
    if holder is not None:  # before reading the data: another process is on it
        raise RunLocked(f"{run_dir} is being written by {describe(holder)}; wait for it to finish or stop that process")
    spec = dataset_spec(cfg.env)
    data = load_offline(cfg, inputs.dataset)
    ckpt = load_phase1_file(inputs, cfg.algo, spec.obs_dim, spec.act_dim)
    return Opened(cfg, run_dir, device, inputs, ident, data, ckpt, restart, grid_cell)


def resume_entry(old: dict, config: dict, step: int, run_dir: Path) -> dict:
    """The ``resumed`` entry of a run taken up again. ``versions`` then names the code and
    libraries of the last part; when those of the earlier part differ (another machine, a
    new commit), the entry keeps them (``versions_before``: key -> [before, now]) and a note
    says so, so a run made by two code versions never reads as one."""
    entry = {"at_step": step, "time": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}
    before, now = old.get("versions") or {}, config.get("versions") or {}
    changed = versions_changed(before, now)
    if before and changed:
        entry["versions_before"] = changed
        what = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items())
        print(f"hrl: note: {run_dir.name} resumes at step {step} under other versions than the "
              f"steps before it ran with ({what}); config.json keeps both", file=sys.stderr)  # fmt: skip
    return entry


def _already_complete(cfg, run_dir: Path, grid_cell: bool) -> RunResult:
    message = f"{cfg.run_name}: already complete in {run_dir}; pass --restart to run it again"
    if grid_cell:
        raise AlreadyComplete(message)
    print(message)
    return RunResult(run_dir, "already_complete", files.read_json(run_dir / folder.METRICS))


@dataclass
class Started:
    """A run under its lock, built and restored, ready for its loop."""

    parts: Parts
    state: RunState
    logger: object  # hrl_core.run.loggers
    offline: object  # OfflineData as trained on
    config: dict  # its config.json


def start_run(opened: Opened, lock) -> Started | RunResult:
    """Under the folder's lock: look again, build the run's parts, write config.json, restore
    its snapshot (or start it fresh)."""
    cfg, run_dir, ident, restart = opened.cfg, opened.run_dir, opened.ident, opened.restart
    # Under the lock, look again: another process may have finished the run meanwhile.
    found = folder.existing(run_dir, ident)
    if found.status == "complete" and not restart:
        return _already_complete(cfg, run_dir, opened.grid_cell)
    allocator_tuned = tune_allocator()
    threads = ThreadGovernor(cfg.threads)
    snapshot = None
    if found.status in ("running", "failed") and not restart:
        snapshot = folder.load_snapshot(run_dir)
        # Snapshots written before identities were recorded were checked via config.json.
        if snapshot is not None and folder.identity_differences(snapshot.get("identity", ident), ident):
            raise HrlError(
                f"{run_dir} holds an unfinished run with different settings; pass --restart to discard it "
                "or use another --save_dir"
            )
    if restart:
        folder.clear_folder(run_dir, keep=(LOCK_NAME,))

    data, ckpt = opened.data, opened.ckpt
    parts, offline, warmstart = build_parts(cfg, opened.device, data, ckpt, threads, fresh=snapshot is None)
    config = run_record(cfg, ident, parts, data, ckpt, opened.device, warmstart, allocator_tuned)
    if snapshot is not None:
        old = files.read_json(run_dir / folder.CONFIG) if (run_dir / folder.CONFIG).exists() else {}
        config["started"] = old.get("started", config["started"])
        config["warmstart"] = old.get("warmstart")
        if old.get("population"):  # the sessions it spent in populations (hrl_core.run.population)
            config["population"] = old["population"]
        config["resumed"] = old.get("resumed", []) + [resume_entry(old, config, snapshot["step"], run_dir)]
    files.write_json(run_dir / folder.CONFIG, config)
    kind = data.provenance.get("kind", "")
    if kind.startswith("not D4RL") or "unverified" in kind:
        print(f"hrl: note: dataset {data.provenance['path']} is {kind}", file=sys.stderr)
    if ckpt.provenance["substituted"]:
        print(f"hrl: note: {ckpt.provenance['substitution_note']}", file=sys.stderr)

    from hrl_core.run.loggers import make_logger

    logger = make_logger(cfg, run_dir, config)
    try:
        state = RunState.restore(snapshot, parts, cfg.seed) if snapshot is not None else RunState.fresh(cfg, parts)
    except BaseException:
        logger.close()
        raise
    return Started(parts, state, logger, offline, config)


def build_parts(cfg: FinetuneConfig, device, data, ckpt, threads: ThreadGovernor, fresh: bool):
    """The agent (Phase I weights, N members), replay, envs and explorer of a run.

    Returns (parts, offline data, warm-start record). The order of construction is part of
    a seed's result (each draws random numbers): keep it."""
    spec = dataset_spec(cfg.env)
    seed_everything(cfg.seed)
    overrides = cfg.agent_settings(agents.get(cfg.algo))
    overrides.pop("n_ensemble", None)
    if "compile_critic" in agents.settings_of(cfg.algo):  # an algorithm with a compilable pass (CQL)
        overrides["compile_critic"] = cfg.compile_critic(device.type)
    agent = agents.make_agent(cfg.algo, spec.obs_dim, spec.act_dim, cfg.n_ensemble, device, **overrides)
    phase1.load_into(agent, ckpt.state)
    if cfg.member_init == "perturb":
        perturb_fresh_members(agent.critic, cfg.perturb_scale)
        agent.critic_target.load_state_dict(agent.critic.state_dict())  # fresh members: same in target
        phase1.double_q_into(agent.critic_target, ckpt.state["critic_target"])
    offline = OfflineData(data, device)
    buffer = ReplayBuffer(cfg.online_steps, spec.obs_dim, spec.act_dim, device)
    sampler = HybridSampler(offline, buffer, cfg.batch_size, cfg.online_ratio)
    warmstart = None
    if cfg.member_init == "warmstart" and fresh:
        losses = warmstart_fresh_members(agent, sampler.sample, cfg.warmstart_steps)
        warmstart = {"steps": cfg.warmstart_steps, "loss_first": losses[0] if losses else None,
                     "loss_last": losses[-1] if losses else None}  # fmt: skip
        print(f"warm start: {cfg.warmstart_steps} offline steps on the fresh members, loss {warmstart}")
    # Data that brings its own environment and reference scores (Minari: -v5) is
    # evaluated there; otherwise the D4RL v2 counterparts (-v4) and D4RL's scores.
    env_id = data.provenance.get("eval_env_id") or spec.env_id
    parts = Parts(
        agent=agent,
        buffer=buffer,
        sampler=sampler,
        env=make_env(cfg.env, env_id),
        evaluator=Evaluator(cfg.env, cfg.eval_episodes, cfg.seed, env_id, data.provenance.get("ref_scores")),
        explorer=make_explorer(cfg),
        threads=threads,
    )
    return parts, offline, warmstart


def run_record(cfg: FinetuneConfig, ident: dict, parts: Parts, data, ckpt, device, warmstart, allocator_tuned) -> dict:
    """The run's config.json (layout: hrl_core.run.folder)."""
    spec = dataset_spec(cfg.env)
    ref_scores = data.provenance.get("ref_scores")
    return {
        "run_name": cfg.run_name,
        "phase": "II (online fine-tuning)",
        "settings": cfg.to_dict(),
        "identity": ident,
        "agent_config": dict(vars(parts.agent.cfg)),
        "environment": {
            "env_id": data.provenance.get("eval_env_id") or spec.env_id,
            "reference_scores": ref_scores or [spec.ref_min_score, spec.ref_max_score],
            "eval_seeds": eval_seeds(cfg.seed, cfg.eval_episodes),
        },
        "provenance": {"dataset": data.provenance, "phase1_checkpoint": ckpt.provenance},
        "versions": versions(),
        "device": str(device),
        "torch_threads": parts.threads.threads,
        "threads_policy": parts.threads.policy,
        "speed": {"allocator_tuned": allocator_tuned, "compiled_cql_critic": cfg.compile_critic(device.type)},
        "warmstart": warmstart,
        "command": sys.argv,
        "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def evaluate_and_save(cfg: FinetuneConfig, run_dir: Path, parts: Parts, state: RunState, ident: dict, lock, logger,
                      bar=None, rng: dict | None = None, prefix: str = "") -> None:  # fmt: skip
    """Evaluate the policy, append the point to metrics.json, write the resume snapshot.
    ``rng``: the run's generator states when they are not the process's (a population's cell)."""
    lock.check()  # never write into a folder another process has taken over
    t_eval = time.perf_counter()
    result = parts.evaluator.run(lambda o: parts.agent.act(o, deterministic=True))
    window = state.window.summary()
    point = {"step": state.step, "train_step": state.step, **result, **window}
    point["eval_time"] = time.perf_counter() - t_eval
    point["wall_time"] = state.wall()
    point["online_buffer_size"] = parts.buffer.size
    point["torch_threads"] = parts.threads.threads
    point["snapshot_time"] = None  # filled in below, once the snapshot is written
    append_point(state.metrics, point)
    state.window = Window()
    t_save = time.perf_counter()
    folder.write_snapshot(run_dir, state.snapshot(parts, ident, rng))
    # Snapshot cost lands between evaluation points; logged so timing is honest.
    state.metrics["snapshot_time"][-1] = time.perf_counter() - t_save
    files.write_json(run_dir / folder.METRICS, state.metrics)
    lock.refresh()
    logger.log_point(state.step, point)
    if bar is not None:
        bar.set_postfix(norm_return=f"{result['normalized_return']:.1f}", refresh=False)
    log = (
        f"{prefix}step {state.step:>7d} | return {result['normalized_return']:6.1f} "
        f"(raw {result['raw_return_mean']:.0f} ± {result['raw_return_std']:.0f})"
    )
    if point.get("critic_loss_avg") is not None:
        log += (
            f" | disagreement {point['ensemble_disagreement']:.3f} | bonus {point['bonus_mean']:.3f}"
            f" vs reward {point['reward_mean']:.3f} | critic_loss {point['critic_loss_avg']:.3f}"
            f" | {point['wall_time']:.0f} s"
        )
    if bar is not None:
        bar.write(log)
    else:
        print(log, flush=True)


def collect(cfg: FinetuneConfig, parts: Parts, state: RunState, action: np.ndarray) -> None:
    """One environment step of a run with the action its explorer chose (and measured)."""
    explorer, buffer = parts.explorer, parts.buffer
    has_bonus = cfg.bonus_type == "ensemble"
    if not np.isfinite(action).all():
        raise DivergenceError(state.step + 1, "the policy's action", has_bonus)
    if not np.isfinite(explorer.disagreement):
        raise DivergenceError(state.step + 1, "Q-values (ensemble disagreement)", has_bonus)
    next_obs, reward, terminated, truncated, _ = parts.env.step(action)
    bonus = explorer.bonus(reward)
    if not abs(reward + bonus) <= FLOAT32_MAX:  # inf, NaN or beyond what the buffer stores
        what = "the exploration bonus (reward + bonus overflows float32)" if bonus else "the environment's reward"
        raise DivergenceError(state.step + 1, what, has_bonus)
    buffer.add(state.obs, action, reward, bonus, next_obs, terminated)
    state.window.add_env_step(reward, bonus, explorer.disagreement, explorer.multiplier)
    state.episode_return += float(reward)
    state.episode_len += 1
    if terminated or truncated:
        state.window.episode_returns.append(state.episode_return)
        state.obs, _ = parts.env.reset()
        state.episode_return, state.episode_len = 0.0, 0
    else:
        state.obs = next_obs


def record_failure(run_dir: Path, state: RunState, exc: BaseException, lock) -> None:
    """metrics.json says how a run ended when it did not complete (diverged / failed)."""
    if isinstance(exc, DivergenceError):
        state.metrics.update(status="diverged", diverged_at_step=exc.step, diverged_quantity=exc.quantity)
        files.write_json(run_dir / folder.METRICS, state.metrics)
    elif isinstance(exc, Exception) and not isinstance(exc, RunInterrupted) and not lock.lost:
        state.metrics.update(status="failed", reason=f"{exc.__class__.__name__}: {exc}", failed_at_step=state.step)
        try:
            files.write_json(run_dir / folder.METRICS, state.metrics)
        except HrlError:
            pass  # the disk is full: the error raised says so, the last snapshot stays


def finish(cfg: FinetuneConfig, run_dir: Path, parts: Parts, state: RunState, lock, logger) -> RunResult:
    """A run that reached its last step: its checkpoint, status complete, snapshots removed."""
    lock.check()
    final = {"agent": parts.agent.state_dict(), "config": cfg.to_dict(), "step": state.step}
    files.write_torch(run_dir / folder.CHECKPOINT, final)
    state.metrics["status"] = "complete"
    files.write_json(run_dir / folder.METRICS, state.metrics)
    folder.clear_snapshots(run_dir)  # the snapshot (with the replay buffer) is only needed to resume
    logger.finish(state.metrics)
    return RunResult(run_dir, "complete", state.metrics)


def interrupt(run_dir: Path, parts: Parts, state: RunState, ident: dict, lock, signal_name: str, evaluated: bool,
              rng: dict | None = None) -> RunInterrupted:  # fmt: skip
    """SIGTERM/SIGINT: a snapshot at this step (unless the evaluation just wrote one); the error to raise."""
    if not evaluated:
        lock.check()
        folder.write_snapshot(run_dir, state.snapshot(parts, ident, rng))
    files.write_json(run_dir / folder.METRICS, {**state.metrics, "interrupted_at_step": state.step})
    return RunInterrupted(
        f"{signal_name} received: snapshot written at step {state.step} in {run_dir}; "
        "run the same command again to resume"
    )


def train(cfg: FinetuneConfig, run_dir: Path, parts: Parts, state: RunState, ident: dict, lock, logger,
          progress: bool, stop_at: int | None = None) -> RunResult:  # fmt: skip
    """The online loop: act, store, update; evaluate and snapshot every ``eval_interval``."""
    agent, explorer = parts.agent, parts.explorer
    end = cfg.online_steps if stop_at is None else min(stop_at, cfg.online_steps)
    bar = None
    try:
        with _Signals() as signals:
            if state.step == 0 and not state.metrics["step"]:
                evaluate_and_save(cfg, run_dir, parts, state, ident, lock, logger)  # the Phase I policy
            bar = progress_bar(cfg.online_steps, cfg.run_name, progress, initial=state.step)
            if state.metrics["normalized_return"]:
                bar.set_postfix(norm_return=f"{state.metrics['normalized_return'][-1]:.1f}", refresh=False)
            while state.step < end:
                # Collect one transition; the explorer adds the bonus (or not).
                collect(cfg, parts, state, explorer.act(agent, state.obs))

                # One gradient update on a hybrid batch.
                batch = parts.sampler.sample()
                info = agent.update(batch)
                learned = explorer.update(agent, batch)  # an explorer that learns (e.g. RND) trains here
                if learned:
                    info = {**info, **{f"explorer_{k}": v for k, v in learned.items()}}
                check_finite(info, state.step + 1, cfg.bonus_type == "ensemble")
                state.window.add_update(info)
                state.step += 1
                bar.update(1)
                parts.threads.maybe_adjust()

                evaluated = state.step % cfg.eval_interval == 0 or state.step == cfg.online_steps
                if evaluated:
                    evaluate_and_save(cfg, run_dir, parts, state, ident, lock, logger, bar)
                if signals.received:
                    raise interrupt(run_dir, parts, state, ident, lock, signals.received, evaluated)
    except BaseException as exc:
        record_failure(run_dir, state, exc, lock)
        raise
    finally:
        if bar is not None:
            bar.close()
        parts.evaluator.close()
        parts.env.close()

    if state.step < cfg.online_steps:  # stop_at: the snapshot of that step stays, the run resumes from it
        return RunResult(run_dir, "stopped", state.metrics)
    return finish(cfg, run_dir, parts, state, lock, logger)
