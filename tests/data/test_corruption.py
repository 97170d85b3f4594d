"""Top-k trajectory removal and reward noise on hand-built datasets."""

from __future__ import annotations

import numpy as np
import pytest

from hrl_core.data.corruption import add_reward_noise, remove_top_k, top_k_mask, trajectory_ids
from hrl_core.data.d4rl import Transitions
from hrl_core.errors import HrlError


def build(returns_per_traj, lengths, end="terminal"):
    """Trajectories of the given lengths whose rewards sum to the given returns."""
    rewards, terms, touts, tags = [], [], [], []
    for i, (ret, n) in enumerate(zip(returns_per_traj, lengths, strict=True)):
        rewards += [ret / n] * n
        flags = [False] * n
        flags[-1] = True
        terms += flags if end == "terminal" else [False] * n
        touts += flags if end == "timeout" else [False] * n
        tags += [i] * n
    n = len(rewards)
    obs = np.array(tags, dtype=np.float32)[:, None].repeat(2, 1)  # obs carries the trajectory id
    return Transitions(
        observations=obs,
        actions=np.zeros((n, 1), np.float32),
        rewards=np.array(rewards, np.float32),
        next_observations=obs.copy(),
        terminals=np.array(terms),
        timeouts=np.array(touts),
    )


def test_trajectory_ids_split_at_terminals_and_timeouts():
    term = np.array([0, 1, 0, 0, 0, 0], bool)
    tout = np.array([0, 0, 0, 1, 0, 0], bool)
    np.testing.assert_array_equal(trajectory_ids(term, tout), [0, 0, 1, 1, 2, 2])


@pytest.mark.parametrize(
    "k, removed", [(0, set()), (30, {4, 1, 6}), (60, {4, 1, 6, 0, 3}), (10, {4}), (50, {4, 1, 6, 0})]
)
def test_removes_ceil_of_k_percent_highest_returns(k, removed):
    returns = [50.0, 80.0, 10.0, 40.0, 99.0, 5.0, 70.0]  # 7 trajectories
    data = build(returns, [3, 2, 4, 1, 5, 2, 3])
    out = remove_top_k(data, k)
    kept = set(np.unique(out.observations[:, 0]).astype(int))
    assert kept == set(range(7)) - removed
    assert out.provenance["corruption"]["trajectories_removed"] == len(removed)
    assert len(data) == 20  # input untouched


def test_timeouts_delimit_trajectories_too():
    data = build([1.0, 9.0, 5.0], [2, 2, 2], end="timeout")
    out = remove_top_k(data, 30)  # ceil(0.9) = 1 trajectory: the return-9 one
    assert set(np.unique(out.observations[:, 0]).astype(int)) == {0, 2}


def test_ties_break_by_file_order():
    mask = top_k_mask(np.ones(4, np.float32), np.ones(4, bool), np.zeros(4, bool), 50)
    np.testing.assert_array_equal(mask, [False, False, True, True])


@pytest.mark.parametrize("k", [-1, 100, 150])
def test_k_out_of_range(k):
    with pytest.raises(HrlError, match="outside"):
        remove_top_k(build([1.0], [2]), k)


def test_reward_noise_is_seeded_and_pure():
    data = build([10.0, 20.0], [50, 50])
    a = add_reward_noise(data, 0.5, seed=3)
    b = add_reward_noise(data, 0.5, seed=3)
    np.testing.assert_array_equal(a.rewards, b.rewards)
    assert np.abs(a.rewards - data.rewards).std() == pytest.approx(0.5 * np.sqrt(1 - 2 / np.pi), rel=0.3)
    assert "corruption" not in data.provenance
    np.testing.assert_array_equal(add_reward_noise(data, 0.0, 1).rewards, data.rewards)
