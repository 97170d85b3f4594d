"""What every command shares: device, threads, seeding, the divergence guard, versions.

Phase I (``pretrain``), Phase II (``finetune``), ``hrl data generate`` and ``hrl bench``
import these from here, so none of them depends on another's training loop.
"""

from __future__ import annotations

import os
import platform
import random
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from hrl_core.errors import DivergenceError, HrlError


# --------------------------------------------------------------------------------------
# Device and threads (the CUDA choices live here, in small functions CPU tests reach)
# --------------------------------------------------------------------------------------
def resolve_device(name: str, cuda_count: int | None = None) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> a torch device, or a one-line error.

    ``cuda_count`` replaces ``torch.cuda.device_count()`` (tests on machines without a GPU).
    """
    count = torch.cuda.device_count() if cuda_count is None else cuda_count
    if name == "auto":
        return torch.device("cuda" if count > 0 else "cpu")
    if name.startswith("cuda"):
        if count == 0:
            raise HrlError(f"device={name} requested but torch sees no CUDA GPU; use --device cpu or auto")
        index = int(name[5:]) if name.startswith("cuda:") else 0
        if index >= count:
            raise HrlError(f"device={name} requested but torch sees {count} CUDA GPU(s) (cuda:0..cuda:{count - 1})")
    return torch.device(name)


def default_threads(cpu_count: int | None = None, load: float | None = None) -> int:
    """Torch threads for a run that was not told how many.

    Torch's default (one per core) spins its OpenMP threads on every core; beside another
    busy process on a 2-core machine that made an update 100x slower (929 vs 8.8 ms,
    ``hrl bench``), because the threads wait for each other while the other process holds a
    core. So: the cores that are idle now (1-minute load average subtracted), at least one.
    """
    cores = cpu_count or os.cpu_count() or 1
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:
            load = 0.0
    return max(1, min(cores, round(cores - load)))


def set_threads(threads: int | None) -> int:
    """Apply a thread count (None: :func:`default_threads`) and return it.

    OpenMP's passive wait policy is requested too (it must be set before the first
    parallel region, so only the environment of a fresh process can honour it):
    waiting threads sleep instead of spinning on a core another process needs.
    """
    n = threads or default_threads()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    torch.set_num_threads(n)
    return n


# --------------------------------------------------------------------------------------
# Reproducibility and guards
# --------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_finite(info: dict, step: int) -> None:
    """Divergence guard: one host sync per step for all scalars of the update."""
    values = torch.cat([v.reshape(-1) for v in info.values()])
    if not bool(torch.isfinite(values).all()):
        bad = [k for k, v in info.items() if not bool(torch.isfinite(v).all())]
        raise DivergenceError(step, ", ".join(bad))


def check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise HrlError(
            f"cannot write to save_dir {folder} ({exc.strerror or exc}); pass a writable --save_dir"
        ) from None


def versions() -> dict:
    """Package versions and the git commit, for a run's config.json."""
    import gymnasium
    import h5py
    import mujoco

    import hrl_core

    out = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hrl_core": hrl_core.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "gymnasium": gymnasium.__version__,
        "mujoco": mujoco.__version__,
        "h5py": h5py.__version__,
    }
    try:
        out["git_commit"] = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                cwd=Path(__file__).parent,
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        out["git_commit"] = None
    return out
