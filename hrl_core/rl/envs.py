"""Environments and D4RL score normalization.

The D4RL v2 MuJoCo datasets were collected in the mujoco-py ``-v3`` environments;
Gymnasium's ``-v4`` environments use the official ``mujoco`` bindings with the same
model files, observation layout and reward, so they stand in for them here.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import gymnasium as gym
import numpy as np


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the project knows about one supported D4RL dataset."""

    name: str  # D4RL dataset id, e.g. "hopper-medium-v2"
    file_name: str  # D4RL's own HDF5 file name inside the dataset folder
    env_id: str  # Gymnasium environment used for online steps and evaluation
    obs_dim: int  # observation size of the environment
    act_dim: int  # action size of the environment
    ref_min_score: float  # D4RL random-policy return (normalized score 0)
    ref_max_score: float  # D4RL expert return (normalized score 100)
    url: str  # D4RL's official download address


_D4RL_URL = "http://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco_v2/{}"

DATASETS: dict[str, DatasetSpec] = {
    "halfcheetah-medium-v2": DatasetSpec(
        name="halfcheetah-medium-v2",
        file_name="halfcheetah_medium-v2.hdf5",
        env_id="HalfCheetah-v4",
        obs_dim=17,
        act_dim=6,
        ref_min_score=-280.178953,
        ref_max_score=12135.0,
        url=_D4RL_URL.format("halfcheetah_medium-v2.hdf5"),
    ),
    "hopper-medium-v2": DatasetSpec(
        name="hopper-medium-v2",
        file_name="hopper_medium-v2.hdf5",
        env_id="Hopper-v4",
        obs_dim=11,
        act_dim=3,
        ref_min_score=-20.272305,
        ref_max_score=3234.3,
        url=_D4RL_URL.format("hopper_medium-v2.hdf5"),
    ),
}


def dataset_spec(name: str) -> DatasetSpec:
    """Look up a supported dataset, with an error that lists the valid names."""
    from hrl_core.errors import HrlError

    try:
        return DATASETS[name]
    except KeyError:
        raise HrlError(f"unknown dataset {name!r}: use one of {', '.join(sorted(DATASETS))}") from None


def normalized_score(dataset: str, raw_return: float | np.ndarray, ref_scores=None) -> float | np.ndarray:
    """D4RL normalized return: 100 * (R - random) / (expert - random).

    ``ref_scores`` (random, expert) replaces D4RL's for data that brings its own
    (Minari datasets)."""
    spec = dataset_spec(dataset)
    lo, hi = ref_scores if ref_scores else (spec.ref_min_score, spec.ref_max_score)
    return 100.0 * (raw_return - lo) / (hi - lo)


def make_env(dataset: str, env_id: str | None = None, **env_kwargs) -> gym.Env:
    """The Gymnasium environment matching a dataset (1,000-step time limit as in D4RL);
    ``env_id`` overrides it (Minari's datasets were collected in the -v5 versions);
    ``env_kwargs`` go to the environment's constructor (``hrl bench`` uses them)."""
    import mujoco

    spec = dataset_spec(dataset)
    # v4 is deliberately chosen (it matches the D4RL v2 dynamics). Its model file
    # makes MuJoCo's compiler print a deprecation notice ('settotalmass') and
    # Gymnasium warn "upgrade to v5" on every creation; both are silenced only
    # while the model is built, so simulation warnings still reach the user.
    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(lambda _msg: None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return gym.make(env_id or spec.env_id, **env_kwargs)
    finally:
        mujoco.set_mju_user_warning(previous)


def _time_limit(env: gym.Env):
    """The TimeLimit wrapper inside ``env`` (holds the episode step counter)."""
    w = env
    while w is not None:
        if isinstance(w, gym.wrappers.TimeLimit):
            return w
        w = getattr(w, "env", None)
    return None


def get_env_state(env: gym.Env) -> dict:
    """Everything needed to continue an episode bit for bit after a restart.

    ``mjSTATE_INTEGRATION`` includes the constraint solver's warm start, without
    which a restored simulation drifts from the original in the last digits.
    """
    import mujoco
    import torch

    base = env.unwrapped
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    state = np.empty(mujoco.mj_stateSize(base.model, spec))
    mujoco.mj_getState(base.model, base.data, state, spec)
    tl = _time_limit(env)
    return {
        "mj_state": torch.from_numpy(state),
        "elapsed_steps": int(tl._elapsed_steps) if tl is not None and tl._elapsed_steps is not None else 0,
        "np_random": base.np_random.bit_generator.state,
    }


def set_env_state(env: gym.Env, state: dict) -> None:
    """Inverse of :func:`get_env_state` (call ``env.reset()`` once before)."""
    import mujoco

    base = env.unwrapped
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    # No mj_forward here: it would overwrite the restored warm start. Observations
    # are read from qpos/qvel, which mj_setState already restored.
    mujoco.mj_setState(base.model, base.data, state["mj_state"].numpy().astype(np.float64), spec)
    tl = _time_limit(env)
    if tl is not None:
        tl._elapsed_steps = state["elapsed_steps"]
    base.np_random.bit_generator.state = state["np_random"]
