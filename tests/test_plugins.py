"""Algorithms and explorers as plug-ins: a small algorithm and an explorer that learns, from
the tests folder (tests/plugins/tiny.py), through hrl finetune, a one-cell grid and hrl plot,
without editing any file of the package."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from hrl_core.run.phase1 import phase1_run_name
from tests.conftest import REPO, run_hrl

H = "hopper-medium-v2"


@pytest.fixture
def plugin_env(monkeypatch, tmp_path, phase1_dir):
    """HRL_PLUGINS names the plug-in; its Phase I checkpoint is the shared part of IQL's."""
    monkeypatch.setenv("HRL_PLUGINS", "tests.plugins.tiny")
    monkeypatch.setenv("PYTHONPATH", f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    mine = tmp_path / "phase1"
    src = phase1_dir / phase1_run_name("iql", H, 0, 0.0, 1)
    dst = mine / phase1_run_name("tiny", H, 0, 0.0, 1)
    dst.mkdir(parents=True)
    state = torch.load(src / "checkpoint.pt", weights_only=True, map_location="cpu")
    torch.save({k: state[k] for k in ("actor", "critic", "critic_target", "step")}, dst / "checkpoint.pt")
    shutil.copy(src / "config.json", dst / "config.json")
    return mine


def test_a_plugin_algorithm_and_explorer_run_through_finetune_grid_and_plot(tmp_path, d4rl_dir, plugin_env):
    save = tmp_path / "runs"
    out = run_hrl(["finetune", "--algo", "tiny", "--env", H, "--remove_top_k", "0", "--bonus_type", "ensemble",
                   "--exploration", "rnd", "--bonus_coeff", "0.5", "--seed", "1", "--online_steps", "40",
                   "--eval_interval", "20", "--eval_episodes", "1", "--batch_size", "32", "--threads", "1",
                   "--phase1_dir", plugin_env, "--save_dir", save, "--no_progress"], tmp_path, d4rl_dir)  # fmt: skip
    assert out.returncode == 0, out.stderr
    (run_dir,) = list(save.iterdir())
    config, metrics = (json.loads((run_dir / f).read_text()) for f in ("config.json", "metrics.json"))
    assert metrics["status"] == "complete" and metrics["step"] == [0, 20, 40]
    assert config["settings"]["algo"] == "tiny" and config["agent_config"]["bc_weight"] == 1.0
    # the explorer's bonus reached the online rewards, and its update hook trained (its loss is logged)
    assert metrics["bonus_mean"][-1] > 0 and all(v > 0 for v in metrics["explorer_rnd_loss_avg"][1:])
    assert config["identity"]["settings"]["bonus_coeff"] == 0.5  # rnd declares it reads bonus_coeff
    assert "ucb_coeff" not in config["identity"]["settings"]  # ... and not the UCB settings

    grid_file = tmp_path / "tiny.yaml"
    grid_file.write_text(
        f"algos: [tiny]\ndatasets: [{H}]\nremove_top_k: [0]\nbonus_types: [ensemble]\nseeds: [1]\n"
        f"executed_dir: {tmp_path / 'executed'}\nsettings: {{exploration: rnd, bonus_coeff: 0.5, online_steps: 40, "
        f"eval_interval: 20, eval_episodes: 1, batch_size: 32, save_dir: {tmp_path / 'grid_runs'}, "
        f"phase1_dir: {plugin_env}}}\n"
    )  # fmt: skip
    dry = run_hrl(["grid", "--params", grid_file, "--dry_run"], tmp_path, d4rl_dir)
    assert dry.returncode == 0 and "5 ms (TINY) per step" in dry.stdout, dry.stdout + dry.stderr
    grid = run_hrl(["grid", "--params", grid_file, "--no_progress"], tmp_path, d4rl_dir)
    assert grid.returncode == 0 and "1 ran" in grid.stdout, grid.stdout + grid.stderr
    plot = run_hrl(["plot", "--params", grid_file, "--out", tmp_path / "figures"], tmp_path, d4rl_dir)
    assert plot.returncode == 0 and "hrl plot: 1 runs" in plot.stdout, plot.stdout + plot.stderr
    summary = (tmp_path / "figures" / "summary.md").read_text()
    assert "| tiny | hopper-medium-v2 | 0 | rnd |" in summary  # labelled by its explorer
    assert (tmp_path / "figures" / f"finetune_curves_tiny_{H}.png").exists()


def test_plugin_names_are_the_allowed_values(plugin_env):
    out = run_hrl(["finetune", "--help"], REPO)
    assert "tiny" in out.stdout and "rnd" in out.stdout
    bad = run_hrl(["finetune", "--algo", "nope", "--env", H, "--remove_top_k", "0", "--bonus_type", "none",
                   "--seed", "0"], REPO)  # fmt: skip
    assert bad.returncode == 2 and "cql" in bad.stderr and "tiny" in bad.stderr
