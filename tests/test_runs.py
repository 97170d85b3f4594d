"""Run identity: a folder is reused or resumed only for the same settings and inputs."""

from __future__ import annotations

import json
import shutil

import pytest

from hrl_core.errors import HrlError
from hrl_core.run import folder
from hrl_core.run.config import FinetuneConfig
from hrl_core.run.finetune import finetune
from hrl_core.run.phase1 import phase1_run_name
from tests.conftest import write_d4rl_slice


def tiny(tmp_path, phase1_dir, **kw) -> FinetuneConfig:
    base = dict(algo="iql", env="hopper-medium-v2", remove_top_k=60, bonus_type="ensemble", seed=1,
                online_steps=10, eval_interval=10, eval_episodes=1, batch_size=32, phase1_dir=str(phase1_dir),
                save_dir=str(tmp_path / "runs"), device="cpu", threads=1)  # fmt: skip
    base.update(kw)
    return FinetuneConfig(**base)


@pytest.mark.parametrize(
    "key, value, algo",
    [("bonus_coeff", 2.0, "iql"), ("n_ensemble", 4, "iql"), ("online_ratio", 0.25, "iql"), ("cql_alpha", 2.0, "cql")],
)
def test_runs_differing_in_one_setting_get_their_own_folders(tmp_path, phase1_dir, d4rl_env, key, value, algo):
    first = finetune(tiny(tmp_path, phase1_dir, algo=algo), progress=False)
    second = finetune(tiny(tmp_path, phase1_dir, algo=algo, **{key: value}), progress=False)
    assert second.status == "complete" and first.run_dir != second.run_dir  # not handed the first run back
    for result, expected in ((first, getattr(FinetuneConfig(), key)), (second, value)):
        config = json.loads((result.run_dir / "config.json").read_text())
        assert config["settings"][key] == expected and config["identity"]["settings"][key] == expected
    assert len(list((tmp_path / "runs").iterdir())) == 2
    again = finetune(tiny(tmp_path, phase1_dir, algo=algo, **{key: value}), progress=False)
    assert again.status == "already_complete" and again.run_dir == second.run_dir  # same settings: left alone


def test_a_run_with_another_dataset_file_is_not_handed_back(tmp_path, phase1_dir, d4rl_dir, monkeypatch):
    monkeypatch.setenv("D4RL_DATASET_DIR", str(d4rl_dir))
    cfg = tiny(tmp_path, phase1_dir)
    first = finetune(cfg, progress=False)
    before = {p.name: p.read_bytes() for p in first.run_dir.iterdir()}
    other = tmp_path / "other_d4rl"
    other.mkdir()
    write_d4rl_slice(d4rl_dir / "hopper_medium-v2.hdf5", other / "hopper_medium-v2.hdf5", 50_000)
    monkeypatch.setenv("D4RL_DATASET_DIR", str(other))
    with pytest.raises(HrlError, match=r"holds another run \(dataset sha256 .* there, .* here\)"):
        finetune(cfg, progress=False)
    assert {p.name: p.read_bytes() for p in first.run_dir.iterdir()} == before  # nothing touched
    redone = finetune(cfg, restart=True, progress=False)
    config = json.loads((redone.run_dir / "config.json").read_text())
    assert config["provenance"]["dataset"]["path"] == str((other / "hopper_medium-v2.hdf5").resolve())


def test_a_run_with_another_checkpoint_is_not_handed_back(tmp_path, phase1_dir, d4rl_env):
    mine = tmp_path / "phase1"
    name = phase1_run_name("iql", "hopper-medium-v2", 60, 0.0, 1)
    shutil.copytree(phase1_dir / name, mine / name)
    finetune(tiny(tmp_path, mine), progress=False)
    # The Phase I run was retrained (here: seed 0's checkpoint put in its place).
    shutil.copy(phase1_dir / phase1_run_name("iql", "hopper-medium-v2", 60, 0.0, 0) / "checkpoint.pt",
                mine / name / "checkpoint.pt")  # fmt: skip
    with pytest.raises(HrlError, match="Phase I checkpoint sha256"):
        finetune(tiny(tmp_path, mine), progress=False)


def test_identity_of_folders_written_before_identities_were_recorded(tmp_path):
    """Old config.json files (settings + provenance, no identity) are read the same way."""
    cfg = FinetuneConfig(seed=1, bonus_coeff=2.0)
    run = tmp_path / cfg.run_name
    run.mkdir()
    old_settings = {**cfg.to_dict(), "arm": ""}  # an older version also recorded an arm label
    provenance = {"dataset": {"sha256": "a" * 64}, "phase1_checkpoint": {"sha256": "b" * 64}}
    (run / "config.json").write_text(json.dumps({"settings": old_settings, "provenance": provenance}))
    (run / "metrics.json").write_text(json.dumps({"status": "complete", "step": [0]}))
    wanted = {"settings": cfg.identity_settings(), "inputs": {"dataset_sha256": "a" * 64,
                                                              "phase1_checkpoint_sha256": "b" * 64}}  # fmt: skip
    assert folder.existing(run, wanted).status == "complete"
    wanted["inputs"]["dataset_sha256"] = "c" * 64
    found = folder.existing(run, wanted)
    assert found.status == "other" and "dataset sha256 aaaaaaaaaaaa… there" in found.differences[0]
