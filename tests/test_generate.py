"""hrl data generate: behaviour policy files and batched rollouts in D4RL's layout."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from hrl_core.data import read_hdf5
from hrl_core.rl.envs import DATASETS
from hrl_core.rl.networks import TanhGaussianPolicy
from hrl_core.run.generate import MEDIUM_TARGET, generate, load_policy, rollout, save_policy, shipped_policy_path


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
    out = generate(dataset, tmp_path / "d.hdf5", n_transitions=5_000, seed=3, progress=False)
    with h5py.File(out) as f:
        attrs = dict(f.attrs)
    assert attrs["policy_origin"].startswith("behaviour policy") and "shipped" in attrs["policy_origin"]
    assert 25.0 <= attrs["dataset_mean_normalized_return"] <= 50.0, attrs["dataset_mean_normalized_return"]
