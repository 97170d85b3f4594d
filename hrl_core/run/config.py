"""The settings of one Phase II fine-tuning run: the only place a setting is declared.

Every setting is one field of :class:`FinetuneConfig`: its type (allowed values as a
``Literal``), its default, its range, whether it changes results, and a trailing
comment that is also its ``--help`` text. Everything else is generated from it:

- ``hrl finetune``'s flags (``hrl_core.cli``), with choices, ranges and help;
- the ``parameters`` cell of ``notebooks/finetune.ipynb`` (``workbook.parameters_source``;
  a test fails when the notebook drifts from it);
- the agent's hyper-parameters: fields named like a field of the algorithm's config
  (``CQLConfig``, ``IQLConfig``, a plug-in's) are passed to the agent
  (:meth:`FinetuneConfig.agent_settings`), and apply to a run only if its algorithm has them;
- the run's identity: the result settings that apply to the run, hashed into its
  folder name and recorded in ``config.json`` (:meth:`FinetuneConfig.identity_settings`).

Adding a hyper-parameter means adding one field here (plus its use).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import tokenize
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Literal

from hrl_core.errors import HrlError
from hrl_core.rl.envs import DATASETS

DatasetName = Literal[tuple(DATASETS)]  # the supported D4RL datasets (hrl_core.rl.envs.DATASETS)
SEED_MAX = 2**32 - 1  # numpy's and gymnasium's seeds are unsigned 32-bit
COMPILE_MIN_STEPS = 2_000  # a compile takes ~20 s: worth it for runs of 2,000+ steps
# The grid cell's coordinates: required on the command line, spelled out in the run name.
CELL_KEYS = ("algo", "env", "remove_top_k", "bonus_type", "seed")


def setting(default, *, lo=None, hi=None, lo_open=False, hi_open=False, result=True, when=None, quick=None,
            choices=None):  # fmt: skip
    """A field of FinetuneConfig with what the rest of the package needs to know about it.

    ``lo``/``hi``: allowed range (``*_open``: bound excluded). ``result``: whether the
    setting changes the run's results (and so its identity). ``when``: a predicate on
    the config saying whether the setting applies at all (``cql_alpha`` only for CQL);
    one that does not apply is left out of the identity. ``quick``: its ``--quick`` value.
    ``choices``: a function giving the allowed values when they come from a registry (the
    algorithms, the explorers), so plug-ins are among them; otherwise a ``Literal`` type.
    """
    meta = {"lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open, "result": result, "when": when,
            "quick": quick, "choices": choices}  # fmt: skip
    if callable(default):
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


def _phase1_dir_default() -> str:
    return os.environ.get("HRL_PHASE1_DIR", "results")


def _algorithms() -> tuple[str, ...]:
    from hrl_core.rl import agents

    return agents.names()


def _explorers() -> tuple[str, ...]:
    from hrl_core.rl import explorers

    return explorers.names()


# When a setting applies at all (one that does not is left out of the run's identity).
def _algo_has(name: str):
    """Applies when the run's algorithm has a hyper-parameter of this name (cql_alpha: CQL)."""

    def applies(c: FinetuneConfig) -> bool:
        from hrl_core.rl import agents

        return name in agents.settings_of(c.algo)

    return applies


def _bonus_on(c: FinetuneConfig) -> bool:
    return c.bonus_type == "ensemble"


def _explorer_uses(name: str):
    """Applies when the run explores (bonus_type=ensemble) with an explorer that reads it."""

    def applies(c: FinetuneConfig) -> bool:
        from hrl_core.rl import explorers

        return c.bonus_type == "ensemble" and name in explorers.get(c.exploration).settings

    return applies


@dataclass
class FinetuneConfig:
    """One grid cell. Defaults are the study's (250k online steps, N=3, ratio 0.5).

    A comment above a field and the one after it are its help text (``hrl finetune --help``).
    """

    algo: str = setting("iql", choices=_algorithms)  # Phase I algorithm
    env: DatasetName = setting("hopper-medium-v2")  # D4RL dataset
    remove_top_k: float = setting(0.0, lo=0, hi=100, hi_open=True)  # % of top-return trajectories removed: 0, 30, 60
    bonus_type: Literal["ensemble", "none"] = setting("ensemble")  # ensemble: lambda*std(Q) bonus; none: vanilla
    seed: int = setting(0, lo=0, hi=SEED_MAX)  # online seed (torch, numpy, env); also picks the Phase I seed
    online_steps: int = setting(250_000, lo=1, quick=5_000)  # online env steps, one gradient update each
    n_ensemble: int = setting(3, lo=2, hi=10)  # Q-ensemble members; members 0-1 come from Phase I q1/q2
    # lambda of the bonus lambda*std(Q)(s, a)
    bonus_coeff: float = setting(1.0, lo=0, when=_explorer_uses("bonus_coeff"))
    online_ratio: float = setting(0.5, lo=0, hi=1)  # online fraction of each batch
    batch_size: int = setting(256, lo=1)  # transitions per gradient update
    # CQL penalty weight online (Phase I offline: 5.0)
    cql_alpha: float = setting(1.0, lo=0, when=_algo_has("cql_alpha"))
    eval_interval: int = setting(5_000, lo=1, quick=1_000)  # online steps between evaluations and snapshots
    eval_episodes: int = setting(10, lo=1, quick=5)  # deterministic episodes per evaluation
    reward_noise_std: float = setting(0.0, lo=0)  # Gaussian reward noise of the offline data (Phase I corruption)
    # seed of that reward noise
    corruption_seed: int = setting(0, lo=0, hi=SEED_MAX, when=lambda c: c.reward_noise_std > 0)
    phase1_dir: str = setting(_phase1_dir_default, result=False)  # Phase I runs (default $HRL_PHASE1_DIR or results)
    phase1_seed: int | None = setting(None, lo=0, hi=SEED_MAX)  # Phase I checkpoint seed; None: the online seed
    save_dir: str = setting("results_phase2", result=False)  # folder that run folders are written to
    device: str = setting("auto", result=False)  # torch device: auto (CUDA if present) | cpu | cuda | cuda:N
    threads: int | None = setting(None, lo=1, result=False)  # torch CPU threads; None: chosen for the machine
    # where the offline data comes from: auto (the D4RL file, a download, else a generated file) | d4rl |
    # generated (hrl data generate) | minari
    dataset_source: Literal["auto", "d4rl", "generated", "minari"] = setting("auto", result=False)
    # fresh members: fresh (the spec: default initialization) | warmstart (first fit offline to the loaded
    # members' Bellman targets) | perturb (a loaded member plus noise); hrl_core.rl.ensemble
    member_init: Literal["fresh", "warmstart", "perturb"] = setting("fresh")
    warmstart_steps: int = setting(5_000, lo=0, when=lambda c: c.member_init == "warmstart")  # offline warm-up steps
    perturb_scale: float = setting(0.1, lo=0, when=lambda c: c.member_init == "perturb")  # noise std / weight std
    # Bellman targets: min over all members (the spec) | over a random pair each update (REDQ/RLPD)
    target_reduce: Literal["min_all", "min_random2"] = setting("min_all")
    # with bonus_type ensemble: reward_bonus (the spec) | ucb_action (SUNRISE action choice; rewards unchanged)
    exploration: str = setting("reward_bonus", when=_bonus_on, choices=_explorers)
    # exploration ucb_action: policy samples to choose from
    ucb_candidates: int = setting(10, lo=1, when=_explorer_uses("ucb_candidates"))
    # exploration ucb_action: weight of std(Q) in the choice
    ucb_coeff: float = setting(1.0, lo=0, when=_explorer_uses("ucb_coeff"))
    # raw (the spec: lambda * std(Q)) | horizon (lambda * (1 - gamma) * std(Q): reward units, bounded) |
    # normalized (std(Q) / running mean |Q| x running mean |r|; unbounded when Q crosses 0: kept for old runs)
    bonus_scale: Literal["raw", "normalized", "horizon"] = setting("raw", when=_explorer_uses("bonus_scale"))
    bonus_clip: float = setting(0.0, lo=0, when=_explorer_uses("bonus_clip"))  # cap on the bonus; 0: no cap
    # torch.compile the CQL critic pass: auto (CQL runs of 2,000+ steps on CUDA) | on | off
    compile: Literal["auto", "on", "off"] = setting("auto", result=False)
    # experiment tracking of evaluation points and training windows (hrl_core.run.loggers)
    logger: Literal["none", "csv", "tensorboard", "wandb"] = setting("none", result=False)
    # an algorithm's own hyper-parameters by name, e.g. {"iql.expectile": 0.8}: declared in its config
    # (IQLConfig, CQLConfig, a plug-in's); one applies when the run's algo is its namespace
    hyper: dict = setting(dict)

    def __post_init__(self):
        check_fields(self)
        self.validate()

    # -- checks ----------------------------------------------------------------------
    @classmethod
    def check_value(cls, name: str, value):
        """One setting's value, checked (type, finiteness, choices, range) and coerced; raises
        HrlError naming the fix. The command line, the notebook and grid files all come here."""
        return check_value(cls, name, value)

    def validate(self) -> FinetuneConfig:
        """Raise HrlError (one line naming the fix) for any invalid value.

        Allowed values and ranges come from the field declarations (checked field by field
        in :func:`check_value`); what involves more than one field is checked here."""
        for f in fields(self):
            check_value(type(self), f.name, getattr(self, f.name))
        if not (self.device in ("auto", "cpu", "cuda") or _is_cuda_index(self.device)):
            raise HrlError(f"device={self.device!r}: use auto, cpu, cuda or cuda:N")
        return self

    # -- derived -----------------------------------------------------------------------
    @property
    def effective_phase1_seed(self) -> int:
        return self.seed if self.phase1_seed is None else self.phase1_seed

    def compile_critic(self, device_type: str) -> bool:
        """Whether this run compiles the CQL critic on ``device_type`` ("cpu" | "cuda").

        auto compiles on CUDA only: on a CPU the eager per-member GEMMs of
        ``hrl_core.rl.networks.EnsembleLinear`` are as fast as the compiled pass with one
        thread and faster with two (``hrl bench`` vs ``hrl bench --compile``), without
        the ~20 s compile or a C++ compiler.
        """
        from hrl_core.rl import agents

        if "compile_critic" not in agents.settings_of(self.algo) or self.compile == "off":
            return False
        if self.compile == "on":
            return True
        return device_type == "cuda" and self.online_steps >= COMPILE_MIN_STEPS

    def agent_settings(self, agent_config_cls) -> dict:
        """The settings that are also fields of the algorithm's config (cql_alpha, ...), and the run
        algorithm's own hyper-parameters given in ``hyper``."""
        names = {f.name for f in fields(agent_config_cls)}
        out = {k: v for k, v in asdict(self).items() if k in names}
        out.update({k.partition(".")[2]: v for k, v in self.hyper.items() if k.partition(".")[0] == self.algo})
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    # -- identity ----------------------------------------------------------------------
    def identity_settings(self) -> dict:
        """Every setting that changes results and applies to this run.

        Two runs with equal identity settings and equal inputs (dataset and Phase I
        checkpoint, by sha256) are the same experiment; anything else is another run.
        ``phase1_seed`` is recorded as the seed actually asked for (None -> ``seed``).
        """
        out = {}
        for f in fields(self):
            meta = f.metadata
            if not meta.get("result", True) or (meta.get("when") and not meta["when"](self)):
                continue
            if f.name == "hyper":
                continue
            out[f.name] = getattr(self, f.name)
        out["phase1_seed"] = self.effective_phase1_seed
        # the algorithm's own hyper-parameters where they differ from its defaults (so every run made
        # before they were settable keeps its identity and its name)
        out.update(self.hyper_changes())
        return out

    def hyper_changes(self) -> dict:
        """``hyper`` entries of this run's algorithm that differ from the algorithm's defaults."""
        fields_ = hyper_fields(self.algo)
        out = {}
        for key, value in self.hyper.items():
            algo, _, name = key.partition(".")
            if algo == self.algo and value != fields_[name].default:
                out[key] = value
        return out

    def non_default_settings(self) -> dict:
        """Identity settings that differ from the defaults, the cell's coordinates excepted."""
        defaults = _defaults()
        ident = self.identity_settings()
        out = {}
        for k, v in ident.items():
            if k in CELL_KEYS:
                continue
            if k not in defaults:  # an algorithm's own hyper-parameter: here only when not its default
                out[k] = v
                continue
            default = ident["seed"] if k == "phase1_seed" else defaults[k]
            if v != default:
                out[k] = v
        return out

    @property
    def settings_hash(self) -> str:
        """8 hex digits of the non-default identity settings ('' for the spec's settings)."""
        extra = self.non_default_settings()
        if not extra:
            return ""
        text = json.dumps(extra, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    @property
    def variant_tag(self) -> str:
        """Non-default choices (member_init, bonus_scale, ...) as a readable name part."""
        non_default = self.non_default_settings()
        fields_ = _fields_of(type(self))
        return "-".join(str(v) for k, v in non_default.items() if k in fields_ and field_choices(type(self), k))

    @property
    def run_name(self) -> str:
        """``ft_<algo>_<dataset>_k<k>_noise<sigma>_<ensemble|vanilla>_s<seed>`` for the spec's
        settings; any other setting adds its readable choices and a hash of all of them, so
        runs that differ in any result setting never share a folder."""
        from hrl_core.run.phase1 import format_k

        tag = "ensemble" if self.bonus_type == "ensemble" else "vanilla"
        name = (
            f"ft_{self.algo}_{self.env}_k{format_k(self.remove_top_k)}"
            f"_noise{float(self.reward_noise_std)}_{tag}_s{self.seed}"
        )
        if self.settings_hash:
            name += "_" + "-".join(p for p in (self.variant_tag, self.settings_hash) if p)
        return name

    def resolve_paths(self, base: str | Path) -> FinetuneConfig:
        """Relative ``save_dir``/``phase1_dir`` made absolute against ``base`` (in place).

        The one rule for relative paths: they mean "from where the command was started"
        (``hrl finetune``/``hrl grid``: the current directory; a notebook run by hand: the
        repository root, since Jupyter starts it in notebooks/)."""
        for key in ("save_dir", "phase1_dir"):
            p = Path(getattr(self, key)).expanduser()
            setattr(self, key, str(p if p.is_absolute() else (Path(base) / p).resolve()))
        return self


# --------------------------------------------------------------------------------------
# Field introspection (used by the CLI, the notebook and the checks above)
# --------------------------------------------------------------------------------------
@cache
def _type_hints(cls=None) -> dict:
    return typing.get_type_hints(cls or FinetuneConfig)


@cache
def _fields_of(cls) -> dict:
    return {f.name: f for f in fields(cls)}


@cache
def _defaults() -> dict:
    out = {}
    for f in fields(FinetuneConfig):
        out[f.name] = f.default_factory() if f.default is MISSING else f.default
    return out


def literal_choices(hint) -> tuple:
    """Allowed values of a ``Literal[...]`` type (() for anything else)."""
    return typing.get_args(hint) if typing.get_origin(hint) is Literal else ()


def field_choices(cls, name: str) -> tuple:
    """Allowed values of a settings field: its registry's names, or its ``Literal`` values (() if any value)."""
    f = _fields_of(cls)[name]
    if f.metadata.get("choices"):
        return tuple(f.metadata["choices"]())
    return literal_choices(_type_hints(cls)[name])


def base_type(hint) -> type:
    """int/float/str/bool of a field type (``int | None`` -> int; Literal -> its values' type)."""
    choices = literal_choices(hint)
    if choices:
        return type(choices[0])
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def _kind_name(kind) -> str:
    return {int: "an integer", float: "a number", str: "text", bool: "true or false"}.get(kind, str(kind))


def check_value(cls, name: str, value):
    """A field value of a settings dataclass (FinetuneConfig, PretrainConfig), checked and coerced.

    One type per field: an integer field takes an int (or a float with an integer value,
    as YAML and papermill sometimes write them), never 200.7 or true; a number field takes
    an int or a float, never true; numbers must be finite (NaN and inf are bad input: a
    NaN passes every range check, and JSON would record it as null); text fields take text;
    None only where the field allows it. Then the declared choices and range."""
    f = _fields_of(cls)[name]
    hint = _type_hints(cls)[name]
    if name == "hyper":
        return check_hyper(value)
    if value is None:
        if type(None) in typing.get_args(hint):
            return None
        raise HrlError(f"{name} needs a value ({_kind_name(base_type(hint))}); it cannot be empty/None")
    kind = base_type(hint)
    if kind in (int, float):
        if isinstance(value, str):
            try:
                value = float(value) if kind is float else int(value)
            except ValueError:
                raise HrlError(f"{name}={value!r} is not {_kind_name(kind)}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise HrlError(f"{name}={value!r} must be {_kind_name(kind)}, not {type(value).__name__}")
        if not math.isfinite(value):
            raise HrlError(f"{name}={value} is not a finite number; give a finite value")
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise HrlError(f"{name}={value} must be an integer")
            value = int(value)
        else:
            value = float(value) + 0.0  # -0.0 is 0: one value, one name (k0, not k-0)
    elif kind is str and not isinstance(value, str):
        raise HrlError(f"{name}={value!r} must be text, not {type(value).__name__}")
    choices = field_choices(cls, name)
    if choices and value not in choices:
        raise HrlError(f"{name}={value!r}: use one of {', '.join(map(str, choices))}")
    meta = f.metadata
    if isinstance(value, (int, float)):
        lo, hi = meta.get("lo"), meta.get("hi")
        if lo is not None and (value < lo or (meta.get("lo_open") and value == lo)):
            raise HrlError(f"{name}={value} is below its range {range_text(f)}")
        if hi is not None and (value > hi or (meta.get("hi_open") and value == hi)):
            raise HrlError(f"{name}={value} is above its range {range_text(f)}")
    return value


def check_hyper(value) -> dict:
    """``hyper``: {"<algo>.<name>": value} of algorithms' own hyper-parameters, each checked where its
    algorithm declares it (its config dataclass: type, finiteness, a declared range); a setting that has
    a FinetuneConfig field of its own (cql_alpha, n_ensemble, target_reduce) is set there, not here."""
    from hrl_core.rl import agents

    if value is None:
        return {}
    if not isinstance(value, dict):
        raise HrlError(
            f"hyper={value!r} must be a mapping of '<algo>.<name>' to a value, e.g. {{'iql.expectile': 0.8}}"
        )
    out = {}
    for key, v in value.items():
        algo, _, name = str(key).partition(".")
        if not name:
            raise HrlError(f"hyper setting {key!r}: name it '<algo>.<name>', e.g. iql.expectile")
        cls = agents.get(algo)  # an unknown algorithm is one line naming the known ones
        declared = hyper_fields(algo)
        if name not in declared:
            raise HrlError(f"{key}: {algo} has no hyper-parameter {name!r}; its own: "
                           f"{', '.join(f'{algo}.{n}' for n in declared)}")  # fmt: skip
        try:
            out[f"{algo}.{name}"] = check_value(cls, name, v)
        except HrlError as exc:
            raise HrlError(f"{algo}.{exc}") from None  # "iql.expectile=1.5 is above its range (0, 1)"
    return dict(sorted(out.items()))


def hyper_fields(algo: str) -> dict:
    """An algorithm's own hyper-parameters settable as ``<algo>.<name>``: its config's fields, but those
    FinetuneConfig declares itself (they keep their one place)."""
    from hrl_core.rl import agents

    cls = agents.get(algo)
    own = {f.name for f in fields(FinetuneConfig)} | {"compile_critic"}
    return {f.name: f for f in fields(cls) if f.name not in own}


def check_fields(obj) -> None:
    """Check and coerce every field of a settings dataclass instance, in place."""
    for f in fields(obj):
        setattr(obj, f.name, check_value(type(obj), f.name, getattr(obj, f.name)))


def _is_cuda_index(device: str) -> bool:
    return device.startswith("cuda:") and device[5:].isdigit()


def range_text(f) -> str:
    m = f.metadata
    lo = "(" if m.get("lo_open") else "["
    hi = ")" if m.get("hi_open") else "]"
    return f"{lo}{'-inf' if m.get('lo') is None else m['lo']}, {'inf' if m.get('hi') is None else m['hi']}{hi}"


@cache
def field_help(cls=None) -> dict[str, str]:
    """Field name -> its comment lines just above it and its trailing comment, in the class's
    source (the declaration's own words)."""
    import inspect
    import textwrap

    cls = cls or FinetuneConfig
    source = textwrap.dedent(inspect.getsource(cls))
    names = {f.name for f in fields(cls)}
    out, above, current = {}, [], None
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            if current:
                out[current] = " ".join([*above, text]).strip()
            elif tok.start[1] == 4 and tok.line.strip().startswith("#"):
                above.append(text)
        elif tok.type == tokenize.NAME and tok.start[1] == 4 and tok.string in names and current is None:
            current = tok.string
            out[current] = " ".join(above)
        elif tok.type == tokenize.NEWLINE:
            if current:
                above = []
            current = None
        elif tok.type == tokenize.NL and not tok.line.strip():
            above = []
    return out


def quick_settings() -> dict:
    """--quick: a short run for smoke tests and demos (the fields' ``quick`` values)."""
    return {f.name: f.metadata["quick"] for f in fields(FinetuneConfig) if f.metadata.get("quick") is not None}


QUICK = quick_settings()
