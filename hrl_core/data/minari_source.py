"""Reading Minari's MuJoCo "medium" datasets from their on-disk format (optional source).

Minari keeps datasets under ``$MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``)
as ``<dataset id>/data/main_data.hdf5``: one group ``episode_<i>`` per episode with
``observations`` [T+1, o] (the final observation included), ``actions`` [T, a],
``rewards``, ``terminations`` and ``truncations`` [T]. Metadata (environment spec,
reference scores) sits in the file's attributes or in a ``metadata.json`` beside it.
Minari's MuJoCo datasets were collected in the ``-v5`` environments, so runs on them
evaluate in ``-v5`` with the dataset's own reference scores. Reading needs only h5py;
the ``minari`` package (``pip install minari``) is needed only to download datasets.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from hrl_core.data.d4rl import Transitions, _plain, check_finite_arrays, sha256_of
from hrl_core.errors import HrlError

MINARI_IDS = {
    "halfcheetah-medium-v2": ("mujoco/halfcheetah/medium-v0", "HalfCheetah-v5"),
    "hopper-medium-v2": ("mujoco/hopper/medium-v0", "Hopper-v5"),
}


def minari_root() -> Path:
    return Path(os.environ.get("MINARI_DATASETS_PATH", "~/.minari/datasets")).expanduser()


def minari_file(dataset: str) -> Path:
    return minari_root() / MINARI_IDS[dataset][0] / "data" / "main_data.hdf5"


def _metadata(path: Path) -> dict:
    meta: dict = {}
    with h5py.File(path, "r") as f:
        meta.update({k: _plain(v) for k, v in f.attrs.items()})
    for candidate in (path.parent / "metadata.json", path.parent.parent / "metadata.json"):
        if candidate.exists():
            meta.update(json.loads(candidate.read_text()))
    return meta


def read_minari(dataset: str) -> Transitions:
    """The Minari counterpart of a D4RL dataset, flattened to transitions."""
    if dataset not in MINARI_IDS:
        raise HrlError(f"no Minari counterpart for {dataset!r}; use one of {', '.join(MINARI_IDS)}")
    path = minari_file(dataset)
    if not path.exists():
        raise HrlError(
            f"Minari dataset {MINARI_IDS[dataset][0]} not found at {path}; download it with "
            f"`pip install minari && minari download {MINARI_IDS[dataset][0]}` or set MINARI_DATASETS_PATH"
        )
    parts: dict[str, list] = {k: [] for k in ("obs", "act", "rew", "next", "term", "trunc")}
    try:
        with h5py.File(path, "r") as f:
            episodes = sorted((k for k in f if k.startswith("episode_")), key=lambda k: int(k.split("_")[1]))
            for name in episodes:
                ep = f[name]
                obs = np.asarray(ep["observations"][:], np.float32)  # [T+1, o]
                parts["obs"].append(obs[:-1])
                parts["next"].append(obs[1:])
                parts["act"].append(np.asarray(ep["actions"][:], np.float32))
                parts["rew"].append(np.asarray(ep["rewards"][:], np.float32).reshape(-1))
                term = np.asarray(ep["terminations"][:]).astype(bool).reshape(-1)
                trunc = np.asarray(ep["truncations"][:]).astype(bool).reshape(-1)
                trunc[-1] |= not term[-1]  # every episode ends a trajectory
                parts["term"].append(term)
                parts["trunc"].append(trunc)
    except (OSError, KeyError) as exc:
        raise HrlError(f"{path} is not a readable Minari dataset ({exc.__class__.__name__}: {exc})") from None
    if not episodes:
        raise HrlError(f"{path} holds no episodes; download the dataset again")
    meta = _metadata(path)
    env_spec = meta.get("env_spec")
    env_id = MINARI_IDS[dataset][1]
    if isinstance(env_spec, str):
        try:
            env_id = json.loads(env_spec).get("id", env_id)
        except json.JSONDecodeError:
            pass
    data = Transitions(
        observations=np.concatenate(parts["obs"]),
        actions=np.concatenate(parts["act"]),
        rewards=np.concatenate(parts["rew"]),
        next_observations=np.concatenate(parts["next"]),
        terminals=np.concatenate(parts["term"]),
        timeouts=np.concatenate(parts["trunc"]),
    )
    check_finite_arrays(path, {"observations (flattened transitions)": data.observations, "actions": data.actions,
                               "rewards": data.rewards})  # fmt: skip
    refs = (meta.get("ref_min_score"), meta.get("ref_max_score"))
    data.provenance = {
        "path": str(path.resolve()),
        "file_size_bytes": path.stat().st_size,
        "sha256": sha256_of(path),
        "minari_id": MINARI_IDS[dataset][0],
        "minari_metadata": {k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool, type(None)))},
        "kind": f"minari: {MINARI_IDS[dataset][0]} (collected in {env_id}; not the D4RL file)",
        "eval_env_id": env_id,
        "ref_scores": [float(refs[0]), float(refs[1])] if None not in refs else None,
        "n_episodes": len(episodes),
    }
    return data
