"""Reading D4RL v2 HDF5 files with h5py (no ``d4rl`` package, no mujoco-py).

A D4RL v2 file holds flat arrays ``observations, actions, rewards, terminals,
timeouts`` (and usually ``next_observations``), plus groups such as ``infos/...`` and
``metadata/...`` that we ignore. Files are looked up under D4RL's own names in
``$D4RL_DATASET_DIR`` (default ``~/.d4rl/datasets``), the folder the ``d4rl`` package
uses, so an existing cache is found without copying.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from hrl_core.errors import HrlError
from hrl_core.rl.envs import dataset_spec

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")


@dataclass
class Transitions:
    """A flat set of transitions as float32/bool numpy arrays (row i = one step)."""

    observations: np.ndarray  # [T, obs_dim] float32
    actions: np.ndarray  # [T, act_dim] float32
    rewards: np.ndarray  # [T] float32
    next_observations: np.ndarray  # [T, obs_dim] float32
    terminals: np.ndarray  # [T] bool, true environment termination (no bootstrap)
    timeouts: np.ndarray  # [T] bool, time-limit truncation (trajectory ends, bootstrap)
    provenance: dict = field(default_factory=dict)  # where the data came from

    def __len__(self) -> int:
        return len(self.rewards)

    def subset(self, mask: np.ndarray) -> Transitions:
        """Rows where ``mask`` is true (provenance is carried over)."""
        return Transitions(
            observations=self.observations[mask],
            actions=self.actions[mask],
            rewards=self.rewards[mask],
            next_observations=self.next_observations[mask],
            terminals=self.terminals[mask],
            timeouts=self.timeouts[mask],
            provenance=dict(self.provenance),
        )


def dataset_dir() -> Path:
    """The folder holding D4RL HDF5 files: ``$D4RL_DATASET_DIR`` or ``~/.d4rl/datasets``."""
    return Path(os.environ.get("D4RL_DATASET_DIR", "~/.d4rl/datasets")).expanduser()


def sha256_of(path: Path) -> str:
    """sha256 of a file, computed once per process for an unchanged file (a run asks
    for its inputs' digests for its identity and again for their provenance)."""
    st = Path(path).stat()
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _sha256(path: str, _size: int, _mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def _check_hdf5(path: Path) -> None:
    """Raise HrlError unless ``path`` opens as HDF5 and has every required key."""
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in REQUIRED_KEYS if k not in f]
    except OSError as exc:
        raise HrlError(
            f"{path} is not a readable HDF5 file ({exc.__class__.__name__}); delete it and download it again"
        ) from None
    if missing:
        raise HrlError(
            f"{path} lacks the D4RL keys {missing}; it is not a D4RL v2 file "
            "(delete it or point D4RL_DATASET_DIR elsewhere)"
        )


def download(url: str, dest: Path, timeout: float = 30.0) -> None:
    """Download ``url`` into ``dest`` atomically: temporary file, check, rename."""
    from tqdm.auto import tqdm

    created = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name) as bar:
                while block := resp.read(1 << 20):
                    out.write(block)
                    bar.update(len(block))
        _check_hdf5(tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
        for folder in created:  # a failed download leaves no empty folders behind
            if folder.exists() and not any(folder.iterdir()):
                folder.rmdir()


def locate(dataset: str, allow_download: bool = True) -> Path:
    """Path of a dataset's HDF5 file, downloading it from D4RL when absent."""
    spec = dataset_spec(dataset)
    folder = dataset_dir()
    path = folder / spec.file_name
    if path.exists():
        return path
    if allow_download:
        print(f"{spec.file_name} not in {folder}; downloading {spec.url}", file=sys.stderr)
        try:
            download(spec.url, path)
            return path
        except HrlError:
            raise
        except Exception as exc:  # no network, HTTP error, disk full, ...
            reason = f"download failed: {exc.__class__.__name__}"
    else:
        reason = "downloads disabled"
    raise HrlError(
        f"dataset file {spec.file_name} not found in {folder} ({reason}); "
        "put it there or set D4RL_DATASET_DIR to the folder that holds it"
    )


def _derive_next_observations(obs, terminals, timeouts):
    """``next_observations`` for files without it, without crossing trajectory ends.

    Row i's successor is row i+1 unless row i ends a trajectory. At a timeout (or the
    file's last row) the successor is unknown, so the row is dropped; at a terminal the
    successor is never bootstrapped from, so row i's own observation is a safe filler.
    """
    n = len(obs)
    next_obs = np.empty_like(obs)
    next_obs[:-1] = obs[1:]
    next_obs[-1] = obs[-1]
    next_obs[terminals] = obs[terminals]
    keep = ~timeouts.copy()
    if not terminals[n - 1]:
        keep[n - 1] = False  # last row of a cut-off trajectory: successor unknown
    return next_obs, keep


def read_hdf5(path: str | Path) -> Transitions:
    """Read a D4RL v2 HDF5 file (flags as bool or float; extra groups ignored)."""
    path = Path(path)
    if not path.exists():
        raise HrlError(f"dataset file {path} does not exist; check the path")
    _check_hdf5(path)
    try:
        with h5py.File(path, "r") as f:
            raw_act = f["actions"][:]
            raw_term, raw_tout = f["terminals"][:], f["timeouts"][:]
            obs = np.asarray(f["observations"][:], dtype=np.float32)
            act = np.asarray(raw_act, dtype=np.float32)
            rew = np.asarray(f["rewards"][:], dtype=np.float32).reshape(-1)
            term = np.asarray(raw_term).reshape(-1).astype(bool)
            tout = np.asarray(raw_tout).reshape(-1).astype(bool)
            nxt = np.asarray(f["next_observations"][:], dtype=np.float32) if "next_observations" in f else None
            attrs = {k: _plain(v) for k, v in f.attrs.items()}
            groups = sorted(k for k in f if isinstance(f[k], h5py.Group))
    except OSError as exc:
        raise HrlError(f"{path} is truncated or corrupt ({exc}); delete it and download it again") from None
    n = len(rew)
    check_lengths(path, {"observations": obs, "actions": act, "rewards": rew, "terminals": term, "timeouts": tout,
                         "next_observations": nxt})  # fmt: skip
    check_finite_arrays(path, {"observations": obs, "actions": act, "rewards": rew, "next_observations": nxt})
    warnings = plausibility_warnings(path, raw_act, act, {"terminals": raw_term, "timeouts": raw_tout})
    if nxt is None:
        nxt, keep = _derive_next_observations(obs, term, tout)
        derived = True
    else:
        keep, derived = np.ones(n, dtype=bool), False
    data = Transitions(obs, act, rew, nxt, term, tout)
    if not keep.all():
        # Keep the trajectory-end flag of a dropped timeout row on its predecessor so
        # trajectories are still delimited for top-k removal.
        ends = np.flatnonzero(~keep)
        prev = ends[ends > 0] - 1
        data.timeouts[prev] |= ~data.terminals[prev]
        data = data.subset(keep)
    data.provenance = {
        "path": str(path.resolve()),
        "file_size_bytes": path.stat().st_size,
        "sha256": sha256_of(path),
        "hdf5_attrs": attrs,
        "hdf5_groups": groups,
        "n_transitions_in_file": n,
        "next_observations": "derived" if derived else "from file",
        "kind": classify_source(attrs, groups),
    }
    if warnings:
        data.provenance["warnings"] = warnings
    return data


def check_lengths(path, arrays: dict) -> None:
    """Every array has one row per transition, and there is at least one: a zero-length or
    shorter array would otherwise surface as an IndexError deep in training."""
    lengths = {k: len(v) for k, v in arrays.items() if v is not None}
    n = lengths["rewards"]
    if n == 0:
        raise HrlError(f"{path} holds no transitions (its arrays are empty); the file is damaged or was written "
                       "wrong: fix or replace it")  # fmt: skip
    off = {k: m for k, m in lengths.items() if m != n}
    if off:
        what = ", ".join(f"{k} has {m:,}" for k, m in off.items())
        raise HrlError(f"{path}: arrays of different lengths (rewards has {n:,} rows, {what}); the file is damaged "
                       "or was written wrong: fix or replace it")  # fmt: skip
    if arrays["observations"].ndim != 2 or (
        arrays["next_observations"] is not None and arrays["next_observations"].shape != arrays["observations"].shape
    ):
        raise HrlError(f"{path}: observations must be [transitions, size] (and next_observations alike); the file "
                       "was written wrong: fix or replace it")  # fmt: skip


ACTION_BOUND = 1.0 + 1e-4  # D4RL's MuJoCo actions lie in [-1, 1] (float rounding allowed)


def plausibility_warnings(path, raw_actions, actions: np.ndarray, flags: dict) -> list[str]:
    """What a D4RL MuJoCo file should not look like, said once and kept in the run's provenance:
    actions outside [-1, 1] (the environment clips them, the critic learns them as stored),
    integer actions (a quantized or discrete file), flags other than 0/1 (read as true if non-zero)."""
    out = []
    if np.issubdtype(np.asarray(raw_actions).dtype, np.integer):
        out.append(f"{path}: actions are stored as integers ({np.asarray(raw_actions).dtype}), not as continuous "
                   "values in [-1, 1]: this does not look like a D4RL MuJoCo file")  # fmt: skip
    outside = np.abs(actions) > ACTION_BOUND
    if outside.any():
        rows = int(outside.reshape(len(actions), -1).any(axis=1).sum())
        out.append(f"{path}: {rows:,} row(s) have actions outside [-1, 1] (min {actions.min():.3g}, max "
                   f"{actions.max():.3g}); the environment clips such actions, the critic learns them as "
                   "stored")  # fmt: skip
    for key, raw in flags.items():
        raw = np.asarray(raw).reshape(-1)
        odd = ~np.isin(raw.astype(np.float64), (0.0, 1.0))
        if odd.any():
            example = raw[np.flatnonzero(odd)[0]]
            out.append(f"{path}: {key} holds values other than 0 and 1 ({example!r} in {int(odd.sum()):,} row(s)); "
                       "they are read as true where non-zero")  # fmt: skip
    return out


def check_finite_arrays(path, arrays: dict) -> None:
    """Refuse offline data with a NaN or inf anywhere, naming the file, the array and the first
    bad row: one inf reward would otherwise count as the highest return (and change which
    trajectories top-k removal keeps), one NaN would end training as if it had diverged."""
    for key, arr in arrays.items():
        if arr is None:
            continue
        bad = ~np.isfinite(arr)
        if bad.any():
            rows = np.flatnonzero(bad.reshape(len(arr), -1).any(axis=1))
            value = arr[rows[0]] if arr.ndim == 1 else arr[rows[0]][~np.isfinite(arr[rows[0]])][0]
            raise HrlError(f"{path}: {key} has non-finite values ({value}) in {len(rows)} row(s), the first at row "
                           f"{rows[0]}; the file is damaged or was written wrong: fix or replace it")  # fmt: skip


def classify_source(attrs: dict, groups: list[str]) -> str:
    """An honest label for where a D4RL-layout file came from.

    Real D4RL v2 files carry a ``metadata`` group and no root attributes; files
    made elsewhere (such as the stand-ins under ``../shared/d4rl``) describe
    themselves in root attributes. We never call a file real D4RL on its name alone.
    """
    if "generator" in attrs:
        return f"generated: made by {attrs['generator']} (not D4RL; see hdf5_attrs)"
    if "behavior_policy" in attrs or "note" in attrs:
        return "not D4RL: D4RL-layout file describing its own origin (see hdf5_attrs)"
    if "metadata" in groups:
        return "D4RL v2 layout with D4RL metadata (looks like the official file)"
    return "D4RL-layout file of unverified origin"


def _plain(value):
    """HDF5 attribute -> JSON-friendly Python value."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def load_dataset(dataset: str, allow_download: bool = True) -> Transitions:
    """Locate (or download) and read the named D4RL dataset."""
    data = read_hdf5(locate(dataset, allow_download=allow_download))
    data.provenance["dataset"] = dataset
    return data
