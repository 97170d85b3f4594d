"""How a run explores during collection: the action it takes and the bonus it adds.

One object, built from the run's config (:func:`make_explorer`), owns acting, the
ensemble-disagreement signal, its scaling and clipping, and its saved state (as
d3rlpy's ``explorers`` own action selection). The loop only calls
``explorer.act(agent, obs)`` and ``explorer.bonus(reward)``.

- :class:`NoBonus` (``bonus_type=none``): the stochastic policy's action; rewards
  unchanged. The disagreement is still measured and logged.
- :class:`RewardBonus` (``bonus_type=ensemble``, ``exploration=reward_bonus``): the
  spec's bonus ``lambda * std(Q_1..Q_N)(s, a)`` at the action actually taken, added to
  the online transition's reward; ``bonus_scale=normalized`` puts it in reward units
  (:class:`hrl_core.rl.ensemble.BonusScale`), ``bonus_clip`` caps it.
- :class:`UCBAction` (``exploration=ucb_action``): SUNRISE's choice among K policy
  samples by mean + coeff * std of Q; rewards unchanged.
"""

from __future__ import annotations

import numpy as np
import torch

from hrl_core.rl.ensemble import BonusScale, ucb_choice


class Explorer:
    """Base: the policy's own stochastic action, no bonus."""

    def __init__(self):
        self.disagreement = 0.0  # std(Q_1..Q_N)(s, a) of the last action taken
        self.mean_abs_q = 0.0  # mean |Q| over members at that action

    def _measure(self, q: torch.Tensor) -> None:
        # One host transfer for both numbers.
        self.disagreement, self.mean_abs_q = torch.stack([q.std(), q.abs().mean()]).tolist()

    @torch.no_grad()
    def act(self, agent, obs: np.ndarray) -> np.ndarray:
        """A stochastic action for one observation; measures the ensemble there."""
        o = torch.as_tensor(obs, dtype=torch.float32, device=agent.device).unsqueeze(0)  # [1, o]
        a = agent.actor.sample(o)[0]  # [1, a]
        self._measure(agent.critic(o, a)[:, 0])  # q [N]
        return a[0].cpu().numpy()

    def bonus(self, reward: float) -> float:
        """The bonus added to the last action's env reward (0: none)."""
        return 0.0

    def state_dict(self) -> dict | None:
        return None

    def load_state_dict(self, state: dict | None) -> None:
        pass


class NoBonus(Explorer):
    """``bonus_type=none``: vanilla fine-tuning."""


class RewardBonus(Explorer):
    """The spec's exploration bonus on online rewards."""

    def __init__(self, coeff: float, scale: str = "raw", clip: float = 0.0):
        super().__init__()
        self.coeff = coeff
        self.clip = clip
        self.scaler = BonusScale() if scale == "normalized" else None

    def bonus(self, reward: float) -> float:
        signal = self.disagreement
        if self.scaler is not None:
            signal = self.scaler(self.disagreement, self.mean_abs_q, reward)
        value = self.coeff * signal
        return min(value, self.clip) if self.clip > 0 else value

    def state_dict(self) -> dict | None:
        return self.scaler.state_dict() if self.scaler is not None else None

    def load_state_dict(self, state: dict | None) -> None:
        if self.scaler is not None and state is not None:
            self.scaler.load_state_dict(state)


class UCBAction(Explorer):
    """SUNRISE's UCB action selection (Lee et al., ICML 2021); rewards unchanged."""

    def __init__(self, candidates: int, coeff: float):
        super().__init__()
        self.candidates = candidates
        self.coeff = coeff

    @torch.no_grad()
    def act(self, agent, obs: np.ndarray) -> np.ndarray:
        o = torch.as_tensor(obs, dtype=torch.float32, device=agent.device).unsqueeze(0)  # [1, o]
        o = o.expand(self.candidates, -1)  # [K, o]
        a = agent.actor.sample(o)[0]  # [K, a]
        q = agent.critic(o, a)  # [N, K]
        k = ucb_choice(q, self.coeff)
        self._measure(q[:, k])
        return a[k].cpu().numpy()


def make_explorer(cfg) -> Explorer:
    """The explorer a FinetuneConfig asks for."""
    if cfg.bonus_type != "ensemble":
        return NoBonus()
    if cfg.exploration == "ucb_action":
        return UCBAction(cfg.ucb_candidates, cfg.ucb_coeff)
    return RewardBonus(cfg.bonus_coeff, cfg.bonus_scale, cfg.bonus_clip)
