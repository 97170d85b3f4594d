"""The Phase I actor and value networks, and Polyak averaging (the Q-ensemble is
``hrl_core.rl.ensemble``).

``TanhGaussianPolicy`` and ``ValueNetwork`` keep Phase I's parameter names
(``trunk.0``, ``mean_head``, ``net.0`` ...) so Phase I state dicts load unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hrl_core.rl.draws import GLOBAL, Draws

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # Phase I clamp of the actor's log-std
HIDDEN = 256  # Phase I hidden width


class TanhGaussianPolicy(nn.Module):
    """Phase I actor: a = tanh(u), u ~ N(mean(s), exp(log_std(s)))."""

    draws: Draws = GLOBAL  # where its noise comes from (a population's cells: their own generators)

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = HIDDEN):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(obs_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.mean_head = nn.Linear(hidden, act_dim)
        self.log_std_head = nn.Linear(hidden, act_dim)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(obs)
        log_std = self.log_std_head(h).clamp(LOG_STD_MIN, LOG_STD_MAX)
        return self.mean_head(h), log_std  # [B, a], [B, a]

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        """tanh(mean): the evaluation action (the log-std head is not needed, so not run)."""
        return torch.tanh(self.mean_head(self.trunk(obs)))

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterized sample and its log-probability: ([..., a], [...])."""
        mean, log_std = self.forward(obs)
        u = mean + log_std.exp() * self.draws.normal_like(mean)
        return torch.tanh(u), _tanh_gaussian_log_prob(u, mean, log_std)

    def log_prob(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """log pi(a|s) of given actions in (-1, 1) (IQL's weighted behaviour cloning). [B]"""
        mean, log_std = self.forward(obs)
        u = torch.atanh(act.clamp(-1.0 + 1e-6, 1.0 - 1e-6))
        return _tanh_gaussian_log_prob(u, mean, log_std)


def _tanh_gaussian_log_prob(u, mean, log_std) -> torch.Tensor:
    """log N(u; mean, std) minus the tanh Jacobian, summed over action dims."""
    normal = -0.5 * ((u - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
    # log(1 - tanh(u)^2) written stably as 2*(log 2 - u - softplus(-2u)).
    log_det = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
    return (normal - log_det).sum(-1)


class ValueNetwork(nn.Module):
    """Phase I IQL state-value network [obs -> 256 -> 256 -> 1]."""

    def __init__(self, obs_dim: int, hidden: int = HIDDEN):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(obs_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)  # [B]


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging target <- (1 - tau) * target + tau * source, in place."""
    with torch.no_grad():
        t_params = list(target.parameters())
        s_params = list(source.parameters())
        torch._foreach_lerp_(t_params, s_params, tau)
