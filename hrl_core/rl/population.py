"""Many runs as one computation: the agents of P cells stacked into one agent.

PureJaxRL and rejax train many runs at once by vectorizing whole training runs over seeds
(Lu et al., "Discovered Policy Optimisation", NeurIPS 2022; rejax); here the same idea is
done by stacking. The Q-ensemble is already one stack of weights ``[N, in, out]``
(``hrl_core.rl.ensemble``), so P cells' critics are one ensemble of P * N members whose
input is one batch per cell; the P actors and value networks become stacks of P layers
(:class:`StackedPolicy`, :class:`StackedValue`), a scalar such as CQL's log alpha a vector
[P]. The algorithm's own ``update`` runs unchanged on the stacked agent: every tensor gains a
leading [P] and every reduction in ``hrl_core.rl.agents`` names its dim from the end, so one
call does all P updates with the kernels of one, and one fused Adam step updates every
cell's parameters (Adam is element-wise: a stacked step is P separate steps).

A cell stays its own run: :func:`stack_agents` copies P cells' agents (each built, loaded and
warm-started as a run alone builds it) into the stack, and :func:`unstack_into` copies the
stack back, optimizer moments included, so each cell's snapshot is a run's snapshot and
resumes alone or in another population. Random numbers come from one generator per cell
(``hrl_core.rl.draws.CellDraws``). Cells of one population share their algorithm's
hyper-parameters, shapes and their optimizer's step count (``hrl_core.run.population``
packs them so).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from hrl_core.errors import HrlError
from hrl_core.rl.draws import CellDraws
from hrl_core.rl.ensemble import EnsembleQ
from hrl_core.rl.networks import HIDDEN, TanhGaussianPolicy, ValueNetwork
from hrl_core.rl.perf import make_adam


class _PerCellLinear(torch.autograd.Function):
    """P cells' nn.Linear layers on their own inputs: out[p] = x[p] @ W[p]^T + b[p], each cell's
    forward and backward the same GEMM calls as its nn.Linear alone (so a cell computes what it
    computes alone), with no [P, ...] copy per cell in the backward."""

    @staticmethod
    def forward(ctx, x, weight, bias):  # x [P, M, in], weight [P, out, in], bias [P, out]
        out = x.new_empty(x.shape[0], x.shape[1], weight.shape[1])  # [P, M, out]
        for p in range(x.shape[0]):
            torch.addmm(bias[p], x[p], weight[p].t(), out=out[p])
        ctx.save_for_backward(x, weight)
        return out

    @staticmethod
    def backward(ctx, grad):  # grad: [P, M, out]
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.empty_like(x)
            for p in range(x.shape[0]):
                torch.mm(grad[p], weight[p], out=grad_x[p])
        if ctx.needs_input_grad[1]:
            grad_w = torch.empty_like(weight)
            for p in range(x.shape[0]):  # as autograd's addmm backward for a transposed mat2: grad^T @ x
                torch.mm(grad[p].t(), x[p], out=grad_w[p])
        if ctx.needs_input_grad[2]:
            grad_b = torch.stack([grad[p].sum(0) for p in range(x.shape[0])])
        return grad_x, grad_w, grad_b


class StackedLinear(nn.Module):
    """P nn.Linear layers (one per cell) in nn.Linear's layout: weight [P, out, in], bias [P, out]."""

    def __init__(self, cells: int, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(cells, out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(cells, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [P, M, in] -> [P, M, out]
        if per_cell_pays(x):
            return _PerCellLinear.apply(x, self.weight, self.bias)
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))


_FORCED: str | None = None  # None: per_cell_pays decides; "per_cell" | "batched": every stacked layer so


def per_cell_pays(x: torch.Tensor) -> bool:
    """CPU: one GEMM per cell, as each cell's nn.Linear alone calls it (same numbers, and CPU GEMMs
    of a cell's size already run at the machine's rate); GPU: one batched call for all cells."""
    if _FORCED is not None:
        return _FORCED == "per_cell"
    return x.device.type == "cpu"


class cell_path:
    """``with cell_path("batched"): ...`` runs every stacked layer (actors, value networks, and the
    stacked critic's ensemble layers) as one batched call, ``"per_cell"`` as one GEMM per cell or
    member: the GPU path on a CPU for tests, and both paths side by side in ``hrl bench --population``."""

    def __init__(self, path: str):
        from hrl_core.rl.ensemble import layer_path

        if path not in ("per_cell", "batched"):
            raise ValueError(f"unknown cell path {path!r}")
        self.path, self._old = path, None
        self._layers = layer_path("per_member" if path == "per_cell" else "baddbmm")

    def __enter__(self):
        global _FORCED
        self._old, _FORCED = _FORCED, self.path
        self._layers.__enter__()
        return self

    def __exit__(self, *exc):
        global _FORCED
        _FORCED = self._old
        self._layers.__exit__(*exc)


class StackedPolicy(TanhGaussianPolicy):
    """P Phase I actors as one module: obs [P, ..., o] -> mean, log-std [P, ..., a]."""

    def __init__(self, cells: int, obs_dim: int, act_dim: int, hidden: int = HIDDEN):
        nn.Module.__init__(self)
        self.cells = cells
        self.trunk = nn.Sequential(StackedLinear(cells, obs_dim, hidden), nn.ReLU(),
                                   StackedLinear(cells, hidden, hidden), nn.ReLU())  # fmt: skip
        self.mean_head = StackedLinear(cells, hidden, act_dim)
        self.log_std_head = StackedLinear(cells, hidden, act_dim)

    def _trunk(self, obs: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        lead = obs.shape[1:-1]
        return self.trunk(obs.reshape(self.cells, -1, obs.shape[-1])), lead  # [P, M, H]

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from hrl_core.rl.networks import LOG_STD_MAX, LOG_STD_MIN

        h, lead = self._trunk(obs)
        log_std = self.log_std_head(h).clamp(LOG_STD_MIN, LOG_STD_MAX)
        mean = self.mean_head(h)
        return mean.reshape(self.cells, *lead, -1), log_std.reshape(self.cells, *lead, -1)  # [P, ..., a]

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        h, lead = self._trunk(obs)
        return torch.tanh(self.mean_head(h)).reshape(self.cells, *lead, -1)


class StackedValue(ValueNetwork):
    """P IQL value networks as one module: obs [P, B, o] -> [P, B]."""

    def __init__(self, cells: int, obs_dim: int, hidden: int = HIDDEN):
        nn.Module.__init__(self)
        self.net = nn.Sequential(StackedLinear(cells, obs_dim, hidden), nn.ReLU(),
                                 StackedLinear(cells, hidden, hidden), nn.ReLU(),
                                 StackedLinear(cells, hidden, 1))  # fmt: skip


def _same(stacked: torch.Tensor, solo: torch.Tensor) -> torch.Tensor:
    return stacked  # [P, *solo shape] already


def _stacked_module(module, cells: int, obs_dim: int, act_dim: int):
    """An empty stack of P copies of a solo module, with the view from a stacked parameter to P solo ones."""
    if isinstance(module, TanhGaussianPolicy):
        return StackedPolicy(cells, obs_dim, act_dim), _same
    if isinstance(module, ValueNetwork):
        return StackedValue(cells, obs_dim), _same
    if isinstance(module, EnsembleQ):
        n = module.n_members
        return EnsembleQ(obs_dim, act_dim, n, cells=cells), lambda stacked, solo: stacked.unflatten(0, (cells, n))
    raise HrlError(f"a population cannot stack a {type(module).__name__}: run these cells alone (--population 1)")


def _pairs(stacked, solo_modules) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
    """(stacked parameter, the P solo parameters it holds), in ``parameters()`` order (the optimizers')."""
    named = [dict(m.named_parameters()) for m in solo_modules]
    return [(param, [n[name] for n in named]) for name, param in stacked.named_parameters()]


class Stack:
    """The stacked agent of P cells and the map between it and the cells' own agents."""

    def __init__(self, agents: list, generators: list[torch.Generator]):
        if len(agents) != len(generators) or not agents:
            raise ValueError("one generator per cell")
        first = agents[0]
        self.cells = len(agents)
        self.agents = agents
        self.agent = copy.copy(first)  # same class, config and dimensions; its parts replaced below
        self._views = {}  # part name -> (stacked part, view function)
        parts = first.modules()
        with torch.no_grad():
            for name, part in parts.items():
                if isinstance(part, torch.optim.Optimizer):
                    continue
                if torch.is_tensor(part):  # a scalar such as log alpha: [P]
                    stacked = torch.stack([a.modules()[name].detach() for a in agents]).requires_grad_(
                        part.requires_grad
                    )
                    self._views[name] = (stacked, None)
                else:
                    module, view = _stacked_module(part, self.cells, first.obs_dim, first.act_dim)
                    module = module.to(first.device)
                    for param, solos in _pairs(module, [a.modules()[name] for a in agents]):
                        cells_view = view(param, solos[0])
                        for p, solo in enumerate(solos):
                            cells_view[p].copy_(solo)
                        param.requires_grad_(solos[0].requires_grad)
                    self._views[name] = (module, view)
                    stacked = module
                setattr(self.agent, name, stacked)
        self.draws = CellDraws(generators)
        self.agent.draws = self.draws
        self.agent.actor.draws = self.draws
        # One fused Adam per solo optimizer, over the stacked part it steps, its moments stacked.
        for name, opt in parts.items():
            if not isinstance(opt, torch.optim.Optimizer):
                continue
            target = first.optimized_part(name)
            if target not in self._views:
                raise HrlError(f"a population cannot stack optimizer {name!r} (no part {target!r})")
            stacked, _ = self._views[target]
            params = [stacked] if torch.is_tensor(stacked) else list(stacked.parameters())
            new = make_adam(params, lr=opt.param_groups[0]["lr"])
            self._load_moments(new, name, target)
            setattr(self.agent, name, new)
        self.agent.bind()

    # -- moments -----------------------------------------------------------------------
    def _param_pairs(self, target: str) -> list[tuple[torch.Tensor, list[torch.Tensor], object]]:
        stacked, view = self._views[target]
        if torch.is_tensor(stacked):
            return [(stacked, [a.modules()[target] for a in self.agents], None)]
        return [(param, solos, view) for param, solos in _pairs(stacked, [a.modules()[target] for a in self.agents])]

    def _load_moments(self, new: torch.optim.Optimizer, opt_name: str, target: str) -> None:
        solo_opts = [a.modules()[opt_name] for a in self.agents]
        for param, solos, view in self._param_pairs(target):
            states = [o.state.get(s) for o, s in zip(solo_opts, solos, strict=True)]
            if all(not st for st in states):
                continue  # no step taken yet
            if any(not st for st in states) or len({float(st["step"]) for st in states}) > 1:
                raise HrlError("cells of one population must share their optimizer's step count; "
                               "pack cells at the same step together")  # fmt: skip
            state = {"step": states[0]["step"].clone()}
            for key in ("exp_avg", "exp_avg_sq"):
                buf = torch.zeros_like(param)
                cells_view = buf if view is None else view(buf, solos[0])
                with torch.no_grad():
                    for p, st in enumerate(states):
                        cells_view[p].copy_(st[key])
                state[key] = buf
            new.state[param] = state

    # -- back to the cells ---------------------------------------------------------------
    @torch.no_grad()
    def unstack_into(self, cells: list[int] | None = None) -> None:
        """Copy the stack back into the cells' own agents (parameters and optimizer moments):
        each cell's agent is then what its run alone would hold."""
        for p in cells if cells is not None else range(self.cells):
            agent = self.agents[p]
            parts = agent.modules()
            for target in self._views:
                for param, solos, view in self._param_pairs(target):
                    solos[p].copy_(param[p] if view is None else view(param, solos[p])[p])
            for name, opt in parts.items():
                if not isinstance(opt, torch.optim.Optimizer):
                    continue
                target = agent.optimized_part(name)
                stacked_opt = getattr(self.agent, name)
                for param, solos, view in self._param_pairs(target):
                    st = stacked_opt.state.get(param)
                    if not st:
                        continue
                    solo_state = {"step": st["step"].clone()}
                    for key in ("exp_avg", "exp_avg_sq"):
                        cells_view = st[key] if view is None else view(st[key], solos[p])
                        solo_state[key] = cells_view[p].clone()
                    opt.state[solos[p]] = solo_state


def stackable(agents: list) -> str:
    """Why these agents cannot share a population ('' when they can): one algorithm, equal
    hyper-parameters and shapes."""
    first = agents[0]
    for a in agents[1:]:
        if type(a) is not type(first) or vars(a.cfg) != vars(first.cfg):
            return "their algorithm or its hyper-parameters differ"
        if (a.obs_dim, a.act_dim, a.critic.n_members) != (first.obs_dim, first.act_dim, first.critic.n_members):
            return "their shapes differ"
    return ""
