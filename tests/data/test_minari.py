"""The Minari source on a small dataset written locally in Minari's on-disk format."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from hrl_core.data.corruption import trajectory_ids
from hrl_core.data.d4rl import read_hdf5
from hrl_core.data.sources import locate_source, read_source
from hrl_core.errors import HrlError
from hrl_core.run.config import FinetuneConfig
from hrl_core.run.finetune import finetune

REFS = (-20.0, 3000.0)  # made-up reference scores, so the test can tell whose are used


def write_minari(root, d4rl_file, n_episodes=6):
    """Episodes cut from real rollouts, stored as Minari stores them (observations T+1)."""
    data = read_hdf5(d4rl_file)
    ids = trajectory_ids(data.terminals, data.timeouts)
    path = root / "mujoco" / "hopper" / "medium-v0" / "data" / "main_data.hdf5"
    path.parent.mkdir(parents=True)
    lengths = []
    with h5py.File(path, "w") as f:
        for e in range(n_episodes):
            rows = np.flatnonzero(ids == e)
            g = f.create_group(f"episode_{e}")
            g["observations"] = np.concatenate([data.observations[rows], data.next_observations[rows[-1:]]])
            g["actions"] = data.actions[rows]
            g["rewards"] = data.rewards[rows]
            g["terminations"] = data.terminals[rows]
            g["truncations"] = data.timeouts[rows]
            lengths.append(len(rows))
        f.attrs["ref_min_score"], f.attrs["ref_max_score"] = REFS
        f.attrs["env_spec"] = json.dumps({"id": "Hopper-v5"})
        f.attrs["dataset_id"] = "mujoco/hopper/medium-v0"
    return data, ids, lengths


def test_minari_episodes_flatten_to_transitions(tmp_path, monkeypatch, d4rl_dir):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    data, ids, lengths = write_minari(tmp_path, d4rl_dir / "hopper_medium-v2.hdf5")
    got = read_source(locate_source("hopper-medium-v2", "minari"))
    n = sum(lengths)
    assert len(got) == n
    np.testing.assert_array_equal(got.observations, data.observations[:n])
    np.testing.assert_array_equal(got.next_observations, data.next_observations[:n])
    np.testing.assert_array_equal(got.terminals, data.terminals[:n])
    assert (got.terminals | got.timeouts).sum() == len(lengths)  # one end per episode
    p = got.provenance
    assert p["source"] == "minari" and p["eval_env_id"] == "Hopper-v5" and p["ref_scores"] == list(REFS)
    assert p["kind"].startswith("minari:")


def test_runs_on_minari_evaluate_in_v5_with_its_scores(tmp_path, monkeypatch, d4rl_dir, phase1_dir):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    write_minari(tmp_path / "minari", d4rl_dir / "hopper_medium-v2.hdf5", n_episodes=20)
    cfg = FinetuneConfig(algo="iql", env="hopper-medium-v2", remove_top_k=0, bonus_type="none", seed=1,
                         online_steps=10, eval_interval=10, eval_episodes=1, batch_size=32, dataset_source="minari",
                         phase1_dir=str(phase1_dir), save_dir=str(tmp_path / "runs"))  # fmt: skip
    result = finetune(cfg, progress=False)
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["environment"]["env_id"] == "Hopper-v5"
    assert config["environment"]["reference_scores"] == list(REFS)
    m = result.metrics
    expected = 100 * (np.array(m["raw_return_mean"]) - REFS[0]) / (REFS[1] - REFS[0])
    np.testing.assert_allclose(m["normalized_return"], expected)


def test_missing_minari_dataset_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    with pytest.raises(HrlError, match="minari download mujoco/hopper/medium-v0"):
        read_source(locate_source("hopper-medium-v2", "minari"))
