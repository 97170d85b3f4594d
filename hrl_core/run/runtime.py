"""What every command shares: device, threads, seeding, the divergence guard, versions.

Phase I (``pretrain``), Phase II (``finetune``), ``hrl data generate`` and ``hrl bench``
import these from here, so none of them depends on another's training loop.
"""

from __future__ import annotations

import os
import platform
import random
import subprocess
import sys
import tempfile
import time
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


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of the whole machine from /proc/stat (None off Linux)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    values = [float(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
    return sum(values) - idle, sum(values)


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _others_busy(start, own0, t0, end, own1, t1) -> float | None:
    """Cores kept busy by other processes between two readings (None: unknown)."""
    if start is None or end is None or t1 <= t0:
        return None
    per_core = (end[1] - start[1]) / (os.cpu_count() or 1)  # jiffies per core in the interval
    if per_core <= 0:
        return None
    return max(0.0, (end[0] - start[0]) / per_core - (own1 - own0) / (t1 - t0))


def busy_cores_of_others(interval: float = 0.25) -> float | None:
    """Cores kept busy by other processes over ``interval`` seconds (None: unknown)."""
    start, own0, t0 = _cpu_times(), _own_cpu_seconds(), time.monotonic()
    time.sleep(interval)
    return _others_busy(start, own0, t0, _cpu_times(), _own_cpu_seconds(), time.monotonic())


def idle_cores(others_busy: float, cores: int) -> int:
    """Threads to use beside ``others_busy`` busy cores (a core 70% idle counts as free), >= 1."""
    return max(1, min(cores, int(cores - others_busy + 0.3)))


def default_threads(cpu_count: int | None = None, others_busy: float | None = None) -> int:
    """Torch threads for a run that was not told how many: the cores other processes leave idle.

    Torch's default (one thread per core) makes its OpenMP threads wait for each other by
    spinning; beside another busy 2-thread torch process on 2 cores an IQL update took
    920 ms instead of 7.4 (``hrl bench``, docs/performance.md), while one thread took
    11.8 ms. So: ``$OMP_NUM_THREADS`` if set, else the cores not busy with other processes
    now (measured over 0.25 s from /proc/stat; the load average where that is missing).
    """
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    cores = cpu_count or os.cpu_count() or 1
    if others_busy is None:
        others_busy = busy_cores_of_others()
    if others_busy is None:
        try:
            others_busy = os.getloadavg()[0]
        except OSError:
            others_busy = 0.0
    return idle_cores(others_busy, cores)


def set_threads(threads: int | None) -> int:
    """Apply a thread count (None: :func:`default_threads`) and return it."""
    n = threads or default_threads()
    torch.set_num_threads(n)
    return n


class ThreadGovernor:
    """The run's torch thread count: fixed when given, otherwise following the machine.

    Without ``--threads`` (or ``$OMP_NUM_THREADS``) a run starts with the idle cores
    (:func:`default_threads`) and, every ``every`` seconds, shrinks to the cores other
    processes leave idle, or grows back when they finish; so a run beside another busy
    process takes its share instead of spinning against it. The thread count changes
    the numbers only by floating-point rounding (on some CPUs the kernels' summation order
    follows it; tests); a run that must reproduce to the bit is given a fixed count.
    """

    def __init__(self, threads: int | None, every: float = 10.0):
        self.fixed = threads is not None or os.environ.get("OMP_NUM_THREADS", "").isdigit()
        self.threads = set_threads(threads)
        self.every = every
        self.changes = 0
        self._mark = (_cpu_times(), _own_cpu_seconds(), time.monotonic())

    @property
    def policy(self) -> str:
        return "fixed" if self.fixed else "adaptive (the cores other processes leave idle, checked every 10 s)"

    def maybe_adjust(self) -> int:
        """Cheap to call every step; measures and adjusts at most every ``every`` seconds."""
        if self.fixed or time.monotonic() - self._mark[2] < self.every:
            return self.threads
        mark = (_cpu_times(), _own_cpu_seconds(), time.monotonic())
        others = _others_busy(*self._mark, *mark)
        self._mark = mark
        if others is not None:
            wanted = idle_cores(others, os.cpu_count() or 1)
            if wanted != self.threads:
                self.threads, self.changes = wanted, self.changes + 1
                torch.set_num_threads(wanted)
        return self.threads


# --------------------------------------------------------------------------------------
# Reproducibility and guards
# --------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def available_bytes(device: torch.device) -> int | None:
    """Memory a run can still allocate on ``device`` (None: unknown). CPU: MemAvailable of
    /proc/meminfo; CUDA: the device's free memory."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_memory(needs: list[tuple[str, int]], device: torch.device, what: str = "") -> None:
    """Refuse settings whose preallocated memory (``needs``: (description, bytes)) exceeds what the
    device has available, with the numbers in the message, before anything is written."""
    total = sum(b for _, b in needs)
    have = available_bytes(device)
    if have is None or total <= have:
        return
    detail = "; ".join(f"{d}: {b / 1e9:,.1f} GB" for d, b in needs)
    raise HrlError(f"{what}needs {total / 1e9:,.1f} GB of preallocated memory ({detail}) but {device} has "
                   f"{have / 1e9:,.1f} GB available; lower online_steps (the replay buffer holds every online "
                   "step) or run fewer cells at once")  # fmt: skip


def check_finite(info: dict, step: int, bonus: bool = True) -> None:
    """Divergence guard: one host sync per step for all scalars of the update. ``bonus``: whether
    the run adds a bonus (the advice names bonus_coeff only then)."""
    values = torch.cat([v.reshape(-1) for v in info.values()])
    if not bool(torch.isfinite(values).all()):
        bad = [k for k, v in info.items() if not bool(torch.isfinite(v).all())]
        raise DivergenceError(step, ", ".join(bad), bonus)


def check_writable(folder: Path, create: bool = True) -> None:
    """A folder that runs can be written into (``create=False``: checked without creating anything:
    it, or the nearest folder above it that exists, must be a writable folder)."""
    folder = Path(folder)
    if not create:
        probe = folder
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            raise HrlError(f"cannot write to save_dir {folder} ({probe} is a file, not a folder); pass a writable "
                           "--save_dir")  # fmt: skip
        if not os.access(probe, os.W_OK | os.X_OK):
            raise HrlError(f"cannot write to save_dir {folder} ({probe} is not writable); pass a writable --save_dir")
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise HrlError(
            f"cannot write to save_dir {folder} ({exc.strerror or exc}); pass a writable --save_dir"
        ) from None


def versions_changed(before: dict, now: dict) -> dict[str, list]:
    """The entries of two ``versions`` records that differ: key -> [before, now]. Two parts
    of one run, or the two sides of a comparison, ran the same computation only when this is
    empty (up to MuJoCo's CPU-dependent rounding, which ``platform`` names)."""
    return {k: [before.get(k), now.get(k)] for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)}


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


def require_extra(modules: tuple[str, ...], extra: str, what: str) -> None:
    """One error line with the install command when an optional extra is missing (checked
    before any work starts, so nothing is half done)."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise HrlError(f"{what} needs {', '.join(missing)} (the [{extra}] extra): pip install 'hrl[{extra}]'")


def progress_bar(total: int, desc: str, enabled: bool = True, initial: int = 0):
    """The training loops' progress bar: refreshed every second on a terminal, every 30 s in a
    log file or a notebook's captured output (so executed notebooks stay readable)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", disable=not enabled,
                mininterval=1.0 if sys.stderr.isatty() else 30.0)  # fmt: skip
