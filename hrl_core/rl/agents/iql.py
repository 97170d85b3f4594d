"""Online fine-tuning of IQL with an N-member Q-ensemble.

Implicit Q-Learning, Kostrikov, Nair & Levine, ICLR 2022 (arXiv:2110.06169). V is
fitted by expectile regression to the target ensemble's minimum Q, every Q member
regresses to r + gamma * V(s'), and the actor does advantage-weighted regression
with weights exp(beta * A) clipped at 100. V and the actor are restored from Phase I.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from hrl_core.rl.agents import register
from hrl_core.rl.agents.base import AlgoConfig, Batch, EnsembleAgent, hyper
from hrl_core.rl.ensemble import target_min
from hrl_core.rl.networks import HIDDEN, ValueNetwork
from hrl_core.rl.perf import make_adam, mlp_flops


@dataclass
class IQLConfig(AlgoConfig):
    """Hyper-parameters of online IQL (Phase I values)."""

    name: ClassVar[str] = "iql"
    # end to end in the variants study (30,000-step hopper cells took ~510 s each, loop, evaluation and
    # start-up included; `hrl bench --threads 1` alone says 12 ms); docs/performance.md
    ms_per_step: ClassVar[float] = 17.0
    # a cell-step's cost in a population of P on one CPU thread, relative to a run alone
    # (`hrl bench --population 2 4 8 16`, hopper shapes, quiet machine; docs/performance.md)
    population_cost: ClassVar[dict] = {2: 0.91, 4: 0.88, 8: 0.85, 16: 0.89}

    expectile: float = hyper(0.7, lo=0, hi=1, lo_open=True, hi_open=True)  # tau of the expectile loss for V
    temperature: float = hyper(3.0, lo=0)  # beta of the advantage weights exp(beta * A)
    max_weight: float = hyper(100.0, lo=0, lo_open=True)  # clip of exp(beta * A)
    gamma: float = hyper(0.99, lo=0, hi=1, hi_open=True)  # discount
    tau: float = hyper(0.005, lo=0, hi=1, lo_open=True)  # Polyak rate of the target ensemble
    actor_lr: float = hyper(3e-4, lo=0, lo_open=True)  # Adam learning rate of the actor
    critic_lr: float = hyper(3e-4, lo=0, lo_open=True)  # Adam learning rate of the critic ensemble
    value_lr: float = hyper(3e-4, lo=0, lo_open=True)  # Adam learning rate of V
    target_reduce: str = "min_all"  # min_all (spec) | min_random2 (REDQ/RLPD), see hrl_core.rl.ensemble

    def create(self, obs_dim: int, act_dim: int, device="cpu") -> IQLAgent:
        return IQLAgent(obs_dim, act_dim, self, device)

    @classmethod
    def update_flops(cls, obs_dim: int, act_dim: int, n: int, batch: int) -> float:
        """Matmul FLOPs of one update: target Q, V on s and s', the Q ensemble, the actor's log-prob."""
        h = HIDDEN
        q, pi, v = [obs_dim + act_dim, h, h, 1], [obs_dim, h, h, 2 * act_dim], [obs_dim, h, h, 1]
        flops = n * mlp_flops(batch, q, backward=False)  # target Q(s, a)
        flops += mlp_flops(batch, v, backward=True) + mlp_flops(batch, v, backward=False)  # V(s), V(s')
        flops += n * mlp_flops(batch, q, backward=True)  # Q ensemble
        flops += mlp_flops(batch, pi, backward=True)  # actor log-prob
        return flops

    @classmethod
    def phase1_extra_shapes(cls, obs_dim: int, act_dim: int) -> dict:
        return {"value": {k: tuple(v.shape) for k, v in ValueNetwork(obs_dim).state_dict().items()}}


register(IQLConfig)


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """Asymmetric L2: |expectile - 1(diff < 0)| * diff^2, averaged over the batch (its last dim)."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff**2).mean(dim=-1)


class IQLAgent(EnsembleAgent):
    algo = "iql"

    def __init__(self, obs_dim: int, act_dim: int, cfg: IQLConfig, device="cpu"):
        super().__init__(obs_dim, act_dim, cfg.n_ensemble, device)
        self.cfg = cfg
        self.value = ValueNetwork(obs_dim).to(self.device)
        self.actor_opt = make_adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.critic_opt = make_adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.value_opt = make_adam(self.value.parameters(), lr=cfg.value_lr)

    def load_phase1_extra(self, state: dict) -> None:
        self.value.load_state_dict(state["value"])

    def phase1_extra(self) -> dict:
        return {"value": {k: v.detach().cpu().clone() for k, v in self.value.state_dict().items()}}

    def modules(self) -> dict:
        return {
            "actor": self.actor,
            "critic": self.critic,
            "critic_target": self.critic_target,
            "value": self.value,
            "actor_opt": self.actor_opt,
            "critic_opt": self.critic_opt,
            "value_opt": self.value_opt,
        }

    @torch.no_grad()
    def loaded_bellman_target(self, batch: Batch, n_loaded: int = 2) -> torch.Tensor:
        """IQL's Q target r + gamma * V(s') with the restored V (n_loaded unused). [B]"""
        return batch["rew"] + self.cfg.gamma * (1.0 - batch["done"]) * self.value(batch["next_obs"])

    def update(self, batch: Batch) -> dict:
        # Shapes are a run's; a population's (hrl_core.rl.population) have a leading [P] on each
        # (obs [P, B, o], q [P, N, B], losses [P]), so every reduction names its dim from the end.
        cfg = self.cfg
        obs, act = batch["obs"], batch["act"]  # [B, o], [B, a]
        with torch.no_grad():
            target_q = target_min(self.critic_target(obs, act), cfg.target_reduce, self.draws)  # [B]

        # V: expectile regression towards the pessimistic target Q.
        v = self.value(obs)  # [B]
        v_loss = expectile_loss(target_q - v, cfg.expectile)
        self.step(self.value_opt, v_loss)

        # Q: every member regresses to r + gamma * V(s').
        with torch.no_grad():
            y = batch["rew"] + cfg.gamma * (1.0 - batch["done"]) * self.value(batch["next_obs"])  # [B]
        q = self.critic(obs, act)  # [N, B]
        bellman = ((q - y.unsqueeze(-2)) ** 2).mean(dim=-1)  # [N]
        self.step(self.critic_opt, bellman.sum(dim=-1))

        # Actor: advantage-weighted regression on the batch actions.
        adv = target_q - v.detach()  # [B]
        weight = torch.exp(cfg.temperature * adv).clamp(max=cfg.max_weight)  # [B]
        a_loss = -(weight * self.actor.log_prob(obs, act)).mean(dim=-1)
        self.step(self.actor_opt, a_loss)

        self.update_target(cfg.tau)
        return {
            "critic_loss": bellman.mean(dim=-1).detach(),
            "value_loss": v_loss.detach(),
            "actor_loss": a_loss.detach(),
            "q_data": q.mean(dim=(-2, -1)).detach(),
            "q_member": q.mean(dim=-1).detach(),  # [N]
            "advantage": adv.mean(dim=-1),
        }
