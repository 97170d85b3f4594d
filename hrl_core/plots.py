"""Figures and the summary table of Phase II results (pure functions of the runs).

``hrl plot`` writes, for the runs of a grid file's cells:

- ``finetune_curves_<algo>_<dataset>``: normalized return vs online steps, one colour
  per corruption level, solid = ensemble bonus, dashed = vanilla, mean ± std over
  seeds, the Phase I level (step 0) as a dotted line;
- ``sample_efficiency_<dataset>``: online steps to reach 80% of the clean (k=0) Phase I
  checkpoint's normalized return, per method and corruption level; runs that never
  get there are drawn as "not reached" at the top, not dropped;
- ``disagreement_<algo>_<dataset>``: ensemble disagreement over training, and the
  mean bonus beside the mean env reward;
- ``summary.md`` / ``summary.csv``: per (algo, dataset, k, bonus) the step-0 and final
  return, area under the curve, steps to threshold, and ensemble − vanilla (final and
  AUC) with Welch's 95% t-interval over seeds and a verdict (``hrl_core.stats``); cells
  still missing are listed.

Every figure is written as PNG and SVG with matplotlib (``hrl_core.static``: no browser
needed) and as interactive HTML with plotly (plotly.js embedded, no CDN needed).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from hrl_core import stats
from hrl_core.errors import HrlError
from hrl_core.runs import Run

THRESHOLD_FRACTION = 0.8  # "recovered" = 80% of the clean Phase I checkpoint's return
K_COLOURS = {0.0: "#1b9e77", 30.0: "#d95f02", 60.0: "#7570b3"}
METHOD_DASH = {"ensemble": "solid", "none": "dash"}


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


def summary_rows(runs: list[Run], missing: list[str] | None = None) -> tuple[list[dict], list[str]]:
    """Summary per (algo, dataset, k, bonus) over complete runs, and the missing cells' names.

    Ensemble rows carry ensemble − vanilla for the final return and the AUC with Welch's
    95% t-interval over seeds and a verdict (better | worse | inconclusive | no interval).
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
        aucs = [auc(r.steps, r.returns) for r in members]
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
            "final_return_std": float(np.std(finals, ddof=1)) if len(finals) > 1 else math.nan,
            "auc_mean_return": float(np.mean(aucs)),
            "threshold": thr,
            "steps_to_threshold_median": float(np.median(reach)) if reach else math.nan,
            "steps_to_threshold_each": reach,
            "reached": f"{sum(np.isfinite(reach))}/{len(reach)}" if not math.isnan(thr) else "no k=0 run",
        }
        if bonus == "ensemble":
            vanilla = groups.get((algo, dataset, k, "none"), [])
            for key, mine, theirs in (
                ("final", finals, [r.returns[-1] for r in vanilla]),
                ("auc", aucs, [auc(r.steps, r.returns) for r in vanilla]),
            ):
                d = stats.welch_interval(mine, theirs)
                row.update({f"ens_minus_vanilla_{key}": d.estimate, f"{key}_ci95_low": d.low,
                            f"{key}_ci95_high": d.high, f"{key}_verdict": stats.verdict(d)})  # fmt: skip
        rows.append(row)
    return rows, list(missing or [])


def write_summary(rows: list[dict], missing: list[str], out_dir: Path, n_runs: int) -> tuple[Path, Path]:
    import csv

    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / "summary.csv", out_dir / "summary.md"
    keys = [k for k in dict.fromkeys(k for row in rows for k in row) if k != "steps_to_threshold_each"]
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    def fmt(v):
        if isinstance(v, float):
            return "never" if math.isinf(v) else ("–" if math.isnan(v) else f"{v:.1f}")
        return str(v)

    def diff(row, key):
        if f"ens_minus_vanilla_{key}" not in row:
            return ""
        d = stats.Diff(row[f"ens_minus_vanilla_{key}"], row[f"{key}_ci95_low"], row[f"{key}_ci95_high"])
        return f"{d.text()} {row[f'{key}_verdict']}"

    lines = [
        "# Phase II summary",
        "",
        f"{n_runs} runs read; numbers use complete runs only. Returns are D4RL-normalized.",
        "`threshold` = 80% of the clean (k=0) Phase I checkpoint's step-0 return; `steps to 80%` (median over",
        "seeds) is `never` when most seeds never reached it (see `reached`). `ens − van` is ensemble − vanilla",
        "with Welch's 95% t-interval over seeds (no interval below 2 seeds on a side) and a verdict:",
        "better/worse only when the interval excludes 0, else inconclusive. AUC = mean return over the run.",
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
        ("final_return_std", "± sd"),
        ("auc_mean_return", "AUC"),
        ("steps_to_threshold_median", "steps to 80%"),
        ("reached", "reached"),
    ]
    lines.append("| " + " | ".join(c[1] for c in cols) + " | ens − van final [95% CI] | ens − van AUC [95% CI] |")
    lines.append("|" + "---|" * (len(cols) + 2))
    for row in rows:
        shown = {**row, "k": f"{row['k']:g}"}
        steps = row["steps_to_threshold_median"]
        if isinstance(steps, float) and math.isfinite(steps):
            shown["steps_to_threshold_median"] = f"{steps:,.0f}"
        lines.append("| " + " | ".join(fmt(shown.get(c[0], "")) for c in cols) + f" | {diff(row, 'final')} | "
                     f"{diff(row, 'auc')} |")  # fmt: skip
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
            mode="lines",
            hoverinfo="skip",
            showlegend=False,
            legendgroup=legendgroup,
        ),
        **kw,
    )
    fig.add_trace(
        go.Scatter(x=x, y=mean, name=name, mode="lines", line={"color": colour, "dash": dash}, legendgroup=legendgroup),
        **kw,
    )


def data_note(runs: list[Run]) -> str:
    """' (data: generated)' etc. for titles when any run's offline data is not D4RL."""
    kinds = sorted({r.data_kind.split(":")[0] for r in runs if not r.data_kind.startswith("D4RL v2 layout")})
    return f" — data: {', '.join(kinds)}" if kinds else ""


def method_groups(runs: list[Run], algo: str, dataset: str, metric: str | None = None):
    """Per corruption level and method, in drawing order: (k, colour, bonus_type, label, runs).

    The plotly (HTML, widgets) and matplotlib (PNG/SVG) figures draw the same groups."""
    sel = [r for r in runs if r.algo == algo and r.dataset == dataset]
    for k in sorted({r.k for r in sel}):
        for bonus in ("ensemble", "none"):
            group = [r for r in sel if r.k == k and r.bonus_type == bonus and (metric is None or metric in r.metrics)]
            if group:
                yield k, K_COLOURS.get(k, "#666666"), bonus, "ensemble" if bonus == "ensemble" else "vanilla", group


def aligned_series(group: list[Run], key: str, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Common evaluation steps of a group from index ``start`` and its values [runs, steps] (None -> nan)."""
    n = min(len(r.steps) for r in group)
    x = group[0].steps[start:n]
    return x, np.array([[np.nan if v is None else v for v in r.series(key)[start:n]] for r in group], float)


def mean_std(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return stats.nanmean(y, 0), stats.nanstd(y, 0)


def curves_figure(runs: list[Run], algo: str, dataset: str, metric: str = "normalized_return", ks=None):
    """Mean ± std over seeds of ``metric`` vs online steps, per corruption level and method."""
    import plotly.graph_objects as go

    fig = go.Figure()
    sel = [r for r in runs if r.algo == algo and r.dataset == dataset]
    for k, colour, bonus, tag, group in method_groups(runs, algo, dataset, metric):
        if ks is None or k in ks:
            x, y = aligned_series(group, metric)
            label = f"k={k:g} {tag} (n={len(group)})"
            _band(fig, x, *mean_std(y), colour, label, METHOD_DASH[bonus], label)
    if metric == "normalized_return":
        for k in sorted({r.k for r in sel} & (set(ks) if ks is not None else {r.k for r in sel})):
            level = float(np.mean([r.returns[0] for r in sel if r.k == k]))
            fig.add_hline(y=level, line={"color": K_COLOURS.get(k, "#666666"), "dash": "dot", "width": 1})
    title = f"{algo.upper()} {dataset}: {metric.replace('_', ' ')}{data_note(sel)}"
    if metric == "normalized_return":
        title += " (dotted: Phase I level)"
    fig.update_layout(
        title=title, xaxis_title="online steps", yaxis_title=metric.replace("_", " "), template="plotly_white"
    )
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
    for k, colour, bonus, tag, group in method_groups(runs, algo, dataset):
        x, d = aligned_series(group, "ensemble_disagreement", 1)
        _band(fig, x, *mean_std(d), colour, f"k={k:g} {tag} std(Q)", METHOD_DASH[bonus], f"{k}{bonus}", 1, 1)
        if bonus == "ensemble":
            for key, name, dash in (("bonus_mean", "bonus", "solid"), ("reward_mean", "env reward", "dot")):
                fig.add_scatter(x=x, y=mean_std(aligned_series(group, key, 1)[1])[0], mode="lines",
                                name=f"k={k:g} {name} (ensemble runs)", line={"color": colour, "dash": dash},
                                row=1, col=2)  # fmt: skip
    sel = [r for r in runs if r.algo == algo and r.dataset == dataset]
    fig.update_layout(title=f"{algo.upper()} {dataset}: exploration signal{data_note(sel)}", template="plotly_white")
    fig.update_xaxes(title_text="online steps")
    fig.update_yaxes(title_text="std(Q) at the action taken", row=1, col=1)
    fig.update_yaxes(title_text="mean per online step", row=1, col=2)
    return fig


def setup_notebook_plotly() -> None:
    """Figures that render in JupyterLab and in the saved notebook without a CDN."""
    import plotly.io as pio

    pio.renderers.default = "plotly_mimetype+notebook"


def export_html(fig, out_dir: Path, name: str) -> Path:
    """Interactive HTML that opens offline: plotly.js is written once per folder
    (``plotly.min.js``, ~4.7 MB) and referenced by every figure there, instead of being
    embedded in each (a dozen figures would otherwise be ~60 MB)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.html"
    fig.write_html(path, include_plotlyjs="directory", full_html=True)
    return path


def write_all(cells, out_dir: Path, static: bool = True, html: bool = True) -> dict:
    """Every figure and the summary for the runs of a grid file's cells."""
    from hrl_core import runs as runs_mod
    from hrl_core import static as mpl

    if any(c.arm for c in cells):
        # Arms of a variants study share (algo, dataset, k, bonus): this summary would pool them.
        raise HrlError("this grid file has arms (a variants study): use hrl study --params with it")
    if html:
        try:
            import plotly  # noqa: F401 - the [lab] extra; a core install writes PNG/SVG only
        except ImportError:
            html = False
    runs = runs_mod.load_cells(cells)
    done = {r.run_name for r in runs if r.status == "complete"}
    missing = [c.run_name for c in cells if c.run_name not in done]
    out_dir = Path(out_dir)
    written: list[Path] = []
    rows, _ = summary_rows(runs, missing)
    for algo, dataset in sorted({(r.algo, r.dataset) for r in runs}):
        sel = [r for r in runs if r.algo == algo and r.dataset == dataset]
        name = f"{algo}_{dataset}"
        if html:
            written.append(export_html(curves_figure(runs, algo, dataset), out_dir, f"finetune_curves_{name}"))
            written.append(export_html(disagreement_figure(runs, algo, dataset), out_dir, f"disagreement_{name}"))
        if static:
            written += mpl.save(mpl.curves_figure(runs, algo, dataset, data_note(sel)), out_dir,
                                f"finetune_curves_{algo}_{dataset}")  # fmt: skip
            written += mpl.save(mpl.disagreement_figure(runs, algo, dataset, data_note(sel)), out_dir,
                                f"disagreement_{algo}_{dataset}")  # fmt: skip
    for dataset in sorted({r.dataset for r in runs}):
        sel = [r for r in runs if r.dataset == dataset and r.status == "complete"]
        if html:
            fig = sample_efficiency_figure(runs, dataset)
            written.append(export_html(fig, out_dir, f"sample_efficiency_{dataset}"))
        if static and sel:
            max_step = max(r.steps[-1] for r in sel)
            written += mpl.save(mpl.sample_efficiency_figure(rows, dataset, max_step, data_note(sel)), out_dir,
                                f"sample_efficiency_{dataset}")  # fmt: skip
    written += list(write_summary(rows, missing, out_dir, len(runs)))
    return {"runs": len(runs), "files": written, "missing": missing, "rows": rows, "html": html}
