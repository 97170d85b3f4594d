"""The Q-ensemble as one vectorized module, with its reductions and its member init beside it.

The ensemble follows the EDAC / RLPD design (An et al., 2021; Ball et al., 2023): N
critics stored as one stack of weights ``[N, in, out]``, so a forward pass over all
members is one batched matmul per layer instead of a Python loop. Beside it:

- the reduction every update uses for its Bellman target (:func:`target_min`: the min
  over members, or over a random pair as in REDQ/RLPD);
- how the fresh members (2..N-1) start, beyond nn.Linear's default init
  (:func:`warmstart_fresh_members`, :func:`perturb_fresh_members`).

Members 0-1 come from the Phase I double Q (``hrl_core.run.phase1`` maps the layers).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hrl_core.rl.draws import GLOBAL, Draws
from hrl_core.rl.networks import HIDDEN


class EnsembleLinear(nn.Module):
    """N independent linear layers applied with one batched matmul."""

    def __init__(self, n_members: int, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_members, in_features, out_features))  # [N, in, out]
        self.bias = nn.Parameter(torch.empty(n_members, 1, out_features))  # [N, 1, out]
        self.reset_parameters()

    def reset_parameters(self, members: slice | None = None) -> None:
        """nn.Linear's default init, U(-1/sqrt(in), 1/sqrt(in)), member by member."""
        members = members or slice(None)
        bound = 1.0 / math.sqrt(self.weight.shape[1])
        with torch.no_grad():
            self.weight[members].uniform_(-bound, bound)
            self.bias[members].uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, in] (same input for every member), [N, B, in] (one per member), or [G, B, in] with G
        # dividing N (one per group of N/G consecutive members: a population's cells)  ->  [N, B, out]
        if _per_member_pays(x):
            return _PerMemberAffine.apply(x, self.weight, self.bias)
        n = self.weight.shape[0]
        if x.dim() == 2:
            x = x.expand(n, -1, -1)  # a view: no copy per member
        elif x.shape[0] != n:
            x = x.unsqueeze(1).expand(-1, n // x.shape[0], -1, -1).reshape(n, *x.shape[1:])
        return torch.baddbmm(self.bias, x, self.weight)  # bias + x @ W in one call


PER_MEMBER_MIN_ROWS = 64  # below this (acting: 1 row) one baddbmm call beats N calls' overhead
# None: choose per call (:func:`_per_member_pays`); "baddbmm" | "per_member": force one path
# everywhere (tests run the GPU path on a CPU with it: see :func:`layer_path`).
_FORCED_PATH: str | None = None


def _per_member_pays(x: torch.Tensor) -> bool:
    """Use :class:`_PerMemberAffine` (CPU, batches of 64+ rows, not inside torch.compile,
    which traces the plain ``baddbmm`` and fuses around it); ``baddbmm`` otherwise (GPUs)."""
    if _FORCED_PATH is not None:
        return _FORCED_PATH == "per_member"
    return x.device.type == "cpu" and x.shape[-2] >= PER_MEMBER_MIN_ROWS and not torch.compiler.is_compiling()


class layer_path:
    """``with layer_path("baddbmm"): ...`` runs every ensemble layer on one path (the GPU
    path on a CPU, for tests), restoring the automatic choice afterwards."""

    def __init__(self, path: str):
        if path not in ("baddbmm", "per_member"):
            raise ValueError(f"unknown layer path {path!r}")
        self.path, self._old = path, None

    def __enter__(self):
        global _FORCED_PATH
        self._old, _FORCED_PATH = _FORCED_PATH, self.path
        return self

    def __exit__(self, *exc):
        global _FORCED_PATH
        _FORCED_PATH = self._old


class _PerMemberAffine(torch.autograd.Function):
    """bias + x @ W for every member, as N GEMMs that each use all CPU threads.

    Same maths as ``torch.baddbmm`` (and its backward), written out because torch's
    CPU ``bmm`` splits the *members* among threads: with N=3 members on 2 threads one
    thread does two GEMMs while the other idles for one, so the layer runs at ~75% of
    the GEMM rate (measured: 15.7 vs 11.9 ms for a [3, 5376, 256] x [3, 256, 256]
    layer, forward + backward 47 vs 37 ms). Here each member's GEMM is one multi-threaded
    call writing into its slice of a preallocated output, so there is no extra copy.
    The backward also gains with one thread: a shared [B, in] input's gradient is
    accumulated with ``addmm_`` instead of materializing [N, B, in] and summing it
    (the CQL critic pass, forward + backward: 101 -> 89 ms on 1 thread, 66 -> 53 ms on
    2). On GPUs ``baddbmm`` is used.
    """

    @staticmethod
    def forward(ctx, x, weight, bias):
        n = weight.shape[0]
        out = x.new_empty(n, x.shape[-2], weight.shape[2])  # [N, B, out]
        for i in range(n):
            torch.addmm(bias[i], _member_input(x, i, n), weight[i], out=out[i])
        ctx.save_for_backward(x, weight)
        return out

    @staticmethod
    def backward(ctx, grad):  # grad: [N, B, out]
        x, weight = ctx.saved_tensors
        n = weight.shape[0]
        groups = 1 if x.dim() == 2 else x.shape[0]  # inputs shared by n // groups members each
        size = n // groups
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            if size > 1:  # a shared input's gradient is the sum over its members: [B, in] (per group)
                grad_x = torch.empty_like(x)
                for g in range(groups):
                    out = grad_x if x.dim() == 2 else grad_x[g]
                    torch.mm(grad[g * size], weight[g * size].t(), out=out)
                    for i in range(g * size + 1, (g + 1) * size):
                        out.addmm_(grad[i], weight[i].t())
            else:
                grad_x = torch.empty_like(x)  # [N, B, in]
                for i in range(n):
                    torch.mm(grad[i], weight[i].t(), out=grad_x[i])
        if ctx.needs_input_grad[1]:
            grad_w = torch.empty_like(weight)  # [N, in, out]
            for i in range(n):
                torch.mm(_member_input(x, i, n).t(), grad[i], out=grad_w[i])
        if ctx.needs_input_grad[2]:
            grad_b = grad.sum(dim=1, keepdim=True)  # [N, 1, out]
        return grad_x, grad_w, grad_b


def _member_input(x: torch.Tensor, i: int, n: int) -> torch.Tensor:
    """Member i's input: x itself (shared [B, in]), x[i] (one per member), or its group's x[i // (n / G)]."""
    if x.dim() == 2:
        return x
    return x[i] if x.shape[0] == n else x[i // (n // x.shape[0])]


class EnsembleQ(nn.Module):
    """N Q-networks [obs+act -> 256 -> 256 -> 1] evaluated together: output [N, B]."""

    def __init__(self, obs_dim: int, act_dim: int, n_members: int = 3, hidden: int = HIDDEN, cells: int = 1):
        super().__init__()
        if not 2 <= n_members <= 10:
            raise ValueError(f"n_members={n_members} outside 2..10")
        self.n_members = n_members  # per cell
        self.cells = cells  # > 1: the critics of a population's cells, stacked ([P * N, in, out] weights)
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.l0 = EnsembleLinear(cells * n_members, obs_dim + act_dim, hidden)
        self.l1 = EnsembleLinear(cells * n_members, hidden, hidden)
        self.l2 = EnsembleLinear(cells * n_members, hidden, 1)

    def forward_input(self, x: torch.Tensor) -> torch.Tensor:
        """Q for pre-concatenated inputs x [B, o+a] or [N, B, o+a] -> [N, B]; a population's
        (``cells`` = P): x [P, B, o+a], one per cell -> [P, N, B]."""
        h = F.relu(self.l0(x))  # [N, B, H]  (population: [P*N, B, H])
        h = F.relu(self.l1(h))  # [N, B, H]
        q = self.l2(h).squeeze(-1)  # [N, B]
        return q if self.cells == 1 else q.unflatten(0, (self.cells, self.n_members))  # [P, N, B]

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.forward_input(torch.cat([obs, act], dim=-1))  # [N, B]  (population: [P, N, B])

    def q_min(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Minimum over all members: the pessimistic value for targets and the actor. [B]  ([P, B])"""
        return self(obs, act).min(dim=-2).values


# --------------------------------------------------------------------------------------
# Reductions and member init
# --------------------------------------------------------------------------------------
def target_min(q_all: torch.Tensor, reduce: str = "min_all", draws: Draws = GLOBAL) -> torch.Tensor:
    """Pessimistic target from member values q_all [N, B] -> [B] (a population's [P, N, B] -> [P, B]).

    ``min_all``: the spec, min over every member. ``min_random2``: min over two
    distinct members drawn afresh each update, as in REDQ (Chen et al., ICLR 2021)
    and RLPD (Ball et al., ICML 2023): less pessimistic than the full min, so fresh
    members (Q ~ 0) do not drag every target towards zero.
    """
    if reduce == "min_all":
        return q_all.min(dim=-2).values
    if reduce == "min_random2":
        if q_all.dim() == 2:
            pair = draws.randperm(q_all.shape[0], q_all.device)[:2]
            return q_all[pair].min(dim=0).values
        pair = draws.randperm(q_all.shape[-2], q_all.device)[..., :2]  # [P, 2]: one pair per cell
        return q_all.gather(-2, pair.unsqueeze(-1).expand(-1, -1, q_all.shape[-1])).min(dim=-2).values
    raise ValueError(f"unknown target_reduce {reduce!r}")


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
