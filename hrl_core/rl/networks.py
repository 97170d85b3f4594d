"""Networks: the vectorized Q-ensemble and the Phase I actor / value networks.

The ensemble follows the EDAC / RLPD design (An et al., 2021; Ball et al., 2023):
N critics stored as one stack of weights ``[N, in, out]`` so a forward pass over all
members is one batched matmul per layer instead of a Python loop.

``TanhGaussianPolicy`` and ``ValueNetwork`` keep Phase I's parameter names
(``trunk.0``, ``mean_head``, ``net.0`` ...) so Phase I state dicts load unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # Phase I clamp of the actor's log-std
HIDDEN = 256  # Phase I hidden width


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
        # x: [B, in] (same input for every member) or [N, B, in]  ->  [N, B, out]
        if _per_member_pays(x):
            return _PerMemberAffine.apply(x, self.weight, self.bias)
        if x.dim() == 2:
            x = x.expand(self.weight.shape[0], -1, -1)  # a view: no copy per member
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
        shared = x.dim() == 2  # one [B, in] input for every member
        out = x.new_empty(n, x.shape[-2], weight.shape[2])  # [N, B, out]
        for i in range(n):
            torch.addmm(bias[i], x if shared else x[i], weight[i], out=out[i])
        ctx.save_for_backward(x, weight)
        return out

    @staticmethod
    def backward(ctx, grad):  # grad: [N, B, out]
        x, weight = ctx.saved_tensors
        n, shared = weight.shape[0], x.dim() == 2
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            if shared:  # a shared input's gradient is the sum over members: [B, in]
                grad_x = torch.mm(grad[0], weight[0].t())
                for i in range(1, n):
                    grad_x.addmm_(grad[i], weight[i].t())
            else:
                grad_x = torch.empty_like(x)  # [N, B, in]
                for i in range(n):
                    torch.mm(grad[i], weight[i].t(), out=grad_x[i])
        if ctx.needs_input_grad[1]:
            grad_w = torch.empty_like(weight)  # [N, in, out]
            for i in range(n):
                torch.mm((x if shared else x[i]).t(), grad[i], out=grad_w[i])
        if ctx.needs_input_grad[2]:
            grad_b = grad.sum(dim=1, keepdim=True)  # [N, 1, out]
        return grad_x, grad_w, grad_b


class EnsembleQ(nn.Module):
    """N Q-networks [obs+act -> 256 -> 256 -> 1] evaluated together: output [N, B]."""

    def __init__(self, obs_dim: int, act_dim: int, n_members: int = 3, hidden: int = HIDDEN):
        super().__init__()
        if not 2 <= n_members <= 10:
            raise ValueError(f"n_members={n_members} outside 2..10")
        self.n_members = n_members
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.l0 = EnsembleLinear(n_members, obs_dim + act_dim, hidden)
        self.l1 = EnsembleLinear(n_members, hidden, hidden)
        self.l2 = EnsembleLinear(n_members, hidden, 1)

    def forward_input(self, x: torch.Tensor) -> torch.Tensor:
        """Q for pre-concatenated inputs x [B, o+a] or [N, B, o+a] -> [N, B]."""
        h = F.relu(self.l0(x))  # [N, B, H]
        h = F.relu(self.l1(h))  # [N, B, H]
        return self.l2(h).squeeze(-1)  # [N, B]

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.forward_input(torch.cat([obs, act], dim=-1))  # [N, B]

    def q_min(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Minimum over all members: the pessimistic value for targets and the actor. [B]"""
        return self(obs, act).min(dim=0).values

    def disagreement(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Std over members (Bessel-corrected, as torch.std): the exploration signal. [B]"""
        return self(obs, act).std(dim=0)

    def load_double_q(self, double_q_state: dict) -> None:
        """Put a Phase I DoubleQNetwork's q1/q2 into members 0 and 1.

        ``q{1,2}.{0,2,4}`` are nn.Linear layers storing weight as [out, in]; the
        ensemble stores [in, out], hence the transpose. Members 2.. are left as they
        are (fresh default init).
        """
        layers = (self.l0, self.l1, self.l2)
        with torch.no_grad():
            for member, head in enumerate(("q1", "q2")):
                for layer, idx in zip(layers, (0, 2, 4), strict=True):
                    w = double_q_state[f"{head}.{idx}.weight"]  # [out, in]
                    b = double_q_state[f"{head}.{idx}.bias"]  # [out]
                    if w.t().shape != layer.weight.shape[1:]:
                        raise ValueError(
                            f"critic layer {head}.{idx} has shape {tuple(w.shape)}, expected "
                            f"{tuple(layer.weight.shape[1:][::-1])}"
                        )
                    layer.weight[member].copy_(w.t())
                    layer.bias[member, 0].copy_(b)

    def to_double_q(self) -> dict:
        """Members 0 and 1 as a Phase I DoubleQNetwork state dict (inverse of load_double_q)."""
        out = {}
        for member, head in enumerate(("q1", "q2")):
            for layer, idx in zip((self.l0, self.l1, self.l2), (0, 2, 4), strict=True):
                out[f"{head}.{idx}.weight"] = layer.weight[member].detach().t().contiguous().clone()
                out[f"{head}.{idx}.bias"] = layer.bias[member, 0].detach().clone()
        return out


class TanhGaussianPolicy(nn.Module):
    """Phase I actor: a = tanh(u), u ~ N(mean(s), exp(log_std(s)))."""

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
        u = mean + log_std.exp() * torch.randn_like(mean)
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
