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
    p.add_argument("--phase1_dir", default=_D.phase1_dir, help="folder of Phase I runs (default %(default)s)")
    p.add_argument("--phase1_seed", type=int, default=None, help="Phase I checkpoint seed (default: --seed)")
    p.add_argument("--save_dir", default=_D.save_dir, help="folder for run folders (default %(default)s)")
    p.add_argument("--device", default=_D.device, choices=DEVICES, help="torch device (default %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument(
        "--compile",
        default=_D.compile,
        choices=COMPILE_MODES,
        help="torch.compile the CQL critic pass (auto: CQL runs of 2,000+ steps; default %(default)s)",
    )
    p.add_argument("--quick", action="store_true", help="5,000 steps, evaluation every 1,000 with 5 episodes")
    p.add_argument("--restart", action="store_true", help="discard an existing run of this cell and start over")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_run_finetune, parser=p)


def config_from_args(args) -> FinetuneConfig:
    """Explicit flags win over --quick, which wins over the defaults."""
    values = {k: getattr(args, k) for k in FinetuneConfig.__dataclass_fields__ if hasattr(args, k)}
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
    p.add_argument("--no_compile", action="store_true", help="time CQL eagerly (runs compile it by default)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    def handler(args):
        from hrl_core.bench import main_bench

        return main_bench(args)

    p.set_defaults(handler=handler)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hrl", description="Hybrid-RL recovery workbench (Phase II).")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_finetune(sub)
    _add_bench(sub)
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
