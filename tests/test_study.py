"""The variants study: its numbers on run folders with known curves, and the real path
(a tiny study grid through papermill/Dask, then ``hrl study`` on its runs)."""

from __future__ import annotations

import math

import nbformat
import numpy as np
import pytest

from hrl_core import grid, study
from tests.conftest import run_hrl, write_result_fixture

REPO = grid.REPO

DS = "hopper-medium-v2"


ARMS = ["vanilla", "up", "mixed", "lone"]
COMPARISONS = {"up - vanilla": ("up", "vanilla"), "mixed - vanilla": ("mixed", "vanilla"),
               "lone - vanilla": ("lone", "vanilla")}  # fmt: skip


def _study(tmp_path):
    """vanilla flat at 40; 'up' 10 points higher at every eval after step 0 on every seed;
    'mixed' above vanilla on one seed and below on the others; 'lone' has one seed.
    Arms differ in a setting (bonus_coeff), as real arms do, so their runs have their own folders."""
    cells = []
    for seed, wiggle in enumerate((0.0, 1.0, -1.0)):
        cells.append(write_result_fixture(tmp_path, "iql", DS, 0, "none", seed, [50, 50, 50, 50], arm="vanilla"))
        cells.append(write_result_fixture(tmp_path, "iql", DS, 60, "none", seed, [40, 40 + wiggle, 40, 40],
                                          arm="vanilla"))  # fmt: skip
        cells.append(write_result_fixture(tmp_path, "iql", DS, 60, "ensemble", seed, [40, 50 + wiggle, 50, 50],
                                          arm="up"))  # fmt: skip
        mixed = [40, 40, 40, 60] if seed == 0 else [40, 40, 40, 30]
        cells.append(write_result_fixture(tmp_path, "iql", DS, 60, "ensemble", seed, mixed, arm="mixed",
                                          bonus_coeff=2.0))  # fmt: skip
    cells.append(write_result_fixture(tmp_path, "iql", DS, 60, "ensemble", 0, [40, 45, 46, 47], arm="lone",
                                      bonus_coeff=3.0))  # fmt: skip
    cells.append(write_result_fixture(tmp_path, "iql", DS, 60, "ensemble", 1, [40, 45, 46, 47], status="running",
                                      arm="lone", bonus_coeff=3.0))  # fmt: skip
    return study.load_study(cells)


def test_rows_and_effects_with_welch_intervals(tmp_path):
    runs = _study(tmp_path)
    rows = {(r["k"], r["arm"]): r for r in study.study_rows(runs, ARMS)}
    effects = {e["comparison"]: e for e in study.effect_rows(runs, COMPARISONS)}
    up, mixed, lone = effects["up - vanilla"], effects["mixed - vanilla"], effects["lone - vanilla"]
    assert up["final"].estimate == pytest.approx(10.0) and up["final"].low > 0 and up["final_verdict"] == "better"
    # AUC over steps 0..3000 of +10 at steps 1000..3000 (trapezoid): (5 + 10 + 10) / 3
    assert up["auc"].estimate == pytest.approx(25 / 3, abs=0.4) and up["auc_verdict"] == "better"
    assert mixed["final"].low < 0 < mixed["final"].high and mixed["final_verdict"] == "inconclusive"
    assert lone["n_arm"] == 1 and lone["auc_verdict"] == "no interval"  # the running seed is left out
    assert set(effects) == set(COMPARISONS)  # k=0 has no 'up' runs: no row there
    # Thresholds from the clean runs' step 0 (50): 80% = 40 is met at step 0; 100% = 50 by 'up' at step 1000.
    r_up = rows[(60.0, "up")]
    assert r_up["threshold80"] == pytest.approx(40.0) and r_up["steps_to_80_median"] == 0
    # seeds 0, 1 reach 50 at step 1000, seed 2 (49 at 1000) at 2000: median 1000, all three reached
    assert r_up["steps_to_100_median"] == 1000 and r_up["reached_100"] == "3/3"
    assert math.isinf(rows[(60.0, "vanilla")]["steps_to_100_median"])
    # Bonus / reward over the run: bonus 10/(i+1) for i = 1..3 over reward 3.
    assert r_up["bonus_reward_ratio"] == pytest.approx(np.mean([5, 10 / 3, 2.5]) / 3)
    assert r_up["disagreement_trend"] == pytest.approx(2.5 / 5) and r_up["disagreement_fell"] == "3/3"


def test_pooled_and_conclusion_say_what_the_numbers_say(tmp_path):
    runs = _study(tmp_path)
    rows, effects = study.study_rows(runs, ARMS), study.effect_rows(runs, COMPARISONS)
    pooled = {p["comparison"]: p for p in study.pooled_rows(runs, COMPARISONS)}
    assert pooled["up - vanilla"]["verdict"] == "better"
    assert pooled["up - vanilla"]["pooled"].probability_of_improvement.estimate == 1.0
    assert pooled["mixed - vanilla"]["verdict"] == "inconclusive"
    table = study.table_markdown(rows)
    assert table.count("\n") == 2 + len(rows) - 1 and "| 60 | up | 3 |" in table
    assert "| up - vanilla | iql | hopper-medium-v2 | 60 | 3 vs 3 |" in study.effects_markdown(effects)
    text = study.conclusion_markdown(effects, list(pooled.values()), rows)
    assert "**up - vanilla**: **helps** on average" in text
    assert "**mixed - vanilla**: **inconclusive** on average" in text
    assert "**lone - vanilla**: **no interval**" in text
    assert study.conclusion_markdown([], [], []).startswith("No comparison has complete runs")


def test_diagnostics_rows_first_interval_and_whole_run(tmp_path):
    runs = [r for r in _study(tmp_path) if r.status == "complete"]
    rows = {(r["k"], r["arm"]): r for r in study.diagnostics_rows(runs)}
    up = rows[(60.0, "up")]
    # Fixture: fresh member 20/i below the loaded ones (at 50) in interval i = 1..3.
    assert up["mean Q: fresh − loaded | first"] == pytest.approx(-20.0)
    assert up["mean Q: fresh − loaded | run"] == pytest.approx(-(20 + 10 + 20 / 3) / 3)
    assert up["mean Q, loaded members | run"] == pytest.approx(50.0)
    assert up["bonus / env reward | first"] == pytest.approx(5.0 / 3.0)  # bonus 10/2 over reward 3
    assert rows[(60.0, "vanilla")]["bonus / env reward | first"] == 0.0
    assert "| 60 | up |" in study.diagnostics_markdown(list(rows.values()))


def test_plot_and_explorer_refuse_a_study_grid(tmp_path):
    from hrl_core.analysis import Explorer
    from hrl_core.errors import HrlError

    with pytest.raises(HrlError, match="study.ipynb"):
        Explorer(REPO / "params" / "study_iql.yaml")
    out = run_hrl(["plot", "--params", REPO / "params" / "study_iql.yaml", "--out", tmp_path], REPO, timeout=120)
    assert out.returncode == 1 and "use hrl study" in out.stderr


def test_figures_are_written_as_png_and_svg(tmp_path):
    runs = [r for r in _study(tmp_path / "runs") if r.status == "complete"]
    figs = study.figures(runs, ARMS, tmp_path / "figs")
    assert [name for name, _ in figs] == ["study_returns", "study_diagnostics"]
    assert all(png[:4] == b"\x89PNG" for _, png in figs)
    svg = (tmp_path / "figs" / "study_returns.svg").read_text()
    assert all(arm in svg for arm in ARMS) and "not D4RL" in svg


@pytest.mark.slow
def test_a_study_without_k0_cells_reads_the_clean_level_from_k0_runs_beside_it(tmp_path):
    """The CQL study has k=60 cells only: the clean level comes from the k=0 twins of its
    reference cells (another record's runs in the same save_dir), and says so."""
    study_cells = [write_result_fixture(tmp_path, "cql", DS, 60, "none", s, [30, 35, 45, 50], arm="vanilla")
                   for s in (0, 1)]  # fmt: skip
    twins = study.clean_reference_cells(study_cells)
    assert [c.config.remove_top_k for c in twins] == [0.0, 0.0] and all(c.config.algo == "cql" for c in twins)
    runs = study.load_study(study_cells)
    assert study.load_study(twins) == []  # not there yet: no clean level, and the note says which runs are missing
    assert math.isnan(study.study_rows(runs, ["vanilla"])[0]["threshold80"])
    assert "missing" in study.clean_reference_markdown([], study_cells)
    # Another record made them (same settings, k=0): step-0 returns 50 and 60 -> clean level 55, 80% = 44.
    other = [write_result_fixture(tmp_path, "cql", DS, 0, "none", s, [r, r, r, r]) for s, r in ((0, 50), (1, 60))]
    assert sorted(c.run_name for c in other) == sorted(c.run_name for c in twins)
    clean = study.load_study(twins)
    row = study.study_rows(runs, ["vanilla"], clean_runs=clean)[0]
    assert row["threshold80"] == pytest.approx(44.0) and row["steps_to_80_median"] == 2000
    assert "found" in study.clean_reference_markdown(clean, study_cells)
    # A study that has its own k=0 cells needs none.
    assert study.clean_reference_cells(study_cells + other) == []


def test_steps_to_threshold_without_a_clean_run_says_so():
    assert study._fmt_steps(math.nan, "0/3") == "— (no k=0 run)"
    assert study._fmt_steps(math.inf, "0/3") == "not reached (0/3)"


def test_design_says_what_the_grid_file_asks_for():
    spec = grid.load_grid(grid.REPO / "params" / "study_cql.yaml")
    text = study.design_markdown(spec)
    settings = spec["settings"]
    assert spec["description"] in text and "algorithm cql" in text and "k ∈ {60}" in text
    assert f"{settings['online_steps']:,} online steps" in text and f"seed {settings['phase1_seed']}" in text
    rows = [line for line in text.splitlines() if line.startswith("| `")][: len(spec["arms"])]
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
    runs = study.load_study(grid.expand(grid.load_grid(params)))
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
    assert "| warmstart − vanilla | iql | hopper-medium-v2 | 60 | 2 vs 2 |" in text  # the effect table
    assert "P(arm > reference)" in text
    assert {p.name for p in figs.iterdir()} >= {"study_returns.png", "study_returns.svg", "study_diagnostics.png"}
