"""`hrl finetune` as a user runs it: real processes, real faults, real bad inputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from hrl_core.run.phase1 import phase1_run_name


def run_name(*extra) -> str:
    """The folder name hrl finetune gives to hrl_cmd's settings (plus ``extra`` flag pairs)."""
    from hrl_core.run.config import FinetuneConfig

    base = {"algo": "iql", "env": "hopper-medium-v2", "remove_top_k": 60, "bonus_type": "ensemble", "seed": 1,
            "batch_size": 64, "eval_episodes": 2}  # fmt: skip
    pairs = dict(zip(extra[::2], extra[1::2], strict=True))
    base.update({k.lstrip("-"): v for k, v in pairs.items()})
    return FinetuneConfig(**base).run_name


def hrl_cmd(phase1_dir, save_dir, *extra):
    return [
        sys.executable, "-m", "hrl_core.cli", "finetune",
        "--algo", "iql", "--env", "hopper-medium-v2", "--remove_top_k", "60",
        "--bonus_type", "ensemble", "--seed", "1",
        "--phase1_dir", str(phase1_dir), "--save_dir", str(save_dir),
        "--batch_size", "64", "--eval_episodes", "2", "--device", "cpu", "--threads", "1",
        "--no_progress", *extra,
    ]  # fmt: skip


def run(cmd, env_dir, **kw):
    env = {**os.environ, "D4RL_DATASET_DIR": str(env_dir)}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, **kw)


def metrics_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def comparable(m: dict) -> dict:
    return {k: v for k, v in m.items() if k not in ("wall_time", "eval_time", "snapshot_time")}


def snapshot_files(tree: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(tree.rglob("*")) if p.is_file()}


def test_cli_run_writes_outputs(tmp_path, phase1_dir, d4rl_dir):
    steps = ("--online_steps", "40", "--eval_interval", "20")
    out = run(hrl_cmd(phase1_dir, tmp_path, *steps), d4rl_dir)
    assert out.returncode == 0, out.stderr
    assert "done:" in out.stdout and "not D4RL" in out.stderr
    RUN = run_name(*steps)
    m = metrics_of(tmp_path / RUN)
    assert m["status"] == "complete" and m["step"] == [0, 20, 40]
    assert (tmp_path / RUN / "checkpoint.pt").exists() and not (tmp_path / RUN / "snapshot.pt").exists()
    assert not (tmp_path / RUN / ".hrl.lock").exists()  # released at the end


KILL_STEPS = ["--online_steps", "300", "--eval_interval", "60"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, phase1_dir, d4rl_dir) -> Path:
    """The run the killed-and-resumed ones must equal, run once start to end (its folder)."""
    ref = tmp_path_factory.mktemp("uninterrupted")
    out = run(hrl_cmd(phase1_dir, ref, *KILL_STEPS), d4rl_dir)
    assert out.returncode == 0, out.stderr
    return ref / run_name(*KILL_STEPS)


@pytest.mark.parametrize("damage", ["none", "truncate_newest_snapshot"])
def test_sigkill_then_resume_equals_uninterrupted(tmp_path, phase1_dir, d4rl_dir, damage, uninterrupted):
    RUN = run_name(*KILL_STEPS)

    save = tmp_path / "killed"
    env = {**os.environ, "D4RL_DATASET_DIR": str(d4rl_dir)}
    proc = subprocess.Popen(
        hrl_cmd(phase1_dir, save, *KILL_STEPS), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    metrics_path = save / RUN / "metrics.json"
    deadline = time.time() + 300
    while time.time() < deadline:
        # metrics.json is written right after each snapshot: 3 points = snapshots at 0, 60, 120.
        if metrics_path.exists() and len(json.loads(metrics_path.read_text())["step"]) >= 3:
            break
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(metrics_path.read_text())
    assert killed_at["status"] == "running" and 3 <= len(killed_at["step"]) < 6
    if damage != "none":
        newest = save / RUN / "snapshot.pt"
        newest.write_bytes(newest.read_bytes()[:10_000])
    else:  # the first part ran under another torch (another machine): the record keeps both
        first = json.loads((save / RUN / "config.json").read_text())
        first["versions"]["torch"] = "0.0.0-first-part"
        (save / RUN / "config.json").write_text(json.dumps(first))

    resumed = run(hrl_cmd(phase1_dir, save, *KILL_STEPS), d4rl_dir)
    assert resumed.returncode == 0, resumed.stderr
    if damage != "none":
        assert "truncated or corrupt" in resumed.stderr and "trying snapshot.prev.pt" in resumed.stderr
        assert "hrl: note: resuming from snapshot.prev.pt" in resumed.stderr  # and it says which one it took
    final, reference = metrics_of(save / RUN), metrics_of(uninterrupted)
    assert final["step"] == reference["step"] == [0, 60, 120, 180, 240, 300]
    assert comparable(final) == comparable(reference)  # identical values on CPU
    config = json.loads((save / RUN / "config.json").read_text())
    assert config["resumed"][0]["at_step"] >= (60 if damage != "none" else 120)
    if damage == "none":
        torch_now = config["versions"]["torch"]
        assert config["resumed"][0]["versions_before"] == {"torch": ["0.0.0-first-part", torch_now]}
        assert f"torch 0.0.0-first-part -> {torch_now}" in resumed.stderr
    else:  # same versions: nothing to keep
        assert "versions_before" not in config["resumed"][0]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: fields 14, 15


def test_sigterm_leaves_loadable_snapshot_and_resumes(tmp_path, phase1_dir, d4rl_dir):
    env = {**os.environ, "D4RL_DATASET_DIR": str(d4rl_dir)}
    cmd = hrl_cmd(phase1_dir, tmp_path, "--online_steps", "2000", "--eval_interval", "1000")
    RUN = run_name("--online_steps", "2000", "--eval_interval", "1000")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics_path = tmp_path / RUN / "metrics.json"
    while not metrics_path.exists():
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    # Some online steps past the step-0 snapshot: one second of the run's own CPU time (not
    # wall time, which on a loaded machine may pass with no step taken).
    start, deadline = cpu_seconds(proc.pid), time.time() + 120
    while cpu_seconds(proc.pid) < start + 1.0 and time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "SIGTERM received: snapshot written at step" in err and "Traceback" not in err
    snap = torch.load(tmp_path / RUN / "snapshot.pt", weights_only=True)
    assert 0 < snap["step"] < 2000
    assert snap["buffer"]["size"] == snap["step"]
    assert metrics_of(tmp_path / RUN)["interrupted_at_step"] == snap["step"]


def test_divergence_stops_with_status_and_keeps_snapshot(tmp_path, phase1_dir, d4rl_dir):
    # A finite bonus so large that the stored (float32) reward overflows: training diverges.
    cmd = hrl_cmd(phase1_dir, tmp_path, "--online_steps", "100", "--eval_interval", "50", "--bonus_coeff", "1e300")
    RUN = run_name("--online_steps", "100", "--eval_interval", "50", "--bonus_coeff", "1e300")
    out = run(cmd, d4rl_dir)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].startswith("hrl: error: training diverged at online step")
    m = metrics_of(tmp_path / RUN)
    assert m["status"] == "diverged" and m["diverged_at_step"] >= 1 and m["diverged_quantity"]
    assert (tmp_path / RUN / "snapshot.pt").exists()  # the last good state (step 0)
    again = run(cmd, d4rl_dir)
    assert again.returncode == 1 and "--restart" in again.stderr


@pytest.fixture
def other_run(tmp_path, phase1_dir, d4rl_dir):
    """A finished run beside the bad-input attempts; its files must stay byte-identical."""
    save = tmp_path / "runs"
    out = run(hrl_cmd(phase1_dir, save, "--online_steps", "10", "--eval_interval", "10"), d4rl_dir)
    assert out.returncode == 0, out.stderr
    return save


def _bad_inputs(tmp_path: Path, phase1_dir: Path, d4rl_dir: Path):
    """(label, extra args or replaced args, env dir, expected message fragment)."""
    bad_ckpts = tmp_path / "bad_ckpts"
    good = phase1_dir / phase1_run_name("iql", "hopper-medium-v2", 60, 0.0, 1) / "checkpoint.pt"
    for name, data in {
        "trunc": good.read_bytes()[:5000],
    }.items():
        d = bad_ckpts / name / phase1_run_name("iql", "hopper-medium-v2", 60, 0.0, 1)
        d.mkdir(parents=True)
        (d / "checkpoint.pt").write_bytes(data)
    # A halfcheetah checkpoint where the hopper one should be.
    d = bad_ckpts / "dims" / phase1_run_name("iql", "hopper-medium-v2", 60, 0.0, 1)
    d.mkdir(parents=True)
    (d / "checkpoint.pt").write_bytes(
        (phase1_dir / phase1_run_name("iql", "halfcheetah-medium-v2", 60, 0.0, 1) / "checkpoint.pt").read_bytes()
    )
    # A CQL checkpoint given as IQL.
    d = bad_ckpts / "algo" / phase1_run_name("iql", "hopper-medium-v2", 60, 0.0, 1)
    d.mkdir(parents=True)
    (d / "checkpoint.pt").write_bytes(
        (phase1_dir / phase1_run_name("cql", "hopper-medium-v2", 60, 0.0, 1) / "checkpoint.pt").read_bytes()
    )
    data_dirs = {}
    for name in ("truncated", "keyless"):
        folder = tmp_path / f"d4rl_{name}"
        folder.mkdir()
        data_dirs[name] = folder
    (data_dirs["truncated"] / "hopper_medium-v2.hdf5").write_bytes(
        (d4rl_dir / "hopper_medium-v2.hdf5").read_bytes()[:100_000]
    )
    import h5py

    with h5py.File(data_dirs["keyless"] / "hopper_medium-v2.hdf5", "w") as f:
        f.create_dataset("observations", data=[[0.0] * 11])
    empty = tmp_path / "d4rl_empty"
    empty.mkdir()
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o500)
    missing_dir = tmp_path / "nothing_here"
    return [
        ("missing checkpoint", ["--phase1_dir", str(missing_dir)], d4rl_dir, "not found"),
        ("truncated checkpoint", ["--phase1_dir", str(bad_ckpts / "trunc")], d4rl_dir, "truncated or corrupt"),
        ("wrong dims", ["--phase1_dir", str(bad_ckpts / "dims")], d4rl_dir, "obs_dim=17"),
        (
            "cql given as iql",
            ["--phase1_dir", str(bad_ckpts / "algo")],
            d4rl_dir,
            "is an CQL checkpoint but --algo iql",
        ),
        ("missing hdf5", [], empty, "hopper_medium-v2.hdf5 not found in"),
        ("truncated hdf5", [], data_dirs["truncated"], "hopper_medium-v2.hdf5"),
        ("key-less hdf5", [], data_dirs["keyless"], "lacks the D4RL keys"),
        ("unknown dataset", ["--env", "walker2d-medium-v2"], d4rl_dir, "invalid choice"),
        ("unknown algo", ["--algo", "td3"], d4rl_dir, "invalid choice"),
        ("k out of range", ["--remove_top_k", "100"], d4rl_dir, "above its range [0, 100)"),
        ("k negative", ["--remove_top_k", "-5"], d4rl_dir, "below its range [0, 100)"),
        ("n_ensemble too small", ["--n_ensemble", "1"], d4rl_dir, "below its range [2, 10]"),
        ("n_ensemble too large", ["--n_ensemble", "11"], d4rl_dir, "above its range [2, 10]"),
        ("online_ratio", ["--online_ratio", "1.5"], d4rl_dir, "above its range [0, 1]"),
        ("negative bonus", ["--bonus_coeff", "-0.1"], d4rl_dir, "below its range [0, inf]"),
        ("cuda without a GPU", ["--device", "cuda"], d4rl_dir, "torch sees no CUDA GPU"),
        ("bad device", ["--device", "gpu"], d4rl_dir, "use auto, cpu, cuda or cuda:N"),
        ("unwritable save_dir", ["--save_dir", str(readonly / "sub")], d4rl_dir, "cannot write to save_dir"),
    ]


def test_bad_inputs_give_one_line_and_touch_nothing(tmp_path, phase1_dir, d4rl_dir, other_run):
    before = snapshot_files(other_run)
    cases = _bad_inputs(tmp_path, phase1_dir, d4rl_dir)
    if os.geteuid() == 0:  # root can write anywhere: make save_dir's parent a regular file instead
        blocker = tmp_path / "a_file"
        blocker.write_text("x")
        cases[-1] = ("unwritable save_dir", ["--save_dir", str(blocker / "sub")], d4rl_dir, "cannot write to save_dir")
    # --restart on purpose: even a restart must not delete a run before its inputs check out.
    cmd = hrl_cmd(phase1_dir, other_run, "--online_steps", "10", "--eval_interval", "10", "--restart")
    # Later flags override earlier ones in argparse, so extra args replace the defaults. The
    # processes are independent (each only reads its inputs), so two run at a time: the case
    # list is mostly interpreter start-up.
    with ThreadPoolExecutor(max_workers=2) as pool:
        outs = list(pool.map(lambda case: run(cmd + case[1], case[2]), cases))
    failures = []
    for (label, _, _, expected), out in zip(cases, outs, strict=True):
        lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
        if out.returncode == 0 or expected not in out.stderr or "Traceback" in out.stderr:
            failures.append(f"{label}: rc={out.returncode} stderr={out.stderr[-400:]!r}")
        else:  # one error line (usage errors too), after at most notes about the inputs
            errors = [ln for ln in lines if ": error: " in ln]
            if len(errors) != 1 or lines[-1] != errors[0] or "usage:" in out.stderr:
                failures.append(f"{label}: not one line: {lines}")
    assert not failures, "\n".join(failures)
    assert snapshot_files(other_run) == before


def test_a_missing_checkpoint_is_reported_before_any_data_is_read(tmp_path, d4rl_dir):
    """No D4RL file and no checkpoint: the checkpoint is named, no download is tried."""
    empty = tmp_path / "empty_d4rl"
    empty.mkdir()
    out = run(hrl_cmd(tmp_path / "no_phase1", tmp_path / "runs", "--online_steps", "10"), empty)
    assert out.returncode == 1 and "Phase I checkpoint" in out.stderr and "not found" in out.stderr
    assert "downloading" not in out.stderr and not (empty / "hopper_medium-v2.hdf5.part").exists()
    assert list(empty.iterdir()) == []  # nothing created in the data folder either


def test_dry_run_says_when_inputs_are_missing(tmp_path):
    params = tmp_path / "g.yaml"
    params.write_text(
        "algos: [iql]\ndatasets: [hopper-medium-v2]\nremove_top_k: [45]\nbonus_types: [none]\nseeds: [0]\n"
        f"settings: {{save_dir: {tmp_path / 'r'}, phase1_dir: {tmp_path / 'none'}}}\n"
    )
    from tests.conftest import run_hrl

    out = run_hrl(["grid", "--params", params, "--dry_run"], tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "inputs missing: Phase I checkpoint" in out.stdout and "0 to run" in out.stdout
