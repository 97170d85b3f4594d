"""Figures and the summary table of Phase II results (plotly; pure functions of metrics).

``hrl plot`` writes, for everything under ``results_phase2/``:

- ``finetune_curves_<algo>_<dataset>``: normalized return vs online steps, one colour
  per corruption level, solid = ensemble bonus, dashed = vanilla, mean ± std over
  seeds, the Phase I level (step 0) as a dotted line;
- ``sample_efficiency_<dataset>``: online steps to reach 80% of the clean (k=0) Phase I
  checkpoint's normalized return, per method and corruption level; runs that never
  get there are drawn as "not reached" at the right edge, not dropped;
- ``disagreement_<algo>_<dataset>``: ensemble disagreement over training, and the
  mean bonus beside the mean env reward;
- ``summary.md`` / ``summary.csv``: per (algo, dataset, k, bonus) the step-0 and final
  return, area under the curve, steps to threshold, and ensemble − vanilla with a
  bootstrap 95% confidence interval over seeds; cells still missing are listed.

Every figure is written as interactive HTML (plotly.js embedded, no CDN needed) and,
when a browser engine is available for kaleido, as PNG and SVG.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

THRESHOLD_FRACTION = 0.8  # "recovered" = 80% of the clean Phase I checkpoint's return
K_COLOURS = {0.0: "#1b9e77", 30.0: "#d95f02", 60.0: "#7570b3"}
METHOD_DASH = {"ensemble": "solid", "none": "dash"}


@dataclass
class Run:
    """One Phase II run folder, read back."""

    run_name: str
    algo: str
    dataset: str
    k: float
    bonus_type: str
    seed: int
    status: str
    metrics: dict
    data_kind: str  # provenance label of the offline data
    arm: str = ""  # study arm (grid files with arms:), "" otherwise

    @property
    def steps(self) -> np.ndarray:
        return np.asarray(self.metrics["step"], dtype=float)

    @property
    def returns(self) -> np.ndarray:
        return np.asarray(self.metrics["normalized_return"], dtype=float)


def load_runs(save_dir: str | Path, include_unfinished: bool = True) -> list[Run]:
    """Every run folder with a readable metrics.json (unfinished ones too, flagged)."""
    runs = []
    for mpath in sorted(Path(save_dir).glob("*/metrics.json")):
        try:
            metrics = json.loads(mpath.read_text())
            config = json.loads((mpath.parent / "config.json").read_text())
        except (OSError, ValueError):
            continue
        if not metrics.get("step"):
            continue
        s = config["settings"]
        run = Run(
            run_name=mpath.parent.name,
            algo=s["algo"],
            dataset=s["env"],
            k=float(s["remove_top_k"]),
            bonus_type=s["bonus_type"],
            seed=int(s["seed"]),
            status=metrics.get("status", "running"),
            metrics=metrics,
            data_kind=config.get("provenance", {}).get("dataset", {}).get("kind", "unknown"),
            arm=s.get("arm", ""),
        )
        if include_unfinished or run.status == "complete":
            runs.append(run)
    return runs


# --------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------
def auc(steps: np.ndarray, values: np.ndarray) -> float:
    """Area under the curve divided by the step span: the mean normalized return."""
    if len(steps) < 2:
        return float(values[0]) if len(values) else math.nan
    return float(np.trapezoid(values, steps) / (steps[-1] - steps[0]))


def steps_to_threshold(steps: np.ndarray, values: np.ndarray, threshold: float) -> float:
    """First evaluation step at which the return reaches ``threshold`` (inf if never;
    nan when there is no threshold, i.e. no clean k=0 run to define it)."""
    if math.isnan(threshold):
        return math.nan
    hit = np.flatnonzero(values >= threshold)
    return float(steps[hit[0]]) if len(hit) else math.inf


def clean_thresholds(runs: list[Run]) -> dict[tuple[str, str], float]:
    """(algo, dataset) -> 80% of the clean (k=0) checkpoint's step-0 return, mean over runs."""
    out = {}
    for algo, dataset in {(r.algo, r.dataset) for r in runs}:
        clean = [r.returns[0] for r in runs if r.algo == algo and r.dataset == dataset and r.k == 0]
        if clean:
            out[(algo, dataset)] = THRESHOLD_FRACTION * float(np.mean(clean))
    return out


def bootstrap_diff_ci(a, b, n_boot: int = 10_000, seed: int = 0) -> tuple[float, float, float]:
    """mean(a) - mean(b) and its 95% percentile bootstrap CI (seeds resampled per group)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) == 0 or len(b) == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    boot_a = rng.choice(a, size=(n_boot, len(a))).mean(1)
    boot_b = rng.choice(b, size=(n_boot, len(b))).mean(1)
    lo, hi = np.percentile(boot_a - boot_b, [2.5, 97.5])
    return float(a.mean() - b.mean()), float(lo), float(hi)


def aligned(runs: list[Run]) -> tuple[np.ndarray, np.ndarray]:
    """Common evaluation steps of several runs and their returns [runs, steps]."""
    n = min(len(r.steps) for r in runs)
    return runs[0].steps[:n], np.stack([r.returns[:n] for r in runs])


def summary_rows(runs: list[Run], expected: list[tuple] | None = None) -> tuple[list[dict], list[str]]:
    """Summary per (algo, dataset, k, bonus) and the names of expected cells not yet done.

    Only ``complete`` runs enter the numbers; ``expected`` (tuples of algo, dataset,
    k, bonus, seed) lets the caller say which cells should exist.
    """
    done = [r for r in runs if r.status == "complete"]
    thresholds = clean_thresholds(runs)
    groups: dict[tuple, list[Run]] = {}
    for r in done:
        groups.setdefault((r.algo, r.dataset, r.k, r.bonus_type), []).append(r)
    rows = []
    for (algo, dataset, k, bonus), members in sorted(groups.items()):
        thr = thresholds.get((algo, dataset), math.nan)
        finals = [r.returns[-1] for r in members]
        reach = [steps_to_threshold(r.steps, r.returns, thr) for r in members]
        row = {
            "algo": algo,
            "dataset": dataset,
            "k": k,
            "bonus_type": bonus,
            "n_seeds": len(members),
            "seeds": ",".join(str(r.seed) for r in sorted(members, key=lambda r: r.seed)),
            "data": "; ".join(sorted({r.data_kind.split(":")[0] for r in members})),
            "step0_return": float(np.mean([r.returns[0] for r in members])),
            "final_return_mean": float(np.mean(finals)),
            "final_return_std": float(np.std(finals)),
            "auc_mean_return": float(np.mean([auc(r.steps, r.returns) for r in members])),
            "threshold": thr,
            "steps_to_threshold_median": float(np.median(reach)) if reach else math.nan,
            "reached": f"{sum(np.isfinite(reach))}/{len(reach)}" if not math.isnan(thr) else "no k=0 run",
        }
        if bonus == "ensemble":
            vanilla = groups.get((algo, dataset, k, "none"), [])
            diff, lo, hi = bootstrap_diff_ci(finals, [r.returns[-1] for r in vanilla])
            row.update(ens_minus_vanilla_final=diff, ci95_low=lo, ci95_high=hi)
            diff, lo, hi = bootstrap_diff_ci(
                [auc(r.steps, r.returns) for r in members], [auc(r.steps, r.returns) for r in vanilla]
            )
            row.update(ens_minus_vanilla_auc=diff, auc_ci95_low=lo, auc_ci95_high=hi)
        rows.append(row)
    have = {(r.algo, r.dataset, r.k, r.bonus_type, r.seed) for r in done}
    missing = [c for c in (expected or []) if (c[0], c[1], float(c[2]), c[3], c[4]) not in have]
    return rows, [f"{a} {d} k={k:g} {b} seed {s}" for a, d, k, b, s in missing]


def write_summary(rows: list[dict], missing: list[str], out_dir: Path, n_runs: int) -> tuple[Path, Path]:
    import csv

    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / "summary.csv", out_dir / "summary.md"
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)

    def fmt(v):
        if isinstance(v, float):
            return "never" if math.isinf(v) else ("–" if math.isnan(v) else f"{v:.1f}")
        return str(v)

    lines = [
        "# Phase II summary",
        "",
        f"{n_runs} run folders read; numbers use complete runs only. Returns are D4RL-normalized.",
        "`threshold` = 80% of the clean (k=0) Phase I checkpoint's step-0 return; `steps_to_threshold_median`",
        "is `never` when most seeds never reached it (see `reached`). Differences are ensemble − vanilla",
        "with a 95% bootstrap CI over seeds (wide with 3 seeds: read it as a rough range).",
        "",
    ]
    kinds = sorted({row["data"] for row in rows})
    if any("not D4RL" in k or "unverified" in k or "generated" in k for k in kinds):
        lines += [f"**Offline data: {', '.join(kinds)}** — not the official D4RL files.", ""]
    cols = [
        ("algo", "algo"),
        ("dataset", "dataset"),
        ("k", "k"),
        ("bonus_type", "bonus"),
        ("n_seeds", "seeds"),
        ("step0_return", "step 0"),
        ("final_return_mean", "final"),
        ("final_return_std", "± std"),
        ("auc_mean_return", "AUC"),
        ("steps_to_threshold_median", "steps to 80%"),
        ("reached", "reached"),
        ("ens_minus_vanilla_final", "ens − van (final)"),
        ("ci95_low", "CI low"),
        ("ci95_high", "CI high"),
    ]
    lines.append("| " + " | ".join(c[1] for c in cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(c[0], "")) for c in cols) + " |")
    lines.append("")
    if missing:
        lines += [f"## Missing cells ({len(missing)})", ""] + [f"- {m}" for m in missing]
    else:
        lines.append("No expected cell is missing.")
    md_path.write_text("\n".join(lines) + "\n")
    return md_path, csv_path


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------
def _band(fig, x, mean, std, colour, name, dash, legendgroup, row=None, col=None):
    import plotly.graph_objects as go

    kw = {"row": row, "col": col} if row else {}
    rgb = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
    fig.add_trace(
        go.Scatter(
            x=np.concatenate([x, x[::-1]]),
            y=np.concatenate([mean + std, (mean - std)[::-1]]),
            fill="toself",
            fillcolor=f"rgba{rgb + (0.15,)}",
            line={"width": 0},
            hoverinfo="skip",
            showlegend=False,
            legendgroup=legendgroup,
        ),
        **kw,
    )
    fig.add_trace(
        go.Scatter(x=x, y=mean, name=name, line={"color": colour, "dash": dash}, legendgroup=legendgroup), **kw
    )


def data_note(runs: list[Run]) -> str:
    """' (data: generated)' etc. for titles when any run's offline data is not D4RL."""
    kinds = sorted({r.data_kind.split(":")[0] for r in runs if not r.data_kind.startswith("D4RL v2 layout")})
    return f" — data: {', '.join(kinds)}" if kinds else ""


def curves_figure(runs: list[Run], algo: str, dataset: str, metric: str = "normalized_return", ks=None):
    """Mean ± std over seeds of ``metric`` vs online steps, per corruption level and method."""
    import plotly.graph_objects as go

    fig = go.Figure()
    sel = [r for r in runs if r.algo == algo and r.dataset == dataset]
    for k in sorted({r.k for r in sel}):
        if ks is not None and k not in ks:
            continue
        colour = K_COLOURS.get(k, "#666666")
        for bonus in ("ensemble", "none"):
            group = [r for r in sel if r.k == k and r.bonus_type == bonus and metric in r.metrics]
            if not group:
                continue
            n = min(len(r.metrics["step"]) for r in group)
            x = np.asarray(group[0].metrics["step"][:n], float)
            y = np.array([[np.nan if v is None else v for v in r.metrics[metric][:n]] for r in group], float)
            label = f"k={k:g} {'ensemble' if bonus == 'ensemble' else 'vanilla'} (n={len(group)})"
            _band(fig, x, np.nanmean(y, 0), np.nanstd(y, 0), colour, label, METHOD_DASH[bonus], label)
        if metric == "normalized_return":
            phase1 = [r.returns[0] for r in sel if r.k == k]
            if phase1:
                fig.add_hline(y=float(np.mean(phase1)), line={"color": colour, "dash": "dot", "width": 1})
    title = f"{algo.upper()} {dataset}: {metric.replace('_', ' ')}{data_note(sel)}"
    if metric == "normalized_return":
        title += " (dotted: Phase I level)"
    fig.update_layout(title=title, xaxis_title="online steps", yaxis_title=metric, template="plotly_white")
    return fig


def sample_efficiency_figure(runs: list[Run], dataset: str):
    """Steps to 80% of the clean checkpoint's return per method x k; 'not reached' shown."""
    import plotly.graph_objects as go

    thresholds = clean_thresholds(runs)
    sel = [r for r in runs if r.dataset == dataset and r.status == "complete"]
    max_step = max((r.steps[-1] for r in sel), default=1.0)
    fig = go.Figure()
    methods = sorted({(r.algo, r.bonus_type) for r in sel})
    for algo, bonus in methods:
        xs, ys, text, symbols = [], [], [], []
        for k in sorted({r.k for r in sel}):
            thr = thresholds.get((algo, dataset), math.nan)
            for r in [r for r in sel if r.algo == algo and r.bonus_type == bonus and r.k == k]:
                s = steps_to_threshold(r.steps, r.returns, thr)
                xs.append(f"k={k:g}")
                ys.append(s if math.isfinite(s) else max_step * 1.05)
                text.append(f"seed {r.seed}: " + (f"{s:.0f} steps" if math.isfinite(s) else "not reached"))
                symbols.append("circle" if math.isfinite(s) else "x-open")
        name = f"{algo.upper()} {'ensemble' if bonus == 'ensemble' else 'vanilla'}"
        fig.add_trace(
            go.Scatter(x=xs, y=ys, mode="markers", name=name, text=text, marker={"symbol": symbols, "size": 10})
        )
    fig.add_hline(y=max_step * 1.05, line={"dash": "dot", "color": "grey"}, annotation_text="not reached")
    fig.update_layout(
        title=f"{dataset}: online steps to 80% of the clean Phase I return{data_note(sel)}",
        xaxis_title="corruption",
        yaxis_title="online steps",
        scattermode="group",
        template="plotly_white",
    )
    return fig


def disagreement_figure(runs: list[Run], algo: str, dataset: str):
    """Ensemble disagreement over training, and mean bonus beside mean env reward."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("ensemble disagreement std(Q)", "bonus vs env reward"))
    sel = [r for r in runs if r.algo == algo and r.dataset == dataset]
    for k in sorted({r.k for r in sel}):
        colour = K_COLOURS.get(k, "#666666")
        for bonus in ("ensemble", "none"):
            group = [r for r in sel if r.k == k and r.bonus_type == bonus]
            if not group:
                continue
            n = min(len(r.steps) for r in group)
            x = group[0].steps[1:n]
            tag = "ensemble" if bonus == "ensemble" else "vanilla"

            def series(key, group=group, n=n):
                return np.array([[np.nan if v is None else v for v in r.metrics[key][1:n]] for r in group], float)

            d = series("ensemble_disagreement")
            _band(
                fig,
                x,
                np.nanmean(d, 0),
                np.nanstd(d, 0),
                colour,
                f"k={k:g} {tag}",
                METHOD_DASH[bonus],
                f"{k}{bonus}",
                1,
                1,
            )
            if bonus == "ensemble":
                b, rw = series("bonus_mean"), series("reward_mean")
                fig.add_scatter(x=x, y=np.nanmean(b, 0), name=f"k={k:g} bonus", line={"color": colour}, row=1, col=2)
                fig.add_scatter(
                    x=x, y=np.nanmean(rw, 0), name=f"k={k:g} env reward", line={"color": colour, "dash": "dot"},
                    row=1, col=2,
                )  # fmt: skip
    fig.update_layout(title=f"{algo.upper()} {dataset}: exploration signal{data_note(sel)}", template="plotly_white")
    fig.update_xaxes(title_text="online steps")
    return fig


def run_figure(metrics: dict, title: str = ""):
    """One run's curves: return, disagreement, bonus vs reward, critic loss."""
    from plotly.subplots import make_subplots

    steps = metrics["step"]
    fig = make_subplots(
        rows=2,
        cols=2,
        subplot_titles=("normalized return", "ensemble disagreement", "bonus vs env reward", "critic loss"),
    )
    fig.add_scatter(x=steps, y=metrics["normalized_return"], name="normalized return", row=1, col=1)
    fig.add_scatter(x=steps[1:], y=metrics.get("ensemble_disagreement", [])[1:], name="std(Q)", row=1, col=2)
    fig.add_scatter(x=steps[1:], y=metrics.get("bonus_mean", [])[1:], name="bonus", row=2, col=1)
    fig.add_scatter(x=steps[1:], y=metrics.get("reward_mean", [])[1:], name="env reward", row=2, col=1)
    fig.add_scatter(x=steps[1:], y=metrics.get("critic_loss_avg", [])[1:], name="critic loss", row=2, col=2)
    fig.update_layout(title=title, template="plotly_white", height=600)
    fig.update_xaxes(title_text="online steps")
    return fig


def setup_notebook_plotly() -> None:
    """Figures that render in JupyterLab and in the saved notebook without a CDN."""
    import plotly.io as pio

    pio.renderers.default = "plotly_mimetype+notebook"


def export_figure(fig, out_dir: Path, name: str, static: bool = True) -> list[Path]:
    """HTML (plotly.js embedded) always; PNG and SVG when kaleido finds a browser."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / f"{name}.html"]
    fig.write_html(written[0], include_plotlyjs=True, full_html=True)
    if static:
        for ext in ("png", "svg"):
            path = out_dir / f"{name}.{ext}"
            fig.write_image(path, width=1000, height=550)
            written.append(path)
    return written


def static_export_available() -> str | None:
    """None if kaleido can render static images here, else the reason."""
    try:
        import plotly.graph_objects as go

        go.Figure().to_image(format="png", width=10, height=10)
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "no static export"
        return f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def write_all(save_dir: Path, out_dir: Path, expected: list[tuple] | None = None, static: bool = True) -> dict:
    """Every figure and the summary for the runs under ``save_dir``."""
    runs = load_runs(save_dir)
    if any(r.arm for r in runs):
        from hrl_core.errors import HrlError

        # Arms of a variants study share (algo, dataset, k, bonus): this summary would pool them.
        raise HrlError(f"{save_dir} holds a variants study (runs with arms): use hrl study --save_dir {save_dir}")
    written: list[Path] = []
    reason = static_export_available() if static else "disabled"
    for algo, dataset in sorted({(r.algo, r.dataset) for r in runs}):
        written += export_figure(
            curves_figure(runs, algo, dataset), out_dir, f"finetune_curves_{algo}_{dataset}", reason is None
        )
        written += export_figure(
            disagreement_figure(runs, algo, dataset), out_dir, f"disagreement_{algo}_{dataset}", reason is None
        )
    for dataset in sorted({r.dataset for r in runs}):
        written += export_figure(
            sample_efficiency_figure(runs, dataset), out_dir, f"sample_efficiency_{dataset}", reason is None
        )
    rows, missing = summary_rows(runs, expected)
    written += list(write_summary(rows, missing, out_dir, len(runs)))
    return {"runs": len(runs), "files": written, "missing": missing, "static_export": reason or "ok", "rows": rows}


def pretrain_figure(run_dir: str | Path):
    """A Phase I run's curves: normalized return, Q means, critic loss."""
    from plotly.subplots import make_subplots

    m = json.loads((Path(run_dir) / "metrics.json").read_text())
    fig = make_subplots(rows=1, cols=3, subplot_titles=("normalized return", "mean Q (q1, q2)", "critic loss"))
    fig.add_scatter(x=m["step"], y=m["normalized_return"], name="normalized return", row=1, col=1)
    n = len(m["q1_mean_avg"])
    log_steps = np.linspace(m["step"][-1] / n, m["step"][-1], n) if n else []
    fig.add_scatter(x=log_steps, y=m["q1_mean_avg"], name="q1", row=1, col=2)
    fig.add_scatter(x=log_steps, y=m["q2_mean_avg"], name="q2", row=1, col=2)
    fig.add_scatter(x=log_steps, y=m["critic_loss_avg"], name="critic loss", row=1, col=3)
    fig.update_layout(title=Path(run_dir).name, template="plotly_white")
    fig.update_xaxes(title_text="gradient steps")
    return fig
