"""Where offline data comes from: ``--dataset_source auto | d4rl | generated | minari``.

- ``d4rl``: the D4RL HDF5 file under ``$D4RL_DATASET_DIR`` (downloaded if absent).
- ``generated``: a D4RL-layout file made here by ``hrl data generate`` (no network),
  under ``$D4RL_DATASET_DIR/generated/``; its provenance says ``generated``.
- ``minari``: Minari's ``mujoco/<env>/medium-v0`` (collected in the -v5 environments;
  runs then evaluate there, with the dataset's reference scores).
- ``auto``: the local D4RL file, else a download, else a generated file, else an
  error that spells out the next steps.

The file is located once (:func:`locate_source`, which also gives its sha256 for the
run's identity) and that :class:`DatasetFile` is passed along to the reader.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from hrl_core.data.corruption import add_reward_noise, remove_top_k
from hrl_core.data.d4rl import Transitions, dataset_dir, locate, read_hdf5, sha256_of
from hrl_core.errors import HrlError
from hrl_core.rl.envs import dataset_spec

SOURCES = ("auto", "d4rl", "generated", "minari")


@dataclass(frozen=True)
class DatasetFile:
    """One dataset's file, found: what a run reads and records."""

    dataset: str  # D4RL dataset id, e.g. "hopper-medium-v2"
    path: Path  # the HDF5 file read
    source: str  # d4rl-file | generated | minari
    note: str = ""  # why this file was chosen when it is not the one asked for first

    @property
    def sha256(self) -> str:
        return sha256_of(self.path)


def generated_path(dataset: str) -> Path:
    return dataset_dir() / "generated" / dataset_spec(dataset).file_name


def locate_source(dataset: str, source: str = "auto", allow_download: bool = True) -> DatasetFile:
    """The file a run on ``dataset`` would read from ``source``, or a one-line error."""
    if source not in SOURCES:
        raise HrlError(f"dataset_source={source!r}: use one of {', '.join(SOURCES)}")
    spec = dataset_spec(dataset)
    gen = generated_path(dataset)
    if source == "minari":
        from hrl_core.data.minari_source import MINARI_IDS, minari_file

        path = minari_file(dataset)
        if not path.exists():
            raise HrlError(
                f"Minari dataset {MINARI_IDS[dataset][0]} not found at {path}; download it with "
                f"`minari download {MINARI_IDS[dataset][0]}` or set MINARI_DATASETS_PATH"
            )
        return DatasetFile(dataset, path, "minari")
    if source == "generated":
        if not gen.exists():
            raise HrlError(f"no generated dataset at {gen}; run `hrl data generate {dataset}` first")
        return DatasetFile(dataset, gen, "generated")
    if source == "d4rl":
        return DatasetFile(dataset, locate(dataset, allow_download=allow_download), "d4rl-file")
    local = dataset_dir() / spec.file_name
    if local.exists():
        return DatasetFile(dataset, local, "d4rl-file")
    try:
        return DatasetFile(dataset, locate(dataset, allow_download=allow_download), "d4rl-file")
    except HrlError as exc:
        if not gen.exists():
            raise HrlError(
                f"{exc}; or make a stand-in without network: `hrl data generate {dataset}` "
                "(then runs use it and say 'generated')"
            ) from None
        note = f"{spec.file_name} not found in {dataset_dir()} ({str(exc).split('(')[-1].split(')')[0]}): using {gen}"
        return DatasetFile(dataset, gen, "generated", note)


def read_source(file: DatasetFile) -> Transitions:
    """The uncorrupted transitions of a located file, with their provenance."""
    if file.note:
        print(f"hrl: note: {file.note}", file=sys.stderr)
    if file.source == "minari":
        from hrl_core.data.minari_source import read_minari

        data = read_minari(file.dataset)
        data.provenance["source"] = "minari"
    else:
        data = read_hdf5(file.path)
        data.provenance["source"] = "generated" if data.provenance["kind"].startswith("generated") else "d4rl-file"
    data.provenance["dataset"] = file.dataset
    if file.note:
        data.provenance["source_note"] = file.note
    check_dimensions(file, data)
    return data


def check_dimensions(file: DatasetFile, data: Transitions) -> None:
    """The data's observation and action sizes must be the environment's (a mismatch would
    only show up as a matmul error after the first evaluation)."""
    spec = dataset_spec(file.dataset)
    got = (data.observations.shape[1], data.actions.reshape(len(data.actions), -1).shape[1])
    if got != (spec.obs_dim, spec.act_dim):
        raise HrlError(f"{file.path} has observations of size {got[0]} and actions of size {got[1]}, but "
                       f"{file.dataset} ({spec.env_id}) has {spec.obs_dim} and {spec.act_dim}; use that dataset's "
                       "file")  # fmt: skip


def load_offline_data(file: DatasetFile, k: float, noise_std: float, noise_seed: int,
                      batch_size: int = 1) -> Transitions:  # fmt: skip
    """The offline data exactly as Phase I trained on it (same corruption), checked to leave at
    least one batch (``batch_size`` transitions) after top-k removal; the data's warnings printed."""
    data = remove_top_k(read_source(file), k)
    check_left(file, data, k, batch_size)
    if noise_std > 0:
        data = add_reward_noise(data, noise_std, noise_seed)
    for warning in data.provenance.get("warnings", []):
        print(f"hrl: warning: {warning}", file=sys.stderr)
    return data


def check_left(file: DatasetFile, data: Transitions, k: float, batch_size: int) -> None:
    """After top-k removal: transitions and trajectories left, at least one batch; a file of one
    trajectory (no terminal or timeout flag anywhere) is said (a warning recorded in its provenance)."""
    c = data.provenance.get("corruption", {})
    before, removed = c.get("trajectories_before", 0), c.get("trajectories_removed", 0)
    left, rows = before - removed, len(data)
    where = file.path or file.dataset
    if rows < max(1, batch_size):
        raise HrlError(f"{where} at remove_top_k={k:g} keeps {left:,} of {before:,} trajectories ({rows:,} "
                       f"transitions), fewer than one batch of {batch_size:,}: use a smaller remove_top_k (or a "
                       "file with more trajectories)")  # fmt: skip
    if before == 1:
        warning = (f"{where} holds one trajectory of {c.get('transitions_before', rows):,} transitions (no terminal "
                   "or timeout flag ends an episode anywhere): top-k removal can only keep or remove all of it, "
                   "and returns per trajectory mean nothing")  # fmt: skip
        data.provenance.setdefault("warnings", []).append(warning)
