"""Static figures (PNG and SVG) with matplotlib: no browser needed.

``hrl plot``, ``hrl study`` and the cell notebooks draw their static figures here, so
they work on a cluster node or a machine without Chrome/Chromium (plotly's static
export, kaleido, needs one). The interactive HTML figures and the explorer's widgets
stay on plotly (``hrl_core.plots``). The content matches the plotly figures: titles
name the data kind, solid = ensemble / dashed = vanilla, mean ± std over seeds, the
Phase I level as a dotted line.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from hrl_core import stats
from hrl_core.plots import K_COLOURS, aligned_series, mean_std, method_groups

METHOD_STYLE = {"ensemble": "-", "none": "--"}
ARM_COLOURS = ["#444444", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, no browser
    import matplotlib.pyplot as plt

    return plt


def _band(ax, x, y, colour, style, label):
    """Mean ± std over the rows of y [runs, steps] (NaN-aware)."""
    mean, std = mean_std(y)
    ax.plot(x, mean, style, color=colour, label=label, linewidth=1.6)
    if len(y) > 1:
        ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.15, linewidth=0)


def save(fig, out_dir: str | Path, name: str, formats=("png", "svg"), dpi: int = 110) -> list[Path]:
    """Write ``<name>.png`` / ``.svg`` and close the figure."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in formats:
        path = out_dir / f"{name}.{ext}"
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        paths.append(path)
    _plt().close(fig)
    return paths


def png_bytes(fig, dpi: int = 80) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


# --------------------------------------------------------------------------------------
# One run (the cell notebook)
# --------------------------------------------------------------------------------------
def run_figure(metrics: dict, title: str = ""):
    """A run's curves: return, disagreement, bonus vs env reward, critic loss."""
    plt = _plt()
    steps = np.asarray(metrics["step"], float)

    def get(key):
        return np.array([np.nan if v is None else v for v in metrics.get(key, [None] * len(steps))], float)

    fig, axes = plt.subplots(2, 2, figsize=(10, 6), sharex=True)
    axes[0, 0].plot(steps, get("normalized_return"), "o-", color="#1b9e77")
    axes[0, 0].set(title="evaluation", ylabel="normalized return")
    axes[0, 1].plot(steps[1:], get("ensemble_disagreement")[1:], color="#7570b3")
    axes[0, 1].set(title="ensemble disagreement", ylabel="std(Q) at the action taken")
    axes[1, 0].plot(steps[1:], get("bonus_mean")[1:], color="#d95f02", label="bonus")
    axes[1, 0].plot(steps[1:], get("reward_mean")[1:], ":", color="#333333", label="env reward")
    axes[1, 0].set(title="bonus vs env reward (per step)", ylabel="per-step value", xlabel="online steps")
    axes[1, 0].legend(frameon=False)
    axes[1, 1].plot(steps[1:], get("critic_loss_avg")[1:], color="#e7298a")
    axes[1, 1].set(title="critic loss", ylabel="mean over the interval", xlabel="online steps")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def run_figure_png(metrics: dict, title: str = "") -> bytes:
    return png_bytes(run_figure(metrics, title))


# --------------------------------------------------------------------------------------
# The grid (hrl plot)
# --------------------------------------------------------------------------------------
def curves_figure(runs, algo: str, dataset: str, data_note: str = "", metric: str = "normalized_return"):
    """Mean ± std over seeds per corruption level; solid = ensemble, dashed = vanilla."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 5))
    for k, colour, bonus, tag, group in method_groups(runs, algo, dataset, metric):
        _band(ax, *aligned_series(group, metric), colour, METHOD_STYLE[bonus], f"k={k:g} {tag} (n={len(group)})")
    sel = [r for r in runs if r.algo == algo and r.dataset == dataset]
    if metric == "normalized_return":
        for k in sorted({r.k for r in sel}):
            level = float(np.mean([r.returns[0] for r in sel if r.k == k]))
            ax.axhline(level, color=K_COLOURS.get(k, "#666666"), linestyle=":", linewidth=1)
    ax.set(xlabel="online steps", ylabel=metric.replace("_", " "))
    ax.set_title(f"{algo.upper()} {dataset}{data_note}\nmean ± std over seeds; dotted: Phase I level", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8, ncol=2)
    fig.tight_layout()
    return fig


def sample_efficiency_figure(rows: list[dict], dataset: str, max_step: float, data_note: str = ""):
    """Steps to 80% of the clean checkpoint's return per seed; 'not reached' at the top."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 5))
    sel = [r for r in rows if r["dataset"] == dataset]
    methods = sorted({(r["algo"], r["bonus_type"]) for r in sel})
    ks = sorted({r["k"] for r in sel})
    width = 0.8 / max(len(methods), 1)
    ceiling = max_step * 1.08
    for m, (algo, bonus) in enumerate(methods):
        xs, ys, never = [], [], []
        for i, k in enumerate(ks):
            for row in sel:
                if (row["algo"], row["bonus_type"], row["k"]) != (algo, bonus, k):
                    continue
                for s in row["steps_to_threshold_each"]:
                    x = i - 0.4 + width * (m + 0.5)
                    (never if math.isinf(s) else xs).append(x)
                    if not math.isinf(s):
                        ys.append(s)
        colour = ARM_COLOURS[m % len(ARM_COLOURS)]
        label = f"{algo.upper()} {'ensemble' if bonus == 'ensemble' else 'vanilla'}"
        ax.scatter(xs, ys, color=colour, label=label, zorder=3)
        if never:
            ax.scatter(never, [ceiling] * len(never), marker="x", color=colour, zorder=3)
    ax.axhline(ceiling, color="grey", linestyle=":", linewidth=1)
    ax.text(len(ks) - 0.5, ceiling, " not reached (x)", va="bottom", ha="right", fontsize=8, color="grey")
    ax.set_xticks(range(len(ks)), [f"k={k:g}" for k in ks])
    ax.set(xlabel="corruption (top-k% trajectories removed)", ylabel="online steps to 80% of clean return")
    ax.set_ylim(bottom=-0.03 * ceiling, top=ceiling * 1.1)
    ax.set_title(f"{dataset}: online steps to 80% of the clean Phase I return{data_note}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def disagreement_figure(runs, algo: str, dataset: str, data_note: str = ""):
    """Ensemble disagreement over training; mean bonus beside mean env reward."""
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for k, colour, bonus, tag, group in method_groups(runs, algo, dataset):
        x, d = aligned_series(group, "ensemble_disagreement", 1)
        _band(left, x, d, colour, METHOD_STYLE[bonus], f"k={k:g} {tag}")
        if bonus == "ensemble":
            for key, name, style in (("bonus_mean", "bonus", "-"), ("reward_mean", "env reward", ":")):
                right.plot(x, mean_std(aligned_series(group, key, 1)[1])[0], style, color=colour,
                           label=f"k={k:g} {name}")  # fmt: skip
    left.set(title="ensemble disagreement", xlabel="online steps", ylabel="std(Q) at the action taken")
    right.set(title="bonus vs env reward (ensemble runs)", xlabel="online steps", ylabel="mean per online step")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize=8)
    fig.suptitle(f"{algo.upper()} {dataset}: exploration signal{data_note}", fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------
# Studies (hrl study)
# --------------------------------------------------------------------------------------
def study_curves_figure(runs, arms: list[str], data_note: str = ""):
    """Normalized return per arm (mean ± std over seeds): a panel per (algo, dataset, k)."""
    plt = _plt()
    panels = sorted({(r.algo, r.dataset, r.k) for r in runs})
    cols = min(4, max(1, len(panels)))
    rows = math.ceil(len(panels) / cols) if panels else 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, (algo, dataset, k) in zip(axes.flat, panels, strict=False):
        sel = [r for r in runs if (r.algo, r.dataset, r.k) == (algo, dataset, k)]
        for i, arm in enumerate(arms):
            group = [r for r in sel if r.arm == arm]
            if group:
                x, y = aligned_series(group, "normalized_return")
                _band(ax, x, y, ARM_COLOURS[i % len(ARM_COLOURS)], "-", f"{arm} (n={len(group)})")
        ax.axhline(float(np.mean([r.returns[0] for r in sel])), color="grey", linestyle=":", linewidth=1)
        ax.set_title(f"{algo.upper()} {dataset.split('-')[0]} k={k:g}", fontsize=9)
        ax.set_xlabel("online steps", fontsize=8)
        ax.set_ylabel("normalized return", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            arm = lab.split(" (n=")[0]
            if arm not in [lb.split(" (n=")[0] for lb in labels]:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), frameon=False, fontsize=8)
    fig.suptitle(f"Normalized return, mean ± std over seeds (dotted: Phase I level){data_note}", fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 0.97))
    return fig


def study_diagnostics_figure(runs, arms: list[str], diagnostics, data_note: str = ""):
    """Rows: diagnostics (name, fn(run) -> per-point values, y scale); columns: settings."""
    plt = _plt()
    panels = sorted({(r.algo, r.dataset, r.k) for r in runs})
    fig, axes = plt.subplots(len(diagnostics), max(1, len(panels)), figsize=(3.6 * max(1, len(panels)),
                             2.6 * len(diagnostics)), squeeze=False)  # fmt: skip
    for col, (algo, dataset, k) in enumerate(panels):
        sel = [r for r in runs if (r.algo, r.dataset, r.k) == (algo, dataset, k)]
        for row, (name, fn, scale) in enumerate(diagnostics):
            ax = axes[row, col]
            for i, arm in enumerate(arms):
                group = [r for r in sel if r.arm == arm]
                if not group:
                    continue
                n = min(len(r.steps) for r in group)
                y = np.array([[np.nan if v is None else v for v in fn(r)[1:n]] for r in group], float)
                mean = stats.nanmean(y, 0)
                if scale == "log":
                    mean = np.where(mean > 0, mean, np.nan)
                ax.plot(group[0].steps[1:n], mean, color=ARM_COLOURS[i % len(ARM_COLOURS)], label=arm, linewidth=1.3)
            ax.set_yscale(scale)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(f"{algo.upper()} {dataset.split('-')[0]} k={k:g}", fontsize=9)
            if col == 0:
                ax.set_ylabel(name, fontsize=8)
            if row == len(diagnostics) - 1:
                ax.set_xlabel("online steps", fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), frameon=False, fontsize=8)
    fig.suptitle(f"Diagnostics per evaluation interval, mean over seeds{data_note}", fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 0.98))
    return fig


def pretrain_figure(run_dir: str | Path):
    """A Phase I run's curves: normalized return, mean Q of q1/q2, critic loss."""
    import json

    plt = _plt()
    m = json.loads((Path(run_dir) / "metrics.json").read_text())
    n = len(m["q1_mean_avg"])
    log_steps = np.linspace(m["step"][-1] / n, m["step"][-1], n) if n else []
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    axes[0].plot(m["step"], m["normalized_return"], "o-", color="#1b9e77")
    axes[0].set(title="evaluation", ylabel="normalized return")
    axes[1].plot(log_steps, m["q1_mean_avg"], label="q1")
    axes[1].plot(log_steps, m["q2_mean_avg"], label="q2")
    axes[1].set(title="mean Q on the data", ylabel="Q")
    axes[1].legend(frameon=False)
    axes[2].plot(log_steps, m["critic_loss_avg"], color="#e7298a")
    axes[2].set(title="critic loss", ylabel="mean over 1,000 steps")
    for ax in axes:
        ax.set_xlabel("gradient steps")
        ax.grid(alpha=0.3)
    fig.suptitle(Path(run_dir).name, fontsize=10)
    fig.tight_layout()
    return fig
