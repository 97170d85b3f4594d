"""hrl plot: summary numbers and figures on small fixture results (values checked by hand)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hrl_core.lab import clean_level, plot, records, summary
from hrl_core.lab.figures import catalog, to_plotly
from hrl_core.lab.recovery import auc, first_step_at
from tests.conftest import write_result_fixture

H = "hopper-medium-v2"


@pytest.fixture
def cells(tmp_path):
    d = tmp_path / "res"
    # Clean Phase I level 50 -> threshold 40 for IQL on hopper.
    return [
        write_result_fixture(d, "iql", H, 0, "ensemble", 0, [50, 45, 50, 55]),
        write_result_fixture(d, "iql", H, 0, "none", 0, [50, 40, 42, 44]),
        write_result_fixture(d, "iql", H, 60, "ensemble", 0, [30, 35, 41, 47]),  # reaches 40 at step 2000
        write_result_fixture(d, "iql", H, 60, "ensemble", 1, [30, 32, 38, 45]),  # at step 3000
        write_result_fixture(d, "iql", H, 60, "none", 0, [30, 31, 33, 35]),  # never
        write_result_fixture(d, "iql", H, 60, "none", 1, [30, 30, 32, 37]),  # never
        write_result_fixture(d, "iql", H, 30, "none", 0, [40, 41], status="running"),  # unfinished
    ]


def test_auc_and_threshold_helpers():
    steps = np.array([0.0, 1000, 2000])
    assert auc(steps, np.array([0.0, 10, 20])) == pytest.approx(10.0)
    assert first_step_at(steps, np.array([1.0, 5, 9]), 5) == 1000
    assert math.isinf(first_step_at(steps, np.array([1.0, 2, 3]), 5))
    assert math.isnan(first_step_at(steps, np.array([1.0, 2, 3]), math.nan))


def _numbers(cells):
    found = records.load_cells(cells, records=False)
    levels = clean_level.clean_levels(found, evaluate=False)
    rows = summary.setting_rows(found, ["vanilla", "ensemble"], levels)
    effects = summary.effect_rows(found, {"ensemble − vanilla": ("ensemble", "vanilla")}, levels)
    return found, levels, rows, effects


def test_summary_rows_values(cells):
    found, levels, rows, effects = _numbers(cells)
    assert len(found) == 7
    by = {(r["k"], r["arm"]): r for r in rows}
    assert (30.0, "vanilla") not in by  # unfinished runs do not enter the numbers
    # Seed 0's clean level is its k=0 runs' step 0 (50); seed 1 has no k=0 run and no checkpoint here.
    assert levels[("iql", H)].level == pytest.approx(50.0) and "seed 1" in levels[("iql", H)].note
    ens, van = by[(60.0, "ensemble")], by[(60.0, "vanilla")]
    assert ens["threshold80"] == pytest.approx(40.0)
    assert ens["steps_to_80_median"] == 2500.0 and ens["reached_80"] == "2/2"
    assert math.isinf(van["steps_to_80_median"]) and van["reached_80"] == "0/2"
    assert ens["final_mean"] == pytest.approx(46.0) and ens["step0_return"] == pytest.approx(30.0)
    e60 = {(e["k"]): e for e in effects}[60.0]
    assert e60["final"].estimate == pytest.approx(46.0 - 36.0)
    # Welch by hand: ensemble 47, 45 (s^2 = 2), vanilla 35, 37 (s^2 = 2): se = sqrt(2/2 + 2/2) = sqrt 2,
    # df = (1 + 1)^2 / (1/1 + 1/1) = 2, t(0.975, 2) = 4.3027 -> 10 -+ 6.085.
    assert e60["final"].low == pytest.approx(10 - 4.302653 * math.sqrt(2), abs=1e-4)
    assert e60["final"].high == pytest.approx(10 + 4.302653 * math.sqrt(2), abs=1e-4)
    assert e60["final_verdict"] == "better"
    # Trapezoids: (32.5 + 38 + 44) / 3 = 38.1667 and (31 + 35 + 41.5) / 3 = 35.8333 -> mean 37.0
    assert ens["auc_mean"] == pytest.approx(37.0)
    # One seed a side (k=0): an estimate but no interval, and no verdict.
    k0 = {(e["k"]): e for e in effects}[0.0]
    assert k0["final"].estimate == pytest.approx(11.0) and math.isnan(k0["final"].low)
    assert k0["final_verdict"] == "no interval"
    # The dip: k=0 ensemble falls to 45 at step 1000 and regains 50 at step 2000; k=0 vanilla never does.
    k0e, k0v = by[(0.0, "ensemble")], by[(0.0, "vanilla")]
    assert (k0e["dip_return_mean"], k0e["dip_depth_mean"], k0e["dip_step_median"]) == (45.0, 5.0, 1000.0)
    assert k0e["regain_text"] == "2,000 (1/1)" and k0v["regain_text"] == "not regained (0/1)"
    # k=60 never falls below its start: nothing to regain; the clean level (50) is never reached.
    assert ens["regain_text"] == "never below its start (2/2)" and ens["dipped"] == "0/2"
    assert ens["clean_text"] == "not reached (0/2)" and ens["spec80_text"] == "2,500 (2/2)"


def test_summary_files_say_never_and_missing_and_data_kind(cells, tmp_path):
    found, levels, rows, effects = _numbers(cells)
    md, csv = plot.write_summary(rows, effects, levels, ["a missing cell"], tmp_path / "fig", len(found))
    text = md.read_text()
    assert "not reached" in text and "Missing cells (1)" in text and "not D4RL" in text
    assert "+10.0 [+3.9, +16.1] | better" in text  # Welch's interval, not a zero-width one
    assert "+11.0 (no interval: < 2 seeds) | no interval" in text
    assert csv.read_text().count("\n") == len(rows) + 1


def test_curves_figure_styles(cells):
    fig = to_plotly.render(catalog.curves(records.load_cells(cells), "iql", H))
    named = [t for t in fig.data if t.name]
    styles = {t.name.split(" (")[0]: t.line.dash for t in named}
    assert styles["k=60 ensemble"] == "solid" and styles["k=60 vanilla"] == "dash"
    k60 = next(t for t in named if t.name.startswith("k=60 ensemble"))
    np.testing.assert_allclose(k60.y, [30, 33.5, 39.5, 46])  # mean over the two seeds
    assert "(n=2)" in k60.name
    assert fig.layout.yaxis.title.text == "normalized return"
    assert all(t.mode == "lines" for t in fig.data)  # bands draw no stray markers
    # Phase I levels drawn as horizontal lines, one per corruption level.
    assert len(fig.layout.shapes) == 3


def test_sample_efficiency_shows_never_reached(cells):
    found = records.load_cells(cells)
    spec = catalog.recovery(found, H, clean_level.clean_levels(found, evaluate=False))
    assert [p.title for p in spec.panels][0].startswith("online steps to the clean")
    fig = to_plotly.render(spec)
    vanilla = next(t for t in fig.data if t.name == "IQL vanilla")  # the clean-level panel comes first
    k60 = [i for i, x in enumerate(vanilla.x) if x == "k=60"]
    assert all("not reached" in vanilla.text[i] for i in k60) and len(k60) == 2
    assert all(vanilla.marker.symbol[i] == "x-open" for i in k60)
    # The regain panel: k=60 never fell below its start ("never below its start", an open circle on a
    # line of its own below 0, so it never reads as "regained in 0 steps").
    regain = [s for s in spec.panels[1].series if s.label == "IQL vanilla"][0]
    at60 = [i for i, x in enumerate(regain.x) if x == "k=60"]
    assert all(regain.y[i] < 0 for i in at60) and {regain.markers[i] for i in at60} == {"circle-open"}
    assert any(h.y == regain.y[at60[0]] and "never below its start" in h.label for h in spec.panels[1].hlines)
    assert all("never below its start" in regain.text[i] for i in at60)
    k0 = [i for i, x in enumerate(regain.x) if x == "k=0"]  # k=0 vanilla dipped and never regained: drawn above
    assert regain.markers[k0[0]] == "x" and regain.y[k0[0]] > 3000


def test_sample_efficiency_draws_each_algorithms_budget(cells, tmp_path):
    """IQL runs of 3,000 steps beside CQL runs of 500: a CQL "not reached" sits above the IQL
    budget, so each algorithm's budget is its own line (one line when they are equal)."""
    from tests.conftest import write_result_fixture

    cql = [write_result_fixture(tmp_path / "res", "cql", H, k, "none", 0, [40, 30], step=500) for k in (0, 60)]
    found = records.load_cells(cells + cql)
    spec = catalog.recovery(found, H, clean_level.clean_levels(found, evaluate=False))
    lines = {h.label: h.y for h in spec.panels[1].hlines}
    assert lines["CQL budget"] == 500 and lines["IQL budget"] == 3000 and "budget" not in lines
    assert lines["not reached (✕)"] > 3000
    alone = catalog.recovery(records.load_cells(cells), H, {})
    assert {h.label: h.y for h in alone.panels[1].hlines}["budget"] == 3000


def test_write_all_static_and_html_without_a_browser(cells, tmp_path, monkeypatch):
    """PNG/SVG come from matplotlib: they are written with no Chrome/Chromium on PATH."""
    monkeypatch.setenv("PATH", "/nonexistent")  # no browser (nor anything else) to be found
    monkeypatch.setenv("BROWSER_PATH", "/nonexistent/chrome")
    out = plot.write_all(cells, tmp_path / "figs")
    names = {p.name for p in out["files"]}
    for stem in ("finetune_curves_iql_hopper-medium-v2", "disagreement_iql_hopper-medium-v2",
                 "sample_efficiency_hopper-medium-v2"):  # fmt: skip
        assert {f"{stem}.html", f"{stem}.png", f"{stem}.svg"} <= names
    assert {"summary.md", "summary.csv"} <= names
    # plotly.js sits once beside the HTML figures (offline), not embedded in each of them.
    html = (tmp_path / "figs" / "finetune_curves_iql_hopper-medium-v2.html").read_text()
    assert 'src="plotly.min.js"' in html and len(html) < 500_000
    assert (tmp_path / "figs" / "plotly.min.js").stat().st_size > 1_000_000
    png = (tmp_path / "figs" / "finetune_curves_iql_hopper-medium-v2.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    svg = (tmp_path / "figs" / "finetune_curves_iql_hopper-medium-v2.svg").read_text()
    assert "IQL hopper-medium-v2" in svg and "k=60 ensemble (n=2)" in svg and "not D4RL" in svg
    assert out["missing"] == [cells[-1].run_name]  # the unfinished cell


def test_hrl_plot_refuses_a_grid_with_arms(cells, tmp_path):
    from hrl_core.errors import HrlError

    cells[0].arm = "vanilla"
    with pytest.raises(HrlError, match="use hrl study"):
        plot.write_all(cells, tmp_path / "figs")


def test_study_curves_draw_each_checkpoints_seeds_apart(tmp_path):
    """A setting run from two Phase I checkpoints (3 seeds per arm on each): each seed's thin line carries its
    checkpoint's dash, the panel says seeds x checkpoints, each checkpoint's step-0 level is its own line
    (the lower one's label under it). One checkpoint: nothing split."""
    from hrl_core.lab.analysis import stratum_of

    cells = []
    for ckpt, start in ((1, 46.0), (2, 49.0)):
        for seed in range(3):
            for arm, bonus, end in (("vanilla", "none", 20.0), ("spec", "ensemble", 10.0)):
                curve = [start, start - 5 - seed, end + ckpt]
                cells.append(write_result_fixture(tmp_path, "cql", "hopper-medium-v2", 60, bonus, seed, curve,
                                                  arm=arm, phase1_seed=ckpt))  # fmt: skip
    runs = records.load_cells(cells, records=False)
    fig = catalog.study_curves(runs, ["vanilla", "spec"])
    (panel,) = fig.panels
    assert "3 seeds x 2 checkpoints per arm" in panel.title and "solid: ckpt 1, dashed: ckpt 2" in fig.title
    thin = [s for s in panel.series if not s.label]
    for ckpt, dash in ((1, "solid"), (2, "dash")):  # the lines of a dash are that checkpoint's runs' curves
        curves = sorted(tuple(r.series("normalized_return")) for r in runs if stratum_of(r) == ckpt)
        assert sorted(tuple(s.y) for s in thin if s.dash == dash) == curves and len(curves) == 6
    levels = {h.label: h.y for h in panel.hlines}
    assert levels == {"ckpt 1": 46.0, "ckpt 2": 49.0}
    assert [h.label for h in panel.hlines if h.label_below] == ["ckpt 1"]  # the two labels apart

    one = [r for r in runs if stratum_of(r) == 1]
    fig = catalog.study_curves(one, ["vanilla", "spec"])
    assert "checkpoints" not in fig.panels[0].title and {s.dash for s in fig.panels[0].series} == {"solid"}
    assert len(fig.panels[0].hlines) == 1
