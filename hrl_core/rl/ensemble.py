"""Ensemble variants beyond the spec (issue 7), each a small named function.

Defaults everywhere are the spec's behaviour (``min_all``, ``fresh``,
``reward_bonus``); these only run when a run asks for them.
"""

from __future__ import annotations

import torch

from hrl_core.rl.networks import EnsembleQ


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


def warmstart_fresh_members(agent, sample_batch, steps: int, lr: float = 3e-4, n_loaded: int = 2) -> list[float]:
    """Train only members n_loaded.. on offline batches, towards the loaded members'
    Bellman targets, before any online step; returns the loss per step.

    The loss never involves members 0-1, so their gradients and Adam moments stay zero
    and they do not move. The ensemble then starts calibrated (fresh members agree
    with the Phase I critics on the data) yet diverse (different initializations),
    instead of Q ~ 0 members dominating min-targets and std(Q).
    """
    from hrl_core.rl.perf import make_adam

    opt = make_adam(agent.critic.parameters(), lr=lr)  # a separate optimizer, discarded after
    losses = []
    for _ in range(steps):
        batch = sample_batch()
        y = agent.loaded_bellman_target(batch, n_loaded)  # [B]
        q = agent.critic(batch["obs"], batch["act"])[n_loaded:]  # [N - n_loaded, B]
        loss = ((q - y) ** 2).mean(dim=1).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():  # the target's fresh members start from the warm-started ones
        for t_layer, layer in zip(
            (agent.critic_target.l0, agent.critic_target.l1, agent.critic_target.l2),
            (agent.critic.l0, agent.critic.l1, agent.critic.l2),
            strict=True,
        ):
            t_layer.weight[n_loaded:] = layer.weight[n_loaded:]
            t_layer.bias[n_loaded:] = layer.bias[n_loaded:]
    return losses


class BonusScale:
    """``bonus_scale=normalized``: lambda * std(Q) / running |Q| * running |r|.

    std(Q) relative to the Q scale is a unitless disagreement; multiplying by the
    running mean |env reward| puts the bonus in reward units. So lambda means "bonus
    = lambda x (relative disagreement) x typical reward" in any environment, and a
    reward rescale by c rescales the bonus by c (the bonus/reward ratio is unchanged).
    Running means are exponential with rate ``rate`` (state saved in snapshots).
    """

    def __init__(self, rate: float = 0.01):
        self.rate = rate
        self.q_scale = None  # running mean |Q(s, a)| over members
        self.r_scale = None  # running mean |r|

    def __call__(self, std_q: float, mean_abs_q: float, reward: float) -> float:
        def ema(old, new):
            return new if old is None else (1 - self.rate) * old + self.rate * new

        self.q_scale = ema(self.q_scale, mean_abs_q)
        self.r_scale = ema(self.r_scale, abs(reward))
        return std_q / max(self.q_scale, 1e-6) * self.r_scale

    def state_dict(self) -> dict:
        return {"rate": self.rate, "q_scale": self.q_scale, "r_scale": self.r_scale}

    def load_state_dict(self, state: dict) -> None:
        self.rate, self.q_scale, self.r_scale = state["rate"], state["q_scale"], state["r_scale"]
