"""Grid files: what a grid asks for (its cells), and what each cell's folder holds (its status).

A grid file (``params/*.yaml``) lists the axes and shared settings::

    algos: [cql, iql]
    datasets: [halfcheetah-medium-v2, hopper-medium-v2]
    remove_top_k: [0, 30, 60]
    bonus_types: [ensemble, none]
    seeds: [0, 1, 2]
    settings: {online_steps: 250000, eval_interval: 5000, eval_episodes: 10}
    algo_settings: {cql: {online_steps: 2000}}   # optional: per-algorithm settings

An optional ``arms:`` mapping turns a grid into a study of variants: each arm is a
name and the settings it changes (``warmstart: {member_init: warmstart}``); every
combination of the axes runs once per arm, and ``bonus_types`` may then be left out
(arms set ``bonus_type`` themselves). The arm is a label of the grid file, not of the
run: a run is named by its settings (``FinetuneConfig.run_name``), so two grid files
that ask for the same run share it. ``comparisons:`` names pairs of arms whose
difference a study reports (``member-init: [warmstart, vanilla]``).
``executed_dir`` (optional) says where the cells' executed notebooks go.

``phase1_seeds`` (optional) is an axis of Phase I checkpoints: every cell runs from each
(``phase1_seeds: [1, 2]``), so a conclusion is about the algorithm, not one trained network.
``reuse`` (optional) names committed record folders of other studies (``reuse: [results_long]``):
a cell whose run one of them holds complete, with the same identity (settings and input
digests), is read from there and not run again (``records.load_cells``, :func:`cell_status`).

An optional ``parts:`` mapping cuts a grid into named slices that run in the file's
order and are analysed one record each (``hrl grid --part``, ``hrl study --part``)::

    parts:
      iql-hopper: {algos: [iql], datasets: [hopper-medium-v2], seeds: [0, 1, 2, 3, 4]}
      cql: {algos: [cql], arms: [vanilla, spec]}

A part gives its own values for any axis (the others are the file's) and may pick a
subset of the arms; the grid is the union of its parts, and no run may be in two parts.
A part whose comparisons need an arm another part runs names it in ``compare_with``
(``cql-double_q: {algos: [cql], arms: [double_q], compare_with: [vanilla]}``): its record
reads those runs on its own settings (:func:`reference_cells`), but the part never runs them.

Cells run seed-major (all seed-0 cells first), so a grid stopped early leaves every
setting with the same number of seeds rather than some settings with all of them.

A cell whose folder holds a complete run with the same identity (settings and inputs)
is complete; an unfinished one resumes; a cell another process is running is "running
elsewhere". Running the cells is ``hrl_core.lab.execute``; where they run,
``hrl_core.lab.clusters``.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from hrl_core import resources
from hrl_core.errors import HrlError
from hrl_core.run.config import QUICK, FinetuneConfig

REPO = resources.base_dir()  # the checkout (or, installed, the current folder)
DEFAULT_GRID = resources.folder("params") / "grid.yaml"
DEFAULT_NOTEBOOK = resources.folder("notebooks") / "finetune.ipynb"
AXES = {
    "algos": "algo",
    "datasets": "env",
    "remove_top_k": "remove_top_k",
    "bonus_types": "bonus_type",
    "seeds": "seed",
    "phase1_seeds": "phase1_seed",
}
# Axes a grid file may leave out: bonus_types when arms set it; phase1_seeds (the Phase I checkpoint
# then follows settings.phase1_seed, else the online seed).
OPTIONAL_AXES = ("phase1_seeds",)
# Keys a grid file may have besides its axes.
OPTIONAL_KEYS = {
    "settings", "algo_settings", "description", "kind", "arms", "comparisons", "executed_dir", "cpu_hours", "parts",
    "reuse", "analysis",
}  # fmt: skip
# ``kind: pretrain`` grids (Phase I) have no bonus axis and name the dataset env_name.
# Keys a part may have besides axes: the arms it runs, and arms it reads from other parts for its comparisons.
PART_KEYS = ("arms", "compare_with", "commit")
# ``commit``: the code a part runs at (scripts/study.sh pins its clone there), declared with the part so
# that a study whose parts ran at different commits resumes each part at its own.
COMMIT = re.compile(r"[0-9a-f]{7,40}")
PRETRAIN_AXES = {"algos": "algo", "datasets": "env_name", "remove_top_k": "remove_top_k", "seeds": "seed"}


@dataclass(frozen=True)
class GridKind:
    """What a grid file's ``kind`` means: its axes, its cells' settings, their notebook and budget."""

    name: str  # finetune (Phase II) | pretrain (Phase I)
    axes: dict  # grid-file key -> settings field
    config_cls: type  # FinetuneConfig | PretrainConfig
    quick: dict  # the --quick budget
    notebook: Path  # what each cell executes
    steps_field: str  # the cell's training steps: online_steps | total_steps
    by_identity: bool  # a cell's folder is compared by identity (settings + input digests), else by status


def grid_kind(spec: dict) -> GridKind:
    from hrl_core.run.pretrain import QUICK_STEPS, PretrainConfig

    if spec.get("kind", "finetune") == "pretrain":
        return GridKind("pretrain", PRETRAIN_AXES, PretrainConfig, {"total_steps": QUICK_STEPS},
                        resources.folder("notebooks") / "pretrain.ipynb", "total_steps", False)  # fmt: skip
    return GridKind("finetune", AXES, FinetuneConfig, QUICK, DEFAULT_NOTEBOOK, "online_steps", True)


@dataclass
class Cell:
    """One grid cell: its settings and where its records go."""

    config: FinetuneConfig  # or a PretrainConfig for kind: pretrain grids
    notebook_out: Path = field(default=Path())
    notebook: Path = DEFAULT_NOTEBOOK  # the notebook papermill executes for this cell
    arm: str = ""  # the study arm this cell belongs to (grid files with arms:); not part of the run
    part: str = ""  # the grid file's part this cell belongs to (grid files with parts:); not part of the run
    kind: GridKind | None = None  # None: a Phase II cell
    reuse: tuple = ()  # committed record folders (names under records/) a complete run may be read from

    @property
    def run_name(self) -> str:
        return self.config.run_name

    @property
    def steps(self) -> int:
        """Training steps of the cell: online steps (Phase II) or gradient steps (Phase I)."""
        return getattr(self.config, self.kind.steps_field if self.kind else "online_steps")

    @property
    def run_dir(self) -> Path:
        return Path(self.config.save_dir) / self.run_name


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key, first: int, again: int):
        super().__init__(f"{key!r} given twice (lines {first} and {again})")
        self.key, self.first, self.again = key, first, again


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader that refuses a key given twice in one mapping (plain YAML keeps the last
    silently: `online_steps: 300` then `online_steps: 5000` would plan 5,000 steps)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise _DuplicateKey(key, seen[key], line)
            except TypeError:  # an unhashable key: the safe loader says so itself
                continue
            seen[key] = line
        return super().construct_mapping(node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _StrictLoader.construct_mapping)


def load_yaml(path: Path):
    """A YAML file's contents, refusing duplicate keys (a one-line HrlError naming file, key, lines)."""
    text = path.read_text()
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        raise HrlError(f"grid file {path}: key {exc.key!r} is given twice in one mapping (lines {exc.first} and "
                       f"{exc.again}); keep one") from None  # fmt: skip


def load_grid(path: str | Path) -> dict:
    path = resources.params_file(path)
    try:
        spec = load_yaml(path)
    except OSError:
        raise HrlError(f"grid file {path} not found; pass --params with an existing YAML file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise HrlError(f"grid file {path} is not valid YAML{where}: {problem}; fix the file") from None
    if not isinstance(spec, dict):
        raise HrlError(f"grid file {path} must be a mapping with keys {', '.join(AXES)} and settings")
    if spec.get("kind", "finetune") not in ("finetune", "pretrain"):
        raise HrlError(f"grid file {path}: kind must be finetune or pretrain")
    kind = grid_kind(spec)
    axes, config_cls = kind.axes, kind.config_cls
    for key in ("settings", "algo_settings", "comparisons"):  # arms and parts say so themselves, below
        if spec.get(key) is not None and not isinstance(spec[key], dict):
            raise HrlError(f"grid file {path}: {key} must be a mapping (key: value lines), not {spec[key]!r}")
    missing = [k for k in axes if k not in spec and k not in OPTIONAL_AXES]
    if "arms" in spec and "bonus_types" in missing:
        missing.remove("bonus_types")  # the arms set bonus_type
    unknown = set(spec) - set(axes) - OPTIONAL_KEYS
    if missing or unknown:
        raise HrlError(f"grid file {path}: missing keys {missing}, unknown keys {sorted(unknown)}")
    known = {f.name for f in fields(config_cls)}
    if config_cls is FinetuneConfig:  # an algorithm's own hyper-parameters: "<algo>.<name>" keys
        known |= {k for block in _setting_blocks(spec) for k in block if isinstance(k, str) and "." in k}
    bad = set(spec.get("settings") or {}) - known
    if bad:
        raise HrlError(f"grid file {path}: unknown settings {sorted(bad)}; valid: {', '.join(sorted(known))}")
    for algo, settings in (spec.get("algo_settings") or {}).items():
        bad = set(settings or {}) - known
        if algo not in spec.get("algos", []) or bad:
            raise HrlError(f"grid file {path}: algo_settings {algo!r} must be one of its algos with known settings")
    arms = spec.get("arms")
    if arms is not None:
        if not isinstance(arms, dict) or not arms or config_cls is not FinetuneConfig:
            raise HrlError(
                f"grid file {path}: arms must be a non-empty mapping of arm name -> settings (Phase II only)"
            )
        for name, settings in arms.items():
            bad = set(settings or {}) - known
            if bad:
                raise HrlError(f"grid file {path}: arm {name!r} has unknown settings {sorted(bad)}")
            if not all(ch.isalnum() or ch in "-+._=" for ch in str(name)):
                raise HrlError(f"grid file {path}: arm {name!r}: use letters, digits and - + . _ = in arm names")
    for label, pair in (spec.get("comparisons") or {}).items():
        if not (isinstance(pair, list) and len(pair) == 2 and set(pair) <= set(arms or {})):
            raise HrlError(f"grid file {path}: comparison {label!r} must be [arm, reference arm] of its arms")
    reuse = spec.get("reuse")
    if reuse is not None and not (isinstance(reuse, list) and all(isinstance(r, str) and r for r in reuse)):
        raise HrlError(f"grid file {path}: reuse must be a list of record folder names (e.g. [results_long])")
    _check_parts(path, spec, axes)
    _check_values(path, spec, axes, config_cls)
    if spec.get("analysis") is not None:
        from hrl_core.lab.analysis import Analysis

        Analysis.from_spec(path, spec)  # checked now: a declared analysis that cannot be applied is bad input
    return spec


def _setting_blocks(spec: dict) -> list[dict]:
    """Every mapping of settings in a grid file: shared, per algorithm, per arm."""
    blocks = [spec.get("settings") or {}]
    for key in ("algo_settings", "arms"):  # a malformed one is reported by load_grid's own checks
        if isinstance(spec.get(key), dict):
            blocks += [s or {} for s in spec[key].values() if isinstance(s, dict)]
    return [b for b in blocks if isinstance(b, dict)]


def _with_hyper(settings: dict) -> dict:
    """Settings with their "<algo>.<name>" keys gathered under ``hyper``."""
    out = {k: v for k, v in settings.items() if "." not in str(k)}
    dotted = {k: v for k, v in settings.items() if "." in str(k)}
    if dotted:
        out["hyper"] = {**(out.get("hyper") or {}), **dotted}
    return out


def _check_values(path: Path, spec: dict, axes: dict, config_cls) -> None:
    """Every value of the grid file, checked where its setting is declared (type, finiteness,
    choices, range), with the file and the key named: `online_steps: 200.7` or `.nan` never
    reaches a cell."""

    def check(where: str, name: str, value) -> None:
        try:
            config_cls.check_value(name, value)
        except HrlError as exc:
            raise HrlError(f"grid file {path}: {where}: {exc}") from None

    for key, values in [(k, spec[k]) for k in axes if k in spec] + [
        (k, v) for part in (spec.get("parts") or {}).values() for k, v in part.items() if k in axes
    ]:
        if not isinstance(values, list) or not values:
            raise HrlError(f"grid file {path}: {key} must be a non-empty list")
        for v in values:
            check(f"{key} value {v!r}", axes[key], v)
    blocks = [("settings", spec.get("settings") or {})]
    blocks += [(f"algo_settings.{a}", s or {}) for a, s in (spec.get("algo_settings") or {}).items()]
    blocks += [(f"arms.{a}", s or {}) for a, s in (spec.get("arms") or {}).items()]
    for where, settings in blocks:
        if not isinstance(settings, dict):
            raise HrlError(f"grid file {path}: {where} must be a mapping of setting -> value")
        for name, value in settings.items():
            if "." in str(name) and config_cls is FinetuneConfig:
                check(f"{where}.{name}", "hyper", {name: value})
            else:
                check(f"{where}.{name}", name, value)


def _check_parts(path: Path, spec: dict, axes: dict) -> None:
    """A ``parts:`` mapping: part name -> its own axis values and/or a subset of the arms."""
    parts = spec.get("parts")
    if parts is None:
        return
    if not isinstance(parts, dict) or not parts:
        raise HrlError(f"grid file {path}: parts must be a non-empty mapping of part name -> axes and arms")
    for name, part in parts.items():
        if not isinstance(part, dict):
            raise HrlError(f"grid file {path}: part {name!r} must be a mapping of axes (and arms) to values")
        unknown = set(part) - set(axes) - set(PART_KEYS)
        if unknown:
            raise HrlError(f"grid file {path}: part {name!r} has unknown keys {sorted(unknown)}; "
                           f"valid: {', '.join(list(axes) + list(PART_KEYS))}")  # fmt: skip
        commit = part.get("commit")
        if commit is not None and not (isinstance(commit, str) and COMMIT.fullmatch(commit)):
            raise HrlError(f"grid file {path}: part {name!r}: commit must be a git commit, 7 to 40 hex digits in "
                           f"quotes (commit: \"2db35b6\"), not {commit!r}")  # fmt: skip
        for key, values in part.items():
            if key == "commit":
                continue
            if not isinstance(values, list) or not values:
                raise HrlError(f"grid file {path}: part {name!r}: {key} must be a non-empty list")
        if not set(part.get("arms", [])) | set(part.get("compare_with", [])) <= set(spec.get("arms") or {}):
            raise HrlError(f"grid file {path}: part {name!r} names arms the file does not have")
        both = set(part.get("arms") or spec.get("arms") or {}) & set(part.get("compare_with", []))
        if both:
            raise HrlError(f"grid file {path}: part {name!r}: compare_with names arms the part runs itself "
                           f"({', '.join(sorted(both))}); list each arm in one of the two")  # fmt: skip


def part_grid(spec: dict, name: str) -> dict:
    """The grid file as one part runs it: the part's axis values over the file's, its arms
    (``compare_with`` arms are not run by the part, so they are not in it)."""
    part = spec["parts"][name]
    sub = {k: v for k, v in spec.items() if k != "parts"}
    sub.update({k: v for k, v in part.items() if k not in PART_KEYS})
    if "arms" in part:
        sub["arms"] = {a: spec["arms"][a] for a in part["arms"]}
    return sub


def reference_cells(spec: dict, name: str, overrides: dict | None = None) -> list[Cell]:
    """The runs a part reads but does not run (its ``compare_with`` arms): the cells of those
    arms, owned by other parts, on the settings (algo, dataset, k, seed) of the part's own cells.
    A reference no part runs is not made up: the record shows it as missing."""
    wanted = (spec.get("parts") or {}).get(name, {}).get("compare_with") or []
    if not wanted:
        return []
    own = {_setting(c) for c in expand(spec, {"parts": [name]}, overrides)}
    return [c for c in expand(spec, None, overrides) if c.arm in wanted and _setting(c) in own]


def _setting(cell: Cell) -> tuple:
    c = cell.config
    return c.algo, c.env, float(c.remove_top_k), c.seed, c.effective_phase1_seed


def expand(spec: dict, filters: dict | None = None, overrides: dict | None = None, quick: bool = False) -> list[Cell]:
    """All cells of a grid (axes in the file's order), optionally filtered.

    ``filters`` maps an axis key (``algos`` ...) to the allowed values; ``overrides``
    sets FinetuneConfig fields for every cell (e.g. ``save_dir``); ``quick`` applies
    the --quick budget (5,000 steps, evaluation every 1,000 with 5 episodes).
    """
    filters = filters or {}
    if spec.get("parts"):
        return _expand_parts(spec, filters, overrides, quick)
    kind = grid_kind(spec)
    axis_names, config_cls, quick_budget = kind.axes, kind.config_cls, kind.quick
    shared = dict(spec.get("settings") or {})
    late = {**(quick_budget if quick else {}), **(overrides or {})}  # beat the file's settings
    present = {k: v for k, v in axis_names.items() if k in spec}  # bonus_types is optional with arms
    axes = [list(spec[key]) for key in present]
    arms = spec.get("arms") or {None: {}}
    if filters.get("arms"):
        arms = {name: s for name, s in arms.items() if name in filters["arms"]}
    # Axis filters are checked on each built config, not on the axis lists, so they
    # also select what an arm sets (arms set bonus_type, for instance).
    axis_filters = {axis_names[k]: v for k, v in filters.items() if k in axis_names and v}
    cells, by_name = [], {}
    for *combo, (arm, arm_settings) in itertools.product(*axes, arms.items()):
        values = {present[k]: v for k, v in zip(present, combo, strict=True)}
        per_algo = (spec.get("algo_settings") or {}).get(values.get("algo"), {})
        # Precedence: shared settings < per-algorithm settings < --quick/overrides < axes < the arm's settings
        # ("<algo>.<name>" keys gathered under hyper, merged in the same order).
        layers = [_with_hyper(dict(x or {})) for x in (shared, per_algo, late, values, arm_settings)]
        hyper = {k: v for layer in layers for k, v in (layer.get("hyper") or {}).items()}
        merged = {k: v for layer in layers for k, v in layer.items() if k != "hyper"}
        cfg = config_cls(**merged, **({"hyper": hyper} if hyper else {}))
        if not all(_matches(getattr(cfg, name), wanted) for name, wanted in axis_filters.items()):
            continue
        # Absolute paths: notebooks run with notebooks/ as working directory (and a
        # remote worker elsewhere), so relative paths are fixed here, from where
        # `hrl grid` was started, as `hrl finetune` would read them.
        if kind.by_identity:
            cfg.resolve_paths(Path.cwd())
        else:
            cfg.save_dir = str(Path(cfg.save_dir).resolve())
        cell = Cell(cfg, notebook=kind.notebook, arm="" if arm is None else str(arm), kind=kind,
                    reuse=tuple(spec.get("reuse") or ()))  # fmt: skip
        twin = by_name.get(cell.run_name)
        if twin is not None:
            raise HrlError(
                f"arms {twin.arm!r} and {cell.arm!r} have the same settings (run {cell.run_name}); "
                "give them different settings or drop one"
            )
        by_name[cell.run_name] = cell
        cells.append(cell)
    # Seed-major (stable): a grid stopped early has the same seeds for every setting.
    cells.sort(key=lambda c: c.config.seed)
    return cells


def _expand_parts(spec: dict, filters: dict, overrides: dict | None, quick: bool) -> list[Cell]:
    """The cells of a grid with parts: each part's cells (seed-major within it), in the file's order."""
    wanted = filters.get("parts")
    unknown = set(wanted or ()) - set(spec["parts"])
    if unknown:
        raise HrlError(f"no part {sorted(unknown)} in this grid file; its parts: {', '.join(spec['parts'])}")
    cells, owner = [], {}
    for name in spec["parts"]:
        for cell in expand(part_grid(spec, name), {k: v for k, v in filters.items() if k != "parts"}, overrides, quick):
            if cell.run_name in owner:
                raise HrlError(f"parts {owner[cell.run_name]!r} and {name!r} both hold run {cell.run_name}")
            owner[cell.run_name] = name
            cell.part = name
            if not wanted or name in wanted:
                cells.append(cell)
    return cells


def _matches(value, wanted) -> bool:
    """Whether a config value is among filter values given as numbers or strings (60 = 60.0)."""
    for w in wanted:
        try:
            if value == type(value)(w):
                return True
        except (TypeError, ValueError):
            continue
    return False


RUNNING_ELSEWHERE = "running elsewhere"
IN_RECORD = "complete in the committed record"
DAMAGED = "complete but its record is damaged"
SKIPPED = "skipped (complete)"


class Kind(str, enum.Enum):
    """What a cell's folder holds, as far as running the grid goes."""

    NEW = "new"
    RESUMES = "running"  # unfinished: resumes from its snapshot
    FAILED = "failed"  # resumes from its snapshot
    COMPLETE = "complete"
    IN_RECORD = "in record"  # complete in a committed record (its own or one the grid file reuses)
    DIVERGED = "diverged"  # run again only with hrl finetune --restart
    DAMAGED = "damaged"  # complete, record damaged: left alone
    RUNNING_ELSEWHERE = "running elsewhere"  # another live process holds its lock
    OTHER_RUN = "other run"  # its folder holds a run with other settings or inputs
    INPUTS_MISSING = "inputs missing"


TRAINS = frozenset({Kind.NEW, Kind.RESUMES, Kind.FAILED})  # cells `hrl grid` trains (its estimate counts these)
# ... and cells it executes only for their record of what is wrong (their notebook fails at once, saying why)
FAILS_AT_ONCE = frozenset({Kind.DIVERGED, Kind.OTHER_RUN, Kind.INPUTS_MISSING})


class CellStatus(str):
    """A cell's status: the text ``--dry_run`` prints, with its :class:`Kind` (decide on the kind,
    never on the text)."""

    kind: Kind

    def __new__(cls, text: str, kind: Kind) -> CellStatus:
        obj = super().__new__(cls, text)
        obj.kind = kind
        return obj

    @property
    def runs(self) -> bool:
        """Whether `hrl grid` trains this cell (new, or unfinished: resumes)."""
        return self.kind in TRAINS

    @property
    def executes(self) -> bool:
        """Whether `hrl grid` executes its notebook: to train it, or to record why it cannot."""
        return self.kind in TRAINS or self.kind in FAILS_AT_ONCE


_BY_TEXT = {"new": Kind.NEW, "running": Kind.RESUMES, "failed": Kind.FAILED, "complete": Kind.COMPLETE,
            "diverged": Kind.DIVERGED}  # fmt: skip


def cell_status(cell: Cell, allow_download: bool = False, check_reuse: bool = True) -> CellStatus:
    """What running this cell would do, without running it.

    ``new`` | ``complete`` | ``running`` (unfinished: resumes) | ``failed`` (resumes) |
    ``diverged`` | ``running elsewhere: <holder>`` (another live process holds its lock)
    | ``other run in folder: <differences>`` | ``inputs missing: <reason>`` | ``complete but its
    record is damaged: ...`` (never run again by the grid) | ``complete in the committed record
    ...`` (the results folder lacks it, ``records/`` has it: skipped). Phase II cells are
    compared by identity (settings and input digests), so a cell whose folder holds a run
    with other inputs or settings is not reported complete. A run a reused record
    (the grid file's ``reuse:``) holds counts as complete only while its arm passes the reuse
    check (``hrl_core.lab.reuse``; ``check_reuse=False``: without consulting it).
    """
    from hrl_core.run import folder, lock

    holder = lock.live_holder(cell.run_dir)
    if holder is not None:
        return CellStatus(f"{RUNNING_ELSEWHERE}: {lock.describe(holder)}", Kind.RUNNING_ELSEWHERE)
    if cell.kind is not None and not cell.kind.by_identity:  # Phase I cells: their status
        text = folder.read_status(cell.run_dir) or "new"
        return CellStatus(text, _BY_TEXT.get(text, Kind.FAILED))
    try:
        inputs = folder.resolve_inputs(cell.config, allow_download=allow_download)
    except HrlError as exc:
        return CellStatus(f"inputs missing: {exc}", Kind.INPUTS_MISSING)
    wanted = folder.identity(cell.config, inputs)
    found = folder.existing(cell.run_dir, wanted)
    if found.status == "new":
        # a run the committed record holds complete (a fresh clone, another disk), or a record the
        # grid file reuses, is not recomputed
        from hrl_core.lab import records, reuse

        for i, kept_root in enumerate(records.record_dirs(cell)):
            if i and check_reuse and not reuse.allowed(cell, reuse.read(cell.run_dir.parent)):
                continue  # its arm failed the reuse check: this study runs it
            kept = kept_root / cell.run_name
            if folder.existing(kept, wanted).status == "complete":
                return CellStatus(f"{IN_RECORD} {kept.parent} (not re-run; its checkpoint is not kept there)",
                                  Kind.IN_RECORD)  # fmt: skip
    if found.status == "other":
        return CellStatus(f"other run in folder: {'; '.join(found.differences)}", Kind.OTHER_RUN)
    if found.status == "damaged":
        return CellStatus(
            f"{DAMAGED}: {'; '.join(found.differences)} (left alone; --restart in hrl finetune recomputes it)",
            Kind.DAMAGED,
        )
    return CellStatus(found.status, _BY_TEXT.get(found.status, Kind.FAILED))


def estimate_seconds(cells: list[Cell], workers: int, groups: list[list[Cell]] | None = None) -> float:
    """Wall-time estimate: each task (a cell alone, or a population of ``groups``) costs its cells'
    steps x each algorithm's declared ms per step (in a population, what ``population_cost`` says a
    cell-step costs at that size: ``hrl bench --population``), and the workers take the tasks in the
    order the grid submits them (populations, then cells alone), each as it frees up. So a last
    wave of fewer tasks than workers counts at its length, not shared out: 11 populations on 2
    workers take 6 of their lengths, not 5.5."""
    from hrl_core.rl import agents

    def seconds(c: Cell, size: int) -> float:
        algo = agents.get(c.config.algo)
        evals = c.steps // c.config.eval_interval + 1
        per_step = algo.ms_per_step / 1000 * population_cost(algo, size)
        return c.steps * per_step + evals * c.config.eval_episodes * EVAL_SECONDS_PER_EPISODE

    grouped = {c.run_name for g in (groups or []) for c in g}
    tasks = [sum(seconds(c, len(g)) for c in g) for g in (groups or []) if g]
    tasks += [seconds(c, 1) for c in cells if c.run_name not in grouped]
    free = [0.0] * max(workers, 1)  # when each worker is next free
    for task in tasks:
        heapq.heappush(free, heapq.heappop(free) + task)
    return max(free)


def population_cost(algo_cls, size: int) -> float:
    """A cell-step's cost in a population of ``size`` relative to a run alone (the algorithm's
    measured ``population_cost``: the largest size measured at or below it; 1 where none is declared)."""
    table = dict(getattr(algo_cls, "population_cost", {}) or {})
    if size <= 1 or not table:
        return 1.0
    sizes = sorted(table)
    below = max([s for s in sizes if s <= size], default=sizes[0])
    return float(table[below])


EVAL_SECONDS_PER_EPISODE = 0.15  # one 1,000-step episode, stepped with the others


def format_duration(seconds: float) -> str:
    hours, rem = divmod(int(seconds), 3600)
    return f"{hours} h {rem // 60:02d} min" if hours else f"{rem // 60} min {rem % 60:02d} s"
