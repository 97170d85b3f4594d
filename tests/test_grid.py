"""The grid: expansion, filters, dry run, and real cells through papermill on Dask."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest

from hrl_core.errors import HrlError
from hrl_core.lab import execute, grids
from tests.conftest import run_hrl

REPO = Path(__file__).resolve().parents[1]


def test_seed_grid_has_72_cells_with_spec_run_names():
    cells = grids.expand(grids.load_grid(REPO / "params" / "grid.yaml"))
    names = [c.run_name for c in cells]
    assert len(cells) == 72 and len(set(names)) == 72
    assert "ft_cql_halfcheetah-medium-v2_k0_noise0.0_ensemble_s0" in names
    assert "ft_iql_hopper-medium-v2_k60_noise0.0_vanilla_s2" in names
    assert {c.config.online_steps for c in cells} == {250_000}
    assert {c.config.eval_interval for c in cells} == {5_000} and {c.config.eval_episodes for c in cells} == {10}


def test_quick_file_and_flag_give_the_same_cells_at_5000_steps():
    quick_file = grids.expand(grids.load_grid(REPO / "params" / "quick.yaml"))
    quick_flag = grids.expand(grids.load_grid(REPO / "params" / "grid.yaml"), quick=True)
    assert [c.run_name for c in quick_file] == [c.run_name for c in quick_flag]
    assert {(c.config.online_steps, c.config.eval_interval, c.config.eval_episodes) for c in quick_flag} == {
        (5_000, 1_000, 5)
    }


def test_filters():
    spec = grids.load_grid(REPO / "params" / "grid.yaml")
    cells = grids.expand(spec, {"algos": ["iql"], "datasets": ["hopper-medium-v2"], "seeds": [1]})
    assert len(cells) == 6
    assert {(c.config.remove_top_k, c.config.bonus_type) for c in cells} == {
        (k, b) for k in (0, 30, 60) for b in ("ensemble", "none")
    }
    assert len(grids.expand(spec, {"remove_top_k": [60.0], "bonus_types": ["none"]})) == 12
    assert len(grids.expand(spec, {"remove_top_k": [60], "seeds": ["2"]})) == 8  # as typed on a command line
    # Filters select on the cell's settings, so they also see what an arm sets.
    study = {**spec, "remove_top_k": [0], "arms": {"heavy": {"remove_top_k": 60}, "clean": {}}}
    picked = grids.expand(study, {"remove_top_k": [60], "algos": ["cql"]})
    assert {(c.arm, c.config.remove_top_k, c.config.algo) for c in picked} == {("heavy", 60.0, "cql")}
    # Relative paths are fixed where `hrl grid` runs: notebooks run from notebooks/.
    assert all(Path(c.config.save_dir).is_absolute() and Path(c.config.phase1_dir).is_absolute() for c in cells)


def test_bad_grid_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("algos: [iql]\n")
    with pytest.raises(HrlError, match="missing keys"):
        grids.load_grid(bad)
    bad.write_text("algos: [iql]\ndatasets: [hopper-medium-v2]\nremove_top_k: [0]\nbonus_types: [none]\n"
                   "seeds: [0]\nsettings: {online_stepz: 5}\n")  # fmt: skip
    with pytest.raises(HrlError, match="unknown settings"):
        grids.load_grid(bad)
    with pytest.raises(HrlError, match="not found"):
        grids.load_grid(tmp_path / "nope.yaml")


def test_study_grid_arms_give_distinct_runs_with_the_arm_settings():
    spec = grids.load_grid(REPO / "params" / "study_iql.yaml")
    cells = grids.expand(spec)
    names = [c.run_name for c in cells]
    assert len(cells) == 2 * 2 * 6 * 3 and len(set(names)) == len(cells)  # no two arms share a folder
    by_arm = {}
    for c in cells:
        by_arm.setdefault(c.arm, []).append(c.config)
    assert sorted(by_arm) == sorted(spec["arms"])
    for arm, cfgs in by_arm.items():
        for cfg in cfgs:  # every arm setting reached the cell, the shared ones too
            assert all(getattr(cfg, k) == v for k, v in spec["arms"][arm].items()), arm
            assert (cfg.online_steps, cfg.eval_interval, cfg.eval_episodes, cfg.phase1_seed) == (10_000, 1_000, 10, 1)
    assert {c.n_ensemble for c in by_arm["double_q"]} == {2}
    assert {c.bonus_type for c in by_arm["warmstart"]} == {"none"}
    # Seed-major: a grid stopped early leaves every arm with the same seeds.
    seeds = [c.config.seed for c in cells]
    assert seeds == sorted(seeds)
    only = grids.expand(spec, {"arms": ["vanilla", "spec"], "seeds": [2], "bonus_types": ["none"]})
    assert [(c.arm, c.config.seed) for c in only] == [("vanilla", 2)] * 4


def test_the_cpu_grid_and_the_iql_study_share_the_vanilla_and_spec_runs():
    cpu = {c.run_name: c for c in grids.expand(grids.load_grid(REPO / "params" / "grid_cpu.yaml"))}
    study = grids.expand(grids.load_grid(REPO / "params" / "study_iql.yaml"))
    shared = [c for c in study if c.run_name in cpu]
    assert sorted({c.arm for c in shared}) == ["spec", "vanilla"] and len(shared) == 24
    for c in shared:  # a shared name means the same identity settings
        assert c.config.identity_settings() == cpu[c.run_name].config.identity_settings()
    cql = [c for c in cpu.values() if c.config.algo == "cql"]
    assert {(c.config.online_steps, c.config.eval_interval) for c in cql} == {(2_000, 500)}  # algo_settings


def test_runs_that_differ_in_a_result_setting_never_share_a_folder():
    from hrl_core.run.config import FinetuneConfig

    spec_name = FinetuneConfig(seed=1).run_name
    assert spec_name == "ft_iql_hopper-medium-v2_k0_noise0.0_ensemble_s1"  # the spec's name is unchanged
    for key, value in [("bonus_coeff", 2.0), ("n_ensemble", 5), ("online_ratio", 0.25), ("batch_size", 128),
                       ("eval_interval", 1000), ("online_steps", 5000), ("phase1_seed", 0)]:  # fmt: skip
        other = FinetuneConfig(seed=1, **{key: value})
        assert other.run_name != spec_name and other.run_name.startswith(spec_name + "_"), key
    assert FinetuneConfig(algo="cql", cql_alpha=2.0).run_name != FinetuneConfig(algo="cql").run_name
    # A setting that does not apply to the run changes nothing: it is the same experiment.
    assert FinetuneConfig(cql_alpha=2.0).run_name == FinetuneConfig().run_name  # IQL has no CQL penalty
    assert FinetuneConfig(bonus_type="none", bonus_coeff=9.0).run_name == FinetuneConfig(bonus_type="none").run_name
    assert FinetuneConfig(phase1_seed=1, seed=1).run_name == spec_name  # phase1_seed None means the online seed
    # Settings that do not change results stay out of the name.
    assert FinetuneConfig(seed=1, device="cpu", threads=1, save_dir="x", logger="csv").run_name == spec_name
    variant = FinetuneConfig(seed=1, member_init="warmstart", bonus_scale="normalized").run_name
    assert "warmstart-normalized" in variant


def test_two_arms_with_the_same_settings_are_refused(tmp_path):
    f = tmp_path / "twins.yaml"
    f.write_text("algos: [iql]\ndatasets: [hopper-medium-v2]\nremove_top_k: [0]\nseeds: [0]\n"
                 "arms: {a: {bonus_type: none}, b: {bonus_type: none, cql_alpha: 3}}\n")  # fmt: skip
    with pytest.raises(HrlError, match="arms 'a' and 'b' have the same settings"):
        grids.expand(grids.load_grid(f))


def test_bad_arms(tmp_path):
    bad = tmp_path / "bad.yaml"
    head = "algos: [iql]\ndatasets: [hopper-medium-v2]\nremove_top_k: [0]\nseeds: [0]\n"
    bad.write_text(head + "arms: {a: {member_innit: warmstart}}\n")
    with pytest.raises(HrlError, match="arm 'a' has unknown settings"):
        grids.load_grid(bad)
    bad.write_text(head + "arms: [a, b]\n")
    with pytest.raises(HrlError, match="arms must be a non-empty mapping"):
        grids.load_grid(bad)
    bad.write_text(head)  # without arms, bonus_types is required
    with pytest.raises(HrlError, match="missing keys"):
        grids.load_grid(bad)


def test_dry_run_lists_cells_and_estimate(d4rl_dir, phase1_dir):
    args = ["grid", "--quick", "--algo", "iql", "--env", "hopper-medium-v2", "--seed", "1", "--dry-run"]
    out = run_hrl([*args, "--save_dir", "/nonexistent-results"], REPO, d4rl_dir, phase1_dir, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len([ln for ln in lines if ln.startswith("ft_iql_hopper")]) == 6
    assert "6 cells, 6 to run; estimated wall time" in lines[-1]


def test_the_estimate_counts_a_last_wave_at_its_length():
    """Equal IQL cells of the grid file (same budget): the workers take the tasks as they free up, so
    three cells on two workers take two cell-lengths, not one and a half; a population of 8 costs 8
    cell-lengths at the population's measured cost per cell-step (less than 8 alone)."""
    from hrl_core.rl import agents

    cells = grids.expand(grids.load_grid(REPO / "params" / "grid.yaml"), {"algos": ["iql"]})
    one = grids.estimate_seconds(cells[:1], 1)
    assert one > 0
    assert grids.estimate_seconds(cells[:2], 2) == pytest.approx(one)
    assert grids.estimate_seconds(cells[:3], 2) == pytest.approx(2 * one)  # not 1.5: one worker waits
    assert grids.estimate_seconds(cells[:4], 2) == pytest.approx(2 * one)
    eight = grids.estimate_seconds(cells[:8], 1, [cells[:8]])
    assert eight < 8 * one and grids.population_cost(agents.get("iql"), 8) < 1
    assert grids.estimate_seconds(cells[:9], 2, [cells[:8], cells[8:9]]) == pytest.approx(eight)


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
    assert "grid: 1 ran, 0 skipped (already complete), 0 running elsewhere, 1 failed" in first.stdout
    good, bad = (c.run_name for c in grids.expand(grids.load_grid(params)))
    assert "k60" in good and "k45" in bad
    assert f"FAILED {bad}" in first.stdout and str(executed / f"{bad}.ipynb") in first.stdout

    nb_path = executed / f"{good}.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    injected = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "remove_top_k = 60" in injected.source and "online_steps = 30" in injected.source
    assert "phase1_seed = None" in injected.source  # settings cross as they are, no stand-in values
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the run's curves, static
    assert nb_path.stat().st_size <= 300_000  # small enough to commit and share
    metrics = json.loads((results / good / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["step"] == [0, 15, 30]

    failed_nb = nbformat.read(executed / f"{bad}.ipynb", as_version=4)
    errors = [o for c in failed_nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors and "k45_noise0.0_s1/checkpoint.pt not found" in str(errors[0])

    second = run_hrl(args, tmp_path, d4rl_dir, phase1_dir)
    assert "grid: 0 ran, 1 skipped (already complete), 0 running elsewhere, 1 failed" in second.stdout

    # A setting changed in the grid file: the cells run again (into their own folders).
    params.write_text(params.read_text().replace("batch_size: 32", "batch_size: 48"))
    third = run_hrl(args, tmp_path, d4rl_dir, phase1_dir)
    assert "grid: 1 ran, 0 skipped (already complete)" in third.stdout, third.stdout
    assert len(list(results.glob("ft_iql_hopper-medium-v2_k60_*"))) == 2


def test_pretrain_grid_file_expands_to_36_phase1_cells():
    cells = grids.expand(grids.load_grid(REPO / "params" / "pretrain_grid.yaml"))
    assert len(cells) == 36
    assert "cql_halfcheetah-medium-v2_k0_noise0.0_s0" in {c.run_name for c in cells}
    assert {c.config.total_steps for c in cells} == {500_000}
    quick = grids.expand(grids.load_grid(REPO / "params" / "pretrain_grid.yaml"), quick=True)
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


def _kernelspec(root: Path, name: str, deaths: int) -> Path:
    """A real ipykernel behind a launcher that exits at start ``deaths`` times first."""
    spec_dir = root / "kernels" / name
    spec_dir.mkdir(parents=True)
    counter = root / f"{name}.starts"
    launcher = spec_dir / "launch.py"
    launcher.write_text(
        "import pathlib, sys\n"
        f"counter = pathlib.Path({str(counter)!r})\n"
        "n = int(counter.read_text()) if counter.exists() else 0\n"
        "counter.write_text(str(n + 1))\n"
        f"if n < {deaths}:\n"
        "    sys.exit(1)  # dies before replying, as a kernel whose port was taken does\n"
        "from ipykernel.kernelapp import launch_new_instance\n"
        "launch_new_instance()\n"
    )
    argv = [sys.executable, str(launcher), "-f", "{connection_file}"]
    (spec_dir / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": name, "language": "python"}))
    return counter


def test_a_kernel_that_dies_at_start_is_started_again_but_a_failing_cell_is_not(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    nb = tmp_path / "nb.ipynb"
    nb.write_text(json.dumps({
        "cells": [{"cell_type": "code", "id": "params", "metadata": {"tags": ["parameters"]}, "source": "x = 1",
                   "outputs": [], "execution_count": None},
                  {"cell_type": "code", "id": "check", "metadata": {}, "source": "assert x == 2, 'x is not 2'",
                   "outputs": [], "execution_count": None}],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }))  # fmt: skip
    once = _kernelspec(tmp_path / "jupyter", "dies-once", deaths=1)
    res = execute.execute_cell(str(nb), str(tmp_path / "out" / "a.ipynb"), {"x": 2}, {}, "a", kernel_name="dies-once")
    assert res["status"] == "complete" and res["kernel_starts"] == 2 and once.read_text() == "2", res
    assert (tmp_path / "out" / "a.ipynb").exists()

    always = _kernelspec(tmp_path / "jupyter", "always-dies", deaths=99)
    res = execute.execute_cell(str(nb), str(tmp_path / "out" / "b.ipynb"), {"x": 2}, {}, "b", kernel_name="always-dies")
    assert res["status"] == "failed" and res["kernel_starts"] == execute.KERNEL_START_ATTEMPTS, res
    assert always.read_text() == str(execute.KERNEL_START_ATTEMPTS) and "kernel started 3 times" in res["error"]

    # A cell that raises ran code: never started again (the run may have written results).
    res = execute.execute_cell(str(nb), str(tmp_path / "out" / "c.ipynb"), {"x": 3}, {}, "c", kernel_name="dies-once")
    assert res["status"] == "failed" and res["kernel_starts"] == 1 and "x is not 2" in res["error"], res
    assert once.read_text() == "3"
    assert (tmp_path / "out" / "c.ipynb").exists()  # the failed cell's record, with its error


def test_the_long_study_runs_in_parts_with_their_own_axes_and_budgets():
    spec = grids.load_grid(REPO / "params" / "study_long.yaml")
    cells = grids.expand(spec)
    parts = [c.part for c in cells]
    # Parts run in the file's order, each seed-major within itself.
    assert list(dict.fromkeys(parts)) == list(spec["parts"])
    by_part = {p: [c for c in cells if c.part == p] for p in spec["parts"]}
    assert {p: len(v) for p, v in by_part.items()} == {
        "iql-hopper": 20, "iql-halfcheetah": 12, "cql-hopper": 12, "cql-halfcheetah": 12, "cql-double_q": 6
    }  # fmt: skip
    assert sorted({c.config.seed for c in by_part["iql-hopper"]}) == [0, 1, 2, 3, 4]
    for part, members in by_part.items():
        assert [c.config.seed for c in members] == sorted(c.config.seed for c in members), part
    iql = {
        (c.config.online_steps, c.config.eval_interval, c.config.eval_episodes) for c in cells if c.config.algo == "iql"
    }
    cql = {
        (c.config.online_steps, c.config.eval_interval, c.config.eval_episodes) for c in cells if c.config.algo == "cql"
    }
    assert iql == {(100_000, 5_000, 10)} and cql == {(20_000, 2_000, 10)}
    assert {c.config.remove_top_k for c in cells} == {60.0} and {c.config.phase1_seed for c in cells} == {1}
    assert {c.arm for c in by_part["cql-double_q"]} == {"double_q"} and "double_q" not in {
        c.arm for c in by_part["iql-hopper"]
    }
    assert len({c.run_name for c in cells}) == len(cells)
    # double_q is compared with the vanilla runs of the CQL parts, read there, not run again.
    refs = grids.reference_cells(spec, "cql-double_q")
    assert {(c.arm, c.part) for c in refs} == {("vanilla", "cql-hopper"), ("vanilla", "cql-halfcheetah")}
    assert {c.run_name for c in refs} == {c.run_name for c in cells if c.arm == "vanilla" and c.config.algo == "cql"}
    # --part picks parts; other filters apply inside them.
    picked = grids.expand(spec, {"parts": ["cql-hopper"], "seeds": [2]})
    assert {c.part for c in picked} == {"cql-hopper"} and len(picked) == 4
    with pytest.raises(HrlError, match="no part"):
        grids.expand(spec, {"parts": ["nope"]})


def test_bad_parts(tmp_path):
    base = "algos: [iql]\ndatasets: [hopper-medium-v2]\nremove_top_k: [0]\nseeds: [0]\narms: {a: {bonus_type: none}}\n"
    bad = tmp_path / "bad.yaml"
    for parts, message in [("parts: {p: {envs: [x]}}", "unknown keys"), ("parts: {p: {arms: [b]}}", "arms the file"),
                           ("parts: {p: {seeds: 3}}", "non-empty list"), ("parts: []", "non-empty mapping"),
                           ("parts: {p: {seeds: [0]}, q: {seeds: [0]}}", "both hold run"),
                           ("parts: {p: {compare_with: [b]}}", "arms the file"),
                           ("parts: {p: {arms: [a], compare_with: [a]}}", "compare_with names arms")]:  # fmt: skip
        bad.write_text(base + parts + "\n")
        with pytest.raises(HrlError, match=message):
            grids.expand(grids.load_grid(bad))


@pytest.mark.slow
def test_the_dry_run_estimate_counts_exactly_what_the_grid_runs(tmp_path, d4rl_dir, phase1_dir, monkeypatch):
    """Four cells: one complete, one held by another live process ("running elsewhere", which the old
    dry run counted because its text starts with "running"), one with no Phase I checkpoint (executed
    only to record why), one new. The dry run's "N to run" and estimate are the cells run_grid trains."""
    import re

    from hrl_core.lab import execute
    from hrl_core.run import lock
    from hrl_core.run.finetune import finetune

    monkeypatch.setenv("D4RL_DATASET_DIR", str(d4rl_dir))
    params = tmp_path / "g.yaml"
    params.write_text(
        "algos: [iql]\ndatasets: [hopper-medium-v2]\nremove_top_k: [60, 45]\nbonus_types: [ensemble, none]\n"
        "seeds: [1, 2]\nsettings: {online_steps: 20, eval_interval: 20, eval_episodes: 1, batch_size: 32, "
        f"threads: 1, phase1_dir: {phase1_dir}, save_dir: {tmp_path / 'runs'}}}\n"
    )
    cells = grids.expand(grids.load_grid(params))
    k60 = [c for c in cells if c.config.remove_top_k == 60 and c.config.seed == 1]
    finetune(k60[0].config, progress=False)  # complete
    holder = lock.RunLock(k60[1].run_dir).acquire()  # another live process holds it
    try:
        statuses = {c.run_name: grids.cell_status(c) for c in cells}
        assert statuses[k60[1].run_name].kind is grids.Kind.RUNNING_ELSEWHERE
        dry = run_hrl(["grid", "--params", params, "--dry_run", "--population", "1"], tmp_path, d4rl_dir, phase1_dir)
        assert dry.returncode == 0, dry.stderr
        planned = int(re.search(r"(\d+) to run", dry.stdout).group(1))
        results = execute.run_grid(cells, executed_dir=tmp_path / "executed", progress=False)
    finally:
        holder.release()
    trained = [r for r in results if r["status"] == "complete"]
    assert planned == len(trained) == 2  # the two new seed-2 cells; the k=45 cells lack a checkpoint
    assert sum(s.runs for s in statuses.values()) == 2 and "4 more executed only to record why" in dry.stdout
    assert {r["status"] for r in results} == {"complete", "skipped (complete)", grids.RUNNING_ELSEWHERE, "failed"}
