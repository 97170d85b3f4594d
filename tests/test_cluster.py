"""From one machine to a cluster: the worker plan, a real Dask scheduler, a real Slurm."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hrl_core.lab import grids
from hrl_core.lab.clusters.local import LocalBackend, plan_workers
from hrl_core.lab.clusters.slurm import SlurmOptions
from tests.conftest import run_hrl
from tests.support import slurm as slurm_support


def test_workers_are_pinned_to_gpus_when_there_are_some():
    cpu = plan_workers(n_gpus=0, cpu_count=2)
    assert [(w.gpu, w.threads) for w in cpu] == [(None, 1), (None, 1)]  # one 1-thread cell per core
    assert "CUDA_VISIBLE_DEVICES" not in cpu[0].env and cpu[0].env["OMP_NUM_THREADS"] == "1"
    gpus = plan_workers(n_gpus=2, cpu_count=16, cells_per_gpu=3)
    assert len(gpus) == 6 and sorted(w.gpu for w in gpus) == [0, 0, 0, 1, 1, 1]
    assert {w.env["CUDA_VISIBLE_DEVICES"] for w in gpus} == {"0", "1"} and {w.threads for w in gpus} == {2}
    assert len({w.name for w in gpus}) == 6
    text = LocalBackend(cells_per_gpu=3, threads_per_cell=1, n_gpus=2, cpu_count=16).describe()
    assert text == "local: 6 worker(s) on 2 GPU(s) (3 cell(s) per GPU), 2 torch thread(s) per cell"
    opts = SlurmOptions(partition="gpu", gpus_per_job=1, cells_per_gpu=2, cores=8, jobs=5)
    assert (opts.cells_per_job, opts.threads_per_cell) == (2, 4)
    assert "up to 5 job(s) at once on partition gpu, each 8 cores" in opts.describe()


def test_dry_run_reports_the_plan():
    out = run_hrl(["grid", "--quick", "--algo", "iql", "--seed", "1", "--dry_run", "--cluster", "slurm",
                   "--jobs", "3", "--cores", "4", "--partition", "long"], grids.REPO, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "plan: slurm: up to 3 job(s) at once on partition long, each 4 cores, 8GB" in out.stdout
    assert "12 concurrent cell(s)" in out.stdout


def _tiny_grid(tmp_path: Path, steps: int, interval: int) -> Path:
    params = tmp_path / "cells.yaml"
    params.write_text(
        "algos: [iql]\ndatasets: [hopper-medium-v2]\nremove_top_k: [60]\nbonus_types: [ensemble, none]\n"
        f"seeds: [1]\nexecuted_dir: {tmp_path / 'executed'}\n"
        f"settings: {{online_steps: {steps}, eval_interval: {interval}, eval_episodes: 1, batch_size: 32, "
        f"save_dir: {tmp_path / 'runs'}}}\n"
    )
    return params


def test_scheduler_option_runs_cells_on_an_existing_dask_cluster(tmp_path, d4rl_dir, phase1_dir):
    params = _tiny_grid(tmp_path, 30, 15)
    port = 18786
    env = {**os.environ, "D4RL_DATASET_DIR": str(d4rl_dir), "HRL_PHASE1_DIR": str(phase1_dir)}
    bin_dir = Path(sys.executable).parent
    quiet = {"env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    sched = subprocess.Popen([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                              "--no-dashboard"], **quiet)  # fmt: skip
    worker = subprocess.Popen([str(bin_dir / "dask"), "worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1",
                               "--no-dashboard"], **quiet)  # fmt: skip
    try:
        out = run_hrl(["grid", "--params", params, "--scheduler", f"tcp://127.0.0.1:{port}", "--no_progress"],
                      tmp_path, d4rl_dir, phase1_dir)  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        assert "grid: 2 ran" in out.stdout and f"an existing Dask cluster at tcp://127.0.0.1:{port}" in out.stdout
        assert len(list((tmp_path / "executed").glob("*.ipynb"))) == 2
    finally:
        for proc in (worker, sched):
            proc.terminate()
            proc.wait(timeout=30)


@pytest.fixture
def slurm(tmp_path):
    try:
        s = slurm_support.start(tmp_path / "slurm")
    except slurm_support.Unavailable as exc:
        pytest.skip(f"no Slurm here: {exc}")
    yield s
    s.stop()


@pytest.mark.slow
def test_cells_run_as_slurm_jobs_and_a_cancelled_cell_resumes(tmp_path, slurm, d4rl_dir, phase1_dir):
    """Two cells as Slurm jobs; one job is scancel'ed mid-cell; the grid (re-run) resumes that
    cell from its snapshot to the same final metrics as an uninterrupted run."""
    params = _tiny_grid(tmp_path, 1000, 250)
    env = {**slurm.env, "D4RL_DATASET_DIR": str(d4rl_dir), "HRL_PHASE1_DIR": str(phase1_dir)}
    cmd = [sys.executable, "-m", "hrl_core.cli", "grid", "--params", str(params), "--cluster", "slurm", "--jobs", "2",
           "--cores", "1", "--memory", "4GB", "--walltime", "00:30:00", "--no_progress"]  # fmt: skip
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cells = grids.expand(grids.load_grid(params))
    victim = next(c for c in cells if c.config.bonus_type == "ensemble")
    deadline = time.time() + 600
    while True:  # wait until the victim cell has a snapshot beyond step 0 (2+ evaluation points)
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the cell never got going"
        m = victim.run_dir / "metrics.json"
        if m.exists() and len(json.loads(m.read_text())["step"]) >= 2:
            break
        time.sleep(0.5)
    lock = json.loads((victim.run_dir / ".hrl.lock").read_text())
    jobs = slurm.jobs()
    assert len(jobs) == 2 and all(j["state"] == "RUNNING" for j in jobs), jobs
    # The job whose processes include the cell's kernel: its worker's job id is in the kernel's environment.
    job_id = Path(f"/proc/{lock['pid']}/environ").read_bytes().split(b"SLURM_JOB_ID=")[1].split(b"\0")[0].decode()
    slurm.run("scancel", job_id)
    out, err = proc.communicate(timeout=900)
    # Either the grid already re-ran the cell in the other job, or it reports it and a re-run resumes it.
    again = subprocess.run(cmd, env=env, cwd=tmp_path, text=True, capture_output=True, timeout=900)
    assert again.returncode == 0, again.stdout + again.stderr
    for cell in cells:
        assert json.loads((cell.run_dir / "metrics.json").read_text())["status"] == "complete"
    config = json.loads((victim.run_dir / "config.json").read_text())
    assert config["resumed"], "the cancelled cell did not resume from its snapshot"
    assert len(list((tmp_path / "executed").glob("*.ipynb"))) == 2
    # Same final metrics as the cell run start to end in one process.
    ref = run_hrl(["finetune", "--algo", "iql", "--env", "hopper-medium-v2", "--remove_top_k", "60", "--bonus_type",
                   "ensemble", "--seed", "1", "--online_steps", "1000", "--eval_interval", "250", "--eval_episodes",
                   "1", "--batch_size", "32", "--threads", "1", "--save_dir", tmp_path / "ref", "--no_progress"],
                  tmp_path, d4rl_dir, phase1_dir)  # fmt: skip
    assert ref.returncode == 0, ref.stderr
    timing = ("wall_time", "eval_time", "snapshot_time", "interrupted_at_step")
    mine = json.loads((victim.run_dir / "metrics.json").read_text())
    theirs = json.loads((tmp_path / "ref" / victim.run_name / "metrics.json").read_text())
    assert {k: v for k, v in mine.items() if k not in timing} == {k: v for k, v in theirs.items() if k not in timing}
    print(f"slurm test: {time.time() - t0:.0f} s")


def test_a_local_cluster_listens_on_loopback_and_shares_the_machine_quietly():
    """Every listener of a local grid is on 127.0.0.1, and a second grid on the machine (Dask's
    default HTTP port 8787 taken by the first) starts without a warning on the user's terminal."""
    import socket
    import warnings

    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 8787))  # as a first grid would (if anything holds it already, so much the better)
        holder.listen()
    except OSError:
        pass
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with LocalBackend(workers=1).open() as client:
            cluster = client.cluster
            http = [s.getsockname()[0] for s in cluster.scheduler.http_server._sockets.values()]
            workers = list(client.scheduler_info()["workers"])
    holder.close()
    assert cluster.scheduler_address.startswith("tcp://127.0.0.1:") and http == ["127.0.0.1"]
    assert workers and all(w.startswith("tcp://127.0.0.1:") for w in workers)
    assert not [w for w in caught if "already in use" in str(w.message)], [str(w.message) for w in caught]
