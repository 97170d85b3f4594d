"""The review study's machinery: Phase I checkpoints as an axis, reuse of another record only
where this code reproduces it, and the declared analysis block."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hrl_core.errors import HrlError
from hrl_core.lab import grids, records, reuse

REPO = Path(__file__).resolve().parents[1]


def test_phase1_seeds_is_an_axis(tmp_path):
    spec = grids.load_grid(REPO / "params" / "study_review.yaml")
    cells = grids.expand(spec, {"parts": ["cql-hopper"]}, {"save_dir": str(tmp_path)})
    assert len(cells) == 24  # 4 arms x 2 checkpoints x 3 seeds
    assert {c.config.effective_phase1_seed for c in cells} == {1, 2}
    assert len({c.run_name for c in cells}) == 24  # the checkpoint is part of every run's identity
    horizon = [c for c in cells if c.arm == "warmstart+bonus"]
    assert {c.config.bonus_scale for c in horizon} == {"horizon"} and "horizon" in horizon[0].run_name


def _grid(tmp_path: Path, phase1_dir: Path, name: str, reuse_from: str = "", seeds: str = "[1]",
          bonus: str = "none") -> Path:  # fmt: skip
    params = tmp_path / f"{name}_{bonus}.yaml"
    params.write_text(
        f"algos: [iql]\ndatasets: [hopper-medium-v2]\nremove_top_k: [60]\nbonus_types: [{bonus}]\nseeds: {seeds}\n"
        + (f"reuse: [{reuse_from}]\n" if reuse_from else "")
        + "settings: {online_steps: 8, eval_interval: 4, eval_episodes: 1, batch_size: 32, phase1_seed: 1, "
        f"threads: 1, phase1_dir: {phase1_dir}, save_dir: {tmp_path / name}}}\n"
    )
    return params


@pytest.mark.slow
def test_a_reused_record_counts_only_where_this_code_reproduces_it(tmp_path, d4rl_env, phase1_dir, monkeypatch):
    from hrl_core.run.finetune import finetune

    kept = tmp_path / "repo_records"
    monkeypatch.setattr(records, "record_dir", lambda save_dir: kept / Path(save_dir).name)
    (old,) = grids.expand(grids.load_grid(_grid(tmp_path, phase1_dir, "results_old")))
    finetune(old.config, progress=False)
    records.write_compact([old])

    (cell,) = grids.expand(grids.load_grid(_grid(tmp_path, phase1_dir, "results_new", reuse_from="results_old")))
    assert grids.cell_status(cell).kind is grids.Kind.IN_RECORD
    checks = reuse.ensure_checked([cell], cell.run_dir.parent, echo=lambda *a, **k: None)
    (entry,) = checks.values()
    assert entry["matches"] and entry["steps_compared"] == [0, 4] and entry["reused_from"] == "results_old"
    assert grids.cell_status(cell).kind is grids.Kind.IN_RECORD
    assert [r.source for r in records.load_cells([cell])] == [str(kept / "results_old")]

    # A record this code does not reproduce (one number off at the first interval) is not reused.
    path = kept / "results_old" / cell.run_name / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["critic_loss_avg"][1] *= 1 + 1e-12
    path.write_text(json.dumps(metrics))
    (cell.run_dir.parent / reuse.STORE).unlink()
    (entry,) = reuse.ensure_checked([cell], cell.run_dir.parent, echo=lambda *a, **k: None).values()
    assert not entry["matches"] and entry["differences"][0].startswith("critic_loss_avg[1]")
    status = grids.cell_status(cell)
    assert status.kind is grids.Kind.NEW and status.runs
    assert records.load_cells([cell]) == []  # and it is not read back from there either


@pytest.mark.slow
def test_every_reused_cells_step_0_is_checked_not_only_the_arms_first(tmp_path, d4rl_env, phase1_dir, monkeypatch):
    """The long study's CQL hopper cells of seed 0 reproduced here and those of seeds 1-2 did not: another machine's
    last-bit differences show in some episodes only. The arm's two-evaluation check (its first cell) passes; the
    step-0 sweep compares every reused cell's step 0 with step 0 computed here and fails the arm on the one that
    differs."""
    from hrl_core.run.finetune import finetune

    kept = tmp_path / "repo_records"
    monkeypatch.setattr(records, "record_dir", lambda save_dir: kept / Path(save_dir).name)
    old = grids.expand(grids.load_grid(_grid(tmp_path, phase1_dir, "results_old", seeds="[1, 2]")))
    for cell in old:
        finetune(cell.config, progress=False)
    records.write_compact(old)
    quiet = {"echo": lambda *a, **k: None}

    new = grids.expand(grids.load_grid(_grid(tmp_path, phase1_dir, "results_new", "results_old", seeds="[1, 2]")))
    (entry,) = reuse.ensure_checked(new, new[0].run_dir.parent, **quiet).values()
    assert entry["matches"] and entry["step0_sweep"] == {"cells": 2, "differ": []}

    # seed 2's record made elsewhere: its step 0 one rounding off; the arm's check cell (seed 1) still matches
    path = kept / "results_old" / new[1].run_name / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["episode_returns"][0][0] *= 1 + 1e-12
    path.write_text(json.dumps(metrics))
    (new[0].run_dir.parent / reuse.STORE).unlink()
    (entry,) = reuse.ensure_checked(new, new[0].run_dir.parent, **quiet).values()
    assert entry["run_name"] == new[0].run_name and entry["steps_compared"] == [0, 4]  # the two-evaluation check
    assert not entry["matches"] and entry["step0_sweep"]["cells"] == 2
    (why,) = entry["step0_sweep"]["differ"]
    assert why.startswith("seed 2 (checkpoint 1): episode_returns[0]")
    assert [grids.cell_status(c).kind for c in new] == [grids.Kind.NEW, grids.Kind.NEW]  # the arm runs here
    assert records.load_cells(new) == []

    # where this study computed a cell of that checkpoint and seed itself (another arm: the bonus), its step 0 is
    # the reference: nothing is computed for it
    (bonus,) = grids.expand(grids.load_grid(_grid(tmp_path, phase1_dir, "results_new", seeds="[2]", bonus="ensemble")))
    finetune(bonus.config, progress=False, stop_at=0)
    (new[0].run_dir.parent / reuse.STORE).unlink()
    said = []
    checks = reuse.ensure_checked([*new, bonus], new[0].run_dir.parent, echo=lambda *a, **k: said.append(a[0]))
    (entry,) = checks.values()
    assert not entry["matches"] and entry["step0_sweep"]["differ"][0].startswith("seed 2 (checkpoint 1)")
    computed = [s for s in said if "computed here" in s]
    assert computed and not [s for s in computed if new[1].run_name in s]  # seed 1's is; seed 2's is read


def test_reuse_compare_names_what_differs():
    a = {"step": [0, 5], "normalized_return": [40.0, 41.0], "wall_time": [1.0, 2.0], "only_old": [1, 2]}
    b = {"step": [0, 5], "normalized_return": [40.0, 41.5], "wall_time": [9.0, 9.0], "bonus_multiplier": [None, 1]}
    assert reuse.compare(a, a) == []
    assert reuse.compare(a, b) == ["normalized_return[1]: 41.0 (reused) vs 41.5 (here)"]  # timings never compared
    assert reuse.compare(a, b, points=1) == []


@pytest.mark.parametrize(
    "block, message",
    [
        ("{primary_metric: speed}", "primary_metric='speed'"),
        ("{primary_family: [nothing]}", "primary_family names 'nothing'"),
        ("{equivalence_margin: .nan}", "equivalence_margin"),
        ("{equivalence_margin: 5, alpha: 0.7}", "alpha=0.7"),
        ("{equivalence_margin: 5, strata: machine}", "strata='machine'"),
        ("{equivalence_margin: 5, final_evaluations: 0}", "final_evaluations=0"),
        ("{equivalence_margin: 5, colour: red}", "unknown keys ['colour']"),
    ],
)
def test_a_declared_analysis_that_cannot_be_applied_is_refused(tmp_path, block, message):
    text = (REPO / "params" / "study_review.yaml").read_text()
    start = text.index("analysis:")
    end = text.index("parts:")
    bad = tmp_path / "study.yaml"
    bad.write_text(text[:start] + f"analysis: {block}\n" + text[end:])
    with pytest.raises(HrlError, match=message.replace("[", r"\[").replace("]", r"\]")):
        grids.load_grid(bad)


def test_a_part_and_the_whole_study_give_one_effect_one_interval():
    """The calibration's scenarios, like the Holm family, belong to the study file: a part's record
    (calibrated on its own runs alone it read "worse" where the whole study read "inconclusive")
    and the whole study's give each effect the same interval, p and verdict. On the committed record."""
    from hrl_core.lab.record import Record

    params = REPO / "params" / "study_review.yaml"
    whole, part = Record.open(params), Record.open(params, part="cql-hopper")
    assert [s.name for s in part.scenarios()] == [s.name for s in whole.scenarios()]  # the file's, not the part's
    primary = {(e.comparison, e.setting): e for e in whole.effects() if e.primary}
    shown = [e for e in part.effects() if e.primary]
    assert shown
    fields = ("estimate", "ci", "ci90", "p", "p_holm", "verdict")
    for e in shown:
        w = primary[(e.comparison, e.setting)]
        assert [getattr(e, f) for f in fields] == [getattr(w, f) for f in fields]


def test_the_review_studys_progress_is_the_whole_files_and_marks_its_verdicts():
    """A part's record counts the whole study file's cells (its calibration and family are the file's),
    and the primary digest reads (interim) exactly while some are missing. On the committed record."""
    from hrl_core.lab import digest
    from hrl_core.lab.record import Record

    params = REPO / "params" / "study_review.yaml"
    whole, part = Record.open(params), Record.open(params, part="cql-hopper")
    done, total = whole.study_progress()
    assert part.study_progress() == (done, total)
    assert total == len(grids.expand(whole.whole)) and 0 < done <= total
    assert done == sum(1 for r in whole.complete if r.run_name in {c.run_name for c in whole.cells})
    table = digest.render("primary:study_review")
    assert ("(interim)" in table) == (done < total)
    assert (f"Interim: {done} of {total} cells" in table) == (done < total)
    from hrl_core.lab import widgets  # the explorer's comparison view says it too

    (e,) = [e for e in part.effects() if e.primary and e.comparison.startswith("member init")]
    rows = widgets.comparison_rows(part, [e], e.comparison, (e.algo, e.dataset, e.k))
    assert rows[0]["verdict"] == e.verdict + (" (interim)" if done < total else "")


def test_check_reuse_alone_on_a_grid_that_reuses_nothing_is_one_line(tmp_path, phase1_dir):
    from tests.conftest import run_hrl

    out = run_hrl(["grid", "--params", _grid(tmp_path, phase1_dir, "results_x"), "--check_reuse"], tmp_path,
                  timeout=300)  # fmt: skip
    assert out.returncode == 1 and out.stderr.strip().splitlines() == [
        f"hrl: error: {tmp_path / 'results_x_none.yaml'} reuses no record (reuse: in the grid file); there is "
        "nothing to check"
    ], out.stderr


def test_every_table_of_a_record_reads_the_final_return_the_analysis_declares():
    """The review study declares final = mean of the last 3 evaluations. Its first record's per-arm
    table and descriptive Welch table still read the last evaluation alone (spec − vanilla: −9.4 there
    against −7.4 in the declared secondary row). Every table now takes the declaration: recomputed
    here from each run's logged returns, not through the package's recovery code."""
    import numpy as np

    from hrl_core.lab import digest
    from hrl_core.lab.record import Record

    rec = Record.open(REPO / "params" / "study_review.yaml", part="cql-hopper")
    n = rec.analysis.final_evaluations
    assert n == 3

    def declared_final(run) -> float:
        return float(np.mean(np.asarray(run.returns, float)[1:][-n:]))  # after step 0, the last n

    by_arm: dict[str, list[float]] = {}
    for r in rec.complete:
        by_arm.setdefault(r.arm, []).append(declared_final(r))
    rows = rec.rows()
    assert rows
    for row in rows:
        assert row.final_mean == pytest.approx(np.mean(by_arm[row.arm]), abs=1e-9)
    # The declaration matters on this record: the last evaluation alone gives other means.
    last = {a: np.mean([r.returns[-1] for r in rec.complete if r.arm == a]) for a in by_arm}
    assert any(abs(last[row.arm] - row.final_mean) > 0.5 for row in rows)

    # The descriptive Welch table: a plain difference of the arms' declared-final means ...
    for e in rec.legacy_effects():
        a, b = (np.mean(by_arm[x]) for x in (e["arm"], e["reference"]))
        assert e["final"].estimate == pytest.approx(a - b, abs=1e-9)
    # ... and the declared secondary row is the same per-run values, compared within each checkpoint
    # (the mean over checkpoints with two or more runs a side of the difference of means).
    from hrl_core.lab.analysis import stratum_of

    secondary = {e.comparison: e.estimate for e in rec.effects() if e.metric == "final"}
    assert secondary
    for label, (arm, ref) in rec.comparisons.items():
        if label not in secondary:
            continue
        per = {}
        for r in rec.complete:
            if r.arm in (arm, ref):
                per.setdefault(stratum_of(r), {}).setdefault(r.arm, []).append(declared_final(r))
        diffs = [np.mean(v[arm]) - np.mean(v[ref]) for v in per.values()
                 if len(v.get(arm, ())) >= 2 and len(v.get(ref, ())) >= 2]  # fmt: skip
        assert secondary[label] == pytest.approx(np.mean(diffs), abs=1e-9)
    # README's digests read through the same record.
    block = digest.exploration_block("study_review", "cql-hopper")
    spec_row = next(row for row in rows if row.arm == "spec")
    assert f"{spec_row.step0_return:.1f} → {spec_row.final_mean:.1f}" in block
