"""Populations: cells trained together are the cells they would be alone, each its own run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from hrl_core.lab import execute, grids
from hrl_core.lab.grids import Cell
from hrl_core.run.config import FinetuneConfig
from hrl_core.run.finetune import finetune
from hrl_core.run.population import run_population
from tests.test_finetune import _numbers, without_timing

pytestmark = pytest.mark.slow


def _cells(save_dir, phase1_dir, algo="iql", steps=60, interval=30):
    """Four cells that differ in seed, arm (bonus, its scale, member init) and k: one shape."""
    base = dict(algo=algo, env="hopper-medium-v2", remove_top_k=60, online_steps=steps, eval_interval=interval,
                eval_episodes=2, batch_size=64, phase1_seed=1, phase1_dir=str(phase1_dir), save_dir=str(save_dir),
                device="cpu", threads=1)  # fmt: skip
    return [
        FinetuneConfig(**base, seed=0, bonus_type="none"),
        FinetuneConfig(**base, seed=1, bonus_type="ensemble"),
        FinetuneConfig(
            **base,
            seed=2,
            bonus_type="ensemble",
            bonus_scale="horizon",
            bonus_coeff=10.0,
            member_init="warmstart",
            warmstart_steps=20,
        ),  # fmt: skip
        FinetuneConfig(**{**base, "remove_top_k": 30}, seed=3, bonus_type="none"),
    ]


def assert_same_within_rounding(a: dict, b: dict) -> None:
    """The tolerance the project accepts between thread counts (test_finetune): every count and
    choice equal, every float within 1e-3 relative (1e-2 absolute)."""
    a, b = without_timing(a), without_timing(b)
    a.pop("torch_threads", None), b.pop("torch_threads", None)
    assert a.keys() == b.keys()
    for key in sorted(a):
        x, y = _numbers(a[key]), _numbers(b[key])
        assert len(x) == len(y), key
        assert [v for v in x if not isinstance(v, float)] == [v for v, u in zip(y, x, strict=True)
                                                                if not isinstance(u, float)], key  # fmt: skip
        floats_x = [v for v in x if isinstance(v, float)]
        floats_y = [v for v, u in zip(y, x, strict=True) if isinstance(u, float)]
        assert floats_x == pytest.approx(floats_y, rel=1e-3, abs=1e-2), key


@pytest.mark.parametrize("algo", ["iql", "cql"])
def test_cells_in_a_population_of_four_are_the_cells_alone(tmp_path, phase1_dir, d4rl_env, algo):
    alone = [finetune(cfg, progress=False).metrics for cfg in _cells(tmp_path / "alone", phase1_dir, algo)]
    together = run_population(_cells(tmp_path / "pop", phase1_dir, algo), progress=False)
    assert all(r.status == "complete" for r in together)
    for solo, pop in zip(alone, together, strict=True):
        assert_same_within_rounding(solo, pop.metrics)
    # each cell its own run folder and record; the population is written down, not part of the identity
    for cfg, solo in zip(_cells(tmp_path / "pop", phase1_dir, algo), alone, strict=True):
        config = json.loads((tmp_path / "pop" / cfg.run_name / "config.json").read_text())
        assert config["population"][0]["size"] == 4 and cfg.run_name in config["population"][0]["cells"]
        assert (tmp_path / "pop" / cfg.run_name / "checkpoint.pt").exists()
        assert solo["run_name"] == cfg.run_name
    # a cell's numbers do not depend on its position: the same cells in another order
    reordered = run_population(list(reversed(_cells(tmp_path / "pop2", phase1_dir, algo))), progress=False)
    for solo, pop in zip(alone, reversed(reordered), strict=True):
        assert_same_within_rounding(solo, pop.metrics)


def test_a_diverging_cell_stops_alone(tmp_path, phase1_dir, d4rl_env):
    cfgs = _cells(tmp_path, phase1_dir)
    cfgs[1].bonus_coeff = 1e38  # its first bonus overflows float32: that cell diverges at step 1
    results = run_population(cfgs, progress=False)
    assert "exploration bonus" in str(results[1])
    assert json.loads((tmp_path / cfgs[1].run_name / "metrics.json").read_text())["status"] == "diverged"
    for p in (0, 2, 3):
        assert results[p].status == "complete", results[p]
    alone = finetune(_cells(tmp_path / "alone", phase1_dir)[3], progress=False).metrics
    assert_same_within_rounding(alone, results[3].metrics)


KILLED = """
import sys
from hrl_core.run.config import FinetuneConfig
from hrl_core.run.population import run_population
from tests.test_population import _cells
run_population(_cells(sys.argv[1], sys.argv[2], steps=400, interval=100), progress=False)
"""


def test_a_killed_population_resumes_one_cell_alone(tmp_path, phase1_dir, d4rl_env):
    cfgs = _cells(tmp_path / "pop", phase1_dir, steps=400, interval=100)
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(tmp_path / "pop"), str(phase1_dir)],
                            cwd=os.getcwd(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    metrics = tmp_path / "pop" / cfgs[2].run_name / "metrics.json"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:  # wait for its first evaluation after step 0
        if metrics.exists() and 100 in json.loads(metrics.read_text() or "{}").get("step", []):
            break
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=300)[0]
    assert "RunInterrupted" in out and "snapshots written" in out, out[-2000:]
    # one cell of it, resumed alone, ends where it ends uninterrupted and alone
    resumed = finetune(cfgs[2], progress=False)
    assert resumed.status == "complete"
    config = json.loads((tmp_path / "pop" / cfgs[2].run_name / "config.json").read_text())
    assert config["population"][0]["size"] == 4 and len(config["resumed"]) == 1
    whole = finetune(_cells(tmp_path / "alone", phase1_dir, steps=400, interval=100)[2], progress=False)
    assert_same_within_rounding(whole.metrics, resumed.metrics)


def test_pack_groups_only_cells_that_share_a_shape_and_a_start(tmp_path):
    def cell(**kw):
        cfg = FinetuneConfig(save_dir=str(tmp_path), **{"online_steps": 100, "eval_interval": 50, **kw})
        return Cell(cfg)

    cells = [cell(seed=s) for s in range(6)] + [cell(seed=0, algo="cql"), cell(seed=0, n_ensemble=5),
                                                  cell(seed=0, exploration="ucb_action")]  # fmt: skip
    groups = execute.pack(cells, size=4, workers=2)
    assert sorted(len(g) for g in groups) == [1, 1, 1, 3, 3]  # six IQL cells split evenly over 2 workers
    for g in groups:
        assert len({(c.config.algo, c.config.n_ensemble, c.config.exploration) for c in g}) == 1
    assert [len(g) for g in execute.pack(cells, size=1, workers=2)] == [1] * len(cells)
    # a cell that resumes at another step is not packed with new ones
    folder = tmp_path / cells[0].run_name
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps({"step": [0, 50], "status": "running"}))
    groups = execute.pack(cells[:6], size=6, workers=1)
    assert sorted(len(g) for g in groups) == [1, 5]


def test_pack_gives_every_worker_a_population_in_the_last_wave(tmp_path):
    """The review study's IQL parts: 24 halfcheetah and 64 hopper cells at 8 a population made 11
    populations, so on 2 workers one ran its last alone. Now the populations together are a multiple
    of the workers, each group split into sizes that differ by at most one, every cell in one."""

    def cells(env: str, n: int) -> list[Cell]:
        return [Cell(FinetuneConfig(save_dir=str(tmp_path), env=env, seed=s)) for s in range(n)]

    study = cells("halfcheetah-medium-v2", 24) + cells("hopper-medium-v2", 64)
    groups = execute.pack(study, size=8, workers=2)
    assert len(groups) % 2 == 0 and len(groups) == 12
    assert sorted(c.run_name for g in groups for c in g) == sorted(c.run_name for c in study)
    assert all(len({c.config.env for c in g}) == 1 for g in groups)  # shapes never mix
    for env in ("halfcheetah-medium-v2", "hopper-medium-v2"):
        sizes = [len(g) for g in groups if g[0].config.env == env]
        assert max(sizes) - min(sizes) <= 1 and max(sizes) <= 8
    # one worker: no constraint beyond the size; cells too few to split keep the count they allow
    assert len(execute.pack(study, size=8, workers=1)) == 11
    assert [len(g) for g in execute.pack(cells("hopper-medium-v2", 1), size=8, workers=2)] == [1]
    assert grids.estimate_seconds(study, 2, groups) < grids.estimate_seconds(study, 2, execute.pack(study, 8, 1))


def test_auto_packs_only_where_a_population_saves_more_than_noise(monkeypatch):
    """`--population auto` on a CPU takes the cheapest measured size only where it saves at least
    POPULATION_MIN_SAVING per cell-step: CQL's 0.98 at P = 2 (noise, and its populations match solo
    runs only within rounding) keeps it alone, as docs/performance.md says; a GPU packs many."""
    from hrl_core.rl import agents

    class Measured:
        population_cost: dict = {}

    monkeypatch.setattr(agents, "get", lambda algo: Measured)
    for table, size in [({}, 1), ({2: 0.98, 4: 1.07}, 1), ({2: 0.94}, 2), ({2: 0.91, 4: 0.88, 8: 0.85, 16: 0.89}, 8),
                        ({2: 0.90, 4: 0.90}, 2)]:  # fmt: skip
        Measured.population_cost = table
        assert execute.auto_population("any", n_gpus=0) == size, table
    assert execute.auto_population("any", n_gpus=1) == execute.POPULATION_PER_GPU


def test_a_grid_packs_populations_end_to_end(tmp_path, d4rl_dir, phase1_dir):
    """hrl grid --population 4: the dry run prints the packing; four IQL cells train as one population
    into their own run folders and executed notebooks, and hrl plot reads them."""
    from tests.conftest import run_hrl

    grid = tmp_path / "g.yaml"
    grid.write_text("algos: [iql]\ndatasets: [hopper-medium-v2]\nremove_top_k: [0, 60]\nbonus_types: [ensemble, none]\n"
                    "seeds: [1]\nsettings: {online_steps: 40, eval_interval: 20, eval_episodes: 1, batch_size: 32, "
                    f"save_dir: {tmp_path / 'runs'}}}\n")  # fmt: skip
    args = ["grid", "--params", grid, "--population", "4", "--workers", "1", "--executed_dir", tmp_path / "executed"]
    dry = run_hrl([*args, "--dry_run"], tmp_path, d4rl_dir, phase1_dir)
    assert dry.returncode == 0 and "4 cell(s) to run as 1 task(s)" in dry.stdout and "4 x " in dry.stdout, dry.stdout
    out = run_hrl(args, tmp_path, d4rl_dir, phase1_dir)
    assert out.returncode == 0 and "grid: 4 ran" in out.stdout, out.stdout + out.stderr
    assert "4/4 cells done" in out.stdout  # the progress line
    runs = sorted(p for p in (tmp_path / "runs").iterdir() if p.is_dir())
    assert len(runs) == 4 and len(list((tmp_path / "executed").glob("*.ipynb"))) == 4
    for run in runs:
        config = json.loads((run / "config.json").read_text())
        assert config["population"][0]["size"] == 4
        assert json.loads((run / "metrics.json").read_text())["status"] == "complete"
    plot = run_hrl(["plot", "--params", grid, "--out", tmp_path / "fig", "--no_static"], tmp_path, d4rl_dir, phase1_dir)
    assert plot.returncode == 0 and "hrl plot: 4 runs" in plot.stdout, plot.stderr
