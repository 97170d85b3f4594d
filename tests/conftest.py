"""Shared fixtures: the real data under ../shared (skipped with a reason when absent)."""

from __future__ import annotations

import os
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
