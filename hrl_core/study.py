"""Analysis of a variants study (a grid file with ``arms:``, e.g. params/study_bonus.yaml).

Pure functions of the run folders' ``config.json``/``metrics.json``; the study
notebook (notebooks/study_bonus.ipynb) only calls these. Per setting (k, arm):

- step-0, final and area-under-curve normalized return (AUC = mean return over the
  run, trapezoid rule over the evaluation steps);
- online steps to 80% of the clean (k=0) Phase I checkpoint's return (``hrl plot``'s
  threshold), and to 100% of it, since a corrupted checkpoint can already start above
  the 80% line;
- arm − reference arm (``vanilla``) for final return and AUC with a 95% percentile
  bootstrap interval over seeds (seeds resampled within each arm);
- a verdict per arm and k read off the AUC interval: better / worse when the interval
  excludes 0, otherwise "no clear difference".
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from hrl_core import plots

REFERENCE_ARM = "vanilla"
MIN_SEEDS = 2  # a bootstrap over one seed has zero width: no verdict below this
ARM_COLOURS = ["#444444", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d"]


def load_study(save_dir: str | Path) -> list[plots.Run]:
    """The runs of a study folder that belong to an arm (complete or not)."""
    return [r for r in plots.load_runs(save_dir) if r.arm]


def arms_in_order(runs: list[plots.Run], arms: list[str] | None = None) -> list[str]:
    """Arms in the grid file's order (reference first), else alphabetical."""
    present = {r.arm for r in runs}
    order = [a for a in (arms or sorted(present)) if a in present]
    if REFERENCE_ARM in order:
        order.remove(REFERENCE_ARM)
        order.insert(0, REFERENCE_ARM)
    return order


def _values(runs: list[plots.Run], fn) -> list[float]:
    return [float(fn(r)) for r in runs]


def study_rows(
    runs: list[plots.Run], arms: list[str] | None = None, reference: str = REFERENCE_ARM, n_boot: int = 10_000
) -> list[dict]:
    """One row per (algo, dataset, k, arm) over the complete runs; see the module doc."""
    done = [r for r in runs if r.status == "complete"]
    thresholds = plots.clean_thresholds(runs)
    groups: dict[tuple, list[plots.Run]] = {}
    for r in done:
        groups.setdefault((r.algo, r.dataset, r.k, r.arm), []).append(r)
    rows = []
    order = arms_in_order(done, arms)
    for algo, dataset, k in sorted({key[:3] for key in groups}):
        thr80 = thresholds.get((algo, dataset), math.nan)
        thr100 = thr80 / plots.THRESHOLD_FRACTION
        ref = groups.get((algo, dataset, k, reference), [])
        for arm in order:
            members = sorted(groups.get((algo, dataset, k, arm), []), key=lambda r: r.seed)
            if not members:
                continue
            finals = _values(members, lambda r: r.returns[-1])
            aucs = _values(members, lambda r: plots.auc(r.steps, r.returns))
            reach80 = [plots.steps_to_threshold(r.steps, r.returns, thr80) for r in members]
            reach100 = [plots.steps_to_threshold(r.steps, r.returns, thr100) for r in members]
            row = {
                "algo": algo,
                "dataset": dataset,
                "k": k,
                "arm": arm,
                "n_seeds": len(members),
                "seeds": ",".join(str(r.seed) for r in members),
                "online_steps": int(members[0].steps[-1]),
                "step0_return": float(np.mean([r.returns[0] for r in members])),
                "final_mean": float(np.mean(finals)),
                "final_std": float(np.std(finals)),
                "auc_mean": float(np.mean(aucs)),
                "auc_std": float(np.std(aucs)),
                "threshold80": thr80,
                "steps_to_80_median": float(np.median(reach80)),
                "reached_80": f"{sum(np.isfinite(reach80))}/{len(reach80)}",
                "steps_to_100_median": float(np.median(reach100)),
                "reached_100": f"{sum(np.isfinite(reach100))}/{len(reach100)}",
            }
            if arm != reference and ref:
                d, lo, hi = plots.bootstrap_diff_ci(finals, _values(ref, lambda r: r.returns[-1]), n_boot)
                row.update(final_diff=d, final_ci_low=lo, final_ci_high=hi)
                d, lo, hi = plots.bootstrap_diff_ci(aucs, _values(ref, lambda r: plots.auc(r.steps, r.returns)), n_boot)
                row.update(auc_diff=d, auc_ci_low=lo, auc_ci_high=hi)
                row["verdict"] = verdict(lo, hi) if min(len(members), len(ref)) >= MIN_SEEDS else "too few seeds"
            rows.append(row)
    return rows


def verdict(ci_low: float, ci_high: float) -> str:
    """Better / worse than the reference when the 95% interval excludes 0."""
    if math.isnan(ci_low) or math.isnan(ci_high):
        return "no reference"
    if ci_low > 0:
        return "better"
    if ci_high < 0:
        return "worse"
    return "no clear difference"


def _fmt_steps(median: float, reached: str) -> str:
    if math.isnan(median):  # no threshold: the study has no clean (k=0) run of this algo and dataset
        return "— (no k=0 run)"
    if math.isinf(median):
        return f"not reached ({reached})"
    return f"{median:,.0f} ({reached})"


def _fmt_ci(row: dict, key: str) -> str:
    if f"{key}_diff" not in row:
        return "—"
    return f"{row[f'{key}_diff']:+.1f} [{row[f'{key}_ci_low']:+.1f}, {row[f'{key}_ci_high']:+.1f}]"


def table_markdown(rows: list[dict]) -> str:
    """The headline table: one line per (k, arm)."""
    head = (
        "| algo | dataset | k | arm | seeds | step 0 | final (mean ± std) | AUC | steps to 80% | steps to 100% "
        "| final − vanilla [95% CI] | AUC − vanilla [95% CI] | verdict (AUC) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {r['algo']} | {r['dataset']} | {r['k']:g} | {r['arm']} | {r['n_seeds']} | {r['step0_return']:.1f} "
        f"| {r['final_mean']:.1f} ± {r['final_std']:.1f} | {r['auc_mean']:.1f} "
        f"| {_fmt_steps(r['steps_to_80_median'], r['reached_80'])} "
        f"| {_fmt_steps(r['steps_to_100_median'], r['reached_100'])} "
        f"| {_fmt_ci(r, 'final')} | {_fmt_ci(r, 'auc')} | {r.get('verdict', 'reference')} |"
        for r in rows
    ]
    return head + "\n".join(lines)


def conclusion_markdown(rows: list[dict], reference: str = REFERENCE_ARM) -> str:
    """Which arms beat the reference, which do not, where the evidence is too weak.

    Read off the AUC intervals (a whole-run measure, less noisy than one final
    evaluation); with few seeds a percentile bootstrap interval is itself rough, so
    "no clear difference" is the honest reading of anything that straddles 0.
    """
    verdicts: dict[str, dict[float, str]] = {}
    diffs: dict[str, dict[float, float]] = {}
    for r in rows:
        if "verdict" in r:
            verdicts.setdefault(r["arm"], {})[r["k"]] = r["verdict"]
            diffs.setdefault(r["arm"], {})[r["k"]] = r["auc_diff"]
    if not verdicts:
        return f"No arm has complete runs beside the `{reference}` arm yet: nothing to conclude."
    lines = []
    for arm, by_k in verdicts.items():
        parts = [f"k={k:g}: {v} ({diffs[arm][k]:+.1f} AUC points)" for k, v in sorted(by_k.items())]
        lines.append(f"- **{arm}** vs {reference}: " + "; ".join(parts))
    better = sorted({a for a, by_k in verdicts.items() if "better" in by_k.values()})
    worse = sorted({a for a, by_k in verdicts.items() if "worse" in by_k.values()})
    unclear = sorted(a for a, by_k in verdicts.items() if set(by_k.values()) == {"no clear difference"})

    n_seeds = sorted({r["n_seeds"] for r in rows})
    summary = [
        f"Beat {reference} (AUC interval above 0) in at least one setting: {', '.join(better) or 'none'}.",
        f"Worse than {reference} (interval below 0) in at least one setting: {', '.join(worse) or 'none'}.",
        f"Not distinguishable from {reference} in any setting: {', '.join(unclear) or 'none'}.",
        *(
            [f"Some settings have fewer than {MIN_SEEDS} complete seeds in an arm or in {reference}: no verdict there."]
            if any(v == "too few seeds" for by_k in verdicts.values() for v in by_k.values())
            else []
        ),
        f"Seeds per setting: {', '.join(map(str, n_seeds))}. With so few seeds the intervals are wide and "
        "rough; a difference the interval cannot separate from 0 is not evidence either way.",
    ]
    return "\n".join(lines) + "\n\n" + "\n".join(summary)


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------
def _colour(arms: list[str], arm: str) -> str:
    return ARM_COLOURS[arms.index(arm) % len(ARM_COLOURS)]


def _series(group: list[plots.Run], fn) -> tuple[np.ndarray, np.ndarray]:
    """Common steps and fn(run) -> values per step, as [runs, steps] (None -> nan)."""
    n = min(len(r.steps) for r in group)
    x = group[0].steps[:n]
    y = np.array([[np.nan if v is None else v for v in fn(r)[:n]] for r in group], float)
    return x, y


def _empty_figure(title: str):
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.update_layout(title=f"{title}: no runs yet", template="plotly_white", height=300)
    return fig


def curves_figure(runs: list[plots.Run], arms: list[str] | None = None):
    """Normalized return (mean ± std over seeds) per arm, one panel per k."""
    from plotly.subplots import make_subplots

    if not runs:
        return _empty_figure("Return curves")
    arms = arms_in_order(runs, arms)
    ks = sorted({r.k for r in runs})
    fig = make_subplots(rows=1, cols=len(ks), subplot_titles=[f"k={k:g}" for k in ks], shared_yaxes=True)
    for col, k in enumerate(ks, start=1):
        for arm in arms:
            group = [r for r in runs if r.k == k and r.arm == arm]
            if not group:
                continue
            x, y = _series(group, lambda r: r.metrics["normalized_return"])
            plots._band(
                fig, x, np.nanmean(y, 0), np.nanstd(y, 0), _colour(arms, arm),
                f"{arm} (n={len(group)})", "solid", arm, 1, col,
            )  # fmt: skip
        fig.add_hline(y=float(np.mean([r.returns[0] for r in runs if r.k == k])), line={"dash": "dot"}, row=1, col=col)
    seen = set()
    for trace in fig.data:  # one legend entry per arm: its first line (bands have none)
        if trace.showlegend is not False:
            trace.showlegend = trace.legendgroup not in seen
            seen.add(trace.legendgroup)
    algo_ds = ", ".join(sorted({f"{r.algo.upper()} {r.dataset}" for r in runs}))
    fig.update_layout(
        title=f"{algo_ds}: normalized return, mean ± std over seeds (dotted: Phase I level){plots.data_note(runs)}",
        template="plotly_white",
        height=480,
    )
    fig.update_xaxes(title_text="online steps")
    return fig


DIAGNOSTICS = (
    ("bonus / env reward", lambda r: _ratio(r.metrics["bonus_mean"], r.metrics["reward_mean"]), "log"),
    ("ensemble disagreement std(Q)", lambda r: r.metrics["ensemble_disagreement"], "log"),
    ("critic loss", lambda r: r.metrics["critic_loss_avg"], "log"),
    ("mean Q: fresh − loaded members", lambda r: _fresh_minus_loaded(r.metrics["q_member_avg"]), "linear"),
    (
        "mean Q of the loaded members",
        lambda r: [None if q is None else float(np.mean(q[:2])) for q in r.metrics["q_member_avg"]],
        "linear",
    ),
)


def _ratio(a: list, b: list) -> list:
    return [None if x is None or y is None or y == 0 else x / y for x, y in zip(a, b, strict=True)]


def _fresh_minus_loaded(q_members: list) -> list:
    """Mean Q of the fresh members (2..N-1) minus that of the loaded ones (0, 1)."""
    return [None if q is None else float(np.mean(q[2:]) - np.mean(q[:2])) for q in q_members]


def diagnostics_figure(runs: list[plots.Run], arms: list[str] | None = None):
    """What explains the returns: bonus vs reward, disagreement, critic loss, fresh-member bias.

    Rows are the diagnostics, columns the corruption levels; values are the means over
    each evaluation interval, averaged over seeds. Step 0 has no training and is left out.
    """
    from plotly.subplots import make_subplots

    if not runs:
        return _empty_figure("Diagnostics")
    arms = arms_in_order(runs, arms)
    ks = sorted({r.k for r in runs})
    titles = [f"{name}, k={k:g}" for name, _, _ in DIAGNOSTICS for k in ks]
    fig = make_subplots(rows=len(DIAGNOSTICS), cols=len(ks), subplot_titles=titles, vertical_spacing=0.07)
    for row, (_, fn, scale) in enumerate(DIAGNOSTICS, start=1):
        for col, k in enumerate(ks, start=1):
            for arm in arms:
                group = [r for r in runs if r.k == k and r.arm == arm]
                if not group:
                    continue
                x, y = _series(group, fn)
                with np.errstate(all="ignore"):
                    mean = np.nanmean(y[:, 1:], 0) if y.shape[1] > 1 else np.array([])
                fig.add_scatter(
                    x=x[1:], y=mean, name=arm, legendgroup=arm, showlegend=(row == 1 and col == 1),
                    line={"color": _colour(arms, arm)}, row=row, col=col,
                )  # fmt: skip
            fig.update_yaxes(type=scale, row=row, col=col)
    fig.update_layout(
        title=f"Diagnostics per evaluation interval (mean over seeds){plots.data_note(runs)}",
        template="plotly_white",
        height=260 * len(DIAGNOSTICS),
    )
    fig.update_xaxes(title_text="online steps", row=len(DIAGNOSTICS))
    return fig


def export_static(fig, out_dir: str | Path, name: str, width: int = 1100, height: int | None = None) -> list[Path]:
    """PNG and SVG (small files for a shareable record; needs kaleido + a browser)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    height = height or int(fig.layout.height or 550)
    paths = []
    for ext in ("png", "svg"):
        path = out_dir / f"{name}.{ext}"
        fig.write_image(path, width=width, height=height)
        paths.append(path)
    return paths


def show_static(fig, width: int = 1100, height: int | None = None) -> None:
    """Show a figure as an inline PNG (a few tens of kB in the saved notebook, and it
    renders on GitHub); falls back to the interactive renderer without kaleido."""
    from IPython.display import Image, display

    reason = plots.static_export_available()
    if reason is not None:
        plots.setup_notebook_plotly()
        fig.show()
        return
    display(Image(fig.to_image(format="png", width=width, height=height or int(fig.layout.height or 550))))


# --------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------
def missing_cells(cells, runs: list[plots.Run]) -> list[str]:
    """Run names of the grid's cells without a complete run folder."""
    done = {r.run_name for r in runs if r.status == "complete"}
    return [c.run_name for c in cells if c.run_name not in done]


def provenance_markdown(save_dir: str | Path, runs: list[plots.Run]) -> str:
    """Where the data and checkpoints came from, read from the runs' config.json."""
    import json

    datasets, checkpoints, budgets = {}, {}, set()
    for r in runs:
        cfg = json.loads((Path(save_dir) / r.run_name / "config.json").read_text())
        ds = cfg["provenance"]["dataset"]
        datasets[(ds.get("path"), ds.get("sha256"))] = ds.get("kind", "unknown")
        ck = cfg["provenance"]["phase1_checkpoint"]
        checkpoints[(ck["path"], ck["sha256"])] = ck.get("gradient_steps")
        s = cfg["settings"]
        budgets.add((s["online_steps"], s["eval_interval"], s["eval_episodes"], s["n_ensemble"], s["bonus_coeff"]))
    lines = ["**Offline data** (as recorded in each run's `config.json`):"]
    lines += [f"- `{p}` (sha256 `{h[:12]}…`): **{kind}**" for (p, h), kind in sorted(datasets.items())]
    lines.append("\n**Phase I checkpoints:**")
    lines += [f"- `{p}` (sha256 `{h[:12]}…`, {n:,} gradient steps)" for (p, h), n in sorted(checkpoints.items())]
    lines.append("\n**Budget** (online steps, eval interval, eval episodes, N, λ):")
    lines += [f"- {b[0]:,} / {b[1]:,} / {b[2]} / {b[3]} / {b[4]:g}" for b in sorted(budgets)]
    if any(not k.startswith("D4RL v2 layout") for k in datasets.values()):
        lines.append(
            "\n> **Not D4RL.** The offline data above are stand-ins in the D4RL layout (see their `kind`); "
            "numbers here describe the method on these data, not on D4RL."
        )
    return "\n".join(lines)


def design_markdown(spec: dict) -> str:
    """What a study grid file asks for: description, axes, budget, cost and each arm's settings."""
    settings = spec.get("settings") or {}
    ks = ", ".join(f"{k:g}" for k in spec["remove_top_k"])
    parts = [
        f"algorithm {', '.join(spec['algos'])}",
        f"data {', '.join(spec['datasets'])}",
        f"k ∈ {{{ks}}}",
        f"online seeds {', '.join(str(s) for s in spec['seeds'])}",
    ]
    if "online_steps" in settings:
        parts.append(f"{settings['online_steps']:,} online steps")
    if "eval_interval" in settings:
        episodes = settings.get("eval_episodes", "the default number of")
        parts.append(f"evaluation every {settings['eval_interval']:,} steps ({episodes} episodes)")
    if settings.get("phase1_seed") is not None:
        parts.append(f"every seed starts from the Phase I checkpoint of seed {settings['phase1_seed']}")
    lines = [f"**{spec.get('description', 'Study')}**: " + "; ".join(parts) + "."]
    if spec.get("cpu_hours"):
        lines[0] += f" Stated cost: {spec['cpu_hours']} CPU-hours."
    lines += ["", "| arm | settings |", "|---|---|"]
    for arm, arm_settings in spec["arms"].items():
        text = ", ".join(f"`{k}={v}`" for k, v in (arm_settings or {}).items()) or "the shared settings"
        lines.append(f"| `{arm}` | {text} |")
    return "\n".join(lines)


def completeness_markdown(cells, complete: list[plots.Run], missing: list[str]) -> str:
    line = f"**{len(complete)} of {len(cells)} cells complete.**"
    if missing:
        line += " Missing or unfinished (the numbers below leave them out): " + ", ".join(f"`{m}`" for m in missing)
    return line


def diagnostics_rows(runs: list[plots.Run], arms: list[str] | None = None) -> list[dict]:
    """Per (k, arm), means over seeds of the diagnostics in the first evaluation interval
    (where the fresh-member trap acts) and over the whole run."""
    rows = []
    for k in sorted({r.k for r in runs}):
        for arm in arms_in_order(runs, arms):
            group = [r for r in runs if r.k == k and r.arm == arm]
            if not group:
                continue
            row = {"k": k, "arm": arm}
            for name, fn, _ in DIAGNOSTICS:
                _, y = _series(group, fn)
                with np.errstate(all="ignore"):
                    row[f"{name} | first"] = float(np.nanmean(y[:, 1])) if y.shape[1] > 1 else math.nan
                    row[f"{name} | run"] = float(np.nanmean(y[:, 1:])) if y.shape[1] > 1 else math.nan
            rows.append(row)
    return rows


def diagnostics_markdown(rows: list[dict]) -> str:
    if not rows:
        return "No runs yet."
    names = [name for name, _, _ in DIAGNOSTICS]
    head = "| k | arm | " + " | ".join(f"{n}: first interval / whole run" for n in names) + " |\n"
    head += "|---|---|" + "---|" * len(names) + "\n"

    def cell(a, b):
        return f"{a:.3g} / {b:.3g}" if np.isfinite(a) else "—"

    lines = [
        f"| {r['k']:g} | {r['arm']} | " + " | ".join(cell(r[f"{n} | first"], r[f"{n} | run"]) for n in names) + " |"
        for r in rows
    ]
    return head + "\n".join(lines)
