"""Command line: ``hrl finetune ...``.

Errors a user can fix print one line (``hrl: error: ...``) and exit non-zero; pass
``--debug`` to see the traceback.
"""

from __future__ import annotations

import argparse
import sys

from hrl_core.config import BONUS_TYPES, COMPILE_MODES, DEVICES, QUICK, FinetuneConfig
from hrl_core.envs import DATASETS
from hrl_core.errors import HrlError

_D = FinetuneConfig()  # defaults shown in --help


def _add_finetune(sub) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune one Phase I checkpoint online (one grid cell)",
        description="Fine-tune one Phase I checkpoint online with hybrid replay. Running the same "
        "command again resumes an unfinished run and leaves a complete one alone.",
    )
    p.add_argument("--algo", required=True, choices=("cql", "iql"), help="Phase I algorithm")
    p.add_argument("--env", required=True, choices=sorted(DATASETS), help="D4RL dataset")
    p.add_argument("--remove_top_k", type=float, required=True, help="%% of top-return trajectories removed: 0, 30, 60")
    p.add_argument(
        "--bonus_type", required=True, choices=BONUS_TYPES, help="ensemble: lambda*std(Q) bonus; none: vanilla"
    )
    p.add_argument("--seed", type=int, required=True, help="online seed (also picks the Phase I seed)")
    p.add_argument(
        "--online_steps",
        type=int,
        help=f"online env steps (default {_D.online_steps}; --quick {QUICK['online_steps']})",
    )
    p.add_argument("--n_ensemble", type=int, default=_D.n_ensemble, help="Q-ensemble size, 2..10 (default %(default)s)")
    p.add_argument(
        "--bonus_coeff", type=float, default=_D.bonus_coeff, help="lambda of the bonus (default %(default)s)"
    )
    p.add_argument(
        "--online_ratio",
        type=float,
        default=_D.online_ratio,
        help="online fraction of each batch (default %(default)s)",
    )
    p.add_argument("--batch_size", type=int, default=_D.batch_size, help="batch size (default %(default)s)")
    p.add_argument(
        "--cql_alpha", type=float, default=_D.cql_alpha, help="CQL penalty weight online (default %(default)s)"
    )
    p.add_argument(
        "--eval_interval",
        type=int,
        help=f"steps between evaluations (default {_D.eval_interval}; --quick {QUICK['eval_interval']})",
    )
    p.add_argument(
        "--eval_episodes",
        type=int,
        help=f"episodes per evaluation (default {_D.eval_episodes}; --quick {QUICK['eval_episodes']})",
    )
    p.add_argument(
        "--reward_noise_std",
        type=float,
        default=_D.reward_noise_std,
        help="offline reward noise sigma (default %(default)s)",
    )
    p.add_argument("--phase1_dir", default=None, help="folder of Phase I runs (default: $HRL_PHASE1_DIR, else results)")
    p.add_argument("--phase1_seed", type=int, default=None, help="Phase I checkpoint seed (default: --seed)")
    p.add_argument("--save_dir", default=_D.save_dir, help="folder for run folders (default %(default)s)")
    p.add_argument("--device", default=_D.device, choices=DEVICES, help="torch device (default %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--member_init", default=_D.member_init, choices=("fresh", "warmstart", "perturb"),
                   help="fresh members: fresh (spec) | warmstart | perturb (loaded + noise)")  # fmt: skip
    p.add_argument("--warmstart_steps", type=int, default=_D.warmstart_steps, help="offline steps for warmstart")
    p.add_argument("--bonus_scale", default=_D.bonus_scale, choices=("raw", "normalized"),
                   help="raw (spec: lambda*std Q) | normalized (relative std x running |reward|)")  # fmt: skip
    p.add_argument("--bonus_clip", type=float, default=_D.bonus_clip, help="cap on the bonus; 0 = none")
    p.add_argument("--perturb_scale", type=float, default=_D.perturb_scale, help="perturb noise / weight std")
    p.add_argument("--target_reduce", default=_D.target_reduce, choices=("min_all", "min_random2"),
                   help="Bellman target: min over all members (spec) | over a random pair (REDQ)")  # fmt: skip
    p.add_argument("--exploration", default=_D.exploration, choices=("reward_bonus", "ucb_action"),
                   help="with --bonus_type ensemble: reward bonus (spec) | UCB action choice (SUNRISE)")  # fmt: skip
    p.add_argument("--ucb_candidates", type=int, default=_D.ucb_candidates, help="policy samples for ucb_action")
    p.add_argument(
        "--compile",
        default=_D.compile,
        choices=COMPILE_MODES,
        help="torch.compile the CQL critic pass (auto: CQL runs of 2,000+ steps on CUDA; default %(default)s)",
    )
    p.add_argument("--dataset_source", default=_D.dataset_source, choices=("auto", "d4rl", "generated", "minari"),
                   help="offline data: auto (D4RL file/download/generated) | d4rl | generated | minari")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="5,000 steps, evaluation every 1,000 with 5 episodes")
    p.add_argument("--restart", action="store_true", help="discard an existing run of this cell and start over")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run_finetune, parser=p)


def config_from_args(args) -> FinetuneConfig:
    """Explicit flags win over --quick, which wins over the defaults."""
    values = {k: getattr(args, k) for k in FinetuneConfig.__dataclass_fields__ if hasattr(args, k)}
    if values.get("phase1_dir") is None:
        values.pop("phase1_dir", None)  # the config's default: $HRL_PHASE1_DIR, else results/
    for key, quick_value in QUICK.items():
        if values.get(key) is None:
            values[key] = quick_value if args.quick else getattr(_D, key)
    return FinetuneConfig(**values)


def _run_finetune(args) -> int:
    from hrl_core.finetune import finetune

    cfg = config_from_args(args)
    try:
        cfg.validate()
    except HrlError as exc:
        args.parser.error(str(exc))
    result = finetune(cfg, restart=args.restart, progress=not args.no_progress)
    m = result.metrics
    if result.status == "complete":
        print(
            f"done: {result.run_dir} | normalized return {m['normalized_return'][0]:.1f} at step 0 -> "
            f"{m['normalized_return'][-1]:.1f} at step {m['step'][-1]}"
        )
    return 0


def _add_bench(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="time one online step part by part against this machine's GEMM rate",
        description="Median milliseconds per online step (update, acting + bonus, sampling, env step), "
        "the update's FLOP count and efficiency, and evaluation time.",
    )
    p.add_argument("--algo", nargs="+", default=["cql", "iql"], choices=("cql", "iql"))
    p.add_argument("--env", nargs="+", default=sorted(DATASETS), choices=sorted(DATASETS))
    p.add_argument("--n_ensemble", nargs="+", type=int, default=[3, 5])
    p.add_argument("--batch_size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=15, help="timed repeats per update (medians reported)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument(
        "--compile",
        action="store_true",
        help="time CQL with its critic pass torch.compiled (runs do that on CUDA; on a CPU they stay eager)",
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="%(default)s: CUDA if present")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    def handler(args):
        from hrl_core.bench import main_bench

        return main_bench(args)

    p.set_defaults(handler=handler)


def _add_grid(sub) -> None:
    p = sub.add_parser(
        "grid",
        help="run the grid: one papermill-executed notebook per cell, on Dask",
        description="Expand a grid file, skip complete cells, and execute notebooks/finetune.ipynb once per "
        "remaining cell with papermill into executed/<run_name>.ipynb, on a Dask cluster.",
    )
    p.add_argument("--params", default=None, help="grid YAML (default params/grid.yaml; --quick: params/quick.yaml)")
    p.add_argument("--quick", action="store_true", help="quick budget: 5,000 steps, eval every 1,000 with 5 episodes")
    p.add_argument("--algo", nargs="+", help="only these algos")
    p.add_argument("--env", nargs="+", help="only these datasets")
    p.add_argument("--remove_top_k", nargs="+", type=float, help="only these corruption levels")
    p.add_argument("--bonus_type", nargs="+", help="only these bonus types")
    p.add_argument("--seed", nargs="+", type=int, help="only these seeds")
    p.add_argument("--arm", nargs="+", help="only these arms (grid files with arms:)")
    p.add_argument(
        "--save_dir", default=None, help="where run folders go (default: the grid file's, else results_phase2)"
    )
    p.add_argument(
        "--executed_dir", default=None, help="where executed notebooks go (default: the grid file's, else executed)"
    )
    p.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler (tcp://host:8786)")
    p.add_argument("--workers", type=int, default=None, help="LocalCluster workers (default: one per core)")
    p.add_argument("--threads_per_cell", type=int, default=1, help="torch threads per cell (default %(default)s)")
    p.add_argument("--dry-run", dest="dry_run", action="store_true", help="list the cells and an estimated wall time")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run_grid)


def _run_grid(args) -> int:
    from pathlib import Path

    from hrl_core import grid

    path = Path(args.params) if args.params else (grid.REPO / "params" / ("quick.yaml" if args.quick else "grid.yaml"))
    spec = grid.load_grid(path)
    filters = {"algos": args.algo, "datasets": args.env, "remove_top_k": args.remove_top_k,
               "bonus_types": args.bonus_type, "seeds": args.seed, "arms": args.arm}  # fmt: skip
    overrides = {"save_dir": args.save_dir} if args.save_dir else {}
    if spec.get("kind") == "pretrain" and args.bonus_type:
        print("grid: --bonus_type does not apply to a pretrain grid")
        return 1
    if args.arm and "arms" not in spec:
        print(f"grid: --arm needs a grid file with arms: ({path} has none)")
        return 1
    cells = grid.expand(spec, filters, overrides, quick=args.quick)
    if not cells:
        print("grid: no cell matches these filters")
        return 1
    workers = 1 if args.scheduler else (args.workers or grid.default_workers())
    if args.dry_run:
        statuses = [grid.cell_status(c) for c in cells]
        todo = [c for c, s in zip(cells, statuses, strict=True) if s != "complete"]
        for c, s in zip(cells, statuses, strict=True):
            print(f"{c.run_name:<60} {c.steps:>7} steps  {s}")
        est = grid.estimate_seconds(todo, grid.MS_PER_STEP_1_THREAD, workers)
        print(
            f"{len(cells)} cells, {len(todo)} to run; estimated wall time {grid.format_duration(est)} on "
            f"{workers} worker(s) at {grid.MS_PER_STEP_1_THREAD['cql']:.0f} ms (CQL) / "
            f"{grid.MS_PER_STEP_1_THREAD['iql']:.0f} ms (IQL) per step (measured: 1 thread per cell, 2-core CPU)"
        )
        return 0
    results = grid.run_grid(
        cells,
        executed_dir=Path(args.executed_dir or spec.get("executed_dir") or "executed").resolve(),
        scheduler=args.scheduler,
        workers=args.workers,
        threads_per_cell=args.threads_per_cell,
        progress=not args.no_progress,
    )
    return 1 if grid.print_results(results) else 0


def _add_plot(sub) -> None:
    p = sub.add_parser("plot", help="(re)generate figures and the summary from existing results")
    p.add_argument("--save_dir", default="results_phase2", help="folder of run folders (default %(default)s)")
    p.add_argument("--out", default="figures", help="output folder (default %(default)s)")
    p.add_argument("--params", default=None, help="grid YAML whose cells are expected (default params/grid.yaml)")
    p.add_argument("--no_static", action="store_true", help="HTML only (no PNG/SVG)")
    p.set_defaults(handler=_run_plot)


def _run_plot(args) -> int:
    from pathlib import Path

    from hrl_core import grid, plots

    spec = grid.load_grid(args.params or grid.DEFAULT_GRID)
    expected = [
        (c.config.algo, c.config.env, c.config.remove_top_k, c.config.bonus_type, c.config.seed)
        for c in grid.expand(spec)
    ]
    out = plots.write_all(Path(args.save_dir), Path(args.out), expected, static=not args.no_static)
    if out["static_export"] != "ok":
        print(f"hrl plot: no PNG/SVG ({out['static_export']}); install Chrome/Chromium for kaleido")
    print(
        f"hrl plot: {out['runs']} runs -> {len(out['files'])} files in {args.out}/; {len(out['missing'])} cells missing"
    )
    return 0


def _add_study(sub) -> None:
    p = sub.add_parser("study", help="execute the variants-study notebook over a study grid's runs")
    p.add_argument("--params", default="params/study_bonus.yaml", help="study grid YAML (default %(default)s)")
    p.add_argument("--save_dir", default="", help="run folders (default: the grid file's save_dir)")
    p.add_argument("--out", default="executed/study_bonus.ipynb", help="executed notebook (default %(default)s)")
    p.add_argument("--figures_dir", default="figures/study_bonus", help="PNG/SVG figures (default %(default)s)")

    def handler(args):
        from pathlib import Path

        from hrl_core import grid

        spec = grid.load_grid(args.params)
        if "arms" not in spec:
            raise HrlError(
                f"{args.params} has no arms: hrl study analyses a grid file with arms (params/study_bonus.yaml)"
            )
        params = {
            "params": str(Path(args.params).resolve()),
            "save_dir": str(Path(args.save_dir).resolve()) if args.save_dir else "",
            "figures_dir": str(Path(args.figures_dir).resolve()) if args.figures_dir else "",
        }
        out = Path(args.out).resolve()
        res = grid.execute_cell(str(grid.REPO / "notebooks" / "study_bonus.ipynb"), str(out), params, {}, "study")
        if res["status"] != "complete":
            raise HrlError(f"study notebook failed ({res['error']}); see {out}")
        print(f"hrl study: {out} ({res['seconds']:.0f} s)")
        return 0

    p.set_defaults(handler=handler)


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="datasets: generate a D4RL-layout stand-in without network")
    dsub = p.add_subparsers(dest="data_command", required=True)
    g = dsub.add_parser("generate", help="train SAC to ~1/3 expert and roll it out (D4RL's 'medium' recipe)")
    g.add_argument("dataset", choices=sorted(DATASETS))
    g.add_argument("--quick", action="store_true", help="small budget: 15,000 SAC steps, 50,000 transitions")
    g.add_argument("--transitions", type=int, default=None, help="transitions to roll out (default 1,000,000)")
    g.add_argument("--max_train_steps", type=int, default=None, help="SAC step budget (default 500,000)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", default=None, help="output file (default $D4RL_DATASET_DIR/generated/<d4rl name>)")

    def handler(args):
        from pathlib import Path

        from hrl_core.data.generate import generate
        from hrl_core.data.sources import generated_path

        out = Path(args.out) if args.out else generated_path(args.dataset)
        path = generate(args.dataset, out, quick=args.quick, seed=args.seed,
                        n_transitions=args.transitions, max_train_steps=args.max_train_steps)  # fmt: skip
        import h5py

        with h5py.File(path) as f:
            a = dict(f.attrs)
        print(f"wrote {path}: {a['n_transitions']} transitions; SAC trained {a['sac_train_steps']} steps, "
              f"eval {a['sac_eval_normalized_return']:.1f} normalized (target {a['target_normalized_return']:.1f}), "
              f"data mean {a['dataset_mean_normalized_return']:.1f}")  # fmt: skip
        return 0

    g.set_defaults(handler=handler)


def _add_pretrain(sub) -> None:
    from hrl_core.pretrain import PretrainConfig

    d = PretrainConfig()
    p = sub.add_parser("pretrain", help="Phase I: offline CQL/IQL, written in Phase I's layout")
    p.add_argument("--algo", required=True, choices=("cql", "iql"))
    p.add_argument("--env", required=True, choices=sorted(DATASETS))
    p.add_argument("--remove_top_k", type=float, default=0.0)
    p.add_argument("--reward_noise_std", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--total_steps", type=int, default=None, help=f"gradient steps (default {d.total_steps}; --quick 20000)"
    )
    p.add_argument("--eval_interval", type=int, default=None, help="steps between evaluations (default 10000)")
    p.add_argument("--eval_episodes", type=int, default=d.eval_episodes)
    p.add_argument("--save_dir", default=d.save_dir)
    p.add_argument("--device", default=d.device, choices=DEVICES)
    p.add_argument("--dataset_source", default=d.dataset_source, choices=("auto", "d4rl", "generated", "minari"))
    p.add_argument("--quick", action="store_true", help="20,000 gradient steps")
    p.add_argument("--no_progress", action="store_true")

    def handler(args):
        from hrl_core.pretrain import QUICK_STEPS, pretrain

        total = args.total_steps or (QUICK_STEPS if args.quick else d.total_steps)
        cfg = PretrainConfig(algo=args.algo, env_name=args.env, remove_top_k=args.remove_top_k,
                             reward_noise_std=args.reward_noise_std, seed=args.seed, total_steps=total,
                             eval_interval=args.eval_interval or min(d.eval_interval, total),
                             eval_episodes=args.eval_episodes, save_dir=args.save_dir, device=args.device,
                             dataset_source=args.dataset_source)  # fmt: skip
        print(f"wrote {pretrain(cfg, progress=not args.no_progress)}")
        return 0

    p.set_defaults(handler=handler)


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="the whole chain at a quick budget: data, Phase I, Phase II (ensemble vs vanilla), figures",
        description="Uses real inputs where they exist (D4RL file in $D4RL_DATASET_DIR, Phase I checkpoints in "
        "$HRL_PHASE1_DIR or results/); makes what is missing (generated data, quick Phase I).",
    )
    p.add_argument("--tiny", action="store_true", help="a smoke-test budget (seconds, not minutes)")
    p.add_argument("--out_root", default=None, help="where results_phase2/, executed/, figures/ go (default: repo)")
    p.add_argument("--workers", type=int, default=None, help="Dask workers for Phase II (default: one per core)")

    def handler(args):
        import os
        from pathlib import Path

        from hrl_core.demo import QUICK, TINY, run_demo
        from hrl_core.grid import REPO

        phase1 = Path(os.environ.get("HRL_PHASE1_DIR", REPO / "results")).resolve()
        out_root = Path(args.out_root).resolve() if args.out_root else REPO
        return run_demo(out_root, phase1, TINY if args.tiny else QUICK, args.workers)

    p.set_defaults(handler=handler)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hrl", description="Hybrid-RL recovery workbench (Phase II).")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True)
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
    parser = build_parser()
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
