"""The grid: expansion, filters, dry run, and real cells through papermill on Dask."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from hrl_core import grid
from hrl_core.errors import HrlError
from tests.conftest import run_hrl

REPO = Path(__file__).resolve().parents[1]


def test_seed_grid_has_72_cells_with_spec_run_names():
    cells = grid.expand(grid.load_grid(REPO / "params" / "grid.yaml"))
    names = [c.run_name for c in cells]
    assert len(cells) == 72 and len(set(names)) == 72
    assert "ft_cql_halfcheetah-medium-v2_k0_noise0.0_ensemble_s0" in names
    assert "ft_iql_hopper-medium-v2_k60_noise0.0_vanilla_s2" in names
    assert {c.config.online_steps for c in cells} == {250_000}
    assert {c.config.eval_interval for c in cells} == {5_000} and {c.config.eval_episodes for c in cells} == {10}


def test_quick_file_and_flag_give_the_same_cells_at_5000_steps():
    quick_file = grid.expand(grid.load_grid(REPO / "params" / "quick.yaml"))
    quick_flag = grid.expand(grid.load_grid(REPO / "params" / "grid.yaml"), quick=True)
    assert [c.run_name for c in quick_file] == [c.run_name for c in quick_flag]
    assert {(c.config.online_steps, c.config.eval_interval, c.config.eval_episodes) for c in quick_flag} == {
        (5_000, 1_000, 5)
    }


def test_filters():
    spec = grid.load_grid(REPO / "params" / "grid.yaml")
    cells = grid.expand(spec, {"algos": ["iql"], "datasets": ["hopper-medium-v2"], "seeds": [1]})
    assert len(cells) == 6
    assert {(c.config.remove_top_k, c.config.bonus_type) for c in cells} == {
        (k, b) for k in (0, 30, 60) for b in ("ensemble", "none")
    }
    assert len(grid.expand(spec, {"remove_top_k": [60.0], "bonus_types": ["none"]})) == 12
    assert len(grid.expand(spec, {"remove_top_k": [60], "seeds": ["2"]})) == 8  # as typed on a command line
    # Filters select on the cell's settings, so they also see what an arm sets.
    study = {**spec, "remove_top_k": [0], "arms": {"heavy": {"remove_top_k": 60}, "clean": {}}}
    picked = grid.expand(study, {"remove_top_k": [60], "algos": ["cql"]})
    assert {(c.config.arm, c.config.remove_top_k, c.config.algo) for c in picked} == {("heavy", 60.0, "cql")}
    # Relative paths are fixed where `hrl grid` runs: notebooks run from notebooks/.
    assert all(Path(c.config.save_dir).is_absolute() and Path(c.config.phase1_dir).is_absolute() for c in cells)


def test_bad_grid_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("algos: [iql]\n")
    with pytest.raises(HrlError, match="missing keys"):
        grid.load_grid(bad)
    bad.write_text("algos: [iql]\ndatasets: [hopper-medium-v2]\nremove_top_k: [0]\nbonus_types: [none]\n"
                   "seeds: [0]\nsettings: {online_stepz: 5}\n")  # fmt: skip
    with pytest.raises(HrlError, match="unknown settings"):
        grid.load_grid(bad)
    with pytest.raises(HrlError, match="not found"):
        grid.load_grid(tmp_path / "nope.yaml")


def test_study_grid_arms_give_distinct_runs_with_the_arm_settings():
    spec = grid.load_grid(REPO / "params" / "study_bonus.yaml")
    cells = grid.expand(spec)
    names = [c.run_name for c in cells]
    assert len(cells) == 2 * 6 * 3 and len(set(names)) == len(cells)  # no two arms share a folder
    by_arm = {}
    for c in cells:
        by_arm.setdefault(c.config.arm, []).append(c.config)
    assert sorted(by_arm) == sorted(spec["arms"])
    for arm, cfgs in by_arm.items():
        for cfg in cfgs:  # every arm setting reached the cell, the shared ones too
            assert all(getattr(cfg, k) == v for k, v in spec["arms"][arm].items()), arm
            assert (cfg.online_steps, cfg.eval_interval, cfg.eval_episodes, cfg.phase1_seed) == (30_000, 3_000, 10, 1)
    assert {c.member_init for c in by_arm["warmstart+normalized"]} == {"warmstart"}
    assert {c.bonus_scale for c in by_arm["warmstart+normalized"]} == {"normalized"}
    assert {c.bonus_type for c in by_arm["vanilla"]} == {"none"}
    # Seed-major: a grid stopped early leaves every arm with the same seeds.
    seeds = [c.config.seed for c in cells]
    assert seeds == sorted(seeds)
    only = grid.expand(spec, {"arms": ["vanilla", "spec"], "seeds": [2], "bonus_types": ["none"]})
    assert [(c.config.arm, c.config.seed) for c in only] == [("vanilla", 2), ("vanilla", 2)]


def test_arm_and_variant_settings_name_the_run():
    from hrl_core.config import FinetuneConfig

    spec_name = FinetuneConfig(seed=1).run_name
    assert spec_name == "ft_iql_hopper-medium-v2_k0_noise0.0_ensemble_s1"  # the spec's name is unchanged
    variant = FinetuneConfig(seed=1, member_init="warmstart", bonus_scale="normalized").run_name
    assert variant != spec_name and "warmstart" in variant and "normalized" in variant
    assert FinetuneConfig(seed=1, arm="mine", member_init="warmstart").run_name == spec_name + "_mine"
    with pytest.raises(HrlError, match="folder name"):
        FinetuneConfig(arm="a/b").validate()


def test_bad_arms(tmp_path):
    bad = tmp_path / "bad.yaml"
    head = "algos: [iql]\ndatasets: [hopper-medium-v2]\nremove_top_k: [0]\nseeds: [0]\n"
    bad.write_text(head + "arms: {a: {member_innit: warmstart}}\n")
    with pytest.raises(HrlError, match="arm 'a' has unknown settings"):
        grid.load_grid(bad)
    bad.write_text(head + "arms: [a, b]\n")
    with pytest.raises(HrlError, match="arms must be a non-empty mapping"):
        grid.load_grid(bad)
    bad.write_text(head)  # without arms, bonus_types is required
    with pytest.raises(HrlError, match="missing keys"):
        grid.load_grid(bad)


def test_dry_run_lists_cells_and_estimate():
    args = ["grid", "--quick", "--algo", "iql", "--env", "hopper-medium-v2", "--seed", "1", "--dry-run"]
    out = run_hrl([*args, "--save_dir", "/nonexistent-results"], REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len([ln for ln in lines if ln.startswith("ft_iql_hopper")]) == 6
    assert "6 cells, 6 to run; estimated wall time" in lines[-1]


@pytest.mark.slow
def test_real_cells_through_papermill_on_dask(tmp_path, d4rl_dir, phase1_dir):
    """One good cell runs; a cell with no Phase I checkpoint fails alone; rerun skips."""
    params = tmp_path / "tiny.yaml"
    params.write_text(
        "algos: [iql]\ndatasets: [hopper-medium-v2]\nremove_top_k: [60, 45]\nbonus_types: [ensemble]\n"
        "seeds: [1]\nsettings: {online_steps: 30, eval_interval: 15, eval_episodes: 1, batch_size: 32}\n"
    )
    executed, results = tmp_path / "executed", tmp_path / "results"
    args = ["grid", "--params", params, "--save_dir", results, "--executed_dir", executed, "--no_progress"]
    first = run_hrl(args, tmp_path, d4rl_dir, phase1_dir)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "grid: 1 ran, 0 skipped (already complete), 1 failed" in first.stdout
    good, bad = "ft_iql_hopper-medium-v2_k60_noise0.0_ensemble_s1", "ft_iql_hopper-medium-v2_k45_noise0.0_ensemble_s1"
    assert f"FAILED {bad}" in first.stdout and str(executed / f"{bad}.ipynb") in first.stdout

    nb = nbformat.read(executed / f"{good}.ipynb", as_version=4)
    injected = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "remove_top_k = 60" in injected.source and "online_steps = 30" in injected.source
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    assert any("application/vnd.plotly.v1+json" in o.get("data", {}) for o in outputs)
    metrics = json.loads((results / good / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["step"] == [0, 15, 30]

    failed_nb = nbformat.read(executed / f"{bad}.ipynb", as_version=4)
    errors = [o for c in failed_nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors and "k45_noise0.0_s1/checkpoint.pt not found" in str(errors[0])

    second = run_hrl(args, tmp_path, d4rl_dir, phase1_dir)
    assert "grid: 0 ran, 1 skipped (already complete), 1 failed" in second.stdout


def test_pretrain_grid_file_expands_to_36_phase1_cells():
    cells = grid.expand(grid.load_grid(REPO / "params" / "pretrain_grid.yaml"))
    assert len(cells) == 36
    assert "cql_halfcheetah-medium-v2_k0_noise0.0_s0" in {c.run_name for c in cells}
    assert {c.config.total_steps for c in cells} == {500_000}
    quick = grid.expand(grid.load_grid(REPO / "params" / "pretrain_grid.yaml"), quick=True)
    assert {c.config.total_steps for c in quick} == {20_000}
    assert all(c.notebook.name == "pretrain.ipynb" for c in cells)


@pytest.mark.slow
def test_pretrain_cell_through_papermill(tmp_path, d4rl_dir):
    params = tmp_path / "pre.yaml"
    params.write_text(
        "kind: pretrain\nalgos: [iql]\ndatasets: [hopper-medium-v2]\nremove_top_k: [30]\nseeds: [4]\n"
        "settings: {total_steps: 40, eval_interval: 20, eval_episodes: 1, log_interval: 20, batch_size: 32}\n"
    )
    executed, results = tmp_path / "executed", tmp_path / "results"
    args = ["grid", "--params", params, "--save_dir", results, "--executed_dir", executed, "--no_progress"]
    out = run_hrl([*args, "--workers", "1"], tmp_path, d4rl_dir)
    assert out.returncode == 0, out.stdout + out.stderr
    run = results / "iql_hopper-medium-v2_k30_noise0.0_s4"
    assert json.loads((run / "metrics.json").read_text())["status"] == "complete"
    assert (run / "checkpoint.pt").exists() and (executed / f"{run.name}.ipynb").exists()
