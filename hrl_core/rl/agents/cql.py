"""Online fine-tuning of CQL with an N-member Q-ensemble.

Conservative Q-Learning, Kumar et al., NeurIPS 2020 (arXiv:2006.04779): CQL(H) on
a SAC backbone (Haarnoja et al., 2018). The log-sum-exp penalty is estimated by
importance sampling with 10 uniform-random and 10 current-policy actions per
state, and applied to every ensemble member. Online, the penalty weight drops from
Phase I's 5.0 to 1.0 so the critic can follow the new data. Bellman targets and the
actor use the minimum over all members.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from hrl_core.rl.agents import register
from hrl_core.rl.agents.base import AlgoConfig, Batch, EnsembleAgent, hyper
from hrl_core.rl.ensemble import target_min
from hrl_core.rl.networks import HIDDEN
from hrl_core.rl.perf import compile_or_eager, make_adam, mlp_flops

PHASE1_CQL_ALPHA = 5.0  # Phase I's (offline) penalty weight


@dataclass
class CQLConfig(AlgoConfig):
    """Hyper-parameters of online CQL (Phase I values unless noted)."""

    name: ClassVar[str] = "cql"
    # end to end, as IQL's: the review study's 20,000-step CQL hopper cells took 39.9-42.4 min two side by side
    # on a quiet 2-core machine (120-127 ms a step, warm start and evaluations included), the long study's
    # 126-128 ms; `hrl bench --threads 1` alone says 110.6 ms (halfcheetah shapes); docs/performance.md
    ms_per_step: ClassVar[float] = 125.0
    # a cell-step's cost in a population of P on one CPU thread, relative to a run alone: CQL's
    # [P, N, 21 * B, 256] activations outgrow the caches, so on a CPU it runs alone (docs/performance.md)
    population_cost: ClassVar[dict] = {2: 0.98, 4: 1.07, 8: 1.14, 16: 1.46}
    pretrain_overrides: ClassVar[dict] = {"cql_alpha": PHASE1_CQL_ALPHA}

    cql_alpha: float = 1.0  # weight of the conservative penalty online (Phase I offline: 5.0)
    n_action_samples: int = hyper(10, lo=1)  # random and policy actions per state for the log-sum-exp
    gamma: float = hyper(0.99, lo=0, hi=1, hi_open=True)  # discount
    tau: float = hyper(0.005, lo=0, hi=1, lo_open=True)  # Polyak rate of the target ensemble
    actor_lr: float = hyper(3e-4, lo=0, lo_open=True)  # Adam learning rate of the actor
    critic_lr: float = hyper(3e-4, lo=0, lo_open=True)  # Adam learning rate of the critic ensemble
    alpha_lr: float = hyper(3e-4, lo=0, lo_open=True)  # Adam learning rate of the SAC temperature
    # Soft (SAC) backup: targets include -alpha*log pi(a'|s'). On, as in Phase I: the
    # loaded critics' Q-values on the data match soft returns, not plain returns.
    backup_entropy: bool = True
    # torch.compile the critic's forward in the CQL loss (the [N, 21*B] pass that
    # dominates the update). Runs do it on CUDA only: on a CPU the eager per-member
    # GEMMs are as fast (FinetuneConfig.compile_critic, docs/performance.md).
    compile_critic: bool = False
    target_reduce: str = "min_all"  # min_all (spec) | min_random2 (REDQ/RLPD), see hrl_core.rl.ensemble

    def create(self, obs_dim: int, act_dim: int, device="cpu") -> CQLAgent:
        return CQLAgent(obs_dim, act_dim, self, device)

    @classmethod
    def update_flops(cls, obs_dim: int, act_dim: int, n: int, batch: int, n_samples: int = 10) -> float:
        """Matmul FLOPs of one update: the target, the critic on data + 2R sampled actions, the actor."""
        h = HIDDEN
        q, pi = [obs_dim + act_dim, h, h, 1], [obs_dim, h, h, 2 * act_dim]  # mean and log-std heads as one layer
        rows = (1 + 2 * n_samples) * batch
        flops = n * mlp_flops(batch, q, backward=False)  # target Q(s', a')
        flops += mlp_flops(batch, pi, backward=False)  # a' ~ pi(s')
        flops += mlp_flops(n_samples * batch, pi, backward=False)  # policy actions for the penalty
        flops += n * mlp_flops(rows, q, backward=True)  # critic on data + random + policy actions
        flops += mlp_flops(batch, pi, backward=True)  # actor loss: pi
        # actor loss: frozen Q, differentiated down to its action input
        flops += n * mlp_flops(batch, q, backward=True, weight_grads=False, input_grad=True)
        return flops

    @classmethod
    def phase1_extra_shapes(cls, obs_dim: int, act_dim: int) -> dict:
        return {"log_alpha": {"": ()}}  # the SAC temperature


register(CQLConfig)


class CQLAgent(EnsembleAgent):
    algo = "cql"

    def __init__(self, obs_dim: int, act_dim: int, cfg: CQLConfig, device="cpu"):
        super().__init__(obs_dim, act_dim, cfg.n_ensemble, device)
        self.cfg = cfg
        self.log_alpha = torch.zeros((), device=self.device, requires_grad=True)  # SAC temperature
        self.target_entropy = -float(act_dim)  # SAC heuristic: -|A|
        self.actor_opt = make_adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.critic_opt = make_adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.alpha_opt = make_adam([self.log_alpha], lr=cfg.alpha_lr)
        # log of the uniform density on [-1, 1]^a, subtracted from random-action Qs
        self._log_uniform_density = -act_dim * math.log(2.0)
        self.bind()

    def bind(self) -> None:
        # Only the loss's fixed-shape pass is compiled: acting and the actor loss use
        # other batch sizes, and each new shape would cost another compilation.
        self._penalty_q = self.critic.forward_input
        if self.cfg.compile_critic:
            self._penalty_q = compile_or_eager(self.critic.forward_input, "the CQL critic")

    def optimized_part(self, opt_name: str) -> str:
        return "log_alpha" if opt_name == "alpha_opt" else super().optimized_part(opt_name)

    def load_phase1_extra(self, state: dict) -> None:
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"].reshape(()))

    def phase1_extra(self) -> dict:
        return {"log_alpha": self.log_alpha.detach().cpu().clone()}

    def modules(self) -> dict:
        return {
            "actor": self.actor,
            "critic": self.critic,
            "critic_target": self.critic_target,
            "log_alpha": self.log_alpha,
            "actor_opt": self.actor_opt,
            "critic_opt": self.critic_opt,
            "alpha_opt": self.alpha_opt,
        }

    @torch.no_grad()
    def loaded_bellman_target(self, batch: Batch, n_loaded: int = 2) -> torch.Tensor:
        """The critic target computed from the loaded (Phase I) target members only. [B]"""
        next_act, next_logp = self.actor.sample(batch["next_obs"])
        q = self.critic_target(batch["next_obs"], next_act)[:n_loaded].min(dim=0).values  # [B]
        if self.cfg.backup_entropy:
            q = q - self.log_alpha.exp() * next_logp
        return batch["rew"] + self.cfg.gamma * (1.0 - batch["done"]) * q

    # -- losses ----------------------------------------------------------------------
    # Shapes are a run's; a population's (hrl_core.rl.population) have a leading [P] on each
    # (obs [P, B, o], q [P, N, 1+2R, B], log_alpha [P], losses [P]), so every reduction and
    # broadcast names its dim from the end; for a run alone each is the operation it always was.
    def critic_loss(self, batch: Batch) -> tuple[torch.Tensor, dict]:
        cfg = self.cfg
        obs, act = batch["obs"], batch["act"]  # [B, o], [B, a]
        B, R = obs.shape[-2], cfg.n_action_samples
        alpha = self.log_alpha.detach().exp().unsqueeze(-1)  # [1]
        with torch.no_grad():
            next_act, next_logp = self.actor.sample(batch["next_obs"])  # [B, a], [B]
            target_q = target_min(self.critic_target(batch["next_obs"], next_act), cfg.target_reduce, self.draws)
            if cfg.backup_entropy:
                target_q = target_q - alpha * next_logp  # [B]
            y = batch["rew"] + cfg.gamma * (1.0 - batch["done"]) * target_q  # [B]
        if cfg.cql_alpha == 0:
            # Plain SAC (used to train behaviour policies): no penalty, so skip the
            # 20 extra actions per state, which are 95% of a CQL update's cost.
            q_data = self.critic(obs, act)  # [N, B]
            bellman = ((q_data - y.unsqueeze(-2)) ** 2).mean(dim=-1)  # [N]
            info = {
                "critic_loss": bellman.mean(dim=-1).detach(),
                "cql_penalty": torch.zeros(bellman.shape[:-1], device=self.device),
                "q_data": q_data.mean(dim=(-2, -1)).detach(),
                "q_member": q_data.mean(dim=-1).detach(),
            }
            return bellman.sum(dim=-1), info
        with torch.no_grad():
            # Actions for the log-sum-exp: R uniform and R from the current policy.
            lead = obs.shape[:-2]  # () for a run, (P,) for a population
            obs_rep = obs.unsqueeze(-3).expand(*lead, R, B, -1)  # [R, B, o]
            rand_act = self.draws.uniform((R, B, self.act_dim), self.device, -1.0, 1.0)  # [R, B, a]
            pi_act, pi_logp = self.actor.sample(obs_rep)  # [R, B, a], [R, B]

        # One ensemble forward over data, random and policy actions: [(1+2R)*B, o+a].
        x = torch.cat(
            [
                torch.cat([obs, act], -1).unsqueeze(-3),  # [1, B, o+a]
                torch.cat([obs_rep, rand_act], -1),  # [R, B, o+a]
                torch.cat([obs_rep, pi_act], -1),  # [R, B, o+a]
            ],
            dim=-3,
        ).reshape(*lead, (1 + 2 * R) * B, -1)
        q = self._penalty_q(x).unflatten(-1, (1 + 2 * R, B))  # [N, 1+2R, B]
        q_data = q[..., 0, :]  # [N, B]
        q_rand = q[..., 1 : 1 + R, :] - self._log_uniform_density  # [N, R, B]
        q_pi = q[..., 1 + R :, :] - pi_logp.unsqueeze(-3)  # [N, R, B]
        lse = torch.logsumexp(torch.cat([q_rand, q_pi], dim=-2), dim=-2)  # [N, B]

        bellman = ((q_data - y.unsqueeze(-2)) ** 2).mean(dim=-1)  # [N]
        penalty = (lse - q_data).mean(dim=-1)  # [N]
        loss = (bellman + cfg.cql_alpha * penalty).sum(dim=-1)
        info = {
            "critic_loss": bellman.mean(dim=-1).detach(),
            "cql_penalty": penalty.mean(dim=-1).detach(),
            "q_data": q_data.mean(dim=(-2, -1)).detach(),
            "q_member": q_data.mean(dim=-1).detach(),  # [N]
        }
        return loss, info

    def actor_loss(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        act, logp = self.actor.sample(obs)  # [B, a], [B]
        # The critic is frozen here so the actor's backward pass does not also
        # compute (and discard) gradients for all ensemble weights.
        self.critic.requires_grad_(False)
        q = self.critic.q_min(obs, act)  # [B]
        self.critic.requires_grad_(True)
        alpha = self.log_alpha.detach().exp().unsqueeze(-1)  # [1]
        return (alpha * logp - q).mean(dim=-1), logp.detach()

    # -- update ----------------------------------------------------------------------
    def update(self, batch: Batch) -> dict:
        c_loss, info = self.critic_loss(batch)
        self.step(self.critic_opt, c_loss)

        a_loss, logp = self.actor_loss(batch["obs"])
        self.step(self.actor_opt, a_loss)

        alpha_loss = -(self.log_alpha.unsqueeze(-1) * (logp + self.target_entropy)).mean(dim=-1)
        self.step(self.alpha_opt, alpha_loss)

        self.update_target(self.cfg.tau)
        info.update(actor_loss=a_loss.detach(), alpha=self.log_alpha.detach().exp())
        return info
