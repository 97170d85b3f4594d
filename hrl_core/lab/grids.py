"""``hrl grid``: the study's grid, one papermill-executed notebook per cell, on Dask.

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

An optional ``parts:`` mapping cuts a grid into named slices that run in the file's
order and are analysed one record each (``hrl grid --part``, ``hrl study --part``)::

    parts:
      iql-hopper: {algos: [iql], datasets: [hopper-medium-v2], seeds: [0, 1, 2, 3, 4]}
      cql: {algos: [cql], arms: [vanilla, spec]}

A part gives its own values for any axis (the others are the file's) and may pick a
subset of the arms; the grid is the union of its parts, and no run may be in two parts.

Cells run seed-major (all seed-0 cells first), so a grid stopped early leaves every
setting with the same number of seeds rather than some settings with all of them.

Every cell executes ``notebooks/finetune.ipynb`` with papermill into
``executed/<run_name>.ipynb`` (the injected parameters stay in the notebook). A cell
whose folder holds a complete run with the same identity (settings and inputs) is
skipped, so re-running resumes a grid; an unfinished cell resumes from its snapshot;
a cell another process is running is reported "running elsewhere" and left alone.
Cells run as tasks on Dask: a ``LocalCluster`` sized to the machine, or any cluster
given by ``--scheduler``.
"""

from __future__ import annotations

import itertools
import os
import socket
import sys
import time
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
}
# Keys a grid file may have besides its axes.
OPTIONAL_KEYS = {
    "settings", "algo_settings", "description", "kind", "arms", "comparisons", "executed_dir", "cpu_hours", "parts"
}  # fmt: skip
# ``kind: pretrain`` grids (Phase I) have no bonus axis and name the dataset env_name.
PRETRAIN_AXES = {"algos": "algo", "datasets": "env_name", "remove_top_k": "remove_top_k", "seeds": "seed"}
PRETRAIN_NOTEBOOK = resources.folder("notebooks") / "pretrain.ipynb"


def _kind(spec: dict) -> tuple[dict, type, dict, Path]:
    """(axes, config class, quick budget, notebook) of a grid file's kind."""
    from hrl_core.run.pretrain import QUICK_STEPS, PretrainConfig

    if spec.get("kind", "finetune") == "pretrain":
        return PRETRAIN_AXES, PretrainConfig, {"total_steps": QUICK_STEPS}, PRETRAIN_NOTEBOOK
    return AXES, FinetuneConfig, QUICK, DEFAULT_NOTEBOOK


@dataclass
class Cell:
    """One grid cell: its settings and where its records go."""

    config: FinetuneConfig  # or a PretrainConfig for kind: pretrain grids
    notebook_out: Path = field(default=Path())
    notebook: Path = DEFAULT_NOTEBOOK  # the notebook papermill executes for this cell
    arm: str = ""  # the study arm this cell belongs to (grid files with arms:); not part of the run
    part: str = ""  # the grid file's part this cell belongs to (grid files with parts:); not part of the run

    @property
    def run_name(self) -> str:
        return self.config.run_name

    @property
    def steps(self) -> int:
        """Training steps of the cell: online steps (Phase II) or gradient steps (Phase I)."""
        return getattr(self.config, "online_steps", None) or self.config.total_steps

    @property
    def run_dir(self) -> Path:
        return Path(self.config.save_dir) / self.run_name


def load_grid(path: str | Path) -> dict:
    path = resources.params_file(path)
    try:
        spec = yaml.safe_load(path.read_text())
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
    axes, config_cls, _, _ = _kind(spec)
    for key in ("settings", "algo_settings", "comparisons"):  # arms and parts say so themselves, below
        if spec.get(key) is not None and not isinstance(spec[key], dict):
            raise HrlError(f"grid file {path}: {key} must be a mapping (key: value lines), not {spec[key]!r}")
    missing = [k for k in axes if k not in spec]
    if "arms" in spec and "bonus_types" in missing:
        missing.remove("bonus_types")  # the arms set bonus_type
    unknown = set(spec) - set(axes) - OPTIONAL_KEYS
    if missing or unknown:
        raise HrlError(f"grid file {path}: missing keys {missing}, unknown keys {sorted(unknown)}")
    known = {f.name for f in fields(config_cls)}
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
    _check_parts(path, spec, axes)
    _check_values(path, spec, axes, config_cls)
    return spec


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
        unknown = set(part) - set(axes) - {"arms"}
        if unknown:
            raise HrlError(f"grid file {path}: part {name!r} has unknown keys {sorted(unknown)}; "
                           f"valid: {', '.join(list(axes) + ['arms'])}")  # fmt: skip
        for key, values in part.items():
            if not isinstance(values, list) or not values:
                raise HrlError(f"grid file {path}: part {name!r}: {key} must be a non-empty list")
        if not set(part.get("arms", [])) <= set(spec.get("arms") or {}):
            raise HrlError(f"grid file {path}: part {name!r} names arms the file does not have")


def expand(spec: dict, filters: dict | None = None, overrides: dict | None = None, quick: bool = False) -> list[Cell]:
    """All cells of a grid (axes in the file's order), optionally filtered.

    ``filters`` maps an axis key (``algos`` ...) to the allowed values; ``overrides``
    sets FinetuneConfig fields for every cell (e.g. ``save_dir``); ``quick`` applies
    the --quick budget (5,000 steps, evaluation every 1,000 with 5 episodes).
    """
    filters = filters or {}
    if spec.get("parts"):
        return _expand_parts(spec, filters, overrides, quick)
    axis_names, config_cls, quick_budget, notebook = _kind(spec)
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
        # Precedence: shared settings < per-algorithm settings < --quick/overrides < axes < the arm's settings.
        cfg = config_cls(**{**shared, **per_algo, **late, **values, **(arm_settings or {})})
        if not all(_matches(getattr(cfg, name), wanted) for name, wanted in axis_filters.items()):
            continue
        # Absolute paths: notebooks run with notebooks/ as working directory (and a
        # remote worker elsewhere), so relative paths are fixed here, from where
        # `hrl grid` was started, as `hrl finetune` would read them.
        if hasattr(cfg, "resolve_paths"):
            cfg.resolve_paths(Path.cwd())
        else:
            cfg.save_dir = str(Path(cfg.save_dir).resolve())
        cell = Cell(cfg, notebook=notebook, arm="" if arm is None else str(arm))
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
    for name, part in spec["parts"].items():
        sub = {k: v for k, v in spec.items() if k != "parts"}
        sub.update({k: v for k, v in part.items() if k != "arms"})
        if "arms" in part:
            sub["arms"] = {a: spec["arms"][a] for a in part["arms"]}
        for cell in expand(sub, {k: v for k, v in filters.items() if k != "parts"}, overrides, quick):
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


def cell_status(cell: Cell, allow_download: bool = False) -> str:
    """What running this cell would do, without running it.

    ``new`` | ``complete`` | ``running`` (unfinished: resumes) | ``failed`` (resumes) |
    ``diverged`` | ``running elsewhere: <holder>`` (another live process holds its lock)
    | ``other run in folder: <differences>`` | ``inputs missing: <reason>`` | ``complete but its
    record is damaged: ...`` (never run again by the grid). Phase II cells are
    compared by identity (settings and input digests), so a cell whose folder holds a run
    with other inputs or settings is not reported complete.
    """
    from hrl_core.run import folder, lock

    holder = lock.live_holder(cell.run_dir)
    if holder is not None:
        return f"running elsewhere: {lock.describe(holder)}"
    if not hasattr(cell.config, "identity_settings"):  # Phase I cells
        return folder.read_status(cell.run_dir) or "new"
    try:
        inputs = folder.resolve_inputs(cell.config, allow_download=allow_download)
    except HrlError as exc:
        return f"inputs missing: {exc}"
    found = folder.existing(cell.run_dir, folder.identity(cell.config, inputs))
    if found.status == "other":
        return f"other run in folder: {'; '.join(found.differences)}"
    if found.status == "damaged":
        return f"{DAMAGED}: {'; '.join(found.differences)} (left alone; --restart in hrl finetune recomputes it)"
    return found.status


def estimate_seconds(cells: list[Cell], ms_per_step: dict[str, float], workers: int) -> float:
    """Wall-time estimate: online steps x measured ms/step (hrl bench), over the workers."""
    total = 0.0
    for c in cells:
        per_step = ms_per_step[c.config.algo] / 1000
        evals = c.steps // c.config.eval_interval + 1
        total += c.steps * per_step + evals * c.config.eval_episodes * EVAL_SECONDS_PER_EPISODE
    return total / max(workers, 1)


# Per online step on the reference 2-core CPU machine, one torch thread per cell, two
# cells side by side, N=3. CQL: `hrl bench --threads 1` (median of 3, halfcheetah shapes,
# 110.6 ms; hopper 107.5). IQL: end to end in the variants study (30,000-step hopper cells
# took ~510 s each, loop, evaluation and start-up included; `hrl bench --threads 1` alone
# says 12 ms). README "Performance".
MS_PER_STEP_1_THREAD = {"cql": 110.0, "iql": 17.0}
EVAL_SECONDS_PER_EPISODE = 0.15  # one 1,000-step episode, stepped with the others


def format_duration(seconds: float) -> str:
    hours, rem = divmod(int(seconds), 3600)
    return f"{hours} h {rem // 60:02d} min" if hours else f"{rem // 60} min {rem % 60:02d} s"


def default_workers() -> int:
    """One cell per core, one torch thread each (see :func:`plan_workers`)."""
    return max(1, os.cpu_count() or 1)


@dataclass
class WorkerSpec:
    """One Dask worker of a local grid: its name, the GPU it is pinned to, its torch threads."""

    name: str
    gpu: int | None  # CUDA device index made visible to it (CUDA_VISIBLE_DEVICES); None: CPU
    threads: int  # torch threads of the cell it runs

    @property
    def env(self) -> dict:
        env = {"OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
        if self.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(self.gpu)
        return env


def visible_gpus() -> int:
    """CUDA GPUs this machine offers (0 without torch CUDA)."""
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no usable CUDA means no GPUs
        return 0


def plan_workers(n_gpus: int, cpu_count: int, cells_per_gpu: int = 1, workers: int | None = None,
                 threads_per_cell: int | None = None) -> list[WorkerSpec]:  # fmt: skip
    """The local workers of a grid.

    With G GPUs: ``cells_per_gpu`` workers per GPU, each seeing only its own GPU (so a
    cell's ``device=auto`` is that GPU), the cores shared out among them. Without: one
    worker per core (or ``workers``) with one torch thread each -- measured on 2 cores,
    two 1-thread cells finish more steps per second than one 2-thread cell (IQL 14.3 vs
    10.3 ms per update, CQL 135 vs 96 ms), and more threads than cores run several
    times slower.
    """
    if n_gpus > 0:
        n = workers or n_gpus * max(1, cells_per_gpu)
        threads = threads_per_cell or max(1, cpu_count // n)
        return [WorkerSpec(f"gpu{i % n_gpus}-{i // n_gpus}", i % n_gpus, threads) for i in range(n)]
    n = workers or max(1, cpu_count)
    threads = threads_per_cell or 1
    return [WorkerSpec(f"cpu{i}", None, threads) for i in range(n)]


LOOPBACK = "127.0.0.1"  # where a local grid's scheduler and workers listen


def local_cluster(specs: list[WorkerSpec]):
    """A Dask cluster on this machine with one process per WorkerSpec (its env, its GPU)."""
    from dask.distributed import Nanny, Scheduler, SpecCluster

    # Loopback only: Dask's comm protocol runs whatever function it is sent, so a worker
    # listening on the machine's network address (its default: all interfaces) lets anyone
    # who reaches the node run code as the user. The worker's HTTP endpoints follow its host.
    options = {"nthreads": 1, "silence_logs": 40, "host": LOOPBACK}
    workers = {s.name: {"cls": Nanny, "options": {**options, "env": s.env, "name": s.name}} for s in specs}
    scheduler = {"cls": Scheduler, "options": {"dashboard_address": None, "host": LOOPBACK}}
    return SpecCluster(workers=workers, scheduler=scheduler, silence_logs=40)


@dataclass
class SlurmOptions:
    """What a cluster user sets for ``hrl grid --cluster slurm`` (dask-jobqueue SLURMCluster)."""

    partition: str | None = None  # Slurm partition (queue); None: the cluster's default
    walltime: str = "24:00:00"  # per job; a cell cut by it resumes in the next job from its snapshot
    cores: int = 2  # CPU cores per job
    memory: str = "8GB"  # memory per job
    gpus_per_job: int = 0  # 0: CPU jobs (one cell per core); 1: one GPU per job shared by cells_per_gpu cells
    jobs: int = 4  # jobs at once
    job_extra: tuple = ()  # extra #SBATCH lines, e.g. ("--account=myproj", "--qos=long")
    cells_per_gpu: int = 1  # concurrent cells on a job's GPU
    log_dir: str = "slurm-logs"  # the jobs' stdout/stderr

    @property
    def cells_per_job(self) -> int:
        return self.cells_per_gpu if self.gpus_per_job else self.cores

    @property
    def threads_per_cell(self) -> int:
        return max(1, self.cores // self.cells_per_job)

    def describe(self) -> str:
        where = f"partition {self.partition}" if self.partition else "the default partition"
        gpu = f", {self.gpus_per_job} GPU ({self.cells_per_gpu} cell(s) on it)" if self.gpus_per_job else ""
        return (f"slurm: up to {self.jobs} job(s) at once on {where}, each {self.cores} cores, {self.memory}{gpu}, "
                f"walltime {self.walltime}; {self.cells_per_job} cell(s) per job, {self.threads_per_cell} torch "
                f"thread(s) per cell")  # fmt: skip


def slurm_cluster(opts: SlurmOptions, env: dict | None = None):
    """A dask-jobqueue SLURMCluster for the grid, scaled to ``opts.jobs`` jobs.

    Each job runs one Dask worker with one thread per concurrent cell (cells run in their
    own kernel processes). At walltime or preemption Slurm sends SIGTERM to every process
    of the job and SIGKILL ``KillWait`` seconds later (30 s by default): a running cell
    writes a snapshot on SIGTERM, and the grid (or its re-run) resumes it in another job.
    """
    import sys

    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise HrlError("--cluster slurm needs dask-jobqueue: pip install 'hrl[slurm]'") from None
    exports = {**(env or {}), "OMP_NUM_THREADS": str(opts.threads_per_cell)}
    directives = list(opts.job_extra)
    if opts.gpus_per_job:
        directives.append(f"--gres=gpu:{opts.gpus_per_job}")
    Path(opts.log_dir).mkdir(parents=True, exist_ok=True)
    cluster = SLURMCluster(
        queue=opts.partition,
        cores=opts.cells_per_job,  # worker threads = concurrent cells
        job_cpu=opts.cores,
        processes=1,
        memory=opts.memory,
        walltime=opts.walltime,
        job_extra_directives=directives,
        job_script_prologue=[f"export {k}={v}" for k, v in exports.items()],
        python=sys.executable,
        log_directory=opts.log_dir,
        scheduler_options={"dashboard_address": None},
    )
    cluster.scale(jobs=opts.jobs)
    return cluster


def plan_text(cells: list[Cell], scheduler: str | None, slurm: SlurmOptions | None, workers: int | None,
              cells_per_gpu: int, threads_per_cell: int, n_gpus: int | None = None,
              cpu_count: int | None = None) -> str:  # fmt: skip
    """What ``hrl grid`` would start to run these cells (for --dry_run)."""
    if scheduler:
        return f"an existing Dask cluster at {scheduler} (its workers' own resources)"
    if slurm is not None:
        return slurm.describe()
    n_gpus = visible_gpus() if n_gpus is None else n_gpus
    cpus = cpu_count or os.cpu_count() or 1
    specs = plan_workers(n_gpus, cpus, cells_per_gpu, workers, threads_per_cell if not n_gpus else None)
    if n_gpus:
        return (f"local: {len(specs)} worker(s) on {n_gpus} GPU(s) ({cells_per_gpu} cell(s) per GPU), "
                f"{specs[0].threads} torch thread(s) per cell")  # fmt: skip
    return f"local: {len(specs)} worker(s), no GPU, {specs[0].threads} torch thread(s) per cell"


# --------------------------------------------------------------------------------------
# Execution
# --------------------------------------------------------------------------------------
def notebook_parameters(cfg) -> dict:
    """Config -> the notebook's parameters: its fields as they are (papermill writes None as None)."""
    from dataclasses import asdict

    params = asdict(cfg)
    params["progress"] = False  # papermill output stays readable; the grid shows progress
    if isinstance(cfg, FinetuneConfig):
        params["grid_cell"] = True  # finished meanwhile by another process: skip, do not re-record
    return params


RUNNING_ELSEWHERE = "running elsewhere"
DAMAGED = "complete but its record is damaged"
SKIPPED = "skipped (complete)"


def partial_path(output: Path, host: str | None = None, pid: int | None = None) -> Path:
    """The hidden file a cell's notebook is executed into: one per executing process."""
    host, pid = host or socket.gethostname(), pid or os.getpid()
    return output.with_name(f".{output.stem}.{host}-{pid}.partial.ipynb")


def _remove_stale_partials(output: Path, before: float) -> None:
    """Partial notebooks of this cell left by killed executions (older than this one)."""
    for stale in output.parent.glob(f".{output.stem}.*.partial.ipynb"):
        try:
            if stale.stat().st_mtime < before:
                stale.unlink()
        except FileNotFoundError:  # its owner removed it meanwhile
            pass


KERNEL_START_ATTEMPTS = 3  # a kernel that dies before running any cell is started again


def _nothing_ran(partial: Path) -> bool:
    """True when papermill ran none of the notebook's cells (e.g. its kernel died at start:
    two kernels started at once on one host can pick the same free TCP port)."""
    import json

    try:
        cells = json.loads(partial.read_text()).get("cells", [])
    except (OSError, ValueError):
        return True  # not even written: nothing ran
    # papermill marks every cell "completed" when it ends, even unrun ones: a cell ran iff it has a start time
    return all(c.get("metadata", {}).get("papermill", {}).get("start_time") is None for c in cells)


def execute_cell(notebook: str, output: str, parameters: dict, env: dict, run_name: str = "",
                 kernel_name: str = "python3") -> dict:  # fmt: skip
    """Run one cell's notebook with papermill (in a Dask worker). Never raises.

    Returns ``{"status", "run_name", "notebook", "seconds", "error", "kernel_starts"}``.
    The notebook is executed into a hidden partial file of its own (host and PID in the
    name: two grids may start the same cell at once, and one of them then finds the run
    locked) and moved to ``output`` when it ends, so a cell that finds its run held by
    another process leaves that process's notebook alone; a failed cell keeps its
    executed notebook with the error in it. A kernel that fails before the notebook's
    first cell ran is started again (up to ``KERNEL_START_ATTEMPTS`` times): nothing of
    the run happened yet, so this cannot change a result.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    os.environ.update(env)
    t0 = time.time()
    result = {"run_name": run_name, "notebook": output, "error": None, "kernel_starts": 0}
    partial = partial_path(Path(output))
    try:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        while True:
            result["kernel_starts"] += 1
            try:
                papermill.execute_notebook(
                    notebook,
                    str(partial),
                    parameters=parameters,
                    cwd=str(Path(notebook).parent),
                    progress_bar=False,
                    log_output=False,
                    kernel_name=kernel_name,
                    # the kernel's own log: its TCP-without-encryption warning on every start is noise here
                    extra_arguments=["--IPKernelApp.log_level=ERROR"],
                )
                break
            except PapermillExecutionError:
                raise
            except Exception:  # noqa: BLE001 - retried only when no cell ran
                if result["kernel_starts"] >= KERNEL_START_ATTEMPTS or not _nothing_ran(partial):
                    raise
                time.sleep(1.0 + (os.getpid() % 7) / 3)  # two grids retrying do not meet again
        result["status"] = "complete"
    except PapermillExecutionError as exc:
        result["status"] = {"RunLocked": RUNNING_ELSEWHERE, "AlreadyComplete": SKIPPED}.get(exc.ename, "failed")
        result["error"] = f"{exc.ename}: {str(exc.evalue).strip().splitlines()[0][:300]}" if exc.evalue else exc.ename
    except Exception as exc:  # noqa: BLE001 - a failed cell must not stop the grid
        lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
        result["status"] = "failed"
        result["error"] = lines[-1][:300] if lines else exc.__class__.__name__
        if result["kernel_starts"] > 1:
            result["error"] += f" (kernel started {result['kernel_starts']} times)"
    finally:
        try:
            if result.get("status") in (RUNNING_ELSEWHERE, SKIPPED):  # another process's record stays
                partial.unlink(missing_ok=True)
                result["notebook"] = None
            elif partial.exists():
                os.replace(partial, output)
                _remove_stale_partials(Path(output), t0)
        except OSError as exc:  # e.g. a full disk: the run's own folder holds its results
            result["error"] = (result.get("error") or "") + f"; executed notebook not kept ({exc})"
    result["seconds"] = time.time() - t0
    return result


def run_grid(
    cells: list[Cell],
    notebook: Path = DEFAULT_NOTEBOOK,
    executed_dir: Path = Path("executed"),
    scheduler: str | None = None,
    workers: int | None = None,
    threads_per_cell: int = 1,
    progress: bool = True,
    cluster=None,
    cells_per_gpu: int = 1,
) -> list[dict]:
    """Execute the cells on Dask; returns one result dict per cell (skipped ones too).

    ``scheduler``: an existing Dask cluster's address; ``cluster``: a cluster object
    (e.g. dask-jobqueue's SLURMCluster); otherwise a local cluster from :func:`plan_workers`.
    """
    from dask.distributed import Client, as_completed
    from tqdm.auto import tqdm

    todo, results = [], []
    for cell in cells:
        status = cell_status(cell, allow_download=True)
        if status == "complete":
            results.append({"run_name": cell.run_name, "status": SKIPPED, "notebook": None})
        elif status.startswith(DAMAGED):  # a complete run's damaged record: never silently recomputed
            results.append({"run_name": cell.run_name, "status": "failed", "notebook": None,
                            "error": status})  # fmt: skip
        elif status.startswith(RUNNING_ELSEWHERE):
            results.append({"run_name": cell.run_name, "status": RUNNING_ELSEWHERE, "notebook": None,
                            "error": status.split(": ", 1)[1]})  # fmt: skip
        else:
            todo.append(cell)
    if not todo:
        return results

    # Propagate the data locations to the workers (a remote cluster may differ: then
    # set them in the workers' environment instead).
    env = {k: os.environ[k] for k in ("D4RL_DATASET_DIR", "HRL_PHASE1_DIR") if k in os.environ}
    own_cluster = None
    if scheduler:
        client = Client(scheduler)
    elif cluster is not None:
        client = Client(cluster)
    else:
        specs = plan_workers(visible_gpus(), os.cpu_count() or 1, cells_per_gpu, workers, threads_per_cell)
        own_cluster = local_cluster(specs)
        client = Client(own_cluster)
    try:
        futures = {}
        for cell in todo:
            cfg = cell.config
            if getattr(cfg, "threads", 0) is None and not own_cluster:
                cfg.threads = threads_per_cell  # a worker of someone else's cluster: the grid's choice
            params = notebook_parameters(cfg)
            out = Path(executed_dir) / f"{cell.run_name}.ipynb"
            cell.notebook_out = out
            fut = client.submit(
                execute_cell,
                str(notebook if notebook != DEFAULT_NOTEBOOK else cell.notebook),
                str(out),
                params,
                env,
                cell.run_name,
                key=f"cell-{cell.run_name}",
                pure=False,
                retries=0,
            )
            futures[fut] = cell
        bar = tqdm(total=len(todo), desc="grid", unit="cell", disable=not progress)
        counts = {"complete": 0, "failed": 0, RUNNING_ELSEWHERE: 0}
        t0 = time.time()
        for fut in as_completed(futures):
            try:
                res = fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker lost (e.g. its Slurm job ended)
                cell = futures[fut]
                error = f"worker lost ({exc.__class__.__name__}); run the grid again to resume the cell"
                res = {"run_name": cell.run_name, "status": "failed", "notebook": str(cell.notebook_out)}
                res["error"] = error
            results.append(res)
            counts[res["status"]] = counts.get(res["status"], 0) + 1
            finished = sum(counts.values())
            eta = (time.time() - t0) / finished * (len(todo) - finished)
            bar.set_postfix(done=counts["complete"], failed=counts["failed"], elsewhere=counts[RUNNING_ELSEWHERE],
                            eta=format_duration(eta), refresh=False)  # fmt: skip
            bar.update(1)
        bar.close()
    finally:
        client.close()
        if own_cluster is not None:
            own_cluster.close()
    return results


def print_results(results: list[dict], out=sys.stdout) -> int:
    """Summary lines; returns the number of failed cells (cells running elsewhere are not failures)."""
    failed = [r for r in results if r["status"] == "failed"]
    ran = [r for r in results if r["status"] == "complete"]
    skipped = [r for r in results if r["status"].startswith("skipped")]
    elsewhere = [r for r in results if r["status"] == RUNNING_ELSEWHERE]
    print(
        f"grid: {len(ran)} ran, {len(skipped)} skipped (already complete), {len(elsewhere)} running elsewhere, "
        f"{len(failed)} failed",
        file=out,
    )
    for r in elsewhere:
        print(f"  ELSEWHERE {r['run_name']}: {r.get('error')}", file=out)
    for r in failed:
        print(f"  FAILED {r['run_name']}: {r['error']}\n         notebook: {r['notebook']}", file=out)
    return len(failed)
