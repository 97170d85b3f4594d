"""``hrl data generate``: a D4RL-layout "medium" dataset made here, with no network.

D4RL's recipe for "medium": train a SAC policy online until it reaches about one
third of expert performance, then roll out its stochastic policy. Two ways here:

- **shipped policy** (default): the package carries, for each dataset, a behaviour
  policy trained by this very command (``--from_scratch --save_policy``) at the full
  budget until it reached the medium target; it is rolled out in seconds. Its training
  record (steps, seed, measured score) is stored in the policy file and copied into
  the dataset's HDF5 attributes.
- ``--from_scratch``: SAC is the project's CQL agent with the penalty weight 0 (two
  critics, learned temperature), trained in the Gymnasium environment until
  ``MEDIUM_TARGET`` normalized return or ``max_train_steps``, whichever comes first.

The output passes the same reader as the real D4RL files, and every run that uses it
says ``generated``.
"""

from __future__ import annotations

import copy
import datetime as _dt
import os
import tempfile
import time
from importlib import resources
from pathlib import Path

import h5py
import numpy as np
import torch

from hrl_core.data.buffers import ReplayBuffer
from hrl_core.errors import HrlError
from hrl_core.rl.agents import make_agent
from hrl_core.rl.envs import dataset_spec, make_env, normalized_score
from hrl_core.rl.evaluation import Evaluator
from hrl_core.rl.networks import TanhGaussianPolicy
from hrl_core.rl.perf import tune_allocator
from hrl_core.run.runtime import ThreadGovernor, check_finite, progress_bar, seed_everything

MEDIUM_TARGET = 100.0 / 3  # D4RL "medium": about a third of expert normalized return
QUICK = {"n_transitions": 50_000, "max_train_steps": 15_000, "random_steps": 2_000, "eval_interval": 5_000}
FULL = {"n_transitions": 1_000_000, "max_train_steps": 500_000, "random_steps": 10_000, "eval_interval": 10_000}
TIME_LIMIT = 1_000  # episode steps of HalfCheetah-v4 and Hopper-v4 (gymnasium registration, D4RL)
FINAL_EVAL_EPISODES = 20  # the kept policy's re-check on fresh episode seeds
POLICY_PACKAGE = "hrl_core.data.policies"  # shipped behaviour policies: <dataset>.pt


# --------------------------------------------------------------------------------------
# Training a behaviour policy (--from_scratch)
# --------------------------------------------------------------------------------------
def train_sac(dataset: str, max_train_steps: int, random_steps: int, eval_interval: int, target: float,
              seed: int, batch_size: int = 256, progress: bool = True, threads: int | None = None):  # fmt: skip
    """Online SAC until ``target`` normalized return or the step budget.

    Returns (steps run, best, history of (step, score)) where ``best`` is
    ``{"step", "score", "actor"}`` of the best evaluation: SAC on Hopper often reaches
    the medium level and then falls back for a long while (measured here: 31.7 at
    50,000 steps, 10-17 from 70,000 to 160,000), so the policy kept is the best one
    evaluated, not the last."""
    spec = dataset_spec(dataset)
    agent = make_agent("cql", spec.obs_dim, spec.act_dim, 2, cql_alpha=0.0)  # SAC
    buffer = ReplayBuffer(max_train_steps, spec.obs_dim, spec.act_dim)
    env = make_env(dataset)
    evaluator = Evaluator(dataset, 5, seed)
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    score, step, history, t0 = -np.inf, 0, [], time.time()
    best = {"step": 0, "score": -np.inf, "actor": None}
    governor = ThreadGovernor(threads)  # None: follow the machine's load
    bar = progress_bar(max_train_steps, f"SAC {dataset}", progress)
    for step in range(1, max_train_steps + 1):
        action = env.action_space.sample() if step <= random_steps else agent.act(obs)
        nxt, reward, terminated, truncated, _ = env.step(action)
        buffer.add(obs, action, reward, 0.0, nxt, terminated)
        obs = env.reset()[0] if terminated or truncated else nxt
        if buffer.size >= batch_size:
            idx = buffer.sample_idx(batch_size)
            info = agent.update({k: v[idx] for k, v in buffer.tensors.items()})
            check_finite(info, step)
        governor.maybe_adjust()
        bar.update(1)
        if step % eval_interval == 0:
            score = evaluator.run(lambda o: agent.act(o, deterministic=True))["normalized_return"]
            history.append((step, float(score)))
            if score > best["score"]:
                best = {"step": step, "score": float(score), "actor": copy.deepcopy(agent.actor).eval()}
            bar.write(f"SAC {dataset} step {step}: normalized return {score:.1f} (target {target:.1f}, best "
                      f"{best['score']:.1f} at {best['step']}), {time.time() - t0:.0f} s")  # fmt: skip
            if score >= target:
                break
    bar.close()
    evaluator.close()
    env.close()
    if best["actor"] is None:  # budget shorter than one evaluation interval: the last actor
        best = {"step": step, "score": float(score), "actor": copy.deepcopy(agent.actor).eval()}
    return step, best, history


@torch.no_grad()
def _greedy(actor: TanhGaussianPolicy, obs: np.ndarray) -> np.ndarray:
    return actor.deterministic(torch.as_tensor(obs, dtype=torch.float32)).numpy()  # [B, a]


def save_policy(actor: TanhGaussianPolicy, path: Path, record: dict) -> Path:
    """The actor's weights (float32) and its training record, loadable with weights_only=True."""
    from hrl_core.run import files

    state = {k: v.detach().cpu().float().clone() for k, v in actor.state_dict().items()}
    files.write_torch(Path(path), {"actor": state, "record": record})
    return Path(path)


def shipped_policy_path(dataset: str) -> Path:
    return Path(str(resources.files(POLICY_PACKAGE) / f"{dataset}.pt"))


def load_policy(path: Path, dataset: str) -> tuple[TanhGaussianPolicy, dict]:
    """A behaviour policy file -> (actor, its training record)."""
    from hrl_core.run.phase1 import load_state

    if not Path(path).exists():
        raise HrlError(
            f"no behaviour policy at {path}; train one with `hrl data generate {dataset} --from_scratch "
            f"--save_policy {path}`"
        )
    blob = load_state(Path(path))
    spec = dataset_spec(dataset)
    actor = TanhGaussianPolicy(spec.obs_dim, spec.act_dim)
    try:
        actor.load_state_dict(blob["actor"])
    except (KeyError, RuntimeError) as exc:
        raise HrlError(f"{path} is not a {dataset} behaviour policy ({exc.__class__.__name__})") from None
    return actor.eval(), dict(blob.get("record", {}))


# --------------------------------------------------------------------------------------
# Rolling a policy out in D4RL's layout
# --------------------------------------------------------------------------------------
@torch.no_grad()
def rollout(actor: TanhGaussianPolicy, dataset: str, n_transitions: int, seed: int, n_envs: int = 10):
    """Stochastic-policy transitions in D4RL's layout, ``n_envs`` episodes stepped together
    with one batched policy call per step; trajectories are stored one after another
    (time limit 1,000 -> timeouts; the file's last row ends a trajectory)."""
    spec = dataset_spec(dataset)
    envs = [make_env(dataset) for _ in range(n_envs)]
    obs = np.stack([env.reset(seed=seed + 1 + i)[0] for i, env in enumerate(envs)])
    current = [[] for _ in envs]  # per env: rows of its running episode
    episodes, total = [], 0
    while total < n_transitions:
        actions = actor.sample(torch.as_tensor(obs, dtype=torch.float32))[0].numpy()
        for i, env in enumerate(envs):
            nxt, reward, terminated, truncated, _ = env.step(actions[i])
            current[i].append((obs[i].copy(), actions[i], reward, nxt, terminated, truncated and not terminated))
            if terminated or truncated:
                episodes.append(current[i])
                total += len(current[i])
                current[i] = []
                nxt, _ = env.reset()
            obs[i] = nxt
    for env in envs:
        env.close()
    rows = [row for ep in episodes for row in ep][:n_transitions]
    out = {
        "observations": np.stack([r[0] for r in rows]).astype(np.float32),
        "actions": np.stack([r[1] for r in rows]).astype(np.float32),
        "rewards": np.array([r[2] for r in rows], np.float32),
        "next_observations": np.stack([r[3] for r in rows]).astype(np.float32),
        "terminals": np.array([r[4] for r in rows], bool),
        "timeouts": np.array([r[5] for r in rows], bool),
    }
    out["timeouts"][-1] |= not out["terminals"][-1]  # the file ends a trajectory
    assert out["observations"].shape[1] == spec.obs_dim
    return out


def _last_is_cut(data: dict, ids: np.ndarray) -> bool:
    """Whether the file's last trajectory was cut by the transition budget: it ends in
    neither a terminal nor the time limit (:data:`TIME_LIMIT` steps)."""
    return not bool(data["terminals"][-1]) and int((ids == ids[-1]).sum()) < TIME_LIMIT


def write_dataset(data: dict, dataset: str, out_path: Path, attrs: dict) -> Path:
    """D4RL-layout HDF5, written atomically, with its provenance in the root attributes."""
    from hrl_core.data.corruption import trajectory_ids, trajectory_returns

    ids = trajectory_ids(data["terminals"], data["timeouts"])  # [T]
    rets = trajectory_returns(data["rewards"], ids)  # [n_traj]
    # The data's level is measured on the trajectories that ended (a terminal or the time
    # limit): the last one, cut where the transition budget runs out, is a fragment whose
    # return would drag the mean down (5,000 hopper transitions: 23.3 with it, 26.5 without).
    complete = rets[:-1] if _last_is_cut(data, ids) and len(rets) > 1 else rets
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            for key, value in data.items():
                f.create_dataset(key, data=value, compression="gzip", compression_opts=1)
            f.attrs.update({
                "generator": "hrl data generate",
                "env_id": dataset_spec(dataset).env_id,
                "d4rl_name": dataset,
                "n_transitions": len(data["rewards"]),
                "n_trajectories": len(rets),
                "n_complete_trajectories": len(complete),
                "dataset_mean_normalized_return": float(normalized_score(dataset, complete).mean()),
                "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                "torch": str(torch.__version__),
                **attrs,
            })  # fmt: skip
        os.replace(tmp, out_path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out_path


def generate(dataset: str, out_path: Path, from_scratch: bool = False, quick: bool = False, seed: int = 0,
             progress: bool = True, policy_path: Path | None = None, save_policy_to: Path | None = None,
             threads: int | None = None, **overrides) -> Path:  # fmt: skip
    """Make the dataset file; returns its path.

    Default: roll out the shipped behaviour policy (or ``policy_path``). ``from_scratch``:
    train SAC first (and, with ``save_policy_to``, keep its actor as a policy file)."""
    budget = {**(QUICK if quick else FULL), **{k: v for k, v in overrides.items() if v is not None}}
    tune_allocator()
    seed_everything(seed)
    if from_scratch:
        t0 = time.time()
        steps_run, best, history = train_sac(
            dataset, budget["max_train_steps"], budget["random_steps"], budget["eval_interval"], MEDIUM_TARGET, seed,
            progress=progress, threads=threads,
        )  # fmt: skip
        actor, score = best["actor"], best["score"]
        # The selection above used 5 episodes (and picked the maximum, which flatters it):
        # a fresh evaluation on other episode seeds states the kept policy's level honestly.
        final = Evaluator(dataset, FINAL_EVAL_EPISODES, seed + 10_000)
        recheck = final.run(lambda o: _greedy(actor, o))["normalized_return"]
        final.close()
        record = {
            "policy": "SAC (hrl CQL agent with cql_alpha=0), trained here by hrl data generate --from_scratch; "
            "the best-evaluated actor is kept",
            "sac_train_steps": int(best["step"]),
            "sac_steps_run": int(steps_run),
            "sac_eval_normalized_return": float(score),
            "sac_eval_episodes": 5,
            "recheck_normalized_return": float(recheck),
            "recheck_episodes": FINAL_EVAL_EPISODES,
            "target_normalized_return": MEDIUM_TARGET,
            "reached_target": bool(score >= MEDIUM_TARGET),
            "eval_interval": int(budget["eval_interval"]),
            "max_train_steps": int(budget["max_train_steps"]),
            "train_seed": int(seed),
            "train_seconds": round(time.time() - t0, 1),
            "eval_history": [list(h) for h in history],
            "quick": bool(quick),
        }
        if save_policy_to is not None:
            save_policy(actor, save_policy_to, record)
        origin = "trained from scratch"
    else:
        path = policy_path or shipped_policy_path(dataset)
        actor, record = load_policy(path, dataset)
        shipped = Path(path) == shipped_policy_path(dataset)
        origin = (f"behaviour policy {Path(path).name} shipped with hrl (trained by hrl data generate --from_scratch)"
                  if shipped else f"behaviour policy file {path}")  # fmt: skip
    data = rollout(actor, dataset, budget["n_transitions"], seed)
    attrs = {"policy_origin": origin, "seed": int(seed), "rollout_seed": int(seed), "quick": bool(quick)}
    attrs.update({k: v for k, v in record.items() if k not in ("eval_history", "quick")})
    attrs["eval_history"] = str(record.get("eval_history", []))
    attrs["policy"] = record.get("policy", "unknown") + "; stochastic rollouts"
    return write_dataset(data, dataset, out_path, attrs)


def main_generate(args) -> int:
    from hrl_core.data.sources import generated_path

    out = Path(args.out) if args.out else generated_path(args.dataset)
    path = generate(args.dataset, out, from_scratch=args.from_scratch, quick=args.quick, seed=args.seed,
                    n_transitions=args.transitions, max_train_steps=args.max_train_steps,
                    eval_interval=args.eval_interval,
                    save_policy_to=Path(args.save_policy) if args.save_policy else None,
                    threads=args.threads)  # fmt: skip
    with h5py.File(path) as f:
        a = dict(f.attrs)
    score, target = a.get("sac_eval_normalized_return", float("nan")), a.get("target_normalized_return", 0.0)
    print(f"wrote {path}: {a['n_transitions']} transitions, data mean {a['dataset_mean_normalized_return']:.1f} "
          f"normalized; policy: {a['policy_origin']} (SAC {a.get('sac_train_steps')} steps, eval {score:.1f}, "
          f"target {target:.1f})")  # fmt: skip
    if args.save_policy:
        print(f"policy written to {args.save_policy}")
    return 0
