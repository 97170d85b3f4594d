"""What every Phase II algorithm shares: its config's protocol and the agent's base class.

An algorithm is a config dataclass (d3rlpy style) registered by name
(``hrl_core.rl.agents.register``). In its own module it declares:

- its hyper-parameters: the dataclass fields (a FinetuneConfig setting of the same name,
  e.g. ``cql_alpha``, sets one, and applies to a run only if its algorithm has it);
- ``create(obs_dim, act_dim, device)``: the agent;
- its Phase I checkpoint beyond what every algorithm shares (``actor``, ``critic``,
  ``critic_target``): ``phase1_extra_shapes`` (checked when a checkpoint is read), the
  agent's ``load_phase1_extra`` (read) and ``phase1_extra`` (write);
- ``update_flops`` for ``hrl bench`` and ``ms_per_step`` for ``hrl grid``'s time estimate;
- ``pretrain_overrides``: its offline (Phase I) hyper-parameters where they differ.

Agents follow the d3rlpy / SB3 shape: ``update(batch) -> dict`` of 0-dim tensors
(read them only at log time: no per-step host sync), ``act(obs, deterministic)``,
``state_dict()`` / ``load_state_dict()``. The training loop owns env and data;
exploration during collection belongs to ``hrl_core.rl.explorers``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import ClassVar, Dict

import numpy as np
import torch

from hrl_core.rl.draws import GLOBAL, Draws
from hrl_core.rl.ensemble import EnsembleQ
from hrl_core.rl.networks import TanhGaussianPolicy, soft_update

Batch = Dict[str, torch.Tensor]  # obs [B,o], act [B,a], rew [B], next_obs [B,o], done [B]


def hyper(default, *, lo=None, hi=None, lo_open=False, hi_open=False):
    """An algorithm's hyper-parameter with its allowed range (checked when set as ``<algo>.<name>``
    from a flag, the notebook or a grid file: ``hrl_core.run.config.check_hyper``)."""
    return field(default=default, metadata={"lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open})


@dataclass
class AlgoConfig:
    """Base of an algorithm's config. Subclasses add fields and override the hooks."""

    name: ClassVar[str] = "base"  # the value of ``algo``
    # ms per online step on the reference 2-core CPU, one torch thread per cell, two cells side by side, N=3
    # (hrl grid's time estimate; measure with `hrl bench --threads 1` or a short run)
    ms_per_step: ClassVar[float] = math.nan
    pretrain_overrides: ClassVar[dict] = {}  # Phase I (offline) values of fields that differ online
    # P -> a cell-step's cost in a population of P cells on one CPU thread relative to a run alone
    # (`hrl bench --population`); {}: not measured (such cells run alone unless --population says)
    population_cost: ClassVar[dict] = {}

    n_ensemble: int = 3  # critics in the ensemble; members 0-1 come from Phase I q1/q2

    def create(self, obs_dim: int, act_dim: int, device="cpu") -> EnsembleAgent:
        raise NotImplementedError

    @classmethod
    def update_flops(cls, obs_dim: int, act_dim: int, n: int, batch: int) -> float:
        """FLOPs of one gradient update (matmuls only), for hrl bench; nan: not declared."""
        return math.nan

    @classmethod
    def phase1_extra_shapes(cls, obs_dim: int, act_dim: int) -> dict[str, dict[str, tuple]]:
        """Checkpoint entries beyond actor/critic/critic_target: {key: {tensor name: shape}}
        ("" names a bare tensor)."""
        return {}


class EnsembleAgent:
    """Base class: actor + N-member critic with a Polyak-averaged target."""

    algo = "base"

    def __init__(self, obs_dim: int, act_dim: int, n_ensemble: int, device: torch.device):
        self.device = torch.device(device)
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.actor = TanhGaussianPolicy(obs_dim, act_dim).to(self.device)
        self.critic = EnsembleQ(obs_dim, act_dim, n_ensemble).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)

    # -- the algorithm's own part of a Phase I checkpoint (hrl_core.run.phase1 does the rest) --
    def load_phase1_extra(self, state: dict) -> None:
        """Restore what the algorithm keeps beyond actor and critics (V, the SAC temperature)."""

    def phase1_extra(self) -> dict:
        """What :meth:`load_phase1_extra` reads, as CPU tensors (for writing a Phase I checkpoint)."""
        return {}

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

    # -- training hooks a population overrides (hrl_core.rl.population) ----------------
    draws: Draws = GLOBAL  # the update's random numbers (the actor has its own: actor.draws)

    @staticmethod
    def step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        """One optimizer step on a loss: a scalar, or a population's per-cell losses [P]
        (their sum: cells share no parameter, so each gets its own gradient)."""
        opt.zero_grad(set_to_none=True)
        (loss if loss.dim() == 0 else loss.sum()).backward()
        opt.step()

    def bind(self) -> None:
        """Re-derive what the agent keeps of its modules (after a population replaces them)."""

    def optimized_part(self, opt_name: str) -> str:
        """The part (a key of :meth:`modules`) that the optimizer ``opt_name`` steps: ``<part>_opt``."""
        return opt_name.removesuffix("_opt")

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
