"""The variants study: its numbers on run folders with known curves, and the real path
(a tiny study grid through papermill/Dask, then ``hrl study`` on its runs)."""

from __future__ import annotations

import math

import nbformat
import numpy as np
import pytest

from hrl_core.lab import clean_level, grids, records, study, summary
from tests.conftest import run_hrl, write_result_fixture

REPO = grids.REPO

DS = "hopper-medium-v2"
ENV = "Hopper-v4"


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
    return records.load_cells(cells)


def test_rows_and_effects_with_welch_intervals(tmp_path):
    runs = _study(tmp_path)
    levels = clean_level.clean_levels(runs, evaluate=False)
    rows = {(r["k"], r["arm"]): r for r in summary.setting_rows(runs, ARMS, levels)}
    effects = {e["comparison"]: e for e in summary.effect_rows(runs, COMPARISONS, levels)}
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


def test_bonus_ratio_is_a_ratio_of_means_over_seeds(tmp_path):
    """A seed whose mean reward is about 0 in an interval (a collapsed halfcheetah policy: its
    reward is a signed velocity) must not turn the arm's bonus/reward into bonus / ~0."""
    import json

    cells = [write_result_fixture(tmp_path, "cql", DS, 60, "ensemble", seed, [40, 30, 35], arm="up")
             for seed in (0, 1)]  # fmt: skip
    for cell, rewards in zip(cells, ([2.0, 3.0], [-0.01, 1.0]), strict=True):
        metrics = json.loads((cell.run_dir / "metrics.json").read_text())
        metrics["reward_mean"], metrics["bonus_mean"] = [None, *rewards], [None, 1.0, 1.0]
        (cell.run_dir / "metrics.json").write_text(json.dumps(metrics))
    runs = records.load_cells(cells)
    (row,) = summary.setting_rows(runs, ["up"], clean_level.clean_levels(runs, evaluate=False))
    assert row["bonus_ratio_first"] == pytest.approx(1.0 / ((2.0 - 0.01) / 2))  # not (0.5 - 100) / 2
    assert row["bonus_ratio_last"] == pytest.approx(1.0 / 2.0)
    assert row["bonus_reward_ratio"] == pytest.approx(1.0 / ((2.5 + 0.495) / 2))
    (diag,) = study.diagnostics_rows(runs)  # the study notebook's diagnostics table pools the same way
    assert diag["bonus / env reward | first"] == pytest.approx(1.0 / ((2.0 - 0.01) / 2))
    from hrl_core.lab.figures import catalog

    ratio_panel = catalog.study_diagnostics(runs, ["up"], study.DIAGNOSTICS).panels[0]  # and so does its figure
    assert ratio_panel.series[0].y == pytest.approx([1.0 / ((2.0 - 0.01) / 2), 1.0 / 2.0])
    for cell in cells:  # every seed's reward <= 0 in the first interval: no scale, not a huge number
        metrics = json.loads((cell.run_dir / "metrics.json").read_text())
        metrics["reward_mean"][1] = -0.5
        (cell.run_dir / "metrics.json").write_text(json.dumps(metrics))
    runs = records.load_cells(cells)
    (row,) = summary.setting_rows(runs, ["up"], clean_level.clean_levels(runs, evaluate=False))
    assert math.isnan(row["bonus_ratio_first"]) and row["bonus_ratio_last"] == pytest.approx(0.5)


def test_pooled_and_conclusion_say_what_the_numbers_say(tmp_path):
    runs = _study(tmp_path)
    levels = clean_level.clean_levels(runs, evaluate=False)
    rows, effects = summary.setting_rows(runs, ARMS, levels), summary.effect_rows(runs, COMPARISONS, levels)
    pooled = {p["comparison"]: p for p in summary.pooled_rows(runs, COMPARISONS)}
    assert pooled["up - vanilla"]["verdict"] == "better"
    assert pooled["up - vanilla"]["pooled"].probability_of_improvement.estimate == 1.0
    assert pooled["mixed - vanilla"]["verdict"] == "inconclusive"
    table = summary.setting_markdown(rows)
    assert table.count("\n") == 2 + len(rows) - 1 and "| 60 | up | 3 |" in table
    assert "| up - vanilla | iql | hopper-medium-v2 | 60 | 3 vs 3 |" in summary.effects_markdown(effects)
    # beside a declared analysis the same tables are readings, not verdicts: no bare "better" left in them
    for plain, beside in ((summary.effects_markdown(effects), summary.effects_markdown(effects, descriptive=True)),
                          (summary.pooled_markdown(list(pooled.values())),
                           summary.pooled_markdown(list(pooled.values()), descriptive=True))):  # fmt: skip
        assert "| better |" in plain and "| verdict |" in plain
        assert "| better |" not in beside and "| (better) |" in beside and "| uncorrected reading |" in beside
    text = study.conclusion_markdown(effects, list(pooled.values()), rows)
    assert "**up - vanilla**: **helps** on average" in text
    assert "**mixed - vanilla**: **inconclusive** on average" in text
    assert "**lone - vanilla**: **no interval**" in text
    assert study.conclusion_markdown([], [], []).startswith("No comparison has complete runs")
    # 'up' ends at 50, the clean level (50): not above it; the conclusion says so.
    assert "Ending above the clean checkpoint's return (mean final > clean level): 0 of" in text


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
    from hrl_core.errors import HrlError
    from hrl_core.lab.widgets import RunBrowser

    with pytest.raises(HrlError, match="study.ipynb"):
        RunBrowser(REPO / "params" / "study_iql.yaml")
    out = run_hrl(["plot", "--params", REPO / "params" / "study_iql.yaml", "--out", tmp_path], REPO, timeout=120)
    assert out.returncode == 1 and "use hrl study" in out.stderr


def test_figures_are_written_as_png_and_svg(tmp_path):
    runs = [r for r in _study(tmp_path / "runs") if r.status == "complete"]
    figs = study.figures(runs, ARMS, clean_level.clean_levels(runs, evaluate=False), tmp_path / "figs")
    assert [name for name, _ in figs] == ["study_returns", "study_diagnostics", f"sample_efficiency_{DS}"]
    assert all(png[:4] == b"\x89PNG" for _, png in figs)
    svg = (tmp_path / "figs" / "study_returns.svg").read_text()
    assert all(arm in svg for arm in ARMS) and "not D4RL" in svg
    # Re-drawn from the same runs, a figure is the same file (a record re-drawn is no diff).
    first = {p.name: p.read_bytes() for p in (tmp_path / "figs").iterdir()}
    study.figures(runs, ARMS, clean_level.clean_levels(runs, evaluate=False), tmp_path / "figs")
    assert {p.name: p.read_bytes() for p in (tmp_path / "figs").iterdir()} == first


def test_a_study_without_k0_cells_reads_the_clean_level_from_a_stored_offline_evaluation(tmp_path):
    """The long study has k=60 cells only: its clean level is the clean checkpoint evaluated
    offline on each seed's evaluation episodes, kept in clean_levels.json beside the runs (so
    a record read back without the checkpoints still has it); a seed with neither is named."""
    cells = []
    for s in (0, 1):
        cells.append(write_result_fixture(tmp_path, "cql", DS, 60, "none", s, [30, 35, 45, 50], arm="vanilla"))
        cfg = tmp_path / cells[-1].run_name / "config.json"
        cfg.write_text(cfg.read_text().replace('"provenance"', f'"environment": {{"env_id": "Hopper-v4", '
                       f'"eval_seeds": [{1_000_000 + 1000 * s}]}}, "provenance"'))  # fmt: skip
    runs = records.load_cells(cells)
    levels = clean_level.clean_levels(runs, tmp_path, evaluate=False)  # no checkpoint, nothing stored: unknown
    assert math.isnan(levels[("cql", DS)].level) and "not found" in levels[("cql", DS)].note
    assert math.isnan(summary.setting_rows(runs, ["vanilla"], levels)[0]["threshold80"])
    # Stored evaluations of the clean checkpoint on seeds 0 and 1: 50 and 60 -> clean level 55, 80% = 44.
    entries = [{"algo": "cql", "dataset": DS, "checkpoint": str(clean_level.clean_checkpoint(run)), "env_id": ENV,
                "checkpoint_sha256": "e" * 64, "eval_seeds": [1_000_000 + 1000 * run.seed], "normalized_return": r}
               for run, r in zip(sorted(runs, key=lambda r: r.seed), (50.0, 60.0), strict=True)]  # fmt: skip
    clean_level._write_store(tmp_path / clean_level.STORE, entries[:1])  # seed 0's alone: a level that says so
    partial = clean_level.clean_levels(runs, tmp_path, evaluate=False)[("cql", DS)]
    assert partial.level == 50.0 and partial.missing == [1] and partial.text() == "50.0 (seeds 0 of 2)"
    clean_level._write_store(tmp_path / clean_level.STORE, entries)
    levels = clean_level.clean_levels(runs, tmp_path, evaluate=False)
    assert levels[("cql", DS)].text() == "55.0"
    row = summary.setting_rows(runs, ["vanilla"], levels)[0]
    assert row["threshold80"] == pytest.approx(44.0) and row["steps_to_80_median"] == 2000
    assert row["clean_text"] == "not reached (0/2)" and row["steps_to_100_median"] == math.inf
    assert "**55.0** over seeds 0, 1 (2 by offline evaluation of" in clean_level.clean_levels_markdown(levels)


@pytest.mark.slow
def test_the_offline_clean_level_is_exactly_a_clean_runs_step_0(tmp_path, d4rl_dir, phase1_dir):
    """A real k=0 run's step 0 and the offline evaluation of the same checkpoint on the same
    seeds are the same number (so a study without k=0 runs measures the clean level right)."""
    from hrl_core.run.config import FinetuneConfig
    from hrl_core.run.finetune import finetune

    cfg = FinetuneConfig(algo="iql", env=DS, remove_top_k=0, bonus_type="none", seed=2, online_steps=4,
                         eval_interval=4, eval_episodes=3, batch_size=32, phase1_seed=1, threads=1,
                         phase1_dir=str(phase1_dir), save_dir=str(tmp_path / "runs"))  # fmt: skip
    os_env = dict(D4RL_DATASET_DIR=str(d4rl_dir))
    with pytest.MonkeyPatch.context() as mp:
        for k, v in os_env.items():
            mp.setenv(k, v)
        finetune(cfg, progress=False)
    run = records.read_run(tmp_path / "runs" / cfg.run_name)
    run.k = 60.0  # read as if it were a corrupted run: the level must come from the checkpoint, not its step 0
    levels = clean_level.clean_levels([run], tmp_path / "runs")
    assert levels[("iql", DS)].level == run.returns[0]
    assert "offline evaluation" in levels[("iql", DS)].sources[2]
    stored = clean_level._read_store(tmp_path / "runs" / clean_level.STORE)
    assert len(stored) == 1 and stored[0]["eval_seeds"] == run.config["environment"]["eval_seeds"]


def test_design_says_what_the_grid_file_asks_for():
    spec = grids.load_grid(grids.REPO / "params" / "study_cql.yaml")
    text = study.design_markdown(spec)
    settings = spec["settings"]
    assert spec["description"] in text and "algorithm cql" in text and "k ∈ {60}" in text
    assert f"{settings['online_steps']:,} online steps" in text and f"seed {settings['phase1_seed']}" in text
    rows = [line for line in text.splitlines() if line.startswith("| `")][: len(spec["arms"])]
    for row, (arm, arm_settings) in zip(rows, spec["arms"].items(), strict=True):
        assert row.startswith(f"| `{arm}` |") and all(f"`{k}={v}`" in row for k, v in arm_settings.items())
    # A budget given per algorithm keeps the shared number of episodes (not "the default").
    long = study.part_spec(grids.load_grid(grids.REPO / "params" / "study_long.yaml"), "iql-hopper")
    assert "iql: 100,000 online steps, evaluation every 5,000 steps (10 episodes)" in study.design_markdown(long)


def test_the_whole_studys_design_names_each_parts_seeds_and_the_checkpoints():
    """The review study runs IQL hopper at 8 online seeds and every cell from two Phase I checkpoints;
    its whole record's design line read "online seeds 0, 1, 2" and named no checkpoint."""
    spec = grids.load_grid(REPO / "params" / "study_review.yaml")
    text = study.design_markdown(spec).splitlines()[0]
    for name, part in spec["parts"].items():
        if part.get("seeds") and list(part["seeds"]) != list(spec["seeds"]):
            assert f"part {name}: {', '.join(str(s) for s in part['seeds'])}" in text
    assert f"Phase I checkpoints of seeds {', '.join(str(s) for s in spec['phase1_seeds'])}" in text
    # a part's own view states its seeds once, as the part runs them
    part = study.part_spec(spec, "iql-hopper")
    own = study.design_markdown(part).splitlines()[0]
    assert f"online seeds {', '.join(str(s) for s in part['seeds'])};" in own and "part iql-hopper:" not in own


def test_a_comparison_whose_sides_start_differently_says_so(tmp_path):
    """Step 0 of one seed is the same evaluation on both sides of a comparison; where it is
    not (cells run on another machine), the effect table is told, with what the configs say."""
    import json

    cells = []
    for seed, start in ((0, 40.0), (1, 41.0)):
        cells.append(write_result_fixture(tmp_path, "iql", DS, 60, "none", seed, [40, 42, 44], arm="vanilla"))
        cells.append(write_result_fixture(tmp_path, "iql", DS, 60, "ensemble", seed, [start, 43, 45], arm="up"))
    for cell, platform in zip(cells, ("a", "a", "a", "b"), strict=True):
        config = json.loads((cell.run_dir / "config.json").read_text())
        config["versions"] = {"torch": "2.13.0", "platform": platform}
        (cell.run_dir / "config.json").write_text(json.dumps(config))
    runs = records.load_cells(cells)
    effects = summary.effect_rows(runs, {"up - vanilla": ("up", "vanilla")})
    assert [(g["seed"], g["gap"], g["differs"]) for g in effects[0]["start_gaps"]] == [(1, 1.0, ["platform"])]
    note = summary.start_gap_note(effects)
    assert "**Step 0 differs** in up - vanilla, IQL hopper k=60, at seed 1 (+1.00 points) (arm − reference)" in note
    assert "platform" in note
    same = summary.effect_rows(runs, {"vanilla - vanilla": ("vanilla", "vanilla")})
    assert same[0]["start_gaps"] == [] and summary.start_gap_note(same) == ""


def test_a_part_compares_with_runs_another_part_runs(tmp_path):
    """A part's comparison against an arm another part runs (``compare_with``): the part never
    runs that arm, its record reads those runs on its own settings, and counts them apart."""
    params = tmp_path / "parts.yaml"
    params.write_text(
        "algos: [iql]\ndatasets: [hopper-medium-v2]\nremove_top_k: [60]\nseeds: [0, 1, 2]\n"
        "arms: {vanilla: {bonus_type: none}, up: {bonus_type: ensemble}}\n"
        "comparisons: {up - vanilla: [up, vanilla]}\n"
        f"settings: {{save_dir: {tmp_path / 'runs'}}}\n"
        "parts:\n  base: {arms: [vanilla]}\n  extra: {arms: [up], seeds: [0, 1], compare_with: [vanilla]}\n"
    )
    for seed in (0, 1, 2):
        write_result_fixture(tmp_path / "runs", "iql", DS, 60, "none", seed, [40, 40 + seed, 40, 40])
    for seed in (0, 1):
        write_result_fixture(tmp_path / "runs", "iql", DS, 60, "ensemble", seed, [40, 50 + seed, 50, 50])
    spec = grids.load_grid(params)
    own = grids.expand(spec, {"parts": ["extra"]})
    assert {c.arm for c in own} == {"up"}  # `hrl grid --part extra` never runs vanilla
    refs = grids.reference_cells(spec, "extra")
    assert sorted((c.arm, c.part, c.config.seed) for c in refs) == [("vanilla", "base", 0), ("vanilla", "base", 1)]
    assert grids.reference_cells(spec, "base") == []
    part = study.part_spec(spec, "extra")
    assert list(part["arms"]) == ["up", "vanilla"] and part["reference_arms"] == ["vanilla"]
    assert "a reference: its runs belong to another part" in study.design_markdown(part)
    complete = records.load_cells(own + refs)
    effects = summary.effect_rows(complete, study.comparisons_of(part, list(part["arms"])), {})
    assert len(effects) == 1 and effects[0]["n_arm"] == effects[0]["n_reference"] == 2
    assert effects[0]["final"].estimate == pytest.approx(10.0) and effects[0]["final_verdict"] == "better"
    text = study.completeness_markdown(own, complete, study.missing_cells(own + refs, complete), refs)
    assert text.startswith("**2 of 2 cells complete.**") and "(`vanilla`, not run here): 2 of 2 complete" in text

    # The record itself: `hrl study --part extra` executes the study notebook on them.
    nb_out = tmp_path / "extra.ipynb"
    out = run_hrl(["study", "--params", params, "--part", "extra", "--out", nb_out, "--figures_dir", tmp_path / "f"],
                  tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    nb = nbformat.read(nb_out, as_version=4)
    shown = "\n".join(str(o.get("data", {}).get("text/markdown", "")) for c in nb.cells for o in c.get("outputs", []))
    assert "**2 of 2 cells complete.** References read from other parts" in shown
    assert "| up - vanilla | iql | hopper-medium-v2 | 60 | 2 vs 2 |" in shown

    # Without --out and --record: beside the runs, said; never into a committed record (executed/, figures/)
    out = run_hrl(["study", "--params", params, "--part", "extra"], tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    beside = tmp_path / "runs" / "studies"
    assert (beside / "parts_extra.ipynb").exists() and str(beside / "parts_extra.ipynb") in out.stdout
    assert list((beside / "figures" / "parts" / "extra").glob("*.png"))
    assert not (tmp_path / "executed").exists() and not (tmp_path / "figures").exists()


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
    runs = records.load_cells(grids.expand(grids.load_grid(params)))
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
