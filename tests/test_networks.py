"""The vectorized Q-ensemble against the Phase I networks it is loaded from."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hrl_core.rl.ensemble import PER_MEMBER_MIN_ROWS, EnsembleLinear, EnsembleQ, _PerMemberAffine
from hrl_core.run import phase1
from hrl_core.run.phase1 import load_state


def phase1_q(state: dict, head: str, in_dim: int) -> nn.Sequential:
    """A Phase I DoubleQNetwork head rebuilt with plain nn.Linear layers."""
    net = nn.Sequential(nn.Linear(in_dim, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 1))
    net.load_state_dict({k[len(head) + 1 :]: v for k, v in state.items() if k.startswith(head + ".")})
    return net


@pytest.mark.parametrize("run", ["cql_hopper-medium-v2_k60_noise0.0_s1", "iql_halfcheetah-medium-v2_k0_noise0.0_s1"])
def test_members_0_1_reproduce_checkpoint_q1_q2(phase1_dir, run):
    state = load_state(phase1_dir / run / "checkpoint.pt")["critic"]
    in_dim = state["q1.0.weight"].shape[1]
    obs_dim = 11 if "hopper" in run else 17
    ens = EnsembleQ(obs_dim, in_dim - obs_dim, n_members=5)
    phase1.double_q_into(ens, state)
    x = torch.randn(512, in_dim)
    q = ens.forward_input(x)  # [5, 512]
    for member, head in enumerate(("q1", "q2")):
        expected = phase1_q(state, head, in_dim)(x).squeeze(-1)
        torch.testing.assert_close(q[member], expected, rtol=1e-5, atol=1e-4)
    # Fresh members are not copies of the loaded ones.
    assert not torch.allclose(q[2], q[0], atol=1.0)


def test_batched_forward_equals_member_loop():
    torch.manual_seed(0)
    ens = EnsembleQ(5, 2, n_members=4)
    obs, act = torch.randn(32, 5), torch.randn(32, 2)
    q = ens(obs, act)
    x = torch.cat([obs, act], -1)
    for i in range(4):
        h = torch.relu(x @ ens.l0.weight[i] + ens.l0.bias[i])
        h = torch.relu(h @ ens.l1.weight[i] + ens.l1.bias[i])
        torch.testing.assert_close(q[i], (h @ ens.l2.weight[i] + ens.l2.bias[i]).squeeze(-1))
    # The same input given per member ([N, B, in]) takes the bmm path: same numbers.
    torch.testing.assert_close(ens.forward_input(x.expand(4, -1, -1)), q)


@pytest.mark.parametrize("shared", [True, False])
def test_per_member_gemms_have_baddbmm_gradients(shared):
    # The CPU speed path is a hand-written autograd.Function: check its backward
    # numerically (float64) for a shared [B, in] input and per-member [N, B, in] inputs.
    torch.manual_seed(2)
    n, b, d_in, d_out = 3, 5, 4, 6
    x = torch.randn(b, d_in) if shared else torch.randn(n, b, d_in)
    w, bias = torch.randn(n, d_in, d_out), torch.randn(n, 1, d_out)
    inputs = tuple(t.double().requires_grad_(True) for t in (x, w, bias))
    assert torch.autograd.gradcheck(_PerMemberAffine.apply, inputs)


@pytest.mark.parametrize("shared", [True, False])
def test_ensemble_linear_cpu_path_matches_baddbmm(shared):
    # Forward and all three gradients of the layer as the agents call it (a batch big
    # enough to take the per-member path) against the plain baddbmm maths.
    torch.manual_seed(3)
    layer = EnsembleLinear(3, 20, 256)
    b = 4 * PER_MEMBER_MIN_ROWS
    x = (torch.randn(b, 20) if shared else torch.randn(3, b, 20)).requires_grad_(True)
    grad_out = torch.randn(3, b, 256)
    fast = layer(x)
    fast_grads = torch.autograd.grad(fast, (x, layer.weight, layer.bias), grad_out)
    plain = torch.baddbmm(layer.bias, x.expand(3, -1, -1) if shared else x, layer.weight)
    plain_grads = torch.autograd.grad(plain, (x, layer.weight, layer.bias), grad_out)
    torch.testing.assert_close(fast, plain)
    for got, want in zip(fast_grads, plain_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


def test_min_and_bessel_std_over_members():
    torch.manual_seed(1)
    ens = EnsembleQ(3, 1, n_members=3)
    obs, act = torch.randn(8, 3), torch.randn(8, 1)
    q = ens(obs, act)
    torch.testing.assert_close(ens.q_min(obs, act), q.min(0).values)
    mean = q.mean(0)
    bessel = (((q - mean) ** 2).sum(0) / 2).sqrt()
    # The exploration signal (what the explorer measures at the action taken) is this Bessel std.
    from hrl_core.rl.explorers import Explorer

    explorer = Explorer()
    explorer._measure(q[:, 0].detach())
    assert explorer.disagreement == pytest.approx(float(bessel[0].detach()), rel=1e-6)


def test_member_count_bounds():
    with pytest.raises(ValueError):
        EnsembleQ(3, 1, n_members=1)
    with pytest.raises(ValueError):
        EnsembleQ(3, 1, n_members=11)
