"""One writer per run folder, and a clean stop on a full disk (real processes)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hrl_core.errors import HrlError
from hrl_core.run import lock
from hrl_core.run.config import FinetuneConfig
from tests.conftest import run_hrl

ARGS = ["--algo", "iql", "--env", "hopper-medium-v2", "--remove_top_k", "60", "--bonus_type", "ensemble",
        "--seed", "1", "--batch_size", "64", "--eval_episodes", "2", "--device", "cpu", "--threads", "1",
        "--no_progress"]  # fmt: skip


def cmd(phase1_dir, save_dir, *extra):
    return [sys.executable, "-m", "hrl_core.cli", "finetune", *ARGS, "--phase1_dir", str(phase1_dir),
            "--save_dir", str(save_dir), *map(str, extra)]  # fmt: skip


def run_dir_of(save_dir, steps, interval) -> Path:
    cfg = FinetuneConfig(algo="iql", env="hopper-medium-v2", remove_top_k=60, bonus_type="ensemble", seed=1,
                         batch_size=64, eval_episodes=2, online_steps=steps, eval_interval=interval)  # fmt: skip
    return Path(save_dir) / cfg.run_name


def without_timing(m: dict) -> dict:
    return {k: v for k, v in m.items() if k not in ("wall_time", "eval_time", "snapshot_time")}


def eventually(condition, timeout: float = 20.0) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if condition():
                return True
        except (OSError, ValueError):  # the lock file caught mid-replace
            pass
        time.sleep(0.05)
    return False


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_a_second_process_for_the_same_run_stops_and_the_first_is_undisturbed(tmp_path, phase1_dir, d4rl_dir):
    env = {**os.environ, "D4RL_DATASET_DIR": str(d4rl_dir)}
    steps = ("--online_steps", 400, "--eval_interval", 100)
    first = subprocess.Popen(cmd(phase1_dir, tmp_path / "runs", *steps), env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    run = run_dir_of(tmp_path / "runs", 400, 100)
    wait_for(run / "metrics.json", first)  # it is writing: step 0 is recorded
    holder = json.loads((run / lock.LOCK_NAME).read_text())
    assert holder["pid"] == first.pid and holder["host"] and holder["started"]

    # Hold the first process still (alive, holding its lock) while the others try: otherwise its
    # 400 steps can end before they have imported torch, and --restart then rightly runs again.
    os.kill(first.pid, signal.SIGSTOP)
    try:
        second = subprocess.run(cmd(phase1_dir, tmp_path / "runs", *steps), env=env, text=True, capture_output=True)
        # --restart must not delete a folder whose lock is live either.
        again = subprocess.run(cmd(phase1_dir, tmp_path / "runs", *steps, "--restart"), env=env, text=True,
                               capture_output=True)  # fmt: skip
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert second.returncode == 1
    lines = [ln for ln in second.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith(f"hrl: error: {run} is being written by {holder['host']} PID {first.pid} since ")
    assert "wait for it to finish" in lines[-1] and [ln for ln in lines if "error" in ln] == [lines[-1]]
    assert again.returncode == 1 and "is being written by" in again.stderr and (run / "config.json").exists()

    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    reference = subprocess.run(cmd(phase1_dir, tmp_path / "ref", *steps), env=env, text=True, capture_output=True)
    assert reference.returncode == 0, reference.stderr
    mine = json.loads((run / "metrics.json").read_text())
    ref = json.loads((run_dir_of(tmp_path / "ref", 400, 100) / "metrics.json").read_text())
    assert without_timing(mine) == without_timing(ref)  # the second process changed nothing
    assert not (run / lock.LOCK_NAME).exists()


def test_a_killed_run_leaves_a_stale_lock_that_the_next_run_takes_over(tmp_path, phase1_dir, d4rl_dir):
    env = {**os.environ, "D4RL_DATASET_DIR": str(d4rl_dir)}
    steps = ("--online_steps", 300, "--eval_interval", 100)
    proc = subprocess.Popen(cmd(phase1_dir, tmp_path, *steps), env=env, text=True, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL)  # fmt: skip
    run = run_dir_of(tmp_path, 300, 100)
    deadline = time.time() + 300
    while not (run / "snapshot.prev.pt").exists():  # two snapshots written: something to resume from
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (run / lock.LOCK_NAME).exists()  # a killed process cannot clean up
    out = run_hrl(["finetune", *ARGS, "--phase1_dir", phase1_dir, "--save_dir", tmp_path, *steps], tmp_path, d4rl_dir)
    assert out.returncode == 0, out.stderr
    note = [ln for ln in out.stderr.splitlines() if "took over the stale lock" in ln]
    assert len(note) == 1 and f"PID {proc.pid} is gone" in note[0]
    config = json.loads((run / "config.json").read_text())
    assert config["resumed"] and json.loads((run / "metrics.json").read_text())["status"] == "complete"


def test_a_lock_from_another_host_is_taken_over_only_after_its_heartbeat_expires(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    record = {"host": "node-17.cluster", "pid": 4242, "started": "2026-01-01T00:00:00+00:00", "token": "abc"}
    (run / lock.LOCK_NAME).write_text(json.dumps({**record, "heartbeat": time.time() - 30}))
    with pytest.raises(lock.RunLocked, match="node-17.cluster PID 4242"):
        lock.RunLock(run).acquire()  # fresh heartbeat on another host: it may well be alive
    (run / lock.LOCK_NAME).write_text(json.dumps({**record, "heartbeat": time.time() - lock.STALE_SECONDS - 5}))
    mine = lock.RunLock(run, heartbeat=0.05).acquire()
    try:
        now = json.loads((run / lock.LOCK_NAME).read_text())
        assert now["token"] == mine.token and now["pid"] == os.getpid()
        beat = now["heartbeat"]
        # the heartbeat runs (polled: on a loaded machine a 0.05 s beat may come late)
        assert eventually(lambda: json.loads((run / lock.LOCK_NAME).read_text())["heartbeat"] > beat)
        # Someone takes it over meanwhile (this holder was suspended too long): the holder notices.
        (run / lock.LOCK_NAME).write_text(json.dumps({**record, "heartbeat": time.time(), "token": "zzz"}))
        assert eventually(lambda: mine.lost)
        with pytest.raises(lock.RunLocked, match="lost its lock"):
            mine.check()
    finally:
        mine.release()
    assert json.loads((run / lock.LOCK_NAME).read_text())["token"] == "zzz"  # not ours: left alone


def test_two_grids_on_the_same_cells_run_each_cell_once(tmp_path, d4rl_dir, phase1_dir):
    params = tmp_path / "tiny.yaml"
    params.write_text(
        "algos: [iql]\ndatasets: [hopper-medium-v2]\nremove_top_k: [0, 60]\nbonus_types: [ensemble, none]\n"
        f"seeds: [1]\nexecuted_dir: {tmp_path / 'executed'}\n"
        "settings: {online_steps: 120, eval_interval: 60, eval_episodes: 1, batch_size: 32, "
        f"save_dir: {tmp_path / 'r'}}}\n"
    )
    env = {**os.environ, "D4RL_DATASET_DIR": str(d4rl_dir), "HRL_PHASE1_DIR": str(phase1_dir)}
    grid_cmd = [sys.executable, "-m", "hrl_core.cli", "grid", "--params", str(params), "--workers", "1"]
    procs = [subprocess.Popen(grid_cmd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              cwd=tmp_path) for _ in range(2)]  # fmt: skip
    outs, errs = zip(*(p.communicate(timeout=900) for p in procs), strict=True)
    assert all(p.returncode == 0 for p in procs), (outs, [e[-3000:] for e in errs])
    import re

    ran = sum(int(re.search(r"grid: (\d+) ran", o).group(1)) for o in outs)
    assert ran == 4, outs  # each of the 4 cells ran in exactly one of the two grids
    runs = sorted((tmp_path / "r").iterdir())
    assert len(runs) == 4
    for run in runs:
        assert json.loads((run / "metrics.json").read_text())["status"] == "complete"
        assert "resumed" not in json.loads((run / "config.json").read_text())  # one process, start to end
        assert not (run / lock.LOCK_NAME).exists()
    assert len(list((tmp_path / "executed").glob("*.ipynb"))) == 4


def test_a_cell_finding_its_run_locked_leaves_the_holders_notebook_alone(tmp_path, d4rl_dir, phase1_dir, monkeypatch):
    # Two grids start the same cell: the holder's executing notebook must survive the
    # other's "running elsewhere" exit (they once shared one partial file, and the loser
    # deleted the winner's, which then failed at its end).
    params = tmp_path / "g.yaml"
    params.write_text("algos: [iql]\ndatasets: [hopper-medium-v2]\nremove_top_k: [60]\nbonus_types: [none]\n"
                      f"seeds: [1]\nsettings: {{save_dir: {tmp_path / 'r'}, online_steps: 60, eval_interval: 60, "
                      "eval_episodes: 1, batch_size: 32}\n")  # fmt: skip
    from hrl_core.lab import execute, grids

    env = {"D4RL_DATASET_DIR": str(d4rl_dir), "HRL_PHASE1_DIR": str(phase1_dir)}
    for k, v in env.items():
        monkeypatch.setenv(k, v)  # execute_cell sets them in its (worker) process: restored after the test
    cell = grids.expand(grids.load_grid(params))[0]
    out = tmp_path / "executed" / f"{cell.run_name}.ipynb"
    out.parent.mkdir()
    holders = execute.partial_path(out, host="node-3", pid=777)  # the holder's, being written
    assert holders != execute.partial_path(out)
    holders.write_text("{}")
    with lock.RunLock(cell.run_dir):
        res = execute.execute_cell(
            str(cell.notebook), str(out), execute.notebook_parameters(cell.config), env, cell.run_name
        )
    assert res["status"] == grids.RUNNING_ELSEWHERE, res
    assert holders.read_text() == "{}" and not out.exists() and res["notebook"] is None
    assert sorted(p.name for p in out.parent.iterdir()) == [holders.name]  # its own partial is gone
    # Later the cell runs here; a partial left by an execution killed before it is cleaned up.
    os.utime(holders, (time.time() - 60, time.time() - 60))
    params = execute.notebook_parameters(cell.config)
    res = execute.execute_cell(str(cell.notebook), str(out), params, env, cell.run_name)
    assert res["status"] == "complete", res
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]


def test_dry_run_shows_a_cell_running_elsewhere(tmp_path):
    params = tmp_path / "g.yaml"
    params.write_text("algos: [iql]\ndatasets: [hopper-medium-v2]\nremove_top_k: [0]\nbonus_types: [none]\n"
                      f"seeds: [0]\nsettings: {{save_dir: {tmp_path / 'r'}}}\n")  # fmt: skip
    from hrl_core.lab import grids

    cell = grids.expand(grids.load_grid(params))[0]
    with lock.RunLock(cell.run_dir):
        assert grids.cell_status(cell).startswith("running elsewhere: ")
        out = run_hrl(["grid", "--params", params, "--dry_run"], tmp_path, timeout=120)
    assert out.returncode == 0 and f"running elsewhere: {os.uname().nodename} PID {os.getpid()}" in out.stdout


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs (root only), remounted larger by the test to 'free space'."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs")
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {out.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_full_disk_gives_one_line_and_the_run_resumes_after_space_is_freed(small_disk, phase1_dir, d4rl_dir):
    steps = ("--online_steps", 600, "--eval_interval", 200)
    out = run_hrl(["finetune", *ARGS, "--phase1_dir", phase1_dir, "--save_dir", small_disk, *steps], small_disk.parent,
                  d4rl_dir)  # fmt: skip
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert lines[-1].startswith("hrl: error: cannot write ") and "No space left on device" in lines[-1]
    assert " free in " in lines[-1] and lines[-1].endswith("free space and run the same command to resume")
    run = run_dir_of(small_disk, 600, 200)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "No space left" in metrics["reason"]
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)  # space freed
    again = run_hrl(["finetune", *ARGS, "--phase1_dir", phase1_dir, "--save_dir", small_disk, *steps],
                    small_disk.parent, d4rl_dir)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert json.loads((run / "metrics.json").read_text())["status"] == "complete"


def test_disk_full_error_names_file_and_free_space(tmp_path, monkeypatch):
    """The classification alone: torch's writer reports ENOSPC as a RuntimeError."""
    import errno

    from hrl_core.run import files

    def broken(fh):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from None

    with pytest.raises(files.DiskFull, match=r"cannot write .*x\.pt: No space left on device \(.* free in .*\); free"):
        files._atomic_write(tmp_path / "x.pt", lambda fh: broken(fh))
    assert not list(tmp_path.iterdir())  # no temporary file left
    with pytest.raises(RuntimeError):  # other failures stay what they are
        files._atomic_write(tmp_path / "y.pt", lambda fh: (_ for _ in ()).throw(RuntimeError("bug")))
    assert issubclass(files.DiskFull, HrlError)
