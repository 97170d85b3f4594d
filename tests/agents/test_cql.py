"""Online CQL: the vectorized loss equals a plain per-member implementation."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from hrl_core.data import OfflineData, read_hdf5
from hrl_core.rl.agents import make_agent
from hrl_core.run import phase1
from hrl_core.run.phase1 import load_state


@pytest.fixture(scope="module")
def setup(phase1_dir, d4rl_dir):
    ckpt = load_state(phase1_dir / "cql_hopper-medium-v2_k60_noise0.0_s1" / "checkpoint.pt")
    data = OfflineData(read_hdf5(d4rl_dir / "hopper_medium-v2.hdf5"))
    torch.manual_seed(0)
    idx = torch.randint(0, data.size, (32,))
    batch = {k: v[idx] for k, v in data.tensors.items()}
    return ckpt, batch


def plain_cql_loss(agent, batch, R=10):
    """CQL(H) written member by member with separate forwards (same RNG call order)."""
    crit, tgt, actor = agent.critic, agent.critic_target, agent.actor
    alpha = agent.log_alpha.exp().item()
    obs, act = batch["obs"], batch["act"]
    B, a_dim = act.shape
    with torch.no_grad():
        next_act, next_logp = actor.sample(batch["next_obs"])
        q_next = torch.stack([tgt(batch["next_obs"], next_act)[i] for i in range(tgt.n_members)])
        y = batch["rew"] + 0.99 * (1 - batch["done"]) * (q_next.min(0).values - alpha * next_logp)
        rand = torch.empty(R, B, a_dim).uniform_(-1, 1)
        pi_act, pi_logp = actor.sample(obs.unsqueeze(0).expand(R, B, -1))
    total = 0.0
    for i in range(crit.n_members):

        def q_i(o, a, i=i):
            x = torch.cat([o, a], -1)
            h = torch.relu(x @ crit.l0.weight[i] + crit.l0.bias[i])
            h = torch.relu(h @ crit.l1.weight[i] + crit.l1.bias[i])
            return (h @ crit.l2.weight[i] + crit.l2.bias[i]).squeeze(-1)

        q_data = q_i(obs, act)
        q_rand = torch.stack([q_i(obs, rand[r]) for r in range(R)]) + a_dim * math.log(2)
        q_pi = torch.stack([q_i(obs, pi_act[r]) for r in range(R)]) - pi_logp
        lse = torch.logsumexp(torch.cat([q_rand, q_pi]), dim=0)
        total = total + ((q_data - y) ** 2).mean() + 1.0 * (lse - q_data).mean()
    return total


def test_vectorized_loss_matches_plain(setup):
    ckpt, batch = setup
    agent = make_agent("cql", 11, 3, n_ensemble=3)
    phase1.load_into(agent, ckpt)
    torch.manual_seed(5)
    fast, _ = agent.critic_loss(batch)
    torch.manual_seed(5)
    slow = plain_cql_loss(agent, batch)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-3)
    # And the gradients agree.
    g_fast = torch.autograd.grad(fast, list(agent.critic.parameters()))
    torch.manual_seed(5)
    g_slow = torch.autograd.grad(plain_cql_loss(agent, batch), list(agent.critic.parameters()))
    for a, b in zip(g_fast, g_slow, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-3)


def test_load_restores_temperature_and_update_moves_critic(setup):
    ckpt, batch = setup
    agent = make_agent("cql", 11, 3, n_ensemble=3)
    phase1.load_into(agent, ckpt)
    assert agent.log_alpha.item() == pytest.approx(ckpt["log_alpha"].item())
    before = agent.critic.l1.weight.detach().clone()
    target_before = agent.critic_target.l1.weight.detach().clone()
    info = agent.update(batch)
    assert set(info) >= {"critic_loss", "cql_penalty", "actor_loss", "alpha", "q_member"}
    assert not torch.equal(before, agent.critic.l1.weight)
    # Polyak: the target moved by tau of the gap, no more.
    step = (agent.critic_target.l1.weight - target_before).abs().max()
    gap = (agent.critic.l1.weight - target_before).abs().max()
    assert 0 < step <= 0.005 * gap + 1e-7


def test_state_dict_roundtrip_gives_identical_next_update(setup):
    ckpt, batch = setup
    a = make_agent("cql", 11, 3, n_ensemble=3)
    phase1.load_into(a, ckpt)
    a.update(batch)
    b = make_agent("cql", 11, 3, n_ensemble=3)
    b.load_state_dict(a.state_dict())
    torch.manual_seed(9)
    ia = a.update(batch)
    torch.manual_seed(9)
    ib = b.update(batch)
    for k in ia:
        assert torch.equal(ia[k], ib[k]), k


def test_compiled_critic_matches_eager(setup):
    """torch.compile is a speed measure only: same loss and gradients within float tolerance."""
    ckpt, batch = setup
    agents = []
    for compile_critic in (False, True):
        torch.manual_seed(0)  # same fresh members in both
        agents.append(make_agent("cql", 11, 3, n_ensemble=3, compile_critic=compile_critic))
        phase1.load_into(agents[-1], ckpt)
    eager, compiled = agents
    results = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for agent in (eager, compiled):
            torch.manual_seed(3)
            loss, _ = agent.critic_loss(batch)
            grads = torch.autograd.grad(loss, list(agent.critic.parameters()))
            results.append((loss, grads))
    assert not [w for w in caught if "torch.compile of" in str(w.message)], "fell back to eager"
    (l_e, g_e), (l_c, g_c) = results
    torch.testing.assert_close(l_c, l_e, rtol=1e-5, atol=1e-3)
    for a, b in zip(g_c, g_e, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-3)
