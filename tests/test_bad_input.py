"""Bad input never becomes a result: each case an adversarial user tried, as a user runs it.

Non-finite data, non-finite or mistyped settings (flags, notebook, grid file), a complete
run's damaged record, data and checkpoints of the wrong shape, missing extras, a garbage
lock file, damaged snapshots: one ``hrl: error:`` line naming the fix, before any folder is
created, and nothing finished is recomputed or overwritten without a word."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from hrl_core.run.phase1 import phase1_run_name
from tests.conftest import REPO, run_hrl, write_d4rl_slice

H = "hopper-medium-v2"
SMALL = ["--online_steps", "30", "--eval_interval", "15", "--eval_episodes", "1", "--batch_size", "32",
         "--threads", "1", "--no_progress"]  # fmt: skip


def finetune_cmd(phase1_dir, save_dir, *extra, env=H):
    return ["finetune", "--algo", "iql", "--env", env, "--remove_top_k", "0", "--bonus_type", "ensemble",
            "--seed", "1", "--phase1_dir", phase1_dir, "--save_dir", save_dir, *SMALL, *extra]  # fmt: skip


def one_error_line(out) -> str:
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("hrl: error:")]
    assert out.returncode != 0 and len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    return lines[0]


# 1. Non-finite offline data -------------------------------------------------------------
@pytest.mark.parametrize("key,row,value", [("rewards", 1234, np.inf), ("observations", 777, np.nan),
                                           ("actions", 5, -np.inf), ("next_observations", 19_999, np.nan)])  # fmt: skip
def test_non_finite_offline_data_is_refused_before_training(tmp_path, phase1_dir, data_copy, key, row, value):
    with h5py.File(data_copy / "hopper_medium-v2.hdf5", "r+") as f:
        arr = f[key][:]
        arr[row] = value
        f[key][...] = arr
    save = tmp_path / "runs"
    out = run_hrl(finetune_cmd(phase1_dir, save), tmp_path, data_copy)
    line = one_error_line(out)
    assert "hopper_medium-v2.hdf5" in line and key in line and f"first at row {row}" in line and "replace it" in line
    assert not save.exists() or not any(save.iterdir())  # no run folder, no result


# 2. Non-finite and mistyped settings ----------------------------------------------------
@pytest.mark.parametrize("flag,value", [("--bonus_coeff", "nan"), ("--online_ratio", "nan"), ("--bonus_coeff", "inf"),
                                        ("--cql_alpha", "-inf")])  # fmt: skip
def test_non_finite_settings_are_refused_before_anything(tmp_path, phase1_dir, d4rl_dir, flag, value):
    save = tmp_path / "runs"
    out = run_hrl(finetune_cmd(phase1_dir, save, f"{flag}={value}"), tmp_path, d4rl_dir)
    line = one_error_line(out)
    assert flag.lstrip("-") in line and "not a finite number" in line
    assert not save.exists()


def test_settings_are_checked_where_they_are_declared():
    from hrl_core.errors import HrlError
    from hrl_core.lab.workbook import config_from_parameters
    from hrl_core.run.config import FinetuneConfig

    for bad, message in [({"online_steps": 200.7}, "must be an integer"), ({"n_ensemble": True}, "not bool"),
                         ({"bonus_coeff": float("nan")}, "not a finite"), ({"online_ratio": float("inf")}, "finite"),
                         ({"save_dir": 5}, "must be text"), ({"seed": None}, "needs a value")]:  # fmt: skip
        with pytest.raises(HrlError, match=message):
            FinetuneConfig(**bad)
        params = {**FinetuneConfig().to_dict(), **bad}  # the notebook's parameters, as papermill injects them
        with pytest.raises(HrlError, match=message):
            config_from_parameters(params)
    cfg = FinetuneConfig(online_steps=5000.0, bonus_coeff=10)  # YAML/papermill spellings of valid values
    assert cfg.online_steps == 5000 and isinstance(cfg.online_steps, int) and isinstance(cfg.bonus_coeff, float)
    json.loads(json.dumps(cfg.to_dict(), allow_nan=False))  # what config.json records is what ran


# 3. Grid files ---------------------------------------------------------------------------
GRID = "algos: [iql]\ndatasets: [hopper-medium-v2]\nremove_top_k: [0]\nbonus_types: [none]\nseeds: [0]\n"


@pytest.mark.parametrize("text,where,message", [
    ("settings: {online_steps: 200.7}", "settings.online_steps", "must be an integer"),
    ("settings: {bonus_coeff: .nan}", "settings.bonus_coeff", "not a finite number"),
    ("settings: {n_ensemble: true}", "settings.n_ensemble", "not bool"),
    ("algo_settings: {iql: {eval_interval: 1.5}}", "algo_settings.iql.eval_interval", "must be an integer"),
    ("settings: {online_steps: 100}\narms: {a: {bonus_coeff: .inf}}", "arms.a.bonus_coeff", "not a finite"),
    ("settings: {save_dir: 7}", "settings.save_dir", "must be text"),
])  # fmt: skip
def test_grid_files_name_the_file_and_the_key(tmp_path, text, where, message):
    f = tmp_path / "bad.yaml"
    f.write_text(GRID + text + "\n")
    out = run_hrl(["grid", "--params", f, "--dry_run"], tmp_path)
    line = one_error_line(out)
    assert str(f) in line and where in line and message in line


def test_grid_axis_values_and_yaml_syntax(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(GRID.replace("seeds: [0]", "seeds: [0, 1.5]"))
    assert "seeds value 1.5" in one_error_line(run_hrl(["grid", "--params", f, "--dry_run"], tmp_path))
    f.write_text(GRID + "settings:\n  online_steps: [1\n")
    line = one_error_line(run_hrl(["grid", "--params", f, "--dry_run"], tmp_path))
    assert "not valid YAML at line 8" in line and str(f) in line


# 4. A complete run's damaged metrics.json ------------------------------------------------
@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_a_complete_runs_damaged_record_is_never_silently_recomputed(tmp_path, phase1_dir, d4rl_dir, damage):
    save = tmp_path / "runs"
    assert run_hrl(finetune_cmd(phase1_dir, save), tmp_path, d4rl_dir).returncode == 0
    (run_dir,) = list(save.iterdir())
    ckpt = run_dir / "checkpoint.pt"
    before = (ckpt.stat().st_mtime_ns, ckpt.read_bytes())
    metrics = run_dir / "metrics.json"
    if damage == "truncate":
        metrics.write_text(metrics.read_text()[:200])
    else:
        metrics.unlink()
    out = run_hrl(finetune_cmd(phase1_dir, save), tmp_path, d4rl_dir)
    line = one_error_line(out)
    assert "record is damaged" in line and "nothing was recomputed" in line and "--restart" in line
    assert (ckpt.stat().st_mtime_ns, ckpt.read_bytes()) == before  # the finished work is still there
    # The grid says so too and does not run it.
    grid_file = tmp_path / "g.yaml"
    grid_file.write_text(
        "algos: [iql]\ndatasets: [hopper-medium-v2]\nremove_top_k: [0]\nbonus_types: [ensemble]\nseeds: [1]\n"
        f"executed_dir: {tmp_path / 'executed'}\nsettings: {{online_steps: 30, eval_interval: 15, eval_episodes: 1, "
        f"batch_size: 32, save_dir: {save}, phase1_dir: {phase1_dir}}}\n"
    )  # fmt: skip
    dry = run_hrl(["grid", "--params", grid_file, "--dry_run"], tmp_path, d4rl_dir)
    assert dry.returncode == 0 and "complete but its record is damaged" in dry.stdout and "0 to run" in dry.stdout
    ran = run_hrl(["grid", "--params", grid_file, "--no_progress"], tmp_path, d4rl_dir)
    assert ran.returncode == 1 and "FAILED" in ran.stdout and "record is damaged" in ran.stdout
    assert (ckpt.stat().st_mtime_ns, ckpt.read_bytes()) == before
    assert not (tmp_path / "executed").exists() or not list((tmp_path / "executed").glob("*.ipynb"))


# 6. Data and checkpoints of the wrong shape; missing extras -------------------------------
def test_a_dataset_of_another_environment_is_refused_before_a_folder(tmp_path, phase1_dir, d4rl_dir):
    folder = tmp_path / "d4rl"
    folder.mkdir()
    # hopper's data (11-dim observations) under halfcheetah's name (17)
    write_d4rl_slice(d4rl_dir / "hopper_medium-v2.hdf5", folder / "halfcheetah_medium-v2.hdf5", 5_000)
    save = tmp_path / "runs"
    out = run_hrl(finetune_cmd(phase1_dir, save, env="halfcheetah-medium-v2"), tmp_path, folder)
    line = one_error_line(out)
    assert "observations of size 11" in line and "has 17" in line and "use that dataset's file" in line
    assert not save.exists() or not any(save.iterdir())


WRONG_SHAPES = [
    ("critic", "q1.2.weight", (256, 128)),
    ("actor", "mean_head.weight", (3, 64)),
    ("value", "net.4.bias", (2,)),
]


@pytest.mark.parametrize("group,key,shape", WRONG_SHAPES)
def test_a_checkpoint_with_other_shapes_is_one_line(tmp_path, phase1_dir, d4rl_dir, group, key, shape):
    name = phase1_run_name("iql", H, 0, 0.0, 1)
    mine = tmp_path / "phase1"
    shutil.copytree(phase1_dir / name, mine / name)
    state = torch.load(mine / name / "checkpoint.pt", weights_only=True, map_location="cpu")
    state[group][key] = torch.zeros(shape)
    torch.save(state, mine / name / "checkpoint.pt")
    save = tmp_path / "runs"
    line = one_error_line(run_hrl(finetune_cmd(mine, save), tmp_path, d4rl_dir))
    assert f"{group}.{key} has shape {shape}" in line and "not a Phase I IQL checkpoint" in line
    assert not save.exists() or not any(save.iterdir())
    original = torch.load(phase1_dir / name / "checkpoint.pt", weights_only=True, map_location="cpu")
    state[group][key] = torch.full_like(original[group][key], float("nan"))
    torch.save(state, mine / name / "checkpoint.pt")
    assert "non-finite values" in one_error_line(run_hrl(finetune_cmd(mine, save), tmp_path, d4rl_dir))


def _without(modules: list[str], argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """hrl as a user without these packages runs it: a finder that refuses them is installed first."""
    code = (
        "import sys, importlib.abc\n"
        f"BLOCK = {modules!r}\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCK: raise ModuleNotFoundError(f'No module named {name!r}')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import importlib.util\n"
        "_find = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda n, *a: None if n.split('.')[0] in BLOCK else _find(n, *a)\n"
        "from hrl_core.cli import main\n"
        f"sys.exit(main({[str(a) for a in argv]!r}))\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300,
                          env={**os.environ})  # fmt: skip


def test_missing_extras_are_one_line_with_the_install_command(tmp_path, phase1_dir, d4rl_dir):
    grid_file = tmp_path / "g.yaml"
    grid_file.write_text(GRID + f"settings: {{online_steps: 30, save_dir: {tmp_path / 'runs'}}}\n")
    line = one_error_line(_without(["dask", "distributed"], ["grid", "--params", grid_file], tmp_path))
    assert "pip install 'hrl[grid]'" in line and "distributed" in line
    line = one_error_line(_without(["papermill"], ["study", "--params", REPO / "params" / "study_iql.yaml"], tmp_path))
    assert "pip install 'hrl[grid]'" in line and "papermill" in line
    save = tmp_path / "runs"
    cmd = finetune_cmd(str(phase1_dir), str(save), "--logger", "tensorboard")
    line = one_error_line(_without(["tensorboard"], cmd, tmp_path))
    assert "pip install 'hrl[tensorboard]'" in line
    assert not save.exists() or not any(save.iterdir())  # refused before the data was read or a run folder made


# 7. Locks and snapshots -------------------------------------------------------------------
def test_a_garbage_lock_is_stale_and_says_so(tmp_path, phase1_dir, d4rl_dir):
    from hrl_core.run.config import FinetuneConfig

    save = tmp_path / "runs"
    run_dir = save / FinetuneConfig(algo="iql", env=H, remove_top_k=0, bonus_type="ensemble", seed=1, online_steps=30,
                                    eval_interval=15, eval_episodes=1, batch_size=32).run_name  # fmt: skip
    run_dir.mkdir(parents=True)
    (run_dir / ".hrl.lock").write_text("\x00garbage, not a lock\n")
    os.utime(run_dir / ".hrl.lock", (1, 1))  # written long ago
    out = run_hrl(finetune_cmd(phase1_dir, save), tmp_path, d4rl_dir, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "took over the stale lock" in out.stderr and "not a lock record" in out.stderr
    assert "PID -1" not in out.stderr


def test_grid_dry_run_reports_an_unreadable_lock_as_stale(tmp_path):
    from hrl_core.run import lock

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / lock.LOCK_NAME).write_text("{not json")
    os.utime(run_dir / lock.LOCK_NAME, (1, 1))
    holder = lock.read_lock(run_dir)
    assert holder["unreadable"] and "not a lock record" in lock.stale_reason(holder)
    assert lock.live_holder(run_dir) is None
    (run_dir / lock.LOCK_NAME).write_text("")  # being written right now (just created): not stale yet
    assert lock.stale_reason(lock.read_lock(run_dir)) is None


# 8. hrl plot after hrl grid --quick -------------------------------------------------------
def test_hrl_plot_takes_the_grids_selection_and_names_the_grid_file_when_nothing_matches(tmp_path):
    from tests.conftest import write_result_fixture

    save = tmp_path / "results_phase2"
    for bonus in ("ensemble", "none"):
        write_result_fixture(save, "iql", H, 60, bonus, 1, [40, 42, 45], online_steps=5000, eval_interval=1000,
                             eval_episodes=5)  # fmt: skip
    plain = run_hrl(["plot", "--save_dir", save, "--out", tmp_path / "f1"], tmp_path)
    line = one_error_line(plain)
    assert "no runs of" in line and "grid.yaml" in line and "hrl plot --quick" in line
    quick = run_hrl(["plot", "--quick", "--algo", "iql", "--env", H, "--seed", "1", "--remove_top_k", "60",
                     "--save_dir", save, "--out", tmp_path / "f2"], tmp_path)  # fmt: skip
    assert quick.returncode == 0, quick.stderr
    assert "hrl plot: 2 runs" in quick.stdout and (tmp_path / "f2" / "summary.md").exists()


# 5. A local grid listens on loopback only -------------------------------------------------
def _listening(pid: int) -> list[tuple[str, int]]:
    """Listening TCP sockets of a process and all its children (Dask scheduler, nannies,
    workers, the cells' kernels)."""
    import psutil

    out = []
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return out
    for proc in procs:
        try:
            conns = proc.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        out += [(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]
    return out


def test_a_local_grid_opens_no_socket_outside_loopback(tmp_path, d4rl_dir, phase1_dir):
    import ipaddress
    import time

    grid_file = tmp_path / "g.yaml"
    grid_file.write_text(
        "algos: [iql]\ndatasets: [hopper-medium-v2]\nremove_top_k: [0]\nbonus_types: [none]\nseeds: [0, 1]\n"
        f"executed_dir: {tmp_path / 'executed'}\nsettings: {{online_steps: 400, eval_interval: 100, eval_episodes: 1, "
        f"batch_size: 32, save_dir: {tmp_path / 'runs'}, phase1_dir: {phase1_dir}}}\n"
    )  # fmt: skip
    env = {**os.environ, "D4RL_DATASET_DIR": str(d4rl_dir)}
    cmd = [sys.executable, "-m", "hrl_core.cli", "grid", "--params", str(grid_file), "--no_progress"]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen, cell_ran = set(), False
    try:
        while proc.poll() is None:
            seen |= set(_listening(proc.pid))
            cell_ran = cell_ran or any((tmp_path / "runs").glob("*/metrics.json"))
            time.sleep(0.2)
    finally:
        proc.kill() if proc.poll() is None else None
    output = proc.stdout.read()
    assert proc.returncode == 0, output
    assert cell_ran and len(seen) >= 3, seen  # scheduler, workers and kernels were listening while cells ran
    outside = [(ip, port) for ip, port in seen if not ipaddress.ip_address(ip).is_loopback]
    assert outside == [], f"listening beyond loopback: {outside}"
