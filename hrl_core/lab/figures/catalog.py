"""Every figure of the project, defined once as a :class:`~.spec.Figure` (series, labels,
styles); ``to_matplotlib.render`` and ``to_plotly.render`` draw them. Pure functions of runs read back
(:mod:`hrl_core.lab.records`) and of the summary engine's numbers.

- :func:`curves`: return (or another metric) vs online steps, a colour per corruption level,
  solid/dashed per arm, mean ± std over seeds, the Phase I level dotted;
- :func:`recovery`: per seed, online steps to the clean checkpoint's return and to regain
  the step-0 level after the dip, per corruption level and method, "not reached" drawn as
  ✕ on a line above the budget (never dropped), "at step 0" / "never below its start" as open
  circles on a line of their own below 0 (so they never read as "regained in 0 steps");
- :func:`exploration`: ensemble disagreement, and the bonus beside the env reward;
- :func:`study_curves` / :func:`study_diagnostics`: a panel per setting, a colour per arm;
- :func:`run_curves`: one run (the cell notebook); :func:`pretrain_curves`: a Phase I run.
"""

from __future__ import annotations

import math

import numpy as np

from hrl_core.lab import stats, summary
from hrl_core.lab.figures.spec import Figure, HLine, Panel, Series
from hrl_core.lab.metrics import STEPS_KIND
from hrl_core.lab.recovery import steps_text

K_COLOURS = {0.0: "#1b9e77", 30.0: "#d95f02", 60.0: "#7570b3"}
ARM_COLOURS = ["#444444", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d"]
ARM_DASH = {"ensemble": "solid", "vanilla": "dash"}  # a plain grid's two methods
BY_KIND = STEPS_KIND  # how steps read (recovery.steps_text; hrl_core.lab.metrics)


def data_note(runs) -> str:
    """' — data: not D4RL' etc. for titles when any run's offline data is not D4RL."""
    kinds = sorted({r.data_kind.split(":")[0] for r in runs if not r.data_kind.startswith("D4RL v2 layout")})
    return f" — data: {', '.join(kinds)}" if kinds else ""


def aligned(group, key: str, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Common evaluation steps of a group from index ``start`` and its values [runs, steps] (None -> nan)."""
    n = min(len(r.steps) for r in group)
    x = group[0].steps[start:n]
    return x, np.array([[np.nan if v is None else v for v in r.series(key)[start:n]] for r in group], float)


def _band(label: str, x, y: np.ndarray, colour: str, dash: str = "solid", group: str = "") -> Series:
    mean, std = stats.nanmean(y, 0), stats.nanstd(y, 0)
    band = (list(mean - std), list(mean + std)) if len(y) > 1 else None
    return Series(label, list(x), list(mean), colour, dash=dash, band=band, group=group or label)


def _colour_of_k(k: float) -> str:
    return K_COLOURS.get(k, "#666666")


def _arms(runs) -> list[str]:
    return summary.arms_in_order(runs)


# --------------------------------------------------------------------------------------
# A grid (hrl plot, the explorer)
# --------------------------------------------------------------------------------------
def arm_colour(arms: list[str], arm: str) -> str:
    """An arm's colour, the same in every figure of a record (its place in the record's arms)."""
    return ARM_COLOURS[arms.index(arm) % len(ARM_COLOURS)] if arm in arms else "#666666"


def curves(runs, algo: str, dataset: str, metric: str = "normalized_return", ks=None) -> Figure:
    """Mean ± std over seeds of ``metric`` vs online steps: a panel per corruption level (one band
    per arm in it, so bands do not pile up), a colour per arm; the Phase I level dotted, in the legend."""
    sel = [r for r in runs if r.algo == algo and r.dataset == dataset]
    levels = sorted({r.k for r in sel} if ks is None else {r.k for r in sel} & set(ks))
    arms = _arms(sel)
    panels = []
    for k in levels:
        panel = Panel(f"k={k:g}", "online steps", metric.replace("_", " "))
        for arm in arms:
            group = [r for r in sel if r.k == k and r.arm == arm and metric in r.metrics]
            if group:
                x, y = aligned(group, metric)
                panel.series.append(_band(f"k={k:g} {arm} (n={len(group)})", x, y, arm_colour(arms, arm),
                                          ARM_DASH.get(arm, "solid")))  # fmt: skip
        if metric == "normalized_return" and any(r.k == k for r in sel):
            level = float(np.mean([r.returns[0] for r in sel if r.k == k]))
            panel.hlines = [HLine(level, "#555555", legend="Phase I checkpoint (step 0)")]
        panels.append(panel)
    title = f"{algo.upper()} {dataset}: {metric.replace('_', ' ')}{data_note(sel)}"
    if metric == "normalized_return":
        title += " (mean ± std over seeds)"
    return Figure(f"finetune_curves_{algo}_{dataset}", title, panels or [Panel()], columns=max(1, len(panels)),
                  panel_size=(4.6, 3.6), shared_legend=True)  # fmt: skip


def recovery(runs, dataset: str, levels: dict) -> Figure:
    """Per seed: online steps to the clean checkpoint's return, and to regain step 0 after the dip."""
    sel = [r for r in runs if r.dataset == dataset and r.status == "complete"]
    found = summary.groups(sel, levels)
    # One budget line per algorithm when they differ (the CPU grid gives CQL 2,000 steps and IQL
    # 10,000): a CQL "not reached" drawn above the IQL budget must not read as 10,000 steps.
    budgets = {}  # algo -> the recovery records' budget (their last evaluated step)
    for (algo, *_), g in found.items():
        budgets[algo] = max([budgets.get(algo, 0.0), *(rec.budget for rec in g.recs)])
    top = max(budgets.values(), default=1.0)
    ceiling = top * 1.08
    floor = -0.08 * top  # "never below its start" / "at step 0": drawn on a line of their own, not at 0
    if len(set(budgets.values())) > 1:
        budget_lines = [HLine(b, "#bbbbbb", label=f"{a.upper()} budget") for a, b in sorted(budgets.items())]
    else:
        budget_lines = [HLine(top, "#bbbbbb", label="budget")]
    ks = sorted({key[2] for key in found})
    cats = [f"k={k:g}" for k in ks]
    methods = sorted({(key[0], key[3]) for key in found}, key=lambda m: (m[0], _arms(sel).index(m[1])))
    panels = []
    for metric, title in (("clean", "online steps to the clean (k=0) Phase I return"),
                          ("regain", "online steps to regain the step-0 level after the dip")):  # fmt: skip
        panel = Panel(title=title, xlabel="corruption (top-k% trajectories removed)", ylabel="online steps",
                      categories=cats, ylim=(1.6 * floor, ceiling * 1.12))  # fmt: skip
        for i, (algo, arm) in enumerate(methods):
            xs, ys, marks, text = [], [], [], []
            for k in ks:
                g = found.get((algo, dataset, k, arm))
                for run, rec in zip(g.runs, g.recs, strict=True) if g else ():
                    s = summary.raw_steps(rec, metric)
                    if math.isnan(s):
                        continue  # no clean level
                    xs.append(f"k={k:g}")
                    ys.append(floor if s == 0 else (s if math.isfinite(s) else ceiling))
                    marks.append("x" if math.isinf(s) else ("circle-open" if s == 0 else "circle"))
                    text.append(f"seed {run.seed}: " + steps_text(s, BY_KIND[metric]))
            if xs:
                panel.series.append(Series(f"{algo.upper()} {arm}", xs, ys, ARM_COLOURS[i % len(ARM_COLOURS)],
                                           kind="markers", markers=marks, text=text))  # fmt: skip
        apart = "at step 0 (○)" if metric == "clean" else "never below its start (○)"
        panel.hlines = [HLine(ceiling, label="not reached (✕)"), *budget_lines, HLine(floor, "#bbbbbb", label=apart)]
        panels.append(panel)
    note = "colour: method; ✕ not reached; ○ on the bottom line: at step 0 / never below its start"
    return Figure(f"sample_efficiency_{dataset}", f"{dataset}: recovery per seed{data_note(sel)}; {note}", panels,
                  columns=2, panel_size=(6.5, 4.6), shared_legend=True)  # fmt: skip


def exploration(runs, algo: str, dataset: str, ks=None) -> Figure:
    """Ensemble disagreement over training; mean bonus beside mean env reward (bonus runs).
    ``ks``: only these corruption levels (the explorer's selection)."""
    sel = [r for r in runs if r.algo == algo and r.dataset == dataset and (ks is None or r.k in set(ks))]
    left = Panel("ensemble disagreement", "online steps", "std(Q) at the action taken")
    right = Panel("bonus vs env reward (runs with a bonus)", "online steps", "mean per online step")
    for k in sorted({r.k for r in sel}):
        for arm in _arms(sel):
            group = [r for r in sel if r.k == k and r.arm == arm]
            if not group or len(group[0].steps) < 2:
                continue
            colour, dash = _colour_of_k(k), ARM_DASH.get(arm, "solid")
            x, d = aligned(group, "ensemble_disagreement", 1)
            left.series.append(_band(f"k={k:g} {arm} std(Q)", x, d, colour, dash))
            bonus = aligned(group, "bonus_mean", 1)[1]
            if np.nanmax(np.nan_to_num(bonus, nan=0.0), initial=0.0) > 0:
                for key, name, style in (("bonus_mean", "bonus", "solid"), ("reward_mean", "env reward", "dot")):
                    y = stats.nanmean(aligned(group, key, 1)[1], 0)
                    right.series.append(Series(f"k={k:g} {arm} {name}", list(x), list(y), colour, dash=style))
    return Figure(f"disagreement_{algo}_{dataset}", f"{algo.upper()} {dataset}: exploration signal{data_note(sel)}",
                  [left, right], columns=2, panel_size=(5.5, 4.5))  # fmt: skip


# --------------------------------------------------------------------------------------
# A study (hrl study)
# --------------------------------------------------------------------------------------
def _setting_title(algo, dataset, k) -> str:
    return f"{algo.upper()} {dataset.split('-')[0]} k={k:g}"


# Thin per-seed lines of a setting run from several Phase I checkpoints: one dash per checkpoint, so a
# reader sees whether the checkpoints part ways (the estimate is a within-checkpoint difference).
CHECKPOINT_DASH = ("solid", "dash", "dot")


def _checkpoints_drawn(sel) -> list[int]:
    """The setting's Phase I checkpoints when its seeds are drawn apart by them: more than one, each with
    more than one seed per arm (else, e.g. when the checkpoint follows the online seed, none)."""
    from hrl_core.lab.analysis import stratum_of

    ckpts = sorted({stratum_of(r) for r in sel})
    per_cell = len(sel) / max(1, len(ckpts) * len({r.arm for r in sel}))
    return ckpts if 1 < len(ckpts) <= len(CHECKPOINT_DASH) and per_cell > 1 else []


def study_curves(runs, arms: list[str], name: str = "study_returns", seeds_shown: bool = True,
                 metric: str = "normalized_return") -> Figure:  # fmt: skip
    """``metric`` (normalized return) per arm: every seed's curve (thin) and their mean (thick), a panel
    per (algo, dataset, k); a mean over seeds hides a lone collapsed seed, the thin lines show it. A
    setting run from several Phase I checkpoints draws each checkpoint's seeds with their own dash and
    each checkpoint's step-0 level."""
    from hrl_core.lab.analysis import stratum_of

    ylabel = "normalized return" if metric == "normalized_return" else metric.replace("_", " ")
    start = 0 if metric == "normalized_return" else 1  # training metrics have no value at step 0
    panels, split = [], set()
    for algo, dataset, k in sorted({(r.algo, r.dataset, r.k) for r in runs}):
        sel = [r for r in runs if (r.algo, r.dataset, r.k) == (algo, dataset, k)]
        ckpts = _checkpoints_drawn(sel)
        if ckpts:
            split.add(tuple(ckpts))
            counts = sorted({sum(r.arm == a and stratum_of(r) == c for r in sel) for a in arms for c in ckpts} - {0})
            seeds = f"{'/'.join(map(str, counts))} seeds x {len(ckpts)} checkpoints"
        else:
            seeds = f"{'/'.join(map(str, sorted({sum(r.arm == a for r in sel) for a in arms} - {0})))} seeds"
        panel = Panel(f"{_setting_title(algo, dataset, k)} ({seeds} per arm)", "online steps", ylabel)
        for arm in arms:
            group = [r for r in sel if r.arm == arm]
            if not group:
                continue
            colour = arm_colour(arms, arm)
            x, y = aligned(group, metric, start)
            if seeds_shown:
                for run, row in zip(group, y, strict=True):
                    dash = CHECKPOINT_DASH[ckpts.index(stratum_of(run))] if ckpts else "solid"
                    panel.series.append(Series("", list(x), list(row), colour, dash=dash, width=0.7, opacity=0.35,
                                               group=arm))  # fmt: skip
            panel.series.append(Series(arm, list(x), list(stats.nanmean(y, 0)), colour, width=2.2, group=arm))
        if metric == "normalized_return":
            if ckpts:  # each checkpoint's step-0 level; the lowest label under its line (they lie close)
                levels = {c: float(np.mean([r.returns[0] for r in sel if stratum_of(r) == c])) for c in ckpts}
                panel.hlines = [HLine(y, "#555555", label=f"ckpt {c}", label_below=y == min(levels.values()),
                                      legend="Phase I checkpoints (step 0)" if i == 0 else "")
                                for i, (c, y) in enumerate(levels.items())]  # fmt: skip
            else:
                panel.hlines = [HLine(float(np.mean([r.returns[0] for r in sel])), "#555555",
                                      legend="Phase I checkpoint (step 0)")]  # fmt: skip
        panels.append(panel)
    thin = "each seed (thin)"
    if split:  # name the dashes by checkpoint where every split panel has the same ones, else by order
        widest = max(len(c) for c in split)
        names = [f"ckpt {c}" for c in next(iter(split))] if len(split) == 1 else ["first", "second", "third"][:widest]
        dashes = ("solid", "dashed", "dotted")[: len(names)]
        thin = f"each seed (thin; {', '.join(f'{d}: {n}' for d, n in zip(dashes, names, strict=True))})"
    title = f"{ylabel.capitalize()}: {thin} and the mean over seeds (thick){data_note(runs)}"
    columns = 2 if len(panels) == 4 else min(4, max(1, len(panels)))
    return Figure(name, title, panels, columns=columns, panel_size=(5.2, 3.6), shared_legend=True)


VERDICT_COLOURS = {"better": "#1b9e77", "worse": "#d95f02", "equivalent": "#377eb8", "inconclusive": "#888888",
                   "no interval": "#cccccc"}  # fmt: skip


def forest(
    rows: list[tuple[str, float, float, float, str]],
    metric_label: str,
    title: str,
    margin: float | None = None,
    name: str = "study_forest",
) -> Figure:
    """Effect × setting: each row's estimate and interval, coloured by its verdict; the line at 0
    and (when declared) the equivalence margin shaded. ``rows``: (label, estimate, low, high, verdict)."""
    labels = [r[0] for r in rows]
    verdicts = [r[4].split(" (")[0] for r in rows]
    finite = [v for r in rows for v in r[1:4] if math.isfinite(v)]
    span = max([abs(v) for v in finite] + [1.0])

    def clip(v):  # an unbounded side is drawn to the edge
        return v if math.isfinite(v) else math.copysign(1.15 * span, v)

    panel = Panel("", f"{metric_label}: arm − reference", "", rows=labels, vlines=[0.0],
                  vband=(-margin, margin) if margin else None)  # fmt: skip
    colours = [VERDICT_COLOURS.get(v, "#888888") for v in verdicts]
    panel.series.append(Series("", [r[1] for r in rows], labels, "#333333", kind="intervals",
                               band=([clip(r[2]) for r in rows], [clip(r[3]) for r in rows]),
                               colours=colours, text=verdicts))  # fmt: skip
    return Figure(name, title, [panel], panel_size=(8.5, 0.32 * len(rows) + 1.6))


def study_diagnostics(runs, arms: list[str], diagnostics) -> Figure:
    """Rows: diagnostics (name, fn(run) -> per-point values, y scale, pooled(runs, index) or None:
    how the seeds combine, else their mean); columns: settings."""
    settings = sorted({(r.algo, r.dataset, r.k) for r in runs})
    panels = []
    for row, (name, fn, scale, pooled) in enumerate(diagnostics):
        for algo, dataset, k in settings:
            sel = [r for r in runs if (r.algo, r.dataset, r.k) == (algo, dataset, k)]
            panel = Panel(_setting_title(algo, dataset, k) if row == 0 else "", "online steps"
                          if row == len(diagnostics) - 1 else "", name, yscale=scale)  # fmt: skip
            for i, arm in enumerate(arms):
                group = [r for r in sel if r.arm == arm]
                if not group:
                    continue
                n = min(len(r.steps) for r in group)
                if pooled is not None:
                    y = np.array([pooled(group, i) for i in range(1, n)], float)
                else:
                    per_seed = [[np.nan if v is None else v for v in fn(r)[1:n]] for r in group]  # [seeds, points]
                    y = stats.nanmean(np.array(per_seed, float), 0)
                if scale == "log":
                    y = np.where(y > 0, y, np.nan)
                panel.series.append(Series(arm, list(group[0].steps[1:n]), list(y), ARM_COLOURS[i % len(ARM_COLOURS)]))
            panels.append(panel)
    title = f"Diagnostics per evaluation interval, mean over seeds (a ratio: of their means){data_note(runs)}"
    return Figure("study_diagnostics", title, panels,
                  columns=max(1, len(settings)), panel_size=(3.6, 2.6), shared_legend=True)  # fmt: skip


# --------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------
def run_curves(metrics: dict, title: str = "") -> Figure:
    """A run's curves: return, disagreement, bonus vs env reward, critic loss."""
    steps = [float(s) for s in metrics["step"]]

    def get(key):
        return [math.nan if v is None else float(v) for v in metrics.get(key) or [None] * len(steps)]

    return Figure("run", title, [
        Panel("evaluation", "", "normalized return",
              [Series("", steps, get("normalized_return"), "#1b9e77", kind="markers"),
               Series("", steps, get("normalized_return"), "#1b9e77")]),
        Panel("ensemble disagreement", "", "std(Q) at the action taken",
              [Series("", steps[1:], get("ensemble_disagreement")[1:], "#7570b3")]),
        Panel("bonus vs env reward (per step)", "online steps", "per-step value",
              [Series("bonus", steps[1:], get("bonus_mean")[1:], "#d95f02"),
               Series("env reward", steps[1:], get("reward_mean")[1:], "#333333", dash="dot")]),
        Panel("critic loss", "online steps", "mean over the interval",
              [Series("", steps[1:], get("critic_loss_avg")[1:], "#e7298a")]),
    ], columns=2, panel_size=(5.0, 3.0))  # fmt: skip


def pretrain_curves(metrics: dict, title: str = "") -> Figure:
    """A Phase I run's curves: normalized return, mean Q of q1/q2, critic loss."""
    n = len(metrics["q1_mean_avg"])
    log_steps = list(np.linspace(metrics["step"][-1] / n, metrics["step"][-1], n)) if n else []
    return Figure("pretrain", title, [
        Panel("evaluation", "gradient steps", "normalized return",
              [Series("", metrics["step"], metrics["normalized_return"], "#1b9e77", kind="markers"),
               Series("", metrics["step"], metrics["normalized_return"], "#1b9e77")]),
        Panel("mean Q on the data", "gradient steps", "Q",
              [Series("q1", log_steps, metrics["q1_mean_avg"], "#1f77b4"),
               Series("q2", log_steps, metrics["q2_mean_avg"], "#ff7f0e")]),
        Panel("critic loss", "gradient steps", "mean over 1,000 steps",
              [Series("", log_steps, metrics["critic_loss_avg"], "#e7298a")]),
    ], columns=3, panel_size=(4.0, 3.6))  # fmt: skip
