"""Bad input, round two: data that leaves nothing to train on, seeds, duplicate keys, implausible
datasets, a run folder removed under a running run, and the smaller cases of the second
adversarial pass. Each: one ``hrl: error:`` line (or a recorded ``hrl: warning:``) before any run
folder is made or any cluster started."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from hrl_core.run.config import FinetuneConfig
from hrl_core.run.phase1 import phase1_run_name
from tests.conftest import REPO, run_hrl
from tests.test_bad_input import finetune_cmd, one_error_line

H = "hopper-medium-v2"


def _edit(path: Path, **arrays) -> None:
    """Replace whole datasets of an HDF5 file (new dtype or length allowed)."""
    with h5py.File(path, "r+") as f:
        for key, value in arrays.items():
            del f[key]
            f.create_dataset(key, data=value)


def _no_run_folder(save: Path) -> bool:
    return not save.exists() or not any(p.is_dir() for p in save.iterdir())


# 1. Top-k removal that leaves nothing; a file of one trajectory -----------------------------
def test_top_k_that_leaves_no_batch_is_refused(tmp_path, phase1_dir, data_copy):
    p1 = tmp_path / "p1"  # a Phase I run at that k (as the adversary made one), so the data check is reached
    shutil.copytree(phase1_dir / phase1_run_name("iql", H, 0, 0.0, 1), p1 / phase1_run_name("iql", H, 99.9, 0.0, 1))
    save = tmp_path / "runs"
    out = run_hrl(finetune_cmd(p1, save, "--remove_top_k", "99.9"), tmp_path, data_copy)
    line = one_error_line(out)
    assert "hopper_medium-v2.hdf5" in line and "remove_top_k=99.9" in line and "keeps 0 of" in line
    assert "fewer than one batch" in line and _no_run_folder(save)


def test_a_file_of_one_trajectory_is_refused_at_k60_and_warned_at_k0(tmp_path, phase1_dir, data_copy):
    n = 20_000
    _edit(data_copy / "hopper_medium-v2.hdf5", terminals=np.zeros(n, bool), timeouts=np.zeros(n, bool))
    save = tmp_path / "runs"
    cmd = finetune_cmd(phase1_dir, save)
    k_at = cmd.index("--remove_top_k") + 1
    cmd[k_at] = "60"
    line = one_error_line(run_hrl(cmd, tmp_path, data_copy))
    assert "keeps 0 of 1 trajectories" in line and _no_run_folder(save)
    cmd[k_at] = "0"
    out = run_hrl(cmd, tmp_path, data_copy)
    assert out.returncode == 0, out.stderr
    warnings = [ln for ln in out.stderr.splitlines() if ln.startswith("hrl: warning:")]
    assert any("holds one trajectory" in w for w in warnings)
    (run,) = [p for p in save.iterdir() if p.is_dir()]
    recorded = json.loads((run / "config.json").read_text())["provenance"]["dataset"]["warnings"]
    assert any("holds one trajectory" in w for w in recorded)


# 2. Seeds outside [0, 2^32 - 1], wherever settings come from ------------------------------------
@pytest.mark.parametrize("seed", ["-1", "1099511627776"])
def test_seeds_are_range_checked(tmp_path, phase1_dir, d4rl_dir, seed):
    cmd = finetune_cmd(phase1_dir, tmp_path / "runs")
    cmd[cmd.index("--seed") + 1] = seed
    line = one_error_line(run_hrl(cmd, tmp_path, d4rl_dir))
    assert f"seed={seed}" in line and "[0, 4294967295]" in line
    grid = tmp_path / "g.yaml"
    grid.write_text(f"algos: [iql]\ndatasets: [{H}]\nremove_top_k: [0]\nbonus_types: [none]\nseeds: [{seed}]\n")
    line = one_error_line(run_hrl(["grid", "--params", grid, "--dry_run"], tmp_path, d4rl_dir, phase1_dir))
    assert "seeds value" in line and "[0, 4294967295]" in line


# 3. A NaN in a complete run's metrics.json ---------------------------------------------------
def test_a_nan_in_a_complete_run_is_damaged_not_complete_and_never_in_a_table(tmp_path, phase1_dir, d4rl_dir):
    save = tmp_path / "runs"
    cmd = finetune_cmd(phase1_dir, save)
    assert run_hrl(cmd, tmp_path, d4rl_dir).returncode == 0
    (run,) = [p for p in save.iterdir() if p.is_dir()]
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["normalized_return"][1] = float("nan")
    (run / "metrics.json").write_text(json.dumps(metrics))
    line = one_error_line(run_hrl(cmd, tmp_path, d4rl_dir))
    assert "damaged" in line and "normalized_return[1]" in line
    grid = tmp_path / "g.yaml"
    grid.write_text(f"algos: [iql]\ndatasets: [{H}]\nremove_top_k: [0]\nbonus_types: [ensemble]\nseeds: [1]\n"
                    "settings: {online_steps: 30, eval_interval: 15, eval_episodes: 1, batch_size: 32, "
                    f"save_dir: {save}}}\n")  # fmt: skip
    out = run_hrl(["plot", "--params", grid, "--out", tmp_path / "fig", "--no_static"], tmp_path, d4rl_dir, phase1_dir)
    assert out.returncode == 0, out.stderr
    summary = (tmp_path / "fig" / "summary.md").read_text()
    assert "damaged, left out" in summary and "normalized_return[1]" in summary  # said, with why
    tables = [ln for ln in summary.splitlines() if "damaged, left out" not in ln]
    assert not any("nan" in cell.strip().lower() for ln in tables for cell in ln.split("|"))
    fields = (tmp_path / "fig" / "summary.csv").read_text().replace("\n", ",").split(",")
    assert "nan" not in [f.strip().lower() for f in fields]


# 4. Duplicate YAML keys -------------------------------------------------------------------
@pytest.mark.parametrize("text,key", [
    ("settings:\n  online_steps: 300\n  online_steps: 5000\n", "online_steps"),
    ("seeds: [3]\n", "seeds"),
])  # fmt: skip
def test_duplicate_yaml_keys_are_refused(tmp_path, d4rl_dir, phase1_dir, text, key):
    grid = tmp_path / "g.yaml"
    grid.write_text(f"algos: [iql]\ndatasets: [{H}]\nremove_top_k: [0]\nbonus_types: [none]\nseeds: [0]\n" + text)
    line = one_error_line(run_hrl(["grid", "--params", grid, "--dry_run"], tmp_path, d4rl_dir, phase1_dir))
    assert str(grid) in line and f"'{key}' is given twice" in line and "lines" in line


# 5. A run folder removed under a running run ------------------------------------------------
def test_a_run_whose_folder_is_removed_stops_and_writes_nothing(tmp_path, phase1_dir, d4rl_dir):
    save = tmp_path / "runs"
    cmd = finetune_cmd(phase1_dir, save)
    at = cmd.index("--online_steps") + 1
    cmd[at], cmd[cmd.index("--eval_interval") + 1] = "3000", "100"
    env = {**os.environ, "D4RL_DATASET_DIR": str(d4rl_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "hrl_core.cli", *map(str, cmd)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 300
    run = None
    while time.time() < deadline and proc.poll() is None:
        found = [p for p in save.iterdir() if p.is_dir()] if save.exists() else []
        if found and (found[0] / "metrics.json").exists():
            if 100 in json.loads((found[0] / "metrics.json").read_text() or "{}").get("step", []):
                run = found[0]
                break
        time.sleep(0.2)
    assert run is not None
    os.kill(proc.pid, signal.SIGSTOP)  # remove it between two writes
    shutil.rmtree(run)
    os.kill(proc.pid, signal.SIGCONT)
    _, err = proc.communicate(timeout=300)
    lines = [ln for ln in err.splitlines() if ln.startswith("hrl: error:")]
    assert proc.returncode != 0 and len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert "was removed while this run was writing it" in lines[0] and "writes nothing" in lines[0]
    assert not run.exists()  # nothing written: no config-less folder, no orphan snapshot


# 6. HDF5 length gaps ----------------------------------------------------------------------
@pytest.mark.parametrize("case", ["empty", "short_next"])
def test_hdf5_length_gaps_are_one_line(tmp_path, phase1_dir, data_copy, case):
    path = data_copy / "hopper_medium-v2.hdf5"
    with h5py.File(path, "r") as f:
        arrays = {k: f[k][:] for k in ("observations", "actions", "rewards", "terminals", "timeouts",
                                       "next_observations")}  # fmt: skip
    if case == "empty":
        _edit(path, **{k: v[:0] for k, v in arrays.items()})
    else:
        _edit(path, next_observations=arrays["next_observations"][:-7])
    save = tmp_path / "runs"
    line = one_error_line(run_hrl(finetune_cmd(phase1_dir, save), tmp_path, data_copy))
    assert "hopper_medium-v2.hdf5" in line and ("holds no transitions" if case == "empty" else "19,993") in line
    assert _no_run_folder(save)


# 7. A plug-in that does not import, for every subcommand -----------------------------------------
@pytest.mark.parametrize("args", [["finetune", "--help"], ["plot", "--help"], ["grid", "--dry_run"]])
def test_a_bad_plugin_is_one_line(tmp_path, args):
    env = {**os.environ, "HRL_PLUGINS": "no_such_module_here"}
    out = subprocess.run([sys.executable, "-m", "hrl_core.cli", *args], capture_output=True, text=True, env=env,
                         cwd=tmp_path)  # fmt: skip
    line = one_error_line(out)
    assert "no_such_module_here" in line and "HRL_PLUGINS" in line


# 8. A setting beyond what the machine can hold ------------------------------------------------
def test_online_steps_beyond_memory_are_refused_with_the_number(tmp_path, phase1_dir, d4rl_dir):
    save = tmp_path / "runs"
    cmd = finetune_cmd(phase1_dir, save)
    cmd[cmd.index("--online_steps") + 1] = "10000000000"
    line = one_error_line(run_hrl(cmd, tmp_path, d4rl_dir))
    assert "online_steps=10,000,000,000" in line and "GB" in line and "10,000,000,000 rows x 116 bytes" in line
    assert _no_run_folder(save)


# 9. Implausible data: said, and recorded -------------------------------------------------------
def test_implausible_data_is_warned_and_recorded(tmp_path, phase1_dir, data_copy):
    path = data_copy / "hopper_medium-v2.hdf5"
    with h5py.File(path, "r") as f:
        actions, terminals = f["actions"][:], f["terminals"][:].astype(np.float32)
    actions[10], actions[11] = 1.5, -3.0
    terminals[np.flatnonzero(terminals)[:3]] = 0.5
    _edit(path, actions=actions, terminals=terminals)
    save = tmp_path / "runs"
    out = run_hrl(finetune_cmd(phase1_dir, save), tmp_path, data_copy)
    assert out.returncode == 0, out.stderr
    warnings = [ln for ln in out.stderr.splitlines() if ln.startswith("hrl: warning:")]
    assert any("outside [-1, 1]" in w and "min -3" in w for w in warnings)
    assert any("terminals holds values other than 0 and 1" in w for w in warnings)
    (run,) = [p for p in save.iterdir() if p.is_dir()]
    recorded = json.loads((run / "config.json").read_text())["provenance"]["dataset"]["warnings"]
    assert len(recorded) == 2

    from hrl_core.data.d4rl import read_hdf5

    _edit(path, actions=np.rint(actions).astype(np.int64))
    assert any("stored as integers" in w for w in read_hdf5(path).provenance["warnings"])


# 10. hrl grid with a file as its save_dir ------------------------------------------------------
def test_grid_checks_save_dir_before_anything(tmp_path, d4rl_dir, phase1_dir):
    grid = tmp_path / "g.yaml"
    grid.write_text(f"algos: [iql]\ndatasets: [{H}]\nremove_top_k: [0]\nbonus_types: [none]\nseeds: [1]\n")
    not_a_folder = tmp_path / "results.txt"
    not_a_folder.write_text("a file")
    for extra in (["--dry_run"], []):
        out = run_hrl(["grid", "--params", grid, "--save_dir", not_a_folder, *extra], tmp_path, d4rl_dir, phase1_dir)
        line = one_error_line(out)
        assert "results.txt" in line and "not a folder" in line
        assert "grid: local" not in out.stdout and "to run" not in out.stdout  # no plan, no cluster


# 11. The smaller ones ---------------------------------------------------------------------------
def test_a_named_phase1_seed_that_does_not_exist_is_an_error(tmp_path, phase1_dir, d4rl_dir):
    save = tmp_path / "runs"
    line = one_error_line(run_hrl(finetune_cmd(phase1_dir, save, "--phase1_seed", "7"), tmp_path, d4rl_dir))
    assert "phase1_seed=7 was asked for by name" in line and "_s7" in line and _no_run_folder(save)


def test_divergence_advice_names_the_bonus_only_when_there_is_one():
    from hrl_core.errors import DivergenceError

    assert "bonus_coeff" in str(DivergenceError(5, "critic_loss"))
    assert "bonus_coeff" not in str(DivergenceError(5, "critic_loss", bonus=False))


def test_divergence_without_a_bonus_does_not_advise_one(tmp_path, phase1_dir, data_copy):
    path = data_copy / "hopper_medium-v2.hdf5"
    with h5py.File(path, "r") as f:
        rewards = f["rewards"][:]
    _edit(path, rewards=np.full_like(rewards, 1e38))
    cmd = finetune_cmd(phase1_dir, tmp_path / "runs")
    cmd[cmd.index("--bonus_type") + 1] = "none"
    line = one_error_line(run_hrl(cmd, tmp_path, data_copy))
    assert "diverged" in line and "bonus_coeff" not in line and "learning rate" in line


def test_a_checkpoint_that_would_run_code_is_named_so_and_not_loaded(tmp_path, phase1_dir, d4rl_dir):
    folder = tmp_path / "p1" / phase1_run_name("iql", H, 0, 0.0, 1)
    folder.mkdir(parents=True)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"actor": Payload()}, folder / "checkpoint.pt")
    line = one_error_line(run_hrl(finetune_cmd(tmp_path / "p1", tmp_path / "runs"), tmp_path, d4rl_dir))
    assert "not a plain tensor file" in line and "was not loaded" in line and "corrupt" not in line
    assert not marker.exists()


def test_minus_zero_is_zero():
    assert FinetuneConfig(remove_top_k=-0.0).run_name == FinetuneConfig(remove_top_k=0).run_name
    assert "k0_" in FinetuneConfig(remove_top_k=-0.0).run_name and REPO.exists()
