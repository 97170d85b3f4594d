"""Finding, loading and checking Phase I checkpoints.

Layout: ``<phase1_dir>/<algo>_<dataset>_k<k>_noise<sigma>_s<seed>/checkpoint.pt``, a
plain dict of tensors (see ../shared/README.md). Always loaded with
``weights_only=True`` (a checkpoint cannot run code) and ``map_location`` set,
because Phase I saved some checkpoints from Apple-silicon (``mps``) tensors that
do not load elsewhere otherwise.
"""

from __future__ import annotations

import json
import pickle
import textwrap
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hrl_core.data.d4rl import sha256_of
from hrl_core.errors import HrlError
from hrl_core.rl.networks import HIDDEN


def format_k(k: float) -> str:
    """60.0 -> '60', 12.5 -> '12.5' (Phase I run names)."""
    return f"{float(k):g}"


def phase1_run_name(algo: str, dataset: str, k: float, noise: float, seed: int) -> str:
    return f"{algo}_{dataset}_k{format_k(k)}_noise{float(noise)}_s{seed}"


@dataclass
class Phase1Checkpoint:
    state: dict  # the checkpoint dict (actor, critic, critic_target, ...)
    provenance: dict = field(default_factory=dict)  # path, sha256, substitution, Phase I config


def find_phase1(phase1_dir, algo, dataset, k, noise, seed: int) -> tuple[Path, int, bool]:
    """(path, seed used, substituted?) -- falls back to seed 0 when ``seed`` is missing."""
    root = Path(phase1_dir)
    wanted = root / phase1_run_name(algo, dataset, k, noise, seed) / "checkpoint.pt"
    if wanted.exists():
        return wanted, seed, False
    fallback = root / phase1_run_name(algo, dataset, k, noise, 0) / "checkpoint.pt"
    if seed != 0 and fallback.exists():
        return fallback, 0, True
    extra = f" (nor the seed-0 fallback {fallback})" if seed != 0 else ""
    raise HrlError(
        f"Phase I checkpoint {wanted} not found{extra}; run Phase I for this cell "
        "or pass --phase1_dir pointing at the folder of Phase I results"
    )


def expected_keys(algo: str) -> tuple[set, set]:
    """(keys that must be present, keys that must be absent) for an algorithm."""
    common = {"actor", "critic", "critic_target"}
    if algo == "cql":
        return common | {"log_alpha"}, {"value"}
    return common | {"value"}, {"log_alpha"}


def validate(state: dict, algo: str, obs_dim: int, act_dim: int, path: Path) -> None:
    """Raise HrlError if the checkpoint is not a Phase I ``algo`` checkpoint for these dims."""
    if not isinstance(state, dict):
        raise HrlError(f"{path} is not a Phase I checkpoint (not a dict); check the path")
    need, forbid = expected_keys(algo)
    other = "iql" if algo == "cql" else "cql"
    if need - state.keys() or forbid & state.keys():
        other_need, other_forbid = expected_keys(other)
        if not (other_need - state.keys()) and not (other_forbid & state.keys()):
            raise HrlError(f"{path} is an {other.upper()} checkpoint but --algo {algo} was given; use --algo {other}")
        raise HrlError(f"{path} lacks {sorted(need - state.keys())}; it is not a Phase I {algo.upper()} checkpoint")
    try:
        ckpt_obs = state["actor"]["trunk.0.weight"].shape[1]
        ckpt_act = state["actor"]["mean_head.weight"].shape[0]
        q_in = state["critic"]["q1.0.weight"].shape[1]
    except (KeyError, AttributeError, IndexError, TypeError):
        raise HrlError(f"{path} does not have Phase I network layers; it is not a Phase I checkpoint") from None
    if (ckpt_obs, ckpt_act) != (obs_dim, act_dim) or q_in != obs_dim + act_dim:
        raise HrlError(
            f"{path} was trained for obs_dim={ckpt_obs}, act_dim={ckpt_act} but this environment has "
            f"obs_dim={obs_dim}, act_dim={act_dim}; use the checkpoint of the matching dataset"
        )
    for group, shapes in expected_shapes(algo, obs_dim, act_dim).items():
        tensors = state[group] if isinstance(state[group], dict) else {"": state[group]}
        for key, want in shapes.items():
            name, t, kind = f"{group}.{key}" if key else group, tensors.get(key), f"Phase I {algo.upper()} checkpoint"
            if not torch.is_tensor(t):
                raise HrlError(f"{path} lacks the tensor {name}; it is not a complete {kind}")
            if tuple(t.shape) != want:
                raise HrlError(f"{path}: {name} has shape {tuple(t.shape)}, expected {want} (Phase I networks are "
                               f"{HIDDEN} wide); it is not a {kind} for this dataset")  # fmt: skip
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise HrlError(f"{path}: {name} holds non-finite values (NaN/inf); the checkpoint is damaged: "
                               "re-copy or re-train it")  # fmt: skip


def expected_shapes(algo: str, obs_dim: int, act_dim: int) -> dict[str, dict[str, tuple]]:
    """Every tensor of a Phase I checkpoint and its shape (nn.Linear stores [out, in])."""
    from hrl_core.rl.networks import HIDDEN, TanhGaussianPolicy, ValueNetwork

    double_q = {}
    for head in ("q1", "q2"):
        for idx, (n_in, n_out) in zip((0, 2, 4), ((obs_dim + act_dim, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, 1)),
                                      strict=True):  # fmt: skip
            double_q[f"{head}.{idx}.weight"] = (n_out, n_in)
            double_q[f"{head}.{idx}.bias"] = (n_out,)
    out = {
        "actor": {k: tuple(v.shape) for k, v in TanhGaussianPolicy(obs_dim, act_dim).state_dict().items()},
        "critic": double_q,
        "critic_target": double_q,
    }
    if algo == "cql":
        out["log_alpha"] = {"": ()}
    else:
        out["value"] = {k: tuple(v.shape) for k, v in ValueNetwork(obs_dim).state_dict().items()}
    return out


def load_state(path: Path) -> dict:
    """torch.load with weights_only=True, turning damage into a one-line HrlError."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        first = textwrap.shorten(first, 120, placeholder=" …")  # cut at a word, and say so
        raise HrlError(f"{path} is truncated or corrupt ({first}); re-copy or re-train it") from None


def load_phase1_file(inputs, algo: str, obs_dim: int, act_dim: int) -> Phase1Checkpoint:
    """Load and check the checkpoint that ``hrl_core.run.folder.resolve_inputs`` found."""
    path, seed_used, substituted = inputs.checkpoint, inputs.phase1_seed_used, inputs.substituted
    state = load_state(path)
    validate(state, algo, obs_dim, act_dim, path)
    cfg_path = path.parent / "config.json"
    try:
        phase1_config = json.loads(cfg_path.read_text()) if cfg_path.exists() else None
    except (OSError, json.JSONDecodeError):
        phase1_config = "unreadable"
    prov = {
        "path": str(path.resolve()),
        "sha256": sha256_of(path),
        "file_size_bytes": path.stat().st_size,
        "requested_seed": inputs.requested_seed,
        "used_seed": seed_used,
        "substituted": substituted,
        "gradient_steps": int(state["step"]) if "step" in state else None,
        "phase1_config": phase1_config,
    }
    if substituted:
        prov["substitution_note"] = f"Phase I seed {inputs.requested_seed} missing; seed {seed_used} used instead"
    return Phase1Checkpoint(state=state, provenance=prov)


def load_phase1(phase1_dir, algo, dataset, k, noise, seed, obs_dim, act_dim) -> Phase1Checkpoint:
    """Find and load a Phase I checkpoint (seed 0 stands in for a missing seed)."""
    from types import SimpleNamespace

    path, used_seed, substituted = find_phase1(phase1_dir, algo, dataset, k, noise, seed)
    found = SimpleNamespace(checkpoint=path, phase1_seed_used=used_seed, substituted=substituted, requested_seed=seed)
    return load_phase1_file(found, algo, obs_dim, act_dim)
