"""Preallocated tensor buffers and hybrid (online + offline) batch sampling.

Hybrid replay as in RLPD (Ball et al., 2023): every batch mixes
``round(online_ratio * B)`` online transitions with offline ones. Until the online
buffer holds a full batch, batches are all-offline, so the first updates are not
dominated by a handful of repeated online samples.
"""

from __future__ import annotations

import numpy as np
import torch

from hrl_core.data.d4rl import Transitions
from hrl_core.rl.agents.base import Batch

FIELDS = ("obs", "act", "rew", "next_obs", "done")


class OfflineData:
    """The (corrupted) offline dataset as device tensors, sampled uniformly."""

    def __init__(self, data: Transitions, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        as_t = lambda x: torch.as_tensor(np.ascontiguousarray(x), device=self.device)  # noqa: E731
        self.tensors = {
            "obs": as_t(data.observations),  # [T, o]
            "act": as_t(data.actions),  # [T, a]
            "rew": as_t(data.rewards),  # [T]
            "next_obs": as_t(data.next_observations),  # [T, o]
            "done": as_t(data.terminals.astype(np.float32)),  # [T]
        }
        self.size = len(data)

    def sample_idx(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randint(0, self.size, (n,), device=self.device, generator=generator)


class ReplayBuffer:
    """Online transitions in preallocated tensors (capacity = online steps of the run)."""

    @staticmethod
    def row_bytes(obs_dim: int, act_dim: int) -> int:
        """Bytes one stored transition takes (float32: obs, act, reward, next obs, done, env reward, bonus)."""
        return 4 * (2 * obs_dim + act_dim + 4)

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device="cpu"):
        self.device = torch.device(device)
        self.capacity = capacity
        z = lambda *s: torch.zeros(*s, dtype=torch.float32, device=self.device)  # noqa: E731
        self.tensors = {
            "obs": z(capacity, obs_dim),
            "act": z(capacity, act_dim),
            "rew": z(capacity),  # env reward + exploration bonus (bonus_type=ensemble)
            "next_obs": z(capacity, obs_dim),
            "done": z(capacity),
        }
        self.env_rew = z(capacity)  # env reward alone, kept for diagnostics
        self.bonus = z(capacity)  # bonus alone (0 with bonus_type=none)
        self.size = 0

    def add(self, obs, act, env_reward: float, bonus: float, next_obs, terminal: bool) -> None:
        """Store one online step; the stored reward is env_reward + bonus."""
        if self.size >= self.capacity:
            raise RuntimeError("online replay buffer is full; capacity = online_steps")
        i = self.size
        t = self.tensors
        t["obs"][i] = torch.as_tensor(obs, dtype=torch.float32)
        t["act"][i] = torch.as_tensor(act, dtype=torch.float32)
        t["rew"][i] = float(env_reward) + float(bonus)
        t["next_obs"][i] = torch.as_tensor(next_obs, dtype=torch.float32)
        t["done"][i] = float(terminal)
        self.env_rew[i] = float(env_reward)
        self.bonus[i] = float(bonus)
        self.size += 1

    def sample_idx(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randint(0, self.size, (n,), device=self.device, generator=generator)

    def state_dict(self) -> dict:
        """Only the filled part, so snapshots stay small early in a run."""
        n = self.size
        out = {k: v[:n].clone() for k, v in self.tensors.items()}
        out.update(env_rew=self.env_rew[:n].clone(), bonus=self.bonus[:n].clone(), size=n)
        return out

    def load_state_dict(self, state: dict) -> None:
        n = int(state["size"])
        for k in FIELDS:
            self.tensors[k][:n] = state[k].to(self.device)
        self.env_rew[:n] = state["env_rew"].to(self.device)
        self.bonus[:n] = state["bonus"].to(self.device)
        self.size = n


def split_batch_size(batch_size: int, online_ratio: float, online_size: int) -> tuple[int, int]:
    """(n_online, n_offline) for one hybrid batch."""
    if online_size < batch_size:
        return 0, batch_size
    n_online = int(round(online_ratio * batch_size))
    return n_online, batch_size - n_online


class HybridSampler:
    """Draws hybrid batches: online rows first, then offline rows."""

    def __init__(self, offline: OfflineData, online: ReplayBuffer, batch_size: int, online_ratio: float):
        self.offline = offline
        self.online = online
        self.batch_size = batch_size
        self.online_ratio = online_ratio

    def sample(self, generator: torch.Generator | None = None) -> Batch:
        """``generator``: where the indices come from (None: torch's default; a population's cell: its own)."""
        n_on, n_off = split_batch_size(self.batch_size, self.online_ratio, self.online.size)
        off_idx = self.offline.sample_idx(n_off, generator)
        if n_on == 0:
            return {k: v[off_idx] for k, v in self.offline.tensors.items()}
        on_idx = self.online.sample_idx(n_on, generator)
        return {k: torch.cat([self.online.tensors[k][on_idx], self.offline.tensors[k][off_idx]]) for k in FIELDS}
