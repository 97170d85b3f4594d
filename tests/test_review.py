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


def _grid(tmp_path: Path, phase1_dir: Path, name: str, reuse_from: str = "") -> Path:
    params = tmp_path / f"{name}.yaml"
    params.write_text(
        "algos: [iql]\ndatasets: [hopper-medium-v2]\nremove_top_k: [60]\nbonus_types: [none]\nseeds: [1]\n"
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
    settings = {n.rsplit(", ", 1)[1] for n in (s.name for s in part.scenarios())}
    assert len(settings) > 1  # scenarios from settings outside the part
    primary = {(e.comparison, e.setting): e for e in whole.effects() if e.primary}
    shown = [e for e in part.effects() if e.primary]
    assert shown
    fields = ("estimate", "ci", "ci90", "p", "p_holm", "verdict")
    for e in shown:
        w = primary[(e.comparison, e.setting)]
        assert [getattr(e, f) for f in fields] == [getattr(w, f) for f in fields]
