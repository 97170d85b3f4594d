"""The variants study: its numbers on run folders with known curves, and the real path
(a tiny study grid through papermill/Dask, then ``hrl study`` on its runs)."""

from __future__ import annotations

import math

import nbformat
import pytest

from hrl_core import study
from tests.conftest import run_hrl, write_result_fixture

DS = "hopper-medium-v2"


def _study(tmp_path):
    """vanilla flat at 40; 'up' 10 points higher at every eval after step 0 on every seed;
    'mixed' above vanilla on one seed and below on the others; 'lone' has one seed."""
    for seed, wiggle in enumerate((0.0, 1.0, -1.0)):
        write_result_fixture(tmp_path, "iql", DS, 0, "none", seed, [50, 50, 50, 50], arm="vanilla")
        write_result_fixture(tmp_path, "iql", DS, 60, "none", seed, [40, 40 + wiggle, 40, 40], arm="vanilla")
        write_result_fixture(tmp_path, "iql", DS, 60, "ensemble", seed, [40, 50 + wiggle, 50, 50], arm="up")
        mixed = [40, 40, 40, 60] if seed == 0 else [40, 40, 40, 30]
        write_result_fixture(tmp_path, "iql", DS, 60, "ensemble", seed, mixed, arm="mixed")
    write_result_fixture(tmp_path, "iql", DS, 60, "ensemble", 0, [40, 45, 46, 47], arm="lone")
    write_result_fixture(tmp_path, "iql", DS, 60, "ensemble", 1, [40, 45, 46, 47], status="running", arm="lone")
    return study.load_study(tmp_path)


def test_rows_differences_and_verdicts(tmp_path):
    runs = _study(tmp_path)
    rows = {(r["k"], r["arm"]): r for r in study.study_rows(runs, ["vanilla", "up", "mixed", "lone"], n_boot=2000)}
    up, mixed, lone = rows[(60.0, "up")], rows[(60.0, "mixed")], rows[(60.0, "lone")]
    assert up["final_diff"] == pytest.approx(10.0) and up["final_ci_low"] > 0 and up["verdict"] == "better"
    # AUC over steps 0..3000 of +10 at steps 1000..3000 (trapezoid): (5 + 10 + 10) / 3
    assert up["auc_diff"] == pytest.approx(25 / 3, abs=0.4)
    assert mixed["final_ci_low"] < 0 < mixed["final_ci_high"] and mixed["verdict"] in ("no clear difference", "worse")
    assert lone["n_seeds"] == 1 and lone["verdict"] == "too few seeds"  # the running seed is left out
    assert "verdict" not in rows[(60.0, "vanilla")]
    # Thresholds from the clean runs' step 0 (50): 80% = 40 is met at step 0; 100% = 50 by 'up' at step 1000.
    assert up["threshold80"] == pytest.approx(40.0) and up["steps_to_80_median"] == 0
    # seeds 0, 1 reach 50 at step 1000, seed 2 (49 at 1000) at 2000: median 1000, all three reached
    assert up["steps_to_100_median"] == 1000 and up["reached_100"] == "3/3"
    assert math.isinf(rows[(60.0, "vanilla")]["steps_to_100_median"])


def test_table_and_conclusion_say_what_the_numbers_say(tmp_path):
    rows = study.study_rows(_study(tmp_path), n_boot=2000)
    table = study.table_markdown(rows)
    assert table.count("\n") == 2 + len(rows) - 1 and "| 60 | up | 3 |" in table
    text = study.conclusion_markdown(rows)
    assert "Beat vanilla (AUC interval above 0) in at least one setting: up." in text
    assert "fewer than 2 complete seeds" in text
    assert study.conclusion_markdown([]).startswith("No arm has complete runs")


def test_diagnostics_rows_first_interval_and_whole_run(tmp_path):
    runs = [r for r in _study(tmp_path) if r.status == "complete"]
    rows = {(r["k"], r["arm"]): r for r in study.diagnostics_rows(runs)}
    up = rows[(60.0, "up")]
    # Fixture: fresh member 20/i below the loaded ones (at 50) in interval i = 1..3.
    assert up["mean Q: fresh − loaded members | first"] == pytest.approx(-20.0)
    assert up["mean Q: fresh − loaded members | run"] == pytest.approx(-(20 + 10 + 20 / 3) / 3)
    assert up["mean Q of the loaded members | run"] == pytest.approx(50.0)
    assert up["bonus / env reward | first"] == pytest.approx(5.0 / 3.0)  # bonus 10/2 over reward 3
    assert rows[(60.0, "vanilla")]["bonus / env reward | first"] == 0.0
    assert "| 60 | up |" in study.diagnostics_markdown(list(rows.values()))


def test_hrl_plot_refuses_to_pool_arms(tmp_path):
    from hrl_core import plots
    from hrl_core.errors import HrlError

    _study(tmp_path)
    with pytest.raises(HrlError, match="use hrl study"):
        plots.write_all(tmp_path, tmp_path / "figures", static=False)
    from hrl_core.analysis import Explorer

    with pytest.raises(HrlError, match="study_bonus.ipynb"):
        Explorer(tmp_path)


def test_figures_have_one_trace_group_per_arm_and_k(tmp_path):
    runs = [r for r in _study(tmp_path) if r.status == "complete"]
    curves = study.curves_figure(runs, ["vanilla", "up", "mixed", "lone"])
    named = {t.name.split(" (")[0] for t in curves.data if t.showlegend is not False}
    assert named == {"vanilla", "up", "mixed", "lone"}
    diag = study.diagnostics_figure(runs)
    fresh = [t for t in diag.data if t.yaxis in ("y7", "y8")]  # fresh - loaded row, both k panels
    assert fresh and all(t.y[0] == pytest.approx(-20.0 / 1) for t in fresh)  # first interval of the fixture
    assert study.curves_figure([]).layout.title.text.endswith("no runs yet")


@pytest.mark.slow
def test_steps_to_threshold_without_a_clean_run_says_so():
    assert study._fmt_steps(math.nan, "0/3") == "— (no k=0 run)"
    assert study._fmt_steps(math.inf, "0/3") == "not reached (0/3)"


def test_design_says_what_the_grid_file_asks_for():
    from hrl_core import grid

    spec = grid.load_grid(grid.REPO / "params" / "study_cql.yaml")
    text = study.design_markdown(spec)
    settings = spec["settings"]
    assert spec["description"] in text and "algorithm cql" in text and "k ∈ {60}" in text
    assert f"{settings['online_steps']:,} online steps" in text and f"seed {settings['phase1_seed']}" in text
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) == len(spec["arms"])
    for row, (arm, arm_settings) in zip(rows, spec["arms"].items(), strict=True):
        assert row.startswith(f"| `{arm}` |") and all(f"`{k}={v}`" in row for k, v in arm_settings.items())


def test_tiny_study_through_grid_and_hrl_study(tmp_path, d4rl_dir, phase1_dir):
    """Arms through `hrl grid` (papermill, Dask) into distinct folders, then the study notebook."""
    params = tmp_path / "tiny_study.yaml"
    params.write_text(
        "algos: [iql]\ndatasets: [hopper-medium-v2]\nremove_top_k: [60]\nseeds: [0, 1]\n"
        "arms:\n  vanilla: {bonus_type: none}\n  warmstart: {bonus_type: ensemble, member_init: warmstart}\n"
        "  ucb_action: {bonus_type: ensemble, exploration: ucb_action}\n"
        f"executed_dir: {tmp_path / 'executed'}\n"
        "settings: {online_steps: 30, eval_interval: 15, eval_episodes: 1, batch_size: 32, warmstart_steps: 20,"
        f" phase1_seed: 1, save_dir: {tmp_path / 'runs'}}}\n"
    )
    out = run_hrl(["grid", "--params", params, "--no_progress"], tmp_path, d4rl_dir, phase1_dir)
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(list((tmp_path / "executed").glob("*.ipynb"))) == 6
    runs = study.load_study(tmp_path / "runs")
    assert sorted((r.arm, r.seed) for r in runs) == sorted((a, s) for a in ("vanilla", "warmstart", "ucb_action")
                                                           for s in (0, 1))  # fmt: skip
    nb_out, figs = tmp_path / "study.ipynb", tmp_path / "figures"
    out = run_hrl(["study", "--params", params, "--out", nb_out, "--figures_dir", figs], tmp_path, d4rl_dir, phase1_dir)
    assert out.returncode == 0, out.stdout + out.stderr
    nb = nbformat.read(nb_out, as_version=4)
    text = "\n".join(str(o.get("data", {}).get("text/markdown", "")) for c in nb.cells for o in c.get("outputs", []))
    assert "**6 of 6 cells complete.**" in text and "not D4RL" in text
    assert "| `warmstart` | `bonus_type=ensemble`, `member_init=warmstart` |" in text  # the design, from the YAML
    for arm in ("vanilla", "warmstart", "ucb_action"):
        assert f"| 60 | {arm} | 2 |" in text
    assert "Beat vanilla" in text
    assert {p.name for p in figs.iterdir()} >= {"study_returns.png", "study_returns.svg", "study_diagnostics.png"}
