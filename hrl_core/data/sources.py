"""Where offline data comes from: ``--dataset_source auto | d4rl | generated | minari``.

- ``d4rl``: the D4RL HDF5 file under ``$D4RL_DATASET_DIR`` (downloaded if absent).
- ``generated``: a D4RL-layout file made here by ``hrl data generate`` (no network),
  under ``$D4RL_DATASET_DIR/generated/``; its provenance says ``generated``.
- ``minari``: Minari's ``mujoco/<env>/medium-v0`` (collected in the -v5 environments;
  runs then evaluate there, with the dataset's reference scores).
- ``auto``: the local D4RL file, else a download, else a generated file, else an
  error that spells out the next steps.
"""

from __future__ import annotations

from pathlib import Path

from hrl_core.data.corruption import add_reward_noise, remove_top_k
from hrl_core.data.d4rl import Transitions, dataset_dir, load_dataset, read_hdf5
from hrl_core.envs import dataset_spec
from hrl_core.errors import HrlError

SOURCES = ("auto", "d4rl", "generated", "minari")


def generated_path(dataset: str) -> Path:
    return dataset_dir() / "generated" / dataset_spec(dataset).file_name


def load_source(dataset: str, source: str = "auto") -> Transitions:
    """The uncorrupted offline dataset from the chosen source."""
    if source not in SOURCES:
        raise HrlError(f"dataset_source={source!r}: use one of {', '.join(SOURCES)}")
    spec = dataset_spec(dataset)
    gen = generated_path(dataset)
    if source == "minari":
        from hrl_core.data.minari_source import read_minari

        data = read_minari(dataset)
        data.provenance["dataset"] = dataset
        data.provenance["source"] = "minari"
        return data
    if source == "generated":
        if not gen.exists():
            raise HrlError(f"no generated dataset at {gen}; run `hrl data generate {dataset}` first")
        data = read_hdf5(gen)
    elif source == "d4rl":
        data = load_dataset(dataset)
    else:
        local = dataset_dir() / spec.file_name
        if local.exists():
            data = load_dataset(dataset)
        else:
            try:
                data = load_dataset(dataset)  # tries the download
            except HrlError as exc:
                if not gen.exists():
                    raise HrlError(
                        f"{exc}; or make a stand-in without network: `hrl data generate {dataset}` "
                        "(then runs use it and say 'generated')"
                    ) from None
                data = read_hdf5(gen)
    data.provenance["dataset"] = dataset
    data.provenance["source"] = "generated" if data.provenance["kind"].startswith("generated") else "d4rl-file"
    return data


def load_offline_data(dataset: str, k: float, noise_std: float, noise_seed: int, source: str = "auto") -> Transitions:
    """The offline data exactly as Phase I trained on it (same corruption)."""
    data = remove_top_k(load_source(dataset, source), k)
    if noise_std > 0:
        data = add_reward_noise(data, noise_std, noise_seed)
    return data
