"""Shared fixtures: the real data under ../shared (skipped with a reason when absent)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def _dir(env_var: str, fallback: Path) -> Path | None:
    path = Path(os.environ[env_var]) if os.environ.get(env_var) else fallback
    return path if path.is_dir() else None


D4RL_DIR = _dir("D4RL_DATASET_DIR", SHARED / "d4rl")
PHASE1_DIR = _dir("HRL_PHASE1_DIR", SHARED / "phase1" / "results")


@pytest.fixture(scope="session")
def d4rl_dir() -> Path:
    if D4RL_DIR is None or not any(D4RL_DIR.glob("*.hdf5")):
        pytest.skip("no D4RL files: set D4RL_DATASET_DIR (CI uses ../shared/d4rl)")
    return D4RL_DIR


@pytest.fixture(scope="session")
def phase1_dir() -> Path:
    if PHASE1_DIR is None:
        pytest.skip("no Phase I checkpoints: set HRL_PHASE1_DIR (CI uses ../shared/phase1/results)")
    return PHASE1_DIR


@pytest.fixture
def d4rl_env(d4rl_dir, monkeypatch):
    """Point the reader at the real D4RL folder for this test."""
    monkeypatch.setenv("D4RL_DATASET_DIR", str(d4rl_dir))
    return d4rl_dir


@pytest.fixture
def data_copy(tmp_path, d4rl_dir):
    """A D4RL folder of our own with a 20,000-row slice of the stand-in hopper file (to damage)."""
    folder = tmp_path / "d4rl"
    folder.mkdir()
    write_d4rl_slice(d4rl_dir / "hopper_medium-v2.hdf5", folder / "hopper_medium-v2.hdf5", 20_000)
    return folder


def run_hrl(args, cwd: Path, d4rl_dir=None, phase1_dir=None, timeout: int = 900) -> subprocess.CompletedProcess:
    """``hrl <args>`` in a fresh interpreter, as a user runs it, with the test data's
    folders in D4RL_DATASET_DIR / HRL_PHASE1_DIR (when given); output captured."""
    env = dict(os.environ)
    if d4rl_dir is not None:
        env["D4RL_DATASET_DIR"] = str(d4rl_dir)
    if phase1_dir is not None:
        env["HRL_PHASE1_DIR"] = str(phase1_dir)
    cmd = [sys.executable, "-m", "hrl_core.cli", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


def write_d4rl_slice(src: Path, dst: Path, n: int, *, float_flags=False, drop_next=False, extra_groups=False):
    """A small D4RL-layout file cut from a real one (first ``n`` rows)."""
    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        for key in ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations"):
            if key == "next_observations" and drop_next:
                continue
            data = f[key][:n]
            if float_flags and key in ("terminals", "timeouts"):
                data = data.astype(np.float32)
            g.create_dataset(key, data=data)
        if extra_groups:
            g.create_dataset("infos/qpos", data=np.zeros((n, 3)))
            g.create_dataset("metadata/algorithm", data="SAC")
    return dst


def write_result_fixture(save_dir: Path, algo, dataset, k, bonus, seed, returns, status="complete", step=1000,
                         arm="", **settings):  # fmt: skip
    """A Phase II run folder with the given return curve (the files hrl finetune writes),
    named by its settings as hrl finetune names it. Returns the grid cell it stands for."""
    import json

    from hrl_core.lab.grids import Cell
    from hrl_core.run.config import FinetuneConfig

    cfg = FinetuneConfig(algo=algo, env=dataset, remove_top_k=k, bonus_type=bonus, seed=seed,
                         save_dir=str(save_dir), **settings)  # fmt: skip
    run = Path(save_dir) / cfg.run_name
    run.mkdir(parents=True, exist_ok=True)
    n = len(returns)
    steps = [i * step for i in range(n)]
    config = {
        "run_name": cfg.run_name,
        "settings": cfg.to_dict(),
        "identity": {
            "settings": cfg.identity_settings(),
            "settings_hash": cfg.settings_hash,
            "inputs": {"dataset_sha256": "d" * 64, "phase1_checkpoint_sha256": "c" * 64},
        },  # fmt: skip
        "provenance": {
            "dataset": {"kind": "not D4RL: test fixture", "path": "/data/fixture.hdf5", "sha256": "d" * 64},
            "phase1_checkpoint": {"path": "/phase1/fixture.pt", "sha256": "c" * 64, "gradient_steps": 500_000},
        },
    }
    metrics = {
        "status": status,
        "step": steps,
        "normalized_return": list(map(float, returns)),
        "ensemble_disagreement": [None] + [10.0 / (i + 1) for i in range(1, n)],
        "bonus_mean": [None] + [(10.0 / (i + 1) if bonus == "ensemble" else 0.0) for i in range(1, n)],
        "reward_mean": [None] + [3.0] * (n - 1),
        "critic_loss_avg": [None] + [100.0 / i for i in range(1, n)],
        "q_member_avg": [None] + [[50.0, 50.0, 50.0 - 20.0 / i] for i in range(1, n)],
    }
    (run / "config.json").write_text(json.dumps(config))
    (run / "metrics.json").write_text(json.dumps(metrics))
    return Cell(cfg, arm=arm)
