"""hrl data generate: behaviour policy files and batched rollouts in D4RL's layout."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from hrl_core.data import read_hdf5
from hrl_core.rl.envs import DATASETS, normalized_score
from hrl_core.rl.networks import TanhGaussianPolicy
from hrl_core.run.generate import (
    MEDIUM_TARGET,
    generate,
    load_policy,
    rollout,
    save_policy,
    shipped_policy_path,
    write_dataset,
)


def test_policy_file_round_trip(tmp_path):
    actor = TanhGaussianPolicy(11, 3)
    record = {"sac_train_steps": 1234, "sac_eval_normalized_return": 35.5, "train_seed": 0, "eval_history": [[1, 2.0]]}
    save_policy(actor, tmp_path / "p.pt", record)
    loaded, rec = load_policy(tmp_path / "p.pt", "hopper-medium-v2")
    assert rec == record
    for k, v in actor.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    assert torch.load(tmp_path / "p.pt", weights_only=True)["record"]["sac_train_steps"] == 1234


def test_batched_rollout_keeps_trajectories_contiguous():
    torch.manual_seed(0)
    data = rollout(TanhGaussianPolicy(11, 3), "hopper-medium-v2", 3000, seed=0, n_envs=4)
    assert len(data["rewards"]) == 3000
    ends = data["terminals"] | data["timeouts"]
    assert ends[-1]  # the file ends a trajectory
    inside = np.flatnonzero(~ends[:-1])  # row i and i+1 belong to one trajectory
    np.testing.assert_array_equal(data["next_observations"][inside], data["observations"][inside + 1])
    assert not (data["terminals"] & data["timeouts"]).any()


def test_generate_from_a_policy_file_is_labelled_generated(tmp_path):
    save_policy(TanhGaussianPolicy(11, 3), tmp_path / "p.pt", {"sac_train_steps": 7, "sac_eval_normalized_return": 1.0,
                                                                "policy": "a test policy"})  # fmt: skip
    path = generate("hopper-medium-v2", tmp_path / "out" / "hopper_medium-v2.hdf5", policy_path=tmp_path / "p.pt",
                    n_transitions=2000, progress=False)  # fmt: skip
    data = read_hdf5(path)
    assert len(data) >= 1999 and data.provenance["kind"].startswith("generated")
    with h5py.File(path) as f:
        attrs = dict(f.attrs)
    assert attrs["sac_train_steps"] == 7 and attrs["policy_origin"].endswith("p.pt")
    assert attrs["policy"] == "a test policy; stochastic rollouts" and attrs["n_transitions"] == 2000


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_each_dataset_ships_a_medium_level_behaviour_policy(tmp_path, dataset):
    path = shipped_policy_path(dataset)
    assert path.exists() and path.stat().st_size < 1_000_000, path  # a few hundred KB in the wheel
    _, record = load_policy(path, dataset)  # loads with the dataset's dimensions
    assert record["reached_target"] and record["sac_eval_normalized_return"] >= MEDIUM_TARGET
    assert record["train_seed"] >= 0 and record["sac_train_steps"] > 0 and not record["quick"]
    # Measured here, not taken from the record: its stochastic rollouts are D4RL-"medium" data.
    out = generate(dataset, tmp_path / "d.hdf5", n_transitions=10_000, seed=3, progress=False)
    with h5py.File(out) as f:
        attrs = dict(f.attrs)
    assert attrs["policy_origin"].startswith("behaviour policy") and "shipped" in attrs["policy_origin"]
    assert 25.0 <= attrs["dataset_mean_normalized_return"] <= 50.0, attrs["dataset_mean_normalized_return"]


def test_data_level_leaves_out_the_trajectory_cut_by_the_budget(tmp_path):
    """The file's last trajectory, cut where the transition budget ends, is not a measure of
    the policy; a trajectory ending at a terminal or at the time limit is."""

    def data(lengths, terminal_last):
        n = sum(lengths)
        ends = np.cumsum(lengths) - 1
        terminals, timeouts = np.zeros(n, bool), np.zeros(n, bool)
        terminals[ends[:-1]] = True
        (terminals if terminal_last else timeouts)[ends[-1]] = True
        rewards = np.concatenate([np.full(k, r, np.float32) for k, r in zip(lengths, [3.0, 1.0, 0.01], strict=True)])
        obs = np.zeros((n, 11), np.float32)
        return {"observations": obs, "actions": np.zeros((n, 3), np.float32), "rewards": rewards,
                "next_observations": obs, "terminals": terminals, "timeouts": timeouts}  # fmt: skip

    def level(lengths, terminal_last):
        out = write_dataset(data(lengths, terminal_last), "hopper-medium-v2", tmp_path / "x.hdf5", {})
        with h5py.File(out) as f:
            return f.attrs["n_complete_trajectories"], f.attrs["dataset_mean_normalized_return"]

    returns = np.array([3.0 * 400, 1.0 * 300, 0.01 * 50])
    cut, ended = level([400, 300, 50], False), level([400, 300, 50], True)
    assert cut == (2, pytest.approx(float(normalized_score("hopper-medium-v2", returns[:2]).mean())))
    assert ended == (3, pytest.approx(float(normalized_score("hopper-medium-v2", returns).mean())))
    at_limit = level([400, 300, 1000], False)  # ended by the time limit, not cut
    assert at_limit[0] == 3
