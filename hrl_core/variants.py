"""Ensemble variants beyond the spec (issue 7), each a small named function.

Defaults everywhere are the spec's behaviour (``min_all``, ``fresh``,
``reward_bonus``); these only run when a run asks for them.
"""

from __future__ import annotations

import torch

from hrl_core.networks import EnsembleQ

TARGET_REDUCES = ("min_all", "min_random2")
MEMBER_INITS = ("fresh", "perturb")
EXPLORATIONS = ("reward_bonus", "ucb_action")


def target_min(q_all: torch.Tensor, reduce: str = "min_all") -> torch.Tensor:
    """Pessimistic target from member values q_all [N, B] -> [B].

    ``min_all``: the spec, min over every member. ``min_random2``: min over two
    distinct members drawn afresh each update, as in REDQ (Chen et al., ICLR 2021)
    and RLPD (Ball et al., ICML 2023): less pessimistic than the full min, so fresh
    members (Q ~ 0) do not drag every target towards zero.
    """
    if reduce == "min_all":
        return q_all.min(dim=0).values
    if reduce == "min_random2":
        pair = torch.randperm(q_all.shape[0], device=q_all.device)[:2]
        return q_all[pair].min(dim=0).values
    raise ValueError(f"unknown target_reduce {reduce!r}")


def ucb_choice(q_all: torch.Tensor, coeff: float) -> int:
    """Index of the candidate action maximizing mean + coeff * std over members.

    SUNRISE's UCB exploration (Lee et al., ICML 2021): q_all [N, K] holds every
    member's Q for K candidate actions sampled from the policy.
    """
    score = q_all.mean(dim=0) + coeff * q_all.std(dim=0)  # [K]
    return int(score.argmax())


@torch.no_grad()
def perturb_fresh_members(critic: EnsembleQ, scale: float, n_loaded: int = 2) -> None:
    """Members n_loaded.. = a loaded member (alternating) + Gaussian noise.

    Noise std = ``scale`` x the std of that layer's loaded weight matrix (also for the
    bias: a one-element bias has no std of its own), so the new members
    start near the Phase I critics (no Q ~ 0 trap) yet differ from them (disagreement
    is not zero). A cheap stand-in for bootstrapped ensembles' diversity.
    """
    for layer in (critic.l0, critic.l1, critic.l2):
        for member in range(n_loaded, critic.n_members):
            source = member % n_loaded
            sigma = scale * layer.weight[source].std()
            for param in (layer.weight, layer.bias):
                base = param[source]
                param[member] = base + sigma * torch.randn_like(base)
