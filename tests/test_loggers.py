"""Experiment tracking: what a run logs, read back with each tool's own reader."""

from __future__ import annotations

import csv
import json

import pytest

from hrl_core.run.config import FinetuneConfig
from hrl_core.run.finetune import finetune
from hrl_core.run.loggers import namespaced


def tiny(tmp_path, phase1_dir, logger: str) -> FinetuneConfig:
    return FinetuneConfig(algo="iql", env="hopper-medium-v2", remove_top_k=60, bonus_type="ensemble", seed=1,
                          online_steps=20, eval_interval=10, eval_episodes=1, batch_size=32, threads=1,
                          phase1_dir=str(phase1_dir), save_dir=str(tmp_path), logger=logger)  # fmt: skip


def test_names_are_namespaced():
    point = {"step": 10, "normalized_return": 50.0, "critic_loss_avg": 3.0, "q_member_avg": [1.0, 2.0, 3.0],
             "bonus_mean": 0.5, "wall_time": 9.0, "episode_returns": [1.0], "train_episode_return": None}  # fmt: skip
    assert namespaced(point) == {
        "eval/normalized_return": 50.0, "train/critic_loss": 3.0, "train/q_member/0": 1.0, "train/q_member/1": 2.0,
        "train/q_member/2": 3.0, "explore/bonus_mean": 0.5, "time/wall": 9.0,
    }  # fmt: skip


def test_tensorboard_events_read_back_with_tensorboards_reader(tmp_path, phase1_dir, d4rl_env):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = finetune(tiny(tmp_path, phase1_dir, "tensorboard"), progress=False)
    acc = EventAccumulator(str(result.run_dir / "logs" / "tensorboard"))
    acc.Reload()
    scalars = acc.Tags()["scalars"]
    assert {"eval/normalized_return", "train/critic_loss", "explore/ensemble_disagreement", "train/q_member/2"} <= set(
        scalars
    )
    ret = acc.Scalars("eval/normalized_return")
    assert [e.step for e in ret] == [0, 10, 20]
    assert [e.value for e in ret] == pytest.approx(result.metrics["normalized_return"], rel=1e-6)
    loss = acc.Scalars("train/critic_loss")
    assert [e.step for e in loss] == [10, 20]  # step 0 has no training window
    assert [e.value for e in loss] == pytest.approx(result.metrics["critic_loss_avg"][1:], rel=1e-6)
    settings = acc.Tensors("settings/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| bonus_coeff | 1.0 |" in settings and "| logger | tensorboard |" in settings


def test_csv_rows_are_the_metrics(tmp_path, phase1_dir, d4rl_env):
    result = finetune(tiny(tmp_path, phase1_dir, "csv"), progress=False)
    rows = list(csv.DictReader(open(result.run_dir / "logs" / "metrics.csv")))
    got = {(int(r["step"]), r["name"]): float(r["value"]) for r in rows}
    assert got[(20, "eval/normalized_return")] == pytest.approx(result.metrics["normalized_return"][-1])
    assert got[(10, "train/actor_loss")] == pytest.approx(result.metrics["actor_loss_avg"][1])
    assert json.loads((result.run_dir / "logs" / "settings.json").read_text())["seed"] == 1


def test_wandb_runs_offline(tmp_path, phase1_dir, d4rl_env, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    result = finetune(tiny(tmp_path, phase1_dir, "wandb"), progress=False)
    records = list((result.run_dir / "logs" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(records) == 1
    blob = records[0].read_bytes()
    assert b"eval/normalized_return" in blob and b"train/critic_loss" in blob and b"bonus_coeff" in blob
