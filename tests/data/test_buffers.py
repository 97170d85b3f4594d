"""Replay buffer and hybrid batch composition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hrl_core.data import HybridSampler, OfflineData, ReplayBuffer, read_hdf5, split_batch_size


@pytest.fixture(scope="module")
def offline(d4rl_dir):
    return OfflineData(read_hdf5(d4rl_dir / "hopper_medium-v2.hdf5"))


def fill(buffer: ReplayBuffer, n: int) -> None:
    for i in range(n):
        # Online observations are far outside the data's range, so rows can be told apart.
        buffer.add(np.full(11, 1e6 + i), np.zeros(3), 1.0, 0.25, np.full(11, 1e6 + i + 1), False)


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 1.0])
def test_hybrid_batches_have_the_online_share(offline, ratio):
    buffer = ReplayBuffer(1000, 11, 3)
    sampler = HybridSampler(offline, buffer, batch_size=64, online_ratio=ratio)
    fill(buffer, 63)  # one short of a batch: all offline
    assert (sampler.sample()["obs"] < 1e5).all()
    fill(buffer, 1)
    batch = sampler.sample()
    online_rows = (batch["obs"][:, 0] >= 1e6).sum().item()
    assert online_rows == round(ratio * 64)
    assert batch["obs"].shape == (64, 11) and batch["rew"].shape == (64,)


def test_split_rounds_like_the_spec():
    assert split_batch_size(256, 0.5, 10_000) == (128, 128)
    assert split_batch_size(255, 0.5, 10_000) == (128, 127)
    assert split_batch_size(256, 0.5, 255) == (0, 256)


def test_stored_reward_is_env_reward_plus_bonus_and_state_roundtrips():
    buffer = ReplayBuffer(10, 11, 3)
    fill(buffer, 4)
    assert torch.equal(buffer.tensors["rew"][:4], torch.full((4,), 1.25))
    assert torch.equal(buffer.env_rew[:4], torch.ones(4))
    copy = ReplayBuffer(10, 11, 3)
    copy.load_state_dict(buffer.state_dict())
    assert copy.size == 4
    for k in buffer.tensors:
        assert torch.equal(copy.tensors[k], buffer.tensors[k])
    with pytest.raises(RuntimeError, match="full"):
        fill(buffer, 7)
