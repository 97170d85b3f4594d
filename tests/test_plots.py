"""Summary numbers and figures on small fixture results (values checked by hand)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hrl_core import plots
from tests.conftest import write_result_fixture

H = "hopper-medium-v2"


@pytest.fixture
def results(tmp_path):
    d = tmp_path / "res"
    # Clean Phase I level 50 -> threshold 40 for IQL on hopper.
    write_result_fixture(d, "iql", H, 0, "ensemble", 0, [50, 45, 50, 55])
    write_result_fixture(d, "iql", H, 0, "none", 0, [50, 40, 42, 44])
    write_result_fixture(d, "iql", H, 60, "ensemble", 0, [30, 35, 41, 47])  # reaches 40 at step 2000
    write_result_fixture(d, "iql", H, 60, "ensemble", 1, [30, 32, 38, 45])  # at step 3000
    write_result_fixture(d, "iql", H, 60, "none", 0, [30, 31, 33, 35])  # never
    write_result_fixture(d, "iql", H, 60, "none", 1, [30, 30, 32, 37])  # never
    write_result_fixture(d, "iql", H, 30, "none", 0, [40, 41], status="running")  # unfinished
    return d


def test_auc_and_threshold_helpers():
    steps = np.array([0.0, 1000, 2000])
    assert plots.auc(steps, np.array([0.0, 10, 20])) == pytest.approx(10.0)
    assert plots.steps_to_threshold(steps, np.array([1.0, 5, 9]), 5) == 1000
    assert math.isinf(plots.steps_to_threshold(steps, np.array([1.0, 2, 3]), 5))
    assert math.isnan(plots.steps_to_threshold(steps, np.array([1.0, 2, 3]), math.nan))


def test_bootstrap_ci_brackets_the_difference():
    diff, lo, hi = plots.bootstrap_diff_ci([46, 45, 47], [36, 35, 37])
    assert diff == pytest.approx(10.0) and lo < 10 < hi and lo > 5
    assert all(math.isnan(v) for v in plots.bootstrap_diff_ci([1.0], []))


def test_summary_rows_values(results):
    runs = plots.load_runs(results)
    assert len(runs) == 7
    rows, missing = plots.summary_rows(runs, expected=[("iql", H, 30, "none", 0), ("iql", H, 0, "none", 0)])
    by = {(r["k"], r["bonus_type"]): r for r in rows}
    assert (30.0, "none") not in by  # unfinished runs do not enter the numbers
    assert missing == ["iql hopper-medium-v2 k=30 none seed 0"]
    ens, van = by[(60.0, "ensemble")], by[(60.0, "none")]
    assert ens["threshold"] == pytest.approx(40.0)
    assert ens["steps_to_threshold_median"] == 2500.0 and ens["reached"] == "2/2"
    assert math.isinf(van["steps_to_threshold_median"]) and van["reached"] == "0/2"
    assert ens["final_return_mean"] == pytest.approx(46.0) and ens["step0_return"] == pytest.approx(30.0)
    assert ens["ens_minus_vanilla_final"] == pytest.approx(46.0 - 36.0)
    assert ens["ci95_low"] <= 10.0 <= ens["ci95_high"]
    # Trapezoids: (32.5 + 38 + 44) / 3 = 38.1667 and (31 + 35 + 41.5) / 3 = 35.8333 -> mean 37.0
    assert ens["auc_mean_return"] == pytest.approx(37.0)


def test_summary_files_say_never_and_missing_and_data_kind(results, tmp_path):
    runs = plots.load_runs(results)
    rows, missing = plots.summary_rows(runs, expected=[("iql", H, 30, "none", 0)])
    md, csv = plots.write_summary(rows, missing, tmp_path / "fig", len(runs))
    text = md.read_text()
    assert "never" in text and "Missing cells (1)" in text and "not D4RL" in text
    assert csv.read_text().count("\n") == len(rows) + 1


def test_curves_figure_styles(results):
    fig = plots.curves_figure(plots.load_runs(results), "iql", H)
    named = [t for t in fig.data if t.name]
    styles = {t.name.split(" (")[0]: t.line.dash for t in named}
    assert styles["k=60 ensemble"] == "solid" and styles["k=60 vanilla"] == "dash"
    k60 = next(t for t in named if t.name.startswith("k=60 ensemble"))
    np.testing.assert_allclose(k60.y, [30, 33.5, 39.5, 46])  # mean over the two seeds
    assert "(n=2)" in k60.name
    # Phase I levels drawn as horizontal lines, one per corruption level.
    assert len(fig.layout.shapes) == 3


def test_sample_efficiency_shows_never_reached(results):
    fig = plots.sample_efficiency_figure(plots.load_runs(results), H)
    vanilla = next(t for t in fig.data if t.name == "IQL vanilla")
    k60 = [i for i, x in enumerate(vanilla.x) if x == "k=60"]
    assert all("not reached" in vanilla.text[i] for i in k60) and len(k60) == 2
    assert all(vanilla.marker.symbol[i] == "x-open" for i in k60)


def test_write_all_html(results, tmp_path):
    out = plots.write_all(results, tmp_path / "figs", static=False)
    names = {p.name for p in out["files"]}
    assert {
        "finetune_curves_iql_hopper-medium-v2.html",
        "disagreement_iql_hopper-medium-v2.html",
        "sample_efficiency_hopper-medium-v2.html",
        "summary.md",
        "summary.csv",
    } <= names
