"""The Phase I checkpoint format, in one place: finding, reading, checking, loading into an
agent, and writing (``hrl pretrain``).

Layout: ``<phase1_dir>/<algo>_<dataset>_k<k>_noise<sigma>_s<seed>/checkpoint.pt``, a
plain dict of tensors (see ../shared/README.md): ``actor`` (TanhGaussianPolicy),
``critic`` and ``critic_target`` (DoubleQNetwork: ``q1.{0,2,4}``, ``q2.{0,2,4}``, each an
nn.Linear storing ``[out, in]``), ``step``, and what the algorithm adds (its
``phase1_extra_shapes``: CQL's ``log_alpha``, IQL's ``value``). The double Q becomes
members 0-1 of the ensemble (:func:`double_q_into`). Always loaded with
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
from hrl_core.rl.networks import HIDDEN, TanhGaussianPolicy


def format_k(k: float) -> str:
    """60.0 -> '60', 12.5 -> '12.5' (Phase I run names)."""
    return f"{float(k):g}"


def phase1_run_name(algo: str, dataset: str, k: float, noise: float, seed: int) -> str:
    return f"{algo}_{dataset}_k{format_k(k)}_noise{float(noise)}_s{seed}"


@dataclass
class Phase1Checkpoint:
    state: dict  # the checkpoint dict (actor, critic, critic_target, ...)
    provenance: dict = field(default_factory=dict)  # path, sha256, substitution, Phase I config


def find_phase1(phase1_dir, algo, dataset, k, noise, seed: int, named: bool = False) -> tuple[Path, int, bool]:
    """(path, seed used, substituted?) -- falls back to seed 0 when ``seed`` is missing, unless the
    user named the seed (``named``: an explicit ``phase1_seed``), which is then an error."""
    root = Path(phase1_dir)
    wanted = root / phase1_run_name(algo, dataset, k, noise, seed) / "checkpoint.pt"
    if wanted.exists():
        return wanted, seed, False
    if named:
        raise HrlError(f"Phase I checkpoint {wanted} not found (phase1_seed={seed} was asked for by name, so no "
                       "other seed stands in); run Phase I with that seed, name another phase1_seed, or pass "
                       "--phase1_dir pointing at the folder of Phase I results")  # fmt: skip
    fallback = root / phase1_run_name(algo, dataset, k, noise, 0) / "checkpoint.pt"
    if seed != 0 and fallback.exists():
        return fallback, 0, True
    extra = f" (nor the seed-0 fallback {fallback})" if seed != 0 else ""
    raise HrlError(
        f"Phase I checkpoint {wanted} not found{extra}; run Phase I for this cell "
        "or pass --phase1_dir pointing at the folder of Phase I results"
    )


SHARED = ("actor", "critic", "critic_target")  # what every algorithm's checkpoint holds
DOUBLE_Q_LAYERS = (0, 2, 4)  # nn.Sequential indices of q1/q2's Linear layers (ReLU between)


def _extra_keys(algo: str) -> set[str]:
    from hrl_core.rl import agents

    return set(agents.get(algo).phase1_extra_shapes(1, 1))


def validate(state: dict, algo: str, obs_dim: int, act_dim: int, path: Path) -> None:
    """Raise HrlError if the checkpoint is not a Phase I ``algo`` checkpoint for these dims:
    its entries (another registered algorithm's checkpoint is named as such), its sizes,
    every tensor's shape, and finite values."""
    from hrl_core.rl import agents

    if not isinstance(state, dict):
        raise HrlError(f"{path} is not a Phase I checkpoint (not a dict); check the path")
    need = set(SHARED) | _extra_keys(algo)
    # Another algorithm's checkpoint: it has entries that algorithm owns and this one has not.
    owner = next((o for o in agents.names() if o != algo and keys_only_of(o, algo)
                  and keys_only_of(o, algo) <= state.keys()), None)  # fmt: skip
    if owner is not None and set(SHARED) <= state.keys():
        raise HrlError(f"{path} is an {owner.upper()} checkpoint but --algo {algo} was given; use --algo {owner}")
    if need - state.keys():
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


def keys_only_of(owner: str, algo: str) -> set[str]:
    """Entries another algorithm's checkpoint has that ``algo``'s has not."""
    return _extra_keys(owner) - _extra_keys(algo)


def expected_shapes(algo: str, obs_dim: int, act_dim: int) -> dict[str, dict[str, tuple]]:
    """Every tensor of a Phase I checkpoint and its shape (nn.Linear stores [out, in])."""
    from hrl_core.rl import agents

    double_q = {}
    for head in ("q1", "q2"):
        for idx, (n_in, n_out) in zip(DOUBLE_Q_LAYERS, ((obs_dim + act_dim, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, 1)),
                                      strict=True):  # fmt: skip
            double_q[f"{head}.{idx}.weight"] = (n_out, n_in)
            double_q[f"{head}.{idx}.bias"] = (n_out,)
    out = {
        "actor": {k: tuple(v.shape) for k, v in TanhGaussianPolicy(obs_dim, act_dim).state_dict().items()},
        "critic": double_q,
        "critic_target": double_q,
    }
    out.update(agents.get(algo).phase1_extra_shapes(obs_dim, act_dim))
    return out


# --------------------------------------------------------------------------------------
# The double Q <-> ensemble members 0-1
# --------------------------------------------------------------------------------------
def _ensemble_layers(ensemble) -> tuple:
    return ensemble.l0, ensemble.l1, ensemble.l2


@torch.no_grad()
def double_q_into(ensemble, double_q: dict) -> None:
    """Put a Phase I DoubleQNetwork's q1/q2 into members 0 and 1 of an ``EnsembleQ``.

    nn.Linear stores weight as [out, in], the ensemble [in, out]: hence the transpose.
    Members 2.. are left as they are (fresh default init)."""
    for member, head in enumerate(("q1", "q2")):
        for layer, idx in zip(_ensemble_layers(ensemble), DOUBLE_Q_LAYERS, strict=True):
            layer.weight[member].copy_(double_q[f"{head}.{idx}.weight"].t())
            layer.bias[member, 0].copy_(double_q[f"{head}.{idx}.bias"])


def double_q_from(ensemble) -> dict:
    """Members 0 and 1 as a Phase I DoubleQNetwork state dict (inverse of :func:`double_q_into`), on the CPU."""
    out = {}
    for member, head in enumerate(("q1", "q2")):
        for layer, idx in zip(_ensemble_layers(ensemble), DOUBLE_Q_LAYERS, strict=True):
            out[f"{head}.{idx}.weight"] = layer.weight[member].detach().t().contiguous().cpu().clone()
            out[f"{head}.{idx}.bias"] = layer.bias[member, 0].detach().cpu().clone()
    return out


def load_into(agent, state: dict) -> None:
    """A checked Phase I checkpoint into an agent: actor unchanged; q1/q2 of critic and
    target into members 0-1 of both; then the algorithm's own entries.

    Fresh members (2..N-1) get the same fresh weights in critic and target, so the target
    starts as an exact copy of the online ensemble for them."""
    agent.actor.load_state_dict(state["actor"])
    double_q_into(agent.critic, state["critic"])
    agent.critic_target.load_state_dict({k: v.clone() for k, v in agent.critic.state_dict().items()})
    double_q_into(agent.critic_target, state["critic_target"])
    agent.load_phase1_extra(state)


def checkpoint_of(agent, step: int) -> dict:
    """An agent in Phase I's checkpoint format (what ``hrl pretrain`` writes)."""
    return {
        "actor": {k: v.detach().cpu().clone() for k, v in agent.actor.state_dict().items()},
        "critic": double_q_from(agent.critic),
        "critic_target": double_q_from(agent.critic_target),
        "step": step,
        **agent.phase1_extra(),
    }


def load_state(path: Path) -> dict:
    """torch.load with weights_only=True, turning damage into a one-line HrlError."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Unsupported global" in str(exc) or "GLOBAL" in str(exc):
            raise HrlError(f"{path} is not a plain tensor file: it asks to run code or build objects when "
                           "unpickled, and was not loaded; use a checkpoint of plain tensors (a state dict) from a "
                           "source you trust") from None  # fmt: skip
        first = textwrap.shorten(str(exc).strip().splitlines()[0] if str(exc).strip() else "UnpicklingError", 120,
                                 placeholder=" …")  # fmt: skip
        raise HrlError(f"{path} is truncated or corrupt ({first}); re-copy or re-train it") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
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
