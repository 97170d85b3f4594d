"""Command line: ``hrl finetune | grid | plot | study | pretrain | data | bench | demo``.

``hrl finetune``'s flags are generated from :class:`hrl_core.run.config.FinetuneConfig`
(names, types, choices, ranges, help), so a new setting appears here by itself.
Errors a user can fix print one line (``hrl: error: ...``) and exit non-zero; pass
``--debug`` to see the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import MISSING, fields

from hrl_core.errors import HrlError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (README: errors are one line)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_config_flags(parser, cls, required=(), quick: dict | None = None, aliases: dict | None = None) -> None:
    """One ``--name`` flag per field of a settings dataclass, from its declaration
    (``aliases``: extra spellings, e.g. ``--env`` for Phase I's ``env_name``)."""
    import typing

    from hrl_core.run.config import base_type, field_choices, field_help, range_text

    hints = typing.get_type_hints(cls)
    helps = field_help(cls)
    for f in fields(cls):
        if f.name == "hyper":  # an algorithm's own hyper-parameters: one flag each, --<algo>.<name>
            _add_hyper_flags(parser)
            continue
        hint = hints[f.name]
        choices = field_choices(cls, f.name) or None
        default = f.default_factory() if f.default is MISSING else f.default
        text = helps.get(f.name, "")
        if f.metadata.get("lo") is not None or f.metadata.get("hi") is not None:
            text += f"; range {range_text(f)}"
        if f.name not in required:
            text += f" (default {default}" + (f"; --quick {quick[f.name]}" if quick and f.name in quick else "") + ")"
        parser.add_argument(
            f"--{f.name}",
            *(aliases or {}).get(f.name, ()),
            dest=f.name,
            type=base_type(hint),
            choices=choices,
            default=None,  # None = not given: --quick and the dataclass decide
            required=f.name in required,
            help=text.replace("%", "%%"),
        )


def _add_hyper_flags(parser) -> None:
    """``--iql.expectile 0.8``: every registered algorithm's own hyper-parameters, from its config's
    declaration (the value applies when the run's --algo is that algorithm)."""
    import json
    import typing

    from hrl_core.rl import agents
    from hrl_core.run.config import base_type, field_help, hyper_fields

    group = parser.add_argument_group("an algorithm's own hyper-parameters (apply when --algo is that algorithm)")

    def mapping(text: str) -> dict:
        try:
            value = json.loads(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not JSON: {text!r} (e.g. '{{\"iql.expectile\": 0.8}}')") from None
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError("give a JSON mapping of '<algo>.<name>' to a value")
        return value

    group.add_argument("--hyper", dest="hyper", type=mapping, default=None, metavar="JSON",
                       help="several at once as a JSON mapping, e.g. '{\"iql.expectile\": 0.8}' (the flags below "
                            "win over it)")  # fmt: skip
    for algo in agents.names():
        cls = agents.get(algo)
        hints, helps = typing.get_type_hints(cls), field_help(cls)
        for name, f in hyper_fields(algo).items():
            kind = base_type(hints[name])
            kind = (lambda v: v.lower() in ("1", "true", "yes")) if kind is bool else kind
            group.add_argument(f"--{algo}.{name}", dest=f"hyper:{algo}.{name}", type=kind, default=None,
                               metavar=name.upper(),
                               help=f"{helps.get(name, '')} (default {f.default})".replace("%", "%%"))  # fmt: skip


def config_from_args(args, cls, quick: dict | None = None):
    """Explicit flags win over --quick, which wins over the dataclass defaults."""
    values = {f.name: getattr(args, f.name) for f in fields(cls) if getattr(args, f.name, None) is not None}
    hyper = {k.partition(":")[2]: v for k, v in vars(args).items() if k.startswith("hyper:") and v is not None}
    if hyper or values.get("hyper"):
        values["hyper"] = {**(values.get("hyper") or {}), **hyper}
    if getattr(args, "quick", False):
        for key, value in (quick or {}).items():
            values.setdefault(key, value)
    return cls(**values)


# --------------------------------------------------------------------------------------
# hrl finetune
# --------------------------------------------------------------------------------------
def _add_finetune(sub) -> None:
    from hrl_core.run.config import CELL_KEYS, QUICK, FinetuneConfig

    p = sub.add_parser(
        "finetune",
        help="fine-tune one Phase I checkpoint online (one grid cell)",
        description="Fine-tune one Phase I checkpoint online with hybrid replay. Running the same "
        "command again resumes an unfinished run and leaves a complete one alone; a run with other "
        "settings or inputs gets its own folder.",
    )
    add_config_flags(p, FinetuneConfig, required=CELL_KEYS, quick=QUICK)
    p.add_argument("--quick", action="store_true", help="5,000 steps, evaluation every 1,000 with 5 episodes")
    p.add_argument("--restart", action="store_true", help="discard an existing run of this cell and start over")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run_finetune)


def _run_finetune(args) -> int:
    from hrl_core.run.config import QUICK, FinetuneConfig
    from hrl_core.run.finetune import finetune

    cfg = config_from_args(args, FinetuneConfig, QUICK).resolve_paths(os.getcwd())
    result = finetune(cfg, restart=args.restart, progress=not args.no_progress)
    m = result.metrics
    if result.status == "complete":
        print(
            f"done: {result.run_dir} | normalized return {m['normalized_return'][0]:.1f} at step 0 -> "
            f"{m['normalized_return'][-1]:.1f} at step {m['step'][-1]}"
        )
    return 0


# --------------------------------------------------------------------------------------
# hrl bench
# --------------------------------------------------------------------------------------
def _add_bench(sub) -> None:
    from hrl_core.rl.envs import DATASETS

    p = sub.add_parser(
        "bench",
        help="time one online step part by part against this machine's GEMM rate",
        description="Median milliseconds per online step (update, acting + bonus, sampling, env step), "
        "the update's FLOP count and efficiency, and evaluation time.",
    )
    from hrl_core.rl import agents

    p.add_argument("--algo", nargs="+", default=list(agents.names()), choices=agents.names(), help="algorithms to time")
    p.add_argument("--env", nargs="+", default=sorted(DATASETS), choices=sorted(DATASETS), help="datasets (shapes)")
    p.add_argument("--n_ensemble", nargs="+", type=int, default=[3, 5], help="ensemble sizes (default 3 5)")
    p.add_argument("--batch_size", type=int, default=256, help="batch size (default %(default)s)")
    p.add_argument("--repeats", type=int, default=15, help="timed repeats per update (medians reported)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: as a run would choose)")
    p.add_argument(
        "--compile",
        action="store_true",
        help="time CQL with its critic pass torch.compiled (runs do that on CUDA; on a CPU they stay eager)",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA if present) | cpu | cuda | cuda:N")
    p.add_argument(
        "--population",
        nargs="+",
        type=int,
        default=None,
        help="time populations of these sizes against a run alone, side by side (e.g. 2 4 8 16): "
        "per cell-step ms, %% of the GEMM floor, operators dispatched (1 thread unless --threads)",
    )
    p.add_argument(
        "--layers",
        nargs="+",
        default=["auto"],
        choices=("auto", "per_cell", "batched"),
        help="with --population: how stacked layers run (auto: as runs do; both forced paths to compare)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")

    def handler(args):
        from hrl_core.lab.bench import main_bench

        return main_bench(args)

    p.set_defaults(handler=handler)


# --------------------------------------------------------------------------------------
# hrl grid
# --------------------------------------------------------------------------------------
def _add_grid(sub) -> None:
    p = sub.add_parser(
        "grid",
        help="run the grid: one papermill-executed notebook per cell, on Dask",
        description="Expand a grid file, skip complete cells, and execute notebooks/finetune.ipynb once per "
        "remaining cell with papermill into executed/<run_name>.ipynb, on a Dask cluster.",
    )
    p.add_argument("--params", default=None, help="grid YAML (default params/grid.yaml; --quick: params/quick.yaml)")
    _add_cell_filters(p)
    p.add_argument(
        "--save_dir", default=None, help="where run folders go (default: the grid file's, else results_phase2)"
    )
    p.add_argument(
        "--executed_dir", default=None, help="where executed notebooks go (default: the grid file's, else executed)"
    )
    p.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler (tcp://host:8786)")
    p.add_argument("--cluster", default="local", choices=("local", "slurm"),
                   help="local: workers on this machine; slurm: workers as Slurm jobs (dask-jobqueue)")  # fmt: skip
    p.add_argument("--workers", type=int, default=None, help="local workers (default: one per core, or per GPU slot)")
    p.add_argument("--threads_per_cell", type=int, default=1, help="torch threads per cell on CPU workers (default 1)")
    p.add_argument("--cells_per_gpu", type=int, default=1, help="cells sharing one GPU (default %(default)s)")
    s = p.add_argument_group("Slurm (--cluster slurm)")
    d = grid_slurm_defaults()
    s.add_argument("--partition", default=d.partition, help="Slurm partition (default: the cluster's)")
    s.add_argument("--walltime", default=d.walltime, help="per job, HH:MM:SS (default %(default)s)")
    s.add_argument("--cores", type=int, default=d.cores, help="cores per job (default %(default)s)")
    s.add_argument("--memory", default=d.memory, help="memory per job (default %(default)s)")
    s.add_argument("--gpus_per_job", type=int, default=d.gpus_per_job, choices=(0, 1),
                   help="0: CPU jobs, one cell per core; 1: one GPU per job for --cells_per_gpu cells")  # fmt: skip
    s.add_argument("--jobs", type=int, default=d.jobs, help="jobs at once (default %(default)s)")
    s.add_argument("--job_extra", action="append", default=[],
                   help="an extra #SBATCH line, e.g. --job_extra=--account=myproj (repeatable)")  # fmt: skip
    p.add_argument("--logger", default=None, choices=("none", "csv", "tensorboard", "wandb"),
                   help="experiment tracking for every cell (default: the grid file's, else none)")  # fmt: skip
    p.add_argument("--population", default="auto",
                   help="cells trained together as one computation per worker: N, or auto (on a CPU the "
                        "size each algorithm's measured cost favours: IQL 8, CQL 1; 32 on a GPU); "
                        "1: each cell alone")  # fmt: skip
    p.add_argument("--dry_run", "--dry-run", dest="dry_run", action="store_true",
                   help="list the cells, their status and an estimated wall time; run nothing")  # fmt: skip
    p.add_argument("--check_reuse", action="store_true",
                   help="only check the records the grid file reuses (one cell per arm through two "
                        "evaluations, every reused cell's step 0) into reuse_check.json beside the runs; train "
                        "nothing else")  # fmt: skip
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run_grid)


def _add_cell_filters(p) -> None:
    """The cell selection shared by hrl grid and hrl plot."""
    p.add_argument("--quick", action="store_true", help="quick budget: 5,000 steps, eval every 1,000 with 5 episodes")
    p.add_argument("--algo", nargs="+", help="only these algos")
    p.add_argument("--env", nargs="+", help="only these datasets")
    p.add_argument("--remove_top_k", nargs="+", type=float, help="only these corruption levels")
    p.add_argument("--bonus_type", nargs="+", help="only these bonus types")
    p.add_argument("--seed", nargs="+", type=int, help="only these seeds")
    p.add_argument("--arm", nargs="+", help="only these arms (grid files with arms:)")
    p.add_argument("--part", nargs="+", help="only these parts (grid files with parts:)")


def _selected_cells(args, overrides: dict):
    """(grid file path, its spec, the cells the filters select)."""
    from hrl_core.lab import grids

    path = args.params or ("quick.yaml" if args.quick else "grid.yaml")
    spec = grids.load_grid(path)
    filters = {"algos": args.algo, "datasets": args.env, "remove_top_k": args.remove_top_k,
               "bonus_types": args.bonus_type, "seeds": args.seed, "arms": args.arm, "parts": args.part}  # fmt: skip
    if spec.get("kind") == "pretrain" and args.bonus_type:
        raise HrlError("--bonus_type does not apply to a pretrain grid")
    if args.arm and "arms" not in spec:
        raise HrlError(f"--arm needs a grid file with arms: ({path} has none)")
    if args.part and "parts" not in spec:
        raise HrlError(f"--part needs a grid file with parts: ({path} has none)")
    cells = grids.expand(spec, filters, overrides, quick=args.quick)
    if not cells:
        raise HrlError("no cell matches these filters")
    return path, spec, cells


def grid_slurm_defaults():
    from hrl_core.lab.clusters.slurm import SlurmOptions

    return SlurmOptions()


def _check_before_start(cells) -> None:
    """Every results folder writable, every cell's replay buffer within the machine's memory: checked
    for the whole grid before anything starts (a cell would otherwise fail after the cluster is up)."""
    from hrl_core.run.config import FinetuneConfig
    from hrl_core.run.finetune import replay_need
    from hrl_core.run.runtime import check_memory, check_writable, resolve_device

    for save_dir in sorted({c.run_dir.parent for c in cells}):
        check_writable(save_dir, create=False)
    for c in cells:
        if isinstance(c.config, FinetuneConfig):
            check_memory([replay_need(c.config)], resolve_device(c.config.device),
                         f"{c.run_name}: online_steps={c.config.online_steps:,} ")  # fmt: skip


def _population_size(args, backend):
    """Cells per population: --population N, or (auto) per algorithm, as measured for this kind of
    machine (a function of the algorithm; hrl_core.lab.execute.auto_population)."""
    from hrl_core.lab.execute import auto_population

    if args.population == "auto":
        n_gpus = getattr(backend, "n_gpus", 0)
        return lambda algo: auto_population(algo, n_gpus)
    try:
        size = int(args.population)
    except ValueError:
        raise HrlError(f"--population {args.population!r}: give a whole number >= 1 or auto") from None
    if size < 1:
        raise HrlError(f"--population {size}: give a whole number >= 1 (1: each cell alone) or auto")
    return size


def _run_grid(args) -> int:
    from pathlib import Path

    from hrl_core.lab import clusters, execute, grids
    from hrl_core.lab.clusters.slurm import SlurmOptions

    overrides = {"save_dir": args.save_dir} if args.save_dir else {}
    if args.logger:
        overrides["logger"] = args.logger
    path, spec, cells = _selected_cells(args, overrides)
    _check_before_start(cells)  # a dry run says what a real one would refuse, before any cluster starts
    if args.check_reuse:
        from hrl_core.lab import reuse

        if not any(c.reuse for c in cells):
            raise HrlError(f"{path} reuses no record (reuse: in the grid file); there is nothing to check")
        checks = reuse.ensure_checked_all(cells)
        failed = [f"{part or '-'} / {arm}" for (part, arm), e in checks.items() if not e.get("matches")]
        print(f"reuse: {len(failed)} arm(s) run again here" + (f": {', '.join(sorted(failed))}" if failed else ""))
        return 0
    if not args.dry_run:
        from hrl_core.run.runtime import require_extra

        require_extra(("papermill", "ipykernel", "distributed"), "grid", "hrl grid")
        if args.cluster == "slurm":
            require_extra(("dask_jobqueue",), "slurm", "hrl grid --cluster slurm")
    slurm = None
    if args.cluster == "slurm":
        slurm = SlurmOptions(partition=args.partition, walltime=args.walltime, cores=args.cores, memory=args.memory,
                             gpus_per_job=args.gpus_per_job, jobs=args.jobs, job_extra=tuple(args.job_extra),
                             cells_per_gpu=args.cells_per_gpu)  # fmt: skip
    backend = clusters.backend(args.cluster, args.scheduler, slurm, args.workers, args.cells_per_gpu,
                               args.threads_per_cell)  # fmt: skip
    size = _population_size(args, backend)
    if args.dry_run:
        from hrl_core.lab.execute import pack
        from hrl_core.rl import agents

        statuses = [grids.cell_status(c) for c in cells]
        todo = [c for c, s in zip(cells, statuses, strict=True) if s.runs]  # exactly what run_grid trains
        at_once = sum(s.executes and not s.runs for s in statuses)
        for c, s in zip(cells, statuses, strict=True):
            print(f"{c.run_name:<70} {c.steps:>7} steps  {s}")
        groups = pack(todo, size, backend.concurrent_cells())
        if any(len(g) > 1 for g in groups):
            print(f"packing: {len(todo)} cell(s) to run as {len(groups)} task(s) "
                  f"({sum(len(g) > 1 for g in groups)} population(s) trained as one computation each):")  # fmt: skip
            for g in groups:
                print(f"  {len(g)} x " + ", ".join(c.run_name for c in g))
        if any(c.reuse for c in cells):
            from hrl_core.lab import reuse

            checks = {k: e for d in {c.run_dir.parent for c in cells} for k, e in reuse.read(d).items()}
            reused = {(c.part, c.arm) for c in cells if reuse.reused_from(c) is not None}
            for part, arm in sorted(reused - set(checks)):
                print(f"reuse check pending: {part or '-'} / {arm} (one reused cell re-run through "
                      f"{reuse.EVALUATIONS} evaluations, then every reused cell's step 0, before the grid "
                      "runs)")  # fmt: skip
            for part, arm in sorted(k for k in reused & set(checks) if checks[k].get("matches")
                                    and "step0_sweep" not in checks[k]):  # fmt: skip
                print(f"reuse check pending: {part or '-'} / {arm} (every reused cell's step 0, before the grid runs)")
        workers = backend.concurrent_cells()
        est = grids.estimate_seconds(todo, workers, groups)
        unit = "task" if any(len(g) > 1 for g in groups) else "cell"  # a population is one task
        algos = sorted({c.config.algo for c in cells})
        rates = " / ".join(f"{agents.get(a).ms_per_step:.0f} ms ({a.upper()})" for a in algos)
        print(f"plan: {backend.describe()}")
        print(
            f"{len(cells)} cells, {len(todo)} to run"
            + (f" ({at_once} more executed only to record why they cannot run)" if at_once else "")
            + f"; estimated wall time {grids.format_duration(est)} on "
            f"{workers} concurrent {unit}(s) at {rates} per step (as each algorithm declares: 1 CPU thread per cell, "
            "2-core machine; GPUs are faster)"
        )
        return 0
    print(f"grid: {backend.describe()}", flush=True)
    if any(c.reuse for c in cells):  # before anything runs: is each reused record reproduced by this code?
        from hrl_core.lab import reuse

        reuse.ensure_checked_all(cells)
    executed_dir = Path(args.executed_dir or spec.get("executed_dir") or "executed").resolve()
    results = execute.run_grid(cells, backend, executed_dir, progress=not args.no_progress, population=size)
    return 1 if execute.print_results(results) else 0


# --------------------------------------------------------------------------------------
# hrl plot / hrl study
# --------------------------------------------------------------------------------------
def _add_plot(sub) -> None:
    p = sub.add_parser(
        "plot",
        help="(re)generate figures and the summary from a grid file's runs",
        description="Figures (PNG/SVG, HTML) and summary.md/csv for the runs of a grid file's cells; select cells "
        "as for hrl grid (after `hrl grid --quick ...`, use `hrl plot --quick ...`).",
    )
    p.add_argument("--params", default=None, help="grid YAML whose cells are drawn (default params/grid.yaml; "
                   "--quick: params/quick.yaml)")  # fmt: skip
    _add_cell_filters(p)
    p.add_argument("--save_dir", default=None, help="folder of run folders (default: the grid file's)")
    p.add_argument("--out", default=None,
                   help="output folder (default: <save_dir>/figures beside the runs; with --record: figures/<grid "
                        "file name>, the committed record)")  # fmt: skip
    p.add_argument("--no_static", action="store_true", help="HTML only (no PNG/SVG)")
    p.add_argument("--record", action="store_true", help=RECORD_HELP)
    p.set_defaults(handler=_run_plot)


RECORD_HELP = "also copy the runs' config.json/metrics.json to records/<save_dir name>/ (a shared record)"


def _run_plot(args) -> int:
    from pathlib import Path

    from hrl_core.lab import plot, records
    from hrl_core.lab.record import Record, shown

    overrides = {"save_dir": args.save_dir} if args.save_dir else {}
    path, spec, cells = _selected_cells(args, overrides)
    if args.out is None:  # never into the committed record unless asked (--record)
        args.out = f"figures/{Path(path).stem}" if args.record else str(Path(cells[0].config.save_dir) / "figures")
    rec = Record.of_cells(Path(path), cells, whole=spec)
    out = plot.write_all(rec, Path(args.out), static=not args.no_static)
    if not out["runs"]:
        where = ", ".join(sorted({str(c.run_dir.parent) for c in cells}))
        raise HrlError(f"no runs of {path}'s {len(cells)} cells in {where}; pass the grid file (and filters) the runs "
                       "were made with, e.g. `hrl plot --quick` after `hrl grid --quick`, or --params FILE / "
                       "--save_dir DIR")  # fmt: skip
    if not out["html"]:
        print("hrl plot: no HTML figures (plotly is not installed: pip install 'hrl[lab]'); PNG/SVG written")
    print(
        f"hrl plot: {out['runs']} runs -> {len(out['files'])} files in {shown(args.out)}/ (summary.md there); "
        f"{len(out['missing'])} cells missing; runs read from {', '.join(out['sources'])}"
    )
    if args.record:
        n, size = records.write_compact(cells)
        print(f"hrl plot: {n} runs' config.json/metrics.json in {records.record_dir(cells[0].run_dir.parent)} "
              f"({size / 1e6:.1f} MB)")  # fmt: skip
    return 0


def _add_study(sub) -> None:
    p = sub.add_parser(
        "study",
        help="execute the study notebook over a study's runs (its record)",
        description="A study is a grid file with arms (variants that change one thing each) and comparisons "
        "between them, optionally a declared analysis (primary metric, family, equivalence margin) and parts "
        "(slices analysed one record each). hrl study executes notebooks/study.ipynb over its runs, with its "
        "figures, beside the runs (--record: into executed/<file>[_<part>].ipynb, the committed record); without "
        "--part, the whole study (forest plot, composite figure).",
    )
    p.add_argument("--params", default="params/study_review.yaml",
                   help="study grid YAML (default %(default)s, the study README's answer comes from)")  # fmt: skip
    p.add_argument("--part", default="", help="one part of a grid file with parts: (its own record)")
    p.add_argument("--save_dir", default="", help="run folders (default: the grid file's save_dir)")
    p.add_argument("--out", default=None,
                   help="executed notebook (default: <save_dir>/studies/<grid file name>[_<part>].ipynb beside "
                        "the runs; with --record: executed/<grid file name>[_<part>].ipynb, the committed "
                        "record)")  # fmt: skip
    p.add_argument("--figures_dir", default=None,
                   help="PNG/SVG figures (default: <save_dir>/studies/figures/<grid file name>[/<part>]; with "
                        "--record: figures/<grid file name>[/<part>])")  # fmt: skip
    p.add_argument("--record", action="store_true",
                   help="write the committed record: the executed notebook into executed/, its figures into "
                        "figures/, the runs' config.json/metrics.json into records/<save_dir name>/")  # fmt: skip

    def handler(args):
        from pathlib import Path

        from hrl_core import resources
        from hrl_core.lab import execute, grids, records
        from hrl_core.run.runtime import require_extra

        require_extra(("papermill", "ipykernel"), "grid", "hrl study")
        args.params = str(resources.params_file(args.params))
        spec = grids.load_grid(args.params)
        if "arms" not in spec:
            raise HrlError(f"{args.params} has no arms: hrl study analyses a grid file with arms (params/study_*.yaml)")
        if args.part and args.part not in (spec.get("parts") or {}):
            parts = ", ".join(spec.get("parts") or {}) or "none"
            raise HrlError(f"no part {args.part!r} in {args.params}; its parts: {parts}")
        stem = Path(args.params).stem
        name = stem + (f"_{args.part}" if args.part else "")
        save_dir = args.save_dir or (spec.get("settings") or {}).get("save_dir", "results_phase2")
        # never into the committed record (executed/, figures/) unless asked: --record
        home = Path(".") if args.record else Path(save_dir) / "studies"
        figures_dir = args.figures_dir or str(home / "figures" / stem / args.part)
        out = Path(args.out or home / ("executed" if args.record else "") / f"{name}.ipynb").resolve()
        if args.record and out.exists():
            print(f"hrl study: replaces the committed record {out} (and its figures in {figures_dir})")
        import os

        from hrl_core.lab.workbook import REPO

        def portable(path) -> str:  # relative to the repository: the executed record names no machine's folders
            return os.path.relpath(Path(path).resolve(), REPO)

        params = {"params": portable(args.params), "save_dir": portable(save_dir),
                  "figures_dir": portable(figures_dir), "part": args.part}  # fmt: skip
        res = execute.execute_cell(str(resources.notebook("study.ipynb")), str(out), params, {}, "study")
        if res["status"] != "complete":
            raise HrlError(f"study notebook failed ({res['error']}); see {out}")
        print(f"hrl study: {out} ({res['seconds']:.0f} s); figures in {Path(figures_dir).resolve()}")
        if args.record:
            cells = grids.expand(spec, {"parts": [args.part]} if args.part else None,
                                 {"save_dir": str(Path(save_dir).resolve())})  # fmt: skip
            n, size = records.write_compact(cells)
            print(f"hrl study: {n} runs' config.json/metrics.json in {records.record_dir(params['save_dir'])} "
                  f"({size / 1e6:.1f} MB)")  # fmt: skip
        return 0

    p.set_defaults(handler=handler)


# --------------------------------------------------------------------------------------
# hrl data / pretrain / demo
# --------------------------------------------------------------------------------------
def _add_data(sub) -> None:
    from hrl_core.rl.envs import DATASETS

    p = sub.add_parser("data", help="datasets: generate a D4RL-layout stand-in without network")
    dsub = p.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    g = dsub.add_parser(
        "generate",
        help="roll out the shipped medium-level behaviour policy (or train SAC from scratch)",
        description="Make a D4RL-layout 'medium' dataset here: by default the behaviour policy shipped with the "
        "package (trained by --from_scratch --save_policy at the full budget) is rolled out; --from_scratch "
        "trains SAC to ~1/3 expert first (D4RL's recipe).",
    )
    g.add_argument("dataset", choices=sorted(DATASETS))
    g.add_argument("--from_scratch", "--from-scratch", dest="from_scratch", action="store_true",
                   help="train SAC here instead of using the shipped behaviour policy")  # fmt: skip
    g.add_argument("--quick", action="store_true", help="small budget: 15,000 SAC steps, 50,000 transitions")
    g.add_argument("--transitions", type=int, default=None, help="transitions to roll out (default 1,000,000)")
    g.add_argument("--max_train_steps", type=int, default=None, help="SAC step budget (default 500,000)")
    g.add_argument("--eval_interval", type=int, default=None,
                   help="SAC steps between evaluations (default 10,000); the best-evaluated actor is kept")  # fmt: skip
    g.add_argument("--seed", type=int, default=0, help="seed of training and rollouts (default 0)")
    g.add_argument("--out", default=None, help="output file (default $D4RL_DATASET_DIR/generated/<d4rl name>)")
    g.add_argument("--save_policy", default=None, help="with --from_scratch: also write the trained policy here")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: chosen for the machine)")

    def handler(args):
        from hrl_core.run.generate import main_generate

        return main_generate(args)

    g.set_defaults(handler=handler)


def _add_pretrain(sub) -> None:
    from hrl_core.run.pretrain import QUICK_STEPS, PretrainConfig

    p = sub.add_parser("pretrain", help="Phase I: offline CQL/IQL, written in Phase I's layout")
    add_config_flags(p, PretrainConfig, required=("algo", "env_name"), quick={"total_steps": QUICK_STEPS},
                     aliases={"env_name": ("--env",)})  # fmt: skip
    p.add_argument("--quick", action="store_true", help=f"{QUICK_STEPS:,} gradient steps")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")

    def handler(args):
        from hrl_core.run.pretrain import pretrain

        cfg = config_from_args(args, PretrainConfig, {"total_steps": QUICK_STEPS})
        print(f"wrote {pretrain(cfg, progress=not args.no_progress)}")
        return 0

    p.set_defaults(handler=handler)


def _add_demo(sub) -> None:
    from hrl_core.rl.envs import DATASETS

    p = sub.add_parser(
        "demo",
        help="the whole chain at a quick budget: data, Phase I, Phase II (ensemble vs vanilla), figures",
        description="Uses real inputs where they exist (D4RL file in $D4RL_DATASET_DIR, Phase I checkpoints in "
        "$HRL_PHASE1_DIR); makes what is missing (a medium-level dataset rolled out from the shipped behaviour "
        "policy, quick Phase I) and prints each stage's time and what the results show.",
    )
    p.add_argument("--tiny", action="store_true", help="a smoke-test budget (seconds, not minutes)")
    p.add_argument("--out_root", default=None, help="where results/, results_phase2/, executed/, figures/ go "
                   "(default: demo/ in the checkout or the current folder)")  # fmt: skip
    p.add_argument("--workers", type=int, default=None, help="Dask workers for Phase II (default: one per core)")
    p.add_argument("--dataset", default=None, choices=sorted(DATASETS),
                   help="the D4RL dataset the demo runs on (default halfcheetah-medium-v2: the least noisy curves "
                   "at one seed; both ship a behaviour policy)")  # fmt: skip

    def handler(args):
        from pathlib import Path

        from hrl_core import resources
        from hrl_core.lab.demo import DATASET, QUICK, TINY, run_demo

        root = resources.base_dir()  # the checkout, or the current folder for an installed package
        out_root = Path(args.out_root).resolve() if args.out_root else root / "demo"
        phase1 = Path(os.environ.get("HRL_PHASE1_DIR", out_root / "results")).resolve()
        return run_demo(out_root, phase1, TINY if args.tiny else QUICK, args.workers, dataset=args.dataset or DATASET)

    p.set_defaults(handler=handler)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hrl", description="Hybrid-RL recovery workbench (Phase II).")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_finetune(sub)
    _add_bench(sub)
    _add_grid(sub)
    _add_plot(sub)
    _add_study(sub)
    _add_pretrain(sub)
    _add_data(sub)
    _add_demo(sub)
    return parser


def main(argv=None) -> int:
    try:
        parser = build_parser()  # imports plug-ins ($HRL_PLUGINS): their algorithms are choices of the flags
    except HrlError as exc:
        if "--debug" in (sys.argv[1:] if argv is None else argv):
            raise
        print(f"hrl: error: {exc}", file=sys.stderr)
        return 1
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except HrlError as exc:
        if args.debug:
            raise
        print(f"hrl: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hrl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
