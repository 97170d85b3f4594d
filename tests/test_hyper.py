"""An algorithm's own hyper-parameters are settable as <algo>.<name> from a flag, the notebook's
parameters and grid files, checked where the algorithm declares them, and part of a run's identity
only when they differ from its defaults (every earlier run keeps its name: tests/test_identity.py)."""

from __future__ import annotations

import json

import pytest

from hrl_core.errors import HrlError
from hrl_core.lab import grids
from hrl_core.lab.workbook import config_from_parameters
from hrl_core.run.config import FinetuneConfig
from hrl_core.run.finetune import finetune
from tests.conftest import run_hrl
from tests.test_bad_input import finetune_cmd, one_error_line


def test_defaults_keep_every_name_and_a_change_makes_another_run():
    base = FinetuneConfig(algo="iql")
    assert FinetuneConfig(algo="iql", hyper={"iql.expectile": 0.7}).run_name == base.run_name  # its default
    assert FinetuneConfig(algo="iql", hyper={"cql.alpha_lr": 1e-3}).run_name == base.run_name  # another algo's
    changed = FinetuneConfig(algo="iql", hyper={"iql.expectile": 0.9})
    assert changed.run_name != base.run_name and changed.identity_settings()["iql.expectile"] == 0.9
    assert "iql.expectile" not in base.identity_settings()


@pytest.mark.parametrize("hyper,message", [
    ({"iql.expectile": 1.5}, "iql.expectile=1.5 is above its range (0, 1)"),
    ({"iql.expectile": float("nan")}, "iql.expectile=nan is not a finite number"),
    ({"iql.nope": 1.0}, "iql has no hyper-parameter 'nope'"),
    ({"iql.cql_alpha": 1.0}, "iql has no hyper-parameter 'cql_alpha'"),
    ({"expectile": 0.8}, "name it '<algo>.<name>'"),
    ({"nosuch.lr": 0.1}, "unknown algo 'nosuch'"),
])  # fmt: skip
def test_hyper_parameters_are_checked_where_declared(hyper, message):
    with pytest.raises(HrlError, match=message.replace("(", r"\(").replace(")", r"\)")):
        FinetuneConfig(hyper=hyper)
    # the notebook's parameters come through the same declaration
    with pytest.raises(HrlError, match="iql.expectile=1.5"):
        config_from_parameters({"algo": "iql", "hyper": {"iql.expectile": 1.5}})


def test_a_flag_out_of_range_is_one_line(tmp_path, phase1_dir, d4rl_dir):
    line = one_error_line(run_hrl(finetune_cmd(phase1_dir, tmp_path / "runs", "--iql.expectile", "1.5"), tmp_path,
                                  d4rl_dir))  # fmt: skip
    assert "iql.expectile=1.5 is above its range (0, 1)" in line


def test_a_grid_file_sets_iql_expectile_and_the_run_records_it(tmp_path, phase1_dir, d4rl_env):
    grid = tmp_path / "g.yaml"
    grid.write_text(
        "algos: [iql, cql]\ndatasets: [hopper-medium-v2]\nremove_top_k: [60]\nbonus_types: [none]\nseeds: [1]\n"
        "settings: {online_steps: 20, eval_interval: 20, eval_episodes: 1, batch_size: 32, threads: 1, "
        f"iql.expectile: 0.9, phase1_dir: {phase1_dir}, save_dir: {tmp_path / 'runs'}}}\n"
        "algo_settings: {cql: {cql.alpha_lr: 0.001}}\n"
    )
    iql, cql = sorted(grids.expand(grids.load_grid(grid)), key=lambda c: c.config.algo, reverse=True)
    assert iql.config.hyper == {"iql.expectile": 0.9} and cql.config.hyper == {"cql.alpha_lr": 0.001,
                                                                                "iql.expectile": 0.9}  # fmt: skip
    assert "iql.expectile" not in cql.config.identity_settings()  # not CQL's: not part of its identity
    result = finetune(iql.config, progress=False)
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["settings"]["hyper"] == {"iql.expectile": 0.9}
    assert config["agent_config"]["expectile"] == 0.9  # the agent trained with it
    assert config["identity"]["settings"]["iql.expectile"] == 0.9
    bad = tmp_path / "bad.yaml"
    bad.write_text(grid.read_text().replace("iql.expectile: 0.9", "iql.expectile: 2"))
    with pytest.raises(HrlError, match=r"settings.iql.expectile: iql.expectile=2.0 is above its range"):
        grids.load_grid(bad)
