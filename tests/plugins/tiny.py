"""A plug-in from outside the package: a small algorithm and an explorer that learns.

Registered on import (``HRL_PLUGINS=tests.plugins.tiny``); nothing of ``hrl_core`` is
edited for them. ``tiny`` is naive actor-critic fine-tuning (critic to r + gamma * min Q of
the target at pi(s'), actor up the min Q with a behaviour-cloning term); its Phase I
checkpoint is the shared part only (actor, critic, critic_target). ``rnd`` is random
network distillation (Burda et al., ICLR 2019): the bonus is the error of a predictor
trained, in the explorer's ``update`` hook, to match a fixed random network; both networks
and the optimizer are the explorer's own saved state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from hrl_core.rl import agents, explorers
from hrl_core.rl.agents.base import AlgoConfig, EnsembleAgent
from hrl_core.rl.perf import make_adam


@agents.register
@dataclass
class TinyConfig(AlgoConfig):
    name: ClassVar[str] = "tiny"
    ms_per_step: ClassVar[float] = 5.0  # a guess for the estimate; nothing depends on it
    gamma: float = 0.99
    tau: float = 0.005
    lr: float = 3e-4
    bc_weight: float = 1.0

    def create(self, obs_dim: int, act_dim: int, device="cpu") -> TinyAgent:
        return TinyAgent(obs_dim, act_dim, self, device)

    @classmethod
    def update_flops(cls, obs_dim: int, act_dim: int, n: int, batch: int) -> float:
        return 1.0e6


class TinyAgent(EnsembleAgent):
    algo = "tiny"

    def __init__(self, obs_dim, act_dim, cfg: TinyConfig, device="cpu"):
        super().__init__(obs_dim, act_dim, cfg.n_ensemble, device)
        self.cfg = cfg
        self.actor_opt = make_adam(self.actor.parameters(), lr=cfg.lr)
        self.critic_opt = make_adam(self.critic.parameters(), lr=cfg.lr)

    def modules(self) -> dict:
        return {"actor": self.actor, "critic": self.critic, "critic_target": self.critic_target,
                "actor_opt": self.actor_opt, "critic_opt": self.critic_opt}  # fmt: skip

    def update(self, batch) -> dict:
        cfg = self.cfg
        with torch.no_grad():
            next_act = self.actor.deterministic(batch["next_obs"])
            y = batch["rew"] + cfg.gamma * (1 - batch["done"]) * self.critic_target.q_min(batch["next_obs"], next_act)
        q = self.critic(batch["obs"], batch["act"])  # [N, B]
        critic_loss = ((q - y) ** 2).mean(dim=1).sum()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        act = self.actor.deterministic(batch["obs"])
        actor_loss = -self.critic.q_min(batch["obs"], act).mean() + cfg.bc_weight * ((act - batch["act"]) ** 2).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        self.update_target(cfg.tau)
        return {"critic_loss": critic_loss.detach() / q.shape[0], "actor_loss": actor_loss.detach(),
                "q_data": q.mean().detach(), "q_member": q.mean(dim=1).detach()}  # fmt: skip


@explorers.register
class RND(explorers.Explorer):
    name = "rnd"
    settings = ("bonus_coeff",)  # lambda scales the distillation error

    def __init__(self, coeff: float, obs_dim: int = 11):
        super().__init__()
        self.coeff = coeff
        self.obs_dim = obs_dim
        self.target = self.predictor = None
        self.last_error = 0.0

    @classmethod
    def from_config(cls, cfg) -> RND:
        return cls(cfg.bonus_coeff)

    def _build(self, obs_dim: int, device) -> None:
        gen = torch.Generator().manual_seed(0)  # the fixed random network, the same in every process
        self.target = nn.Sequential(nn.Linear(obs_dim, 32), nn.ReLU(), nn.Linear(32, 8)).to(device)
        for p in self.target.parameters():
            p.data = torch.randn(p.shape, generator=gen).to(device) * 0.3
            p.requires_grad_(False)
        self.predictor = nn.Sequential(nn.Linear(obs_dim, 32), nn.ReLU(), nn.Linear(32, 8)).to(device)
        self.opt = torch.optim.Adam(self.predictor.parameters(), lr=1e-3)

    def _error(self, obs: torch.Tensor) -> torch.Tensor:
        return ((self.predictor(obs) - self.target(obs)) ** 2).mean(dim=-1)  # [B]

    def act(self, agent, obs):
        if self.target is None:
            self._build(agent.obs_dim, agent.device)
        action = super().act(agent, obs)  # the policy's action; disagreement measured as for every run
        with torch.no_grad():
            o = torch.as_tensor(obs, dtype=torch.float32, device=agent.device).unsqueeze(0)
            self.last_error = float(self._error(o)[0])
        return action

    def bonus(self, reward: float) -> float:
        return self.coeff * self.last_error

    def update(self, agent, batch) -> dict:
        loss = self._error(batch["obs"]).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"rnd_loss": loss.detach()}

    def state_dict(self) -> dict | None:
        if self.target is None:
            return None
        return {"target": self.target.state_dict(), "predictor": self.predictor.state_dict(),
                "opt": self.opt.state_dict(), "last_error": self.last_error}  # fmt: skip

    def load_state_dict(self, state: dict | None) -> None:
        if state is None:
            return
        obs_dim = state["target"]["0.weight"].shape[1]
        self._build(obs_dim, state["target"]["0.weight"].device)
        self.target.load_state_dict(state["target"])
        self.predictor.load_state_dict(state["predictor"])
        self.opt.load_state_dict(state["opt"])
        self.last_error = state["last_error"]
