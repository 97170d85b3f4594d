"""What every Phase II agent shares: actor, Q-ensemble, target ensemble, acting.

Agents follow the d3rlpy / SB3 shape: ``update(batch) -> dict`` of 0-dim tensors
(read them only at log time: no per-step host sync), ``act(obs, deterministic)``,
``state_dict()`` / ``load_state_dict()``. The training loop owns env and data;
exploration during collection belongs to ``hrl_core.rl.explorers``.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from hrl_core.rl.networks import EnsembleQ, TanhGaussianPolicy, soft_update


class EnsembleAgent:
    """Base class: actor + N-member critic with a Polyak-averaged target."""

    algo = "base"

    def __init__(self, obs_dim: int, act_dim: int, n_ensemble: int, device: torch.device):
        self.device = torch.device(device)
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.actor = TanhGaussianPolicy(obs_dim, act_dim).to(self.device)
        self.critic = EnsembleQ(obs_dim, act_dim, n_ensemble).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)

    # -- loading ---------------------------------------------------------------------
    def load_phase1_common(self, ckpt: dict) -> None:
        """Actor unchanged; q1/q2 of critic and target into members 0-1 of both.

        Fresh members (2..N-1) get the same fresh weights in critic and target, so
        the target starts as an exact copy of the online ensemble for them.
        """
        self.actor.load_state_dict(ckpt["actor"])
        self.critic.load_double_q(ckpt["critic"])
        fresh = {k: v.clone() for k, v in self.critic.state_dict().items()}
        self.critic_target.load_state_dict(fresh)
        self.critic_target.load_double_q(ckpt["critic_target"])

    # -- acting ----------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Action(s) for numpy observation(s) [o] or [B, o]."""
        o = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        if deterministic:
            a = self.actor.deterministic(o)
        else:
            a = self.actor.sample(o)[0]
        return a.cpu().numpy()

    def update_target(self, tau: float) -> None:
        soft_update(self.critic_target, self.critic, tau)

    # -- persistence -----------------------------------------------------------------
    def modules(self) -> dict:
        """Name -> nn.Module / Optimizer / tensor making up the agent's full state."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """A detached copy. Optimizer state is deep-copied: ``Optimizer.state_dict``
        returns the live moment tensors, and ``load_state_dict`` keeps them as they
        are, so two agents would otherwise share (and both update) one Adam state."""
        out = {}
        for name, obj in self.modules().items():
            out[name] = obj.detach().clone() if torch.is_tensor(obj) else copy.deepcopy(obj.state_dict())
        out["algo"] = self.algo
        out["n_ensemble"] = self.critic.n_members
        return out

    def load_state_dict(self, state: dict) -> None:
        for name, obj in self.modules().items():
            if torch.is_tensor(obj):
                with torch.no_grad():
                    obj.copy_(state[name])
            else:
                obj.load_state_dict(state[name])
