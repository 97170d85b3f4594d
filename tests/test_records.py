"""Shared records: the compact copy of a record's runs (records/<save_dir name>/) is read
back by the explorer, hrl plot and hrl study, and never recomputed by hrl grid."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hrl_core.lab import execute, grids, records

REPO = Path(__file__).resolve().parents[1]
DS = "hopper-medium-v2"


def _tiny_grid(tmp_path: Path, phase1_dir: Path) -> Path:
    params = tmp_path / "tiny.yaml"
    params.write_text(
        "algos: [iql]\ndatasets: [hopper-medium-v2]\nremove_top_k: [60]\nbonus_types: [none]\nseeds: [1]\n"
        "settings: {online_steps: 4, eval_interval: 4, eval_episodes: 1, batch_size: 32, phase1_seed: 1, "
        f"threads: 1, phase1_dir: {phase1_dir}, save_dir: {tmp_path / 'results_tiny'}}}\n"
    )
    return params


def test_a_run_complete_only_in_the_committed_record_is_skipped_by_the_grid(tmp_path, d4rl_env, phase1_dir,
                                                                            monkeypatch):  # fmt: skip
    from hrl_core.run.finetune import finetune

    (cell,) = grids.expand(grids.load_grid(_tiny_grid(tmp_path, phase1_dir)))
    assert grids.cell_status(cell) == "new"
    finetune(cell.config, progress=False)
    kept = tmp_path / "repo_records"
    monkeypatch.setattr(records, "record_dir", lambda save_dir: kept / Path(save_dir).name)
    assert records.write_compact([cell])[0] == 1
    assert sorted(p.name for p in (kept / "results_tiny" / cell.run_name).iterdir()) == ["config.json", "metrics.json"]

    shutil.rmtree(cell.run_dir)  # a fresh clone: the results folder is gone, the record is committed
    status = grids.cell_status(cell)
    assert status.startswith(grids.IN_RECORD) and "not re-run" in status
    (result,) = execute.run_grid([cell], executed_dir=tmp_path / "executed", progress=False)
    assert result["status"] == "skipped (complete in the committed record)"
    assert not cell.run_dir.exists()  # nothing was recomputed or written
    assert [r.status for r in records.load_cells([cell])] == ["complete"]  # and the record is read back

    # The record of another run (other settings under the same name) does not count.
    other = kept / "results_tiny" / cell.run_name / "config.json"
    other.write_text(other.read_text().replace('"batch_size": 32', '"batch_size": 48'))
    assert grids.cell_status(cell) == "new"


CPU_RECORD = REPO / records.RECORDS / "results_cpu"


@pytest.mark.skipif(not CPU_RECORD.is_dir(), reason="records/results_cpu is not committed yet")
def test_the_committed_cpu_grid_is_explorable_and_redraws_its_figures(tmp_path):
    """On a fresh clone (no results folder): every cell the committed record holds is read from it
    (all 72 once whole), the record stays small, and hrl plot re-draws the committed summary's
    numbers from it."""
    import csv

    from hrl_core.lab import widgets
    from tests.conftest import run_hrl

    params = REPO / "params" / "grid_cpu.yaml"
    cells = grids.expand(grids.load_grid(params))
    if any(c.run_dir.exists() for c in cells):
        pytest.skip("a results folder beside the clone holds these runs; the test reads the committed record")
    explorer = widgets.RunBrowser(str(params))
    held = sum(1 for c in cells if (CPU_RECORD / c.run_name / "metrics.json").is_file())
    assert f"{held} of 72 cells have runs in" in explorer.status.value and f"({held} complete)" in explorer.status.value
    size = sum(p.stat().st_size for p in CPU_RECORD.rglob("*") if p.is_file())
    assert size < 30e6
    if held < 72:  # a record being re-made lands cell by cell; its figures are re-drawn once it is whole
        pytest.skip(f"records/results_cpu holds {held} of 72 runs so far: the figures are compared when it is whole")

    out = tmp_path / "figures"
    done = run_hrl(["plot", "--params", params, "--out", out, "--no_static"], REPO, timeout=600)
    assert done.returncode == 0, done.stderr
    committed = list(csv.DictReader((REPO / "figures" / "grid_cpu" / "summary.csv").open()))
    redrawn = list(csv.DictReader((out / "summary.csv").open()))
    assert redrawn == committed
