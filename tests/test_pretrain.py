"""Phase I pretraining writes Phase I's layout; Phase II loads it; the chain runs on generated data."""

from __future__ import annotations

import json
import math

import h5py
import pytest
import torch

from hrl_core.data import read_hdf5
from hrl_core.run.config import FinetuneConfig
from hrl_core.run.finetune import finetune
from hrl_core.run.generate import generate
from hrl_core.run.pretrain import PretrainConfig, pretrain


@pytest.mark.parametrize("algo", ["iql", "cql"])
def test_pretrained_checkpoint_has_phase1_format_and_phase2_loads_it(tmp_path, d4rl_env, phase1_dir, algo):
    cfg = PretrainConfig(algo=algo, env_name="hopper-medium-v2", remove_top_k=60, total_steps=60, eval_interval=30,
                         eval_episodes=1, log_interval=30, save_dir=str(tmp_path / "results"))  # fmt: skip
    run = pretrain(cfg, progress=False)
    assert run.name == f"{algo}_hopper-medium-v2_k60_noise0.0_s0"
    ours = torch.load(run / "checkpoint.pt", weights_only=True)
    theirs = torch.load(phase1_dir / f"{algo}_hopper-medium-v2_k60_noise0.0_s0" / "checkpoint.pt",
                        weights_only=True, map_location="cpu")  # fmt: skip
    assert set(ours) == set(theirs)
    for key in ("actor", "critic", "critic_target", "value"):
        if key in theirs:
            assert {k: v.shape for k, v in ours[key].items()} == {k: v.shape for k, v in theirs[key].items()}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["step"] == [30, 60]
    assert len(metrics["q1_mean_avg"]) == 2 and len(metrics["critic_loss_var"]) == 2
    config = json.loads((run / "config.json").read_text())
    assert config["env_name"] == "hopper-medium-v2" and config["total_steps"] == 60

    # Phase II fine-tunes it like any Phase I checkpoint.
    ft = FinetuneConfig(algo=algo, env="hopper-medium-v2", remove_top_k=60, bonus_type="ensemble", seed=0,
                        online_steps=10, eval_interval=10, eval_episodes=1, batch_size=32,
                        phase1_dir=str(tmp_path / "results"), save_dir=str(tmp_path / "p2"))  # fmt: skip
    result = finetune(ft, progress=False)
    assert result.metrics["status"] == "complete"


def test_generated_data_chain(tmp_path, monkeypatch):
    """No D4RL file, no network: generate -> pretrain -> fine-tune, all marked generated."""
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "d4rl"))
    out = tmp_path / "d4rl" / "generated" / "hopper_medium-v2.hdf5"
    budget = {"max_train_steps": 300, "random_steps": 200, "eval_interval": 150, "n_transitions": 2500}
    path = generate("hopper-medium-v2", out, from_scratch=True, quick=True, progress=False, **budget)
    data = read_hdf5(path)
    assert len(data) > 2000 and data.provenance["kind"].startswith("generated")
    with h5py.File(path) as f:
        attrs = dict(f.attrs)
    assert attrs["sac_steps_run"] == 300 and attrs["n_transitions"] == 2500 and attrs["seed"] == 0
    # The actor kept is the best evaluated one, and the record says which.
    history = eval(attrs["eval_history"])  # noqa: S307 - a list literal written by generate()
    best_step, best_score = max(history, key=lambda h: h[1])
    assert [h[0] for h in history] == [150, 300] and attrs["sac_train_steps"] == best_step
    assert attrs["sac_eval_normalized_return"] == best_score
    assert attrs["reached_target"] == (best_score >= attrs["target_normalized_return"])
    assert math.isfinite(attrs["recheck_normalized_return"]) and attrs["recheck_episodes"] == 20

    cfg = PretrainConfig(algo="iql", env_name="hopper-medium-v2", total_steps=40, eval_interval=40, eval_episodes=1,
                         save_dir=str(tmp_path / "results"), dataset_source="generated")  # fmt: skip
    pretrain(cfg, progress=False)
    ft = FinetuneConfig(algo="iql", env="hopper-medium-v2", remove_top_k=0, bonus_type="none", seed=0,
                        online_steps=10, eval_interval=10, eval_episodes=1, batch_size=32,
                        phase1_dir=str(tmp_path / "results"), save_dir=str(tmp_path / "p2"))  # fmt: skip
    result = finetune(ft, progress=False)  # dataset_source=auto finds only the generated file
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["provenance"]["dataset"]["source"] == "generated"
    assert config["provenance"]["dataset"]["kind"].startswith("generated")


def test_auto_source_without_any_file_spells_out_next_steps(tmp_path, monkeypatch):
    from hrl_core.data.d4rl import HrlError
    from hrl_core.data.sources import locate_source, read_source

    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path))
    with pytest.raises(HrlError, match="hrl data generate hopper-medium-v2"):
        read_source(locate_source("hopper-medium-v2", "auto"))
