"""Online IQL: loss pieces and loading."""

from __future__ import annotations

import pytest
import torch

from hrl_core.data import OfflineData, read_hdf5
from hrl_core.rl.agents import make_agent
from hrl_core.rl.agents.iql import expectile_loss
from hrl_core.run import phase1
from hrl_core.run.phase1 import load_state


def test_expectile_loss_weights_signs_asymmetrically():
    diff = torch.tensor([2.0, -2.0])
    # 0.7 * 4 for the positive residual, 0.3 * 4 for the negative one, averaged.
    assert expectile_loss(diff, 0.7).item() == pytest.approx((0.7 * 4 + 0.3 * 4) / 2)
    assert expectile_loss(torch.tensor([1.0]), 0.5).item() == pytest.approx(0.5)


def test_update_uses_restored_value_and_clips_weights(phase1_dir, d4rl_dir):
    ckpt = load_state(phase1_dir / "iql_hopper-medium-v2_k0_noise0.0_s1" / "checkpoint.pt")
    agent = make_agent("iql", 11, 3, n_ensemble=3)
    phase1.load_into(agent, ckpt)
    data = OfflineData(read_hdf5(d4rl_dir / "hopper_medium-v2.hdf5"))
    batch = {k: v[:256] for k, v in data.tensors.items()}
    with torch.no_grad():
        expected_v = agent.value(batch["obs"])
    for name, p in agent.value.named_parameters():
        torch.testing.assert_close(p, ckpt["value"][name])
    info = agent.update(batch)
    # V was trained from the loaded weights: the loss is that of the Phase I V.
    with torch.no_grad():
        tq = agent.critic_target.q_min(batch["obs"], batch["act"])
    assert info["value_loss"].item() > 0 and expected_v.shape == (256,)
    assert torch.isfinite(tq).all()
    # Weights exp(3 * A) never exceed the clip, so a huge advantage cannot blow the actor up.
    assert agent.cfg.max_weight == 100.0 and torch.isfinite(info["actor_loss"])
