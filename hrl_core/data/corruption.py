"""Dataset corruption as pure functions (same rules as Phase I).

``remove_top_k`` deletes the k% highest-return trajectories, the corruption whose
recovery Phase II studies; ``add_reward_noise`` adds Gaussian noise to rewards.
Neither mutates its input.
"""

from __future__ import annotations

import math

import numpy as np

from hrl_core.data.d4rl import Transitions
from hrl_core.errors import HrlError


def trajectory_ids(terminals: np.ndarray, timeouts: np.ndarray) -> np.ndarray:
    """Trajectory index of every row; a trajectory ends at a terminal or a timeout.

    Rows after the last end (a cut-off trajectory at the end of the file) form a
    trajectory of their own.
    """
    ends = np.asarray(terminals, dtype=bool) | np.asarray(timeouts, dtype=bool)  # [T]
    # A row belongs to the trajectory numbered by how many ends precede it.
    return np.concatenate([[0], np.cumsum(ends[:-1])]).astype(np.int64)


def trajectory_returns(rewards: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Undiscounted return of each trajectory, indexed by trajectory id."""
    return np.bincount(ids, weights=np.asarray(rewards, dtype=np.float64))


def top_k_mask(rewards, terminals, timeouts, k: float) -> np.ndarray:
    """Boolean row mask keeping all but the ceil(n*k/100) highest-return trajectories."""
    if not 0 <= k < 100:
        raise HrlError(f"remove_top_k={k} is outside [0, 100); use a percentage such as 0, 30 or 60")
    ids = trajectory_ids(terminals, timeouts)
    returns = trajectory_returns(rewards, ids)  # [n_traj]
    n_remove = math.ceil(len(returns) * k / 100)
    if n_remove == 0:
        return np.ones(len(ids), dtype=bool)
    # Stable sort on the negated return: ties are broken by file order, so the
    # removal is deterministic and identical to Phase I's for the same file.
    order = np.argsort(-returns, kind="stable")
    removed = np.zeros(len(returns), dtype=bool)
    removed[order[:n_remove]] = True
    return ~removed[ids]


def remove_top_k(data: Transitions, k: float) -> Transitions:
    """Copy of ``data`` without its k% highest-return trajectories (k=0: clean copy)."""
    mask = top_k_mask(data.rewards, data.terminals, data.timeouts, k)
    out = data.subset(mask)
    ids = trajectory_ids(data.terminals, data.timeouts)
    out.provenance["corruption"] = {
        "remove_top_k": float(k),
        "trajectories_before": int(ids.max() + 1) if len(ids) else 0,
        "trajectories_removed": int(math.ceil((ids.max() + 1) * k / 100)) if len(ids) else 0,
        "transitions_before": len(data),
        "transitions_after": len(out),
    }
    return out


def add_reward_noise(data: Transitions, std: float, seed: int) -> Transitions:
    """Copy of ``data`` with N(0, std^2) noise added to every reward (std=0: unchanged)."""
    if std < 0:
        raise HrlError(f"reward_noise_std={std} is negative; use 0 for no noise")
    out = data.subset(np.ones(len(data), dtype=bool))
    if std > 0:
        rng = np.random.default_rng(seed)
        out.rewards = (out.rewards + rng.normal(0.0, std, size=len(out))).astype(np.float32)
    out.provenance["corruption"] = {
        **out.provenance.get("corruption", {}),
        "reward_noise_std": float(std),
        "noise_seed": seed,
    }
    return out
