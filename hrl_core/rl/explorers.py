"""How a run explores during collection: the action it takes, the bonus it adds, and what it learns.

An explorer is a small protocol (as d3rlpy's explorers), registered by name
(``exploration=<name>`` with ``bonus_type=ensemble``); the loop calls only:

- ``explorer.act(agent, obs)`` -> the action to take (it also measures the ensemble
  disagreement std(Q_1..Q_N)(s, a) there: :attr:`Explorer.disagreement`, logged for every run);
- ``explorer.bonus(reward)`` -> what is added to that online transition's reward (0: none);
- ``explorer.update(agent, batch)`` after each gradient update (an explorer that learns, e.g.
  RND, trains here; returns statistics to log, or None);
- ``state_dict()`` / ``load_state_dict()``: its own saved state (snapshots keep it under
  ``explorer``).

Each explorer declares the settings it uses (:attr:`Explorer.settings`): a setting that the
run's explorer does not use is not part of the run's identity. Built in:

- :class:`NoBonus` (``bonus_type=none``): the stochastic policy's action; rewards unchanged.
- :class:`RewardBonus` (``reward_bonus``, the spec): ``lambda * std(Q)(s, a)`` at the action
  actually taken; ``bonus_scale=horizon`` puts it in reward units by the discount,
  lambda * (1 - gamma) * std(Q) (:class:`HorizonScale`: bounded by construction);
  ``bonus_scale=normalized`` (kept for the runs made with it) by running means of |r| and |Q|
  (:class:`BonusScale`: unbounded when mean Q crosses 0); ``bonus_clip`` caps it.
  :attr:`RewardBonus.multiplier` (bonus / (lambda * std(Q))) is logged per evaluation interval.
- :class:`UCBAction` (``ucb_action``): SUNRISE's choice among K policy samples by
  mean + coeff * std of Q (Lee et al., ICML 2021); rewards unchanged.

Plug-ins register their own with :func:`register` (see ``hrl_core.plugins``).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from hrl_core.errors import HrlError

_REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: make an explorer available as ``exploration=<cls.name>``."""
    _REGISTRY[cls.name] = cls
    return cls


def names() -> tuple[str, ...]:
    """Registered explorer names (built-ins first, then plug-ins)."""
    from hrl_core import plugins

    plugins.load()
    return tuple(_REGISTRY)


def get(name: str) -> type:
    if name not in names():
        raise HrlError(f"unknown exploration {name!r}: use one of {', '.join(names())}")
    return _REGISTRY[name]


class Explorer:
    """Base: the policy's own stochastic action, no bonus, nothing learned."""

    name: ClassVar[str] = "none"
    settings: ClassVar[tuple[str, ...]] = ()  # FinetuneConfig fields this explorer reads

    multiplier: float | None = None  # bonus / (lambda * std(Q)) of the last step; None: no bonus
    # Whether a population may act for it (hrl_core.run.population): its action is the policy's own
    # sample, measured by :meth:`measured`, and it learns nothing in :meth:`update`. Off unless an
    # explorer says so (a plug-in's runs alone).
    poolable: ClassVar[bool] = False

    def __init__(self):
        self.disagreement = 0.0  # std(Q_1..Q_N)(s, a) of the last action taken
        self.mean_abs_q = 0.0  # mean |Q| over members at that action

    @classmethod
    def from_config(cls, cfg) -> Explorer:
        return cls()

    def _measure(self, q: torch.Tensor) -> None:
        # One host transfer for both numbers.
        self.measured(*torch.stack([q.std(), q.abs().mean()]).tolist())

    def measured(self, disagreement: float, mean_abs_q: float) -> None:
        """The ensemble at the action taken: std(Q_1..Q_N) and mean |Q| (a population measures
        all its cells in one pass and hands each its numbers here)."""
        self.disagreement, self.mean_abs_q = disagreement, mean_abs_q

    def bind(self, agent) -> None:
        """Read what it needs of the agent before the first action (e.g. the discount)."""

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

    def update(self, agent, batch: dict) -> dict | None:
        """After each gradient update; an explorer that learns trains here (tensors to log, or None)."""
        return None

    def state_dict(self) -> dict | None:
        return None

    def load_state_dict(self, state: dict | None) -> None:
        pass


class NoBonus(Explorer):
    """``bonus_type=none``: vanilla fine-tuning."""

    poolable = True


class BonusScale:
    """``bonus_scale=normalized``: lambda * std(Q) / running |Q| * running |r|.

    Kept as it was for the runs made with it; use ``horizon`` (:class:`HorizonScale`). Its
    multiplier running |r| / running |Q| has no bound: when mean Q changes sign (CQL's
    pessimistic start makes that likely) the running |Q| nearly vanishes and the bonus grows
    by an order of magnitude while std(Q) falls (CQL halfcheetah k=60 of the long study:
    mean Q -204 -> +76, bonus / std(Q) 0.16 -> 1.8-2.5).

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


class HorizonScale:
    """``bonus_scale=horizon``: lambda * (1 - gamma) * std(Q).

    Q is a discounted sum of rewards, so std(Q) is in units of return; (1 - gamma) turns a
    return into the constant per-step reward that earns it (a reward r forever is worth
    r / (1 - gamma)). The bonus is then in reward units with no running statistic: a reward
    rescale by c rescales Q, std(Q) and the bonus by c, and the multiplier is the constant
    1 - gamma whatever Q does (it cannot collapse when Q crosses 0, as :class:`BonusScale`
    can). gamma is the agent's discount, read when the explorer first acts.
    """

    def __init__(self):
        self.gamma: float | None = None

    def bind(self, agent) -> None:
        gamma = getattr(agent.cfg, "gamma", None)
        if gamma is None or not 0 <= gamma < 1:
            raise HrlError(f"bonus_scale=horizon needs the algorithm's discount gamma in [0, 1); "
                           f"{agent.algo} has {gamma!r}: use bonus_scale raw")  # fmt: skip
        self.gamma = float(gamma)

    def __call__(self, std_q: float, mean_abs_q: float, reward: float) -> float:
        return std_q * (1.0 - self.gamma)

    def state_dict(self) -> dict:
        return {"gamma": self.gamma}

    def load_state_dict(self, state: dict) -> None:
        self.gamma = state["gamma"]


SCALES = {"normalized": BonusScale, "horizon": HorizonScale}  # bonus_scale -> its scale (raw: none)


@register
class RewardBonus(Explorer):
    """The spec's exploration bonus on online rewards."""

    name = "reward_bonus"
    settings = ("bonus_coeff", "bonus_scale", "bonus_clip")
    poolable = True

    def __init__(self, coeff: float, scale: str = "raw", clip: float = 0.0):
        super().__init__()
        self.coeff = coeff
        self.clip = clip
        self.scaler = SCALES[scale]() if scale in SCALES else None
        self.multiplier = 1.0  # bonus / (lambda * std(Q)) at the last step, before the clip

    def bind(self, agent) -> None:
        if isinstance(self.scaler, HorizonScale) and self.scaler.gamma is None:
            self.scaler.bind(agent)

    @torch.no_grad()
    def act(self, agent, obs: np.ndarray) -> np.ndarray:
        self.bind(agent)
        return super().act(agent, obs)

    @classmethod
    def from_config(cls, cfg) -> RewardBonus:
        return cls(cfg.bonus_coeff, cfg.bonus_scale, cfg.bonus_clip)

    def bonus(self, reward: float) -> float:
        signal = self.disagreement
        if self.scaler is not None:
            signal = self.scaler(self.disagreement, self.mean_abs_q, reward)
            self.multiplier = signal / self.disagreement if self.disagreement > 0 else self.multiplier
        value = self.coeff * signal
        return min(value, self.clip) if self.clip > 0 else value

    def state_dict(self) -> dict | None:
        return self.scaler.state_dict() if self.scaler is not None else None

    def load_state_dict(self, state: dict | None) -> None:
        if self.scaler is not None and state is not None:
            self.scaler.load_state_dict(state)


def ucb_choice(q_all: torch.Tensor, coeff: float) -> int:
    """Index of the candidate action maximizing mean + coeff * std over members.

    SUNRISE's UCB exploration (Lee et al., ICML 2021): q_all [N, K] holds every
    member's Q for K candidate actions sampled from the policy.
    """
    score = q_all.mean(dim=0) + coeff * q_all.std(dim=0)  # [K]
    return int(score.argmax())


@register
class UCBAction(Explorer):
    """SUNRISE's UCB action selection (Lee et al., ICML 2021); rewards unchanged."""

    name = "ucb_action"
    settings = ("ucb_candidates", "ucb_coeff")

    def __init__(self, candidates: int, coeff: float):
        super().__init__()
        self.candidates = candidates
        self.coeff = coeff

    @classmethod
    def from_config(cls, cfg) -> UCBAction:
        return cls(cfg.ucb_candidates, cfg.ucb_coeff)

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
    return get(cfg.exploration).from_config(cfg)
