"""Analysis of a variants study (a grid file with ``arms:``, e.g. params/study_iql.yaml).

Pure functions of the grid file's cells and their runs' ``config.json``/``metrics.json``;
the study notebook (notebooks/study.ipynb) only calls these. A run belongs to the study
when it is one of the grid file's cells (runs are named by their settings, so a run
shared with another record, e.g. the CPU-budget grid, is read here under this file's
arm label). Per setting (algo, dataset, k) and arm:

- step-0, final and area-under-curve normalized return (AUC = mean return over the
  run, trapezoid rule over the evaluation steps);
- online steps to 80% of the clean (k=0) Phase I checkpoint's return (``hrl plot``'s
  threshold) and to 100% of it;
- the measured bonus / env reward ratio and the disagreement trend (last interval /
  first interval);

and for each comparison of the grid file (``comparisons: {label: [arm, reference]}``,
default: every arm against ``vanilla``): arm − reference for final return and AUC with
Welch's 95% t-interval and a verdict (better | worse | inconclusive), per setting and
pooled over settings (``hrl_core.stats.pooled``).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from hrl_core import plots, runs, stats

REFERENCE_ARM = "vanilla"


def load_study(cells) -> list[runs.Run]:
    """The runs of the study's cells (complete or not), labelled with their arms."""
    return runs.load_cells(cells)


def clean_reference_cells(cells) -> list:
    """The clean level of a study without k=0 cells (e.g. the CQL study, k=60 only).

    Steps to 80%/100% are measured against the clean (k=0) Phase I checkpoint's step-0
    return. Where the study has no k=0 cell for an (algo, dataset), these are the k=0 twins
    of its reference-arm cells: the same settings on the clean checkpoint, so their step 0
    is that checkpoint evaluated exactly as the study evaluates (same episodes, same seeds).
    They are not run by the study; another record sharing the save_dir may hold them (the
    CQL study reads grid_cpu's CQL k=0 vanilla cells)."""
    have = {(c.config.algo, c.config.env) for c in cells if c.config.remove_top_k == 0}
    out = {}
    for c in cells:
        if c.arm == REFERENCE_ARM and (c.config.algo, c.config.env) not in have:
            twin = dataclasses.replace(c, config=dataclasses.replace(c.config, remove_top_k=0.0),
                                       arm=f"{REFERENCE_ARM} k=0 (clean level)")  # fmt: skip
            out.setdefault(twin.run_name, twin)
    return list(out.values())


def clean_reference_markdown(clean_runs: list[runs.Run], cells) -> str:
    """Where the clean level came from, when it came from outside the study."""
    wanted = clean_reference_cells(cells)
    if not wanted:
        return ""
    found = {r.run_name for r in clean_runs if r.status == "complete"}
    lines = ["**Clean level** (steps to 80%/100%): this study has no k=0 cells for "
             + ", ".join(sorted({f"{c.config.algo} {c.config.env}" for c in wanted}))
             + "; it is the step-0 return of the same settings on the clean checkpoint, read from these runs "
             "(not part of the study):"]  # fmt: skip
    lines += [f"- `{c.run_name}`: {'found' if c.run_name in found else 'missing (steps to 80% unavailable)'}"
              for c in wanted]  # fmt: skip
    return "\n".join(lines)


def arms_in_order(study_runs: list[runs.Run], arms: list[str] | None = None) -> list[str]:
    """Arms in the grid file's order (reference first), else alphabetical."""
    present = {r.arm for r in study_runs}
    order = [a for a in (arms or sorted(present)) if a in present]
    if REFERENCE_ARM in order:
        order.remove(REFERENCE_ARM)
        order.insert(0, REFERENCE_ARM)
    return order


def comparisons_of(spec: dict) -> dict[str, tuple[str, str]]:
    """The grid file's comparisons (label -> (arm, reference)); default every arm vs vanilla."""
    if spec.get("comparisons"):
        return {label: (pair[0], pair[1]) for label, pair in spec["comparisons"].items()}
    return {f"{arm} − {REFERENCE_ARM}": (arm, REFERENCE_ARM) for arm in spec["arms"] if arm != REFERENCE_ARM}


def _final(r) -> float:
    return float(r.returns[-1])


def _auc(r) -> float:
    return plots.auc(r.steps, r.returns)


def _mean_of(values) -> float:
    vals = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else math.nan


def bonus_reward_ratio(r) -> float:
    """Mean bonus / mean env reward of online transitions over the whole run."""
    bonus, reward = _mean_of(r.series("bonus_mean")[1:]), _mean_of(r.series("reward_mean")[1:])
    return bonus / reward if reward and np.isfinite(reward) and reward != 0 else math.nan


def disagreement_trend(r) -> float:
    """Disagreement in the last evaluation interval / in the first (< 1: it fell)."""
    d = [v for v in r.series("ensemble_disagreement")[1:] if v is not None]
    return d[-1] / d[0] if len(d) >= 2 and d[0] > 0 else math.nan


def _groups(study_runs) -> dict[tuple, list]:
    out: dict[tuple, list] = {}
    for r in study_runs:
        if r.status == "complete":
            out.setdefault((r.algo, r.dataset, r.k, r.arm), []).append(r)
    for members in out.values():
        members.sort(key=lambda r: r.seed)
    return out


def study_rows(study_runs: list[runs.Run], arms: list[str] | None = None, clean_runs=()) -> list[dict]:
    """One row per (algo, dataset, k, arm) over the complete runs; ``clean_runs``: k=0 runs
    from outside the study that define the clean level (``clean_reference_cells``)."""
    groups = _groups(study_runs)
    clean = [r for r in clean_runs if r.status == "complete" and r.k == 0]
    thresholds = plots.clean_thresholds([r for r in study_runs if r.status == "complete"] + clean)
    rows = []
    for algo, dataset, k in sorted({key[:3] for key in groups}):
        thr80 = thresholds.get((algo, dataset), math.nan)
        for arm in arms_in_order([r for r in study_runs if r.status == "complete"], arms):
            members = groups.get((algo, dataset, k, arm), [])
            if not members:
                continue
            finals, aucs = [_final(r) for r in members], [_auc(r) for r in members]
            reach80 = [plots.steps_to_threshold(r.steps, r.returns, thr80) for r in members]
            reach100 = [plots.steps_to_threshold(r.steps, r.returns, thr80 / plots.THRESHOLD_FRACTION) for r in members]
            trends = [disagreement_trend(r) for r in members]
            rows.append({
                "algo": algo, "dataset": dataset, "k": k, "arm": arm, "n_seeds": len(members),
                "seeds": ",".join(str(r.seed) for r in members), "online_steps": int(members[0].steps[-1]),
                "step0_return": float(np.mean([r.returns[0] for r in members])),
                "final_mean": float(np.mean(finals)), "final_sd": _sd(finals),
                "auc_mean": float(np.mean(aucs)), "auc_sd": _sd(aucs),
                "threshold80": thr80,
                "steps_to_80_median": float(np.median(reach80)),
                "reached_80": f"{sum(np.isfinite(reach80))}/{len(reach80)}",
                "steps_to_100_median": float(np.median(reach100)),
                "reached_100": f"{sum(np.isfinite(reach100))}/{len(reach100)}",
                "bonus_reward_ratio": _mean_of(bonus_reward_ratio(r) for r in members),
                "disagreement_trend": _mean_of(trends),
                "disagreement_fell": f"{sum(t < 1 for t in trends if np.isfinite(t))}/{len(trends)}",
            })  # fmt: skip
    return rows


def _sd(values) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def effect_rows(study_runs: list[runs.Run], comparisons: dict[str, tuple[str, str]]) -> list[dict]:
    """Per comparison and setting: arm − reference (final, AUC) with Welch intervals."""
    groups = _groups(study_runs)
    rows = []
    for label, (arm, ref) in comparisons.items():
        for algo, dataset, k in sorted({key[:3] for key in groups}):
            a, b = groups.get((algo, dataset, k, arm), []), groups.get((algo, dataset, k, ref), [])
            if not a or not b:
                continue
            row = {"comparison": label, "arm": arm, "reference": ref, "algo": algo, "dataset": dataset, "k": k,
                   "n_arm": len(a), "n_reference": len(b)}  # fmt: skip
            for key, fn in (("final", _final), ("auc", _auc)):
                d = stats.welch_interval([fn(r) for r in a], [fn(r) for r in b])
                row[key] = d
                row[f"{key}_verdict"] = stats.verdict(d)
            rows.append(row)
    return rows


def pooled_rows(study_runs: list[runs.Run], comparisons: dict[str, tuple[str, str]]) -> list[dict]:
    """Per comparison, pooled over its settings (AUC): mean difference, IQM, P(improvement)."""
    groups = _groups(study_runs)
    out = []
    for label, (arm, ref) in comparisons.items():
        pairs, settings = [], []
        for algo, dataset, k in sorted({key[:3] for key in groups}):
            a, b = groups.get((algo, dataset, k, arm), []), groups.get((algo, dataset, k, ref), [])
            if a and b:
                pairs.append(([_auc(r) for r in a], [_auc(r) for r in b]))
                settings.append((algo, dataset, k))
        if pairs:
            p = stats.pooled(pairs)
            out.append({"comparison": label, "arm": arm, "reference": ref, "settings": settings, "pooled": p,
                        "verdict": stats.verdict(p.mean_difference)})  # fmt: skip
    return out


# --------------------------------------------------------------------------------------
# Tables (markdown)
# --------------------------------------------------------------------------------------
def _fmt_steps(median: float, reached: str) -> str:
    if math.isnan(median):  # no threshold: no clean (k=0) run of this algo and dataset in the study
        return "— (no k=0 run)"
    if math.isinf(median):
        return f"not reached ({reached})"
    return f"{median:,.0f} ({reached})"


def _f(v: float, fmt: str = ".1f") -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _table(columns: list[str], rows: list[list]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def table_markdown(rows: list[dict]) -> str:
    """Per setting and arm: returns, thresholds, bonus/reward, disagreement trend."""
    columns = ["algo", "dataset", "k", "arm", "seeds", "step 0", "final (mean ± sd)", "AUC (mean ± sd)", "steps to 80%",
               "steps to 100%", "bonus / reward", "disagreement last/first (fell)"]  # fmt: skip
    return _table(columns, [
        [r["algo"], r["dataset"], f"{r['k']:g}", r["arm"], r["n_seeds"], f"{r['step0_return']:.1f}",
         f"{r['final_mean']:.1f} ± {_f(r['final_sd'])}", f"{r['auc_mean']:.1f} ± {_f(r['auc_sd'])}",
         _fmt_steps(r["steps_to_80_median"], r["reached_80"]), _fmt_steps(r["steps_to_100_median"], r["reached_100"]),
         _f(r["bonus_reward_ratio"], ".3f"), f"{_f(r['disagreement_trend'], '.2f')} ({r['disagreement_fell']})"]
        for r in rows
    ])  # fmt: skip


def effects_markdown(rows: list[dict]) -> str:
    """The effect table: each comparison per setting, Welch 95% intervals and verdicts."""
    if not rows:
        return "No comparison has complete runs on both sides yet."
    columns = ["effect", "algo", "dataset", "k", "seeds", "final: diff [95% CI]", "verdict", "AUC: diff [95% CI]",
               "verdict"]  # fmt: skip
    return _table(columns, [
        [r["comparison"], r["algo"], r["dataset"], f"{r['k']:g}", f"{r['n_arm']} vs {r['n_reference']}",
         r["final"].text(), r["final_verdict"], r["auc"].text(), r["auc_verdict"]]
        for r in rows
    ])  # fmt: skip


def _with_method(d, digits: int = 1, signed: bool = True) -> str:
    return d.text(digits, signed) + (f" ({d.method})" if d.has_interval else "")


def pooled_markdown(rows: list[dict]) -> str:
    if not rows:
        return "No pooled comparison yet."
    columns = ["effect", "settings", "AUC: mean difference [95% CI]", "verdict", "IQM arm / reference",
               "IQM difference [interval]", "P(arm > reference) [95% CI]"]  # fmt: skip
    return _table(columns, [
        [r["comparison"], r["pooled"].n_settings, r["pooled"].mean_difference.text(), r["verdict"],
         f"{r['pooled'].iqm_arm:.1f} / {r['pooled'].iqm_reference:.1f}",
         _with_method(r["pooled"].iqm_difference), _with_method(r["pooled"].probability_of_improvement, 2, False)]
        for r in rows
    ])  # fmt: skip


def conclusion_markdown(effects: list[dict], pooled: list[dict], rows: list[dict]) -> str:
    """What the effect table supports, said plainly; 'inconclusive' where it is."""
    if not effects:
        return "No comparison has complete runs on both sides yet: nothing to conclude."
    out = []
    for p in pooled:
        label = p["comparison"]
        mine = [e for e in effects if e["comparison"] == label]
        counts = {v: sum(e["auc_verdict"] == v for e in mine) for v in ("better", "worse", "inconclusive")}
        no_iv = sum(e["auc_verdict"] == "no interval" for e in mine)
        md = p["pooled"].mean_difference
        if p["verdict"] == "better":
            reading = f"**helps** on average ({md.text()} AUC points, 95% CI excludes 0)"
        elif p["verdict"] == "worse":
            reading = f"**hurts** on average ({md.text()} AUC points, 95% CI excludes 0)"
        elif p["verdict"] == "no interval":
            reading = "**no interval** (fewer than 2 seeds in a setting)"
        else:
            reading = f"**inconclusive** on average ({md.text()} AUC points, the 95% CI spans 0)"
        per = f"per setting: {counts['better']} better, {counts['worse']} worse, {counts['inconclusive']} inconclusive"
        per += f", {no_iv} without an interval" if no_iv else ""
        poi = p["pooled"].probability_of_improvement
        out.append(f"- **{label}**: {reading}; {per} (of {len(mine)}); P(arm > reference) = {poi.text(2, False)}.")
    ratios = [r for r in rows if np.isfinite(r["bonus_reward_ratio"]) and r["bonus_reward_ratio"] > 0]
    if ratios:
        by_arm: dict[str, list[float]] = {}
        for r in ratios:
            by_arm.setdefault(r["arm"], []).append(r["bonus_reward_ratio"])
        out.append(
            "- Measured bonus / env reward (mean over settings): "
            + ", ".join(f"{arm} {np.mean(v):.3f}" for arm, v in by_arm.items())
            + "."
        )
    trends = [r for r in rows if np.isfinite(r["disagreement_trend"])]
    if trends:
        fell = sum(r["disagreement_trend"] < 1 for r in trends)
        out.append(
            f"- Disagreement fell from the first to the last interval in {fell} of {len(trends)} (setting, arm) "
            "groups (mean over seeds); the spec expects it to fall as the ensemble learns the online data."
        )
    n_seeds = sorted({e["n_arm"] for e in effects} | {e["n_reference"] for e in effects})
    out.append(
        f"- Seeds per arm and setting: {', '.join(map(str, n_seeds))}. A verdict needs the 95% interval to exclude "
        "0; everything else is inconclusive, not evidence of no effect. Stand-in data, not D4RL."
    )
    return "\n".join(out)


# --------------------------------------------------------------------------------------
# Diagnostics
# --------------------------------------------------------------------------------------
def _ratio(a: list, b: list) -> list:
    return [None if x is None or y is None or y == 0 else x / y for x, y in zip(a, b, strict=True)]


def _fresh_minus_loaded(q_members: list) -> list:
    """Mean Q of the fresh members (2..N-1) minus that of the loaded ones (0, 1)."""
    return [None if q is None or len(q) < 3 else float(np.mean(q[2:]) - np.mean(q[:2])) for q in q_members]


DIAGNOSTICS = (
    ("bonus / env reward", lambda r: _ratio(r.series("bonus_mean"), r.series("reward_mean")), "log"),
    ("disagreement std(Q)", lambda r: r.series("ensemble_disagreement"), "log"),
    ("critic loss", lambda r: r.series("critic_loss_avg"), "log"),
    ("mean Q: fresh − loaded", lambda r: _fresh_minus_loaded(r.series("q_member_avg")), "linear"),
    ("mean Q, loaded members",
     lambda r: [None if q is None else float(np.mean(q[:2])) for q in r.series("q_member_avg")], "linear"),
)  # fmt: skip


def diagnostics_rows(study_runs: list[runs.Run], arms: list[str] | None = None) -> list[dict]:
    """Per (setting, arm), means over seeds of the diagnostics in the first evaluation
    interval (where the fresh-member trap acts) and over the whole run."""
    groups = _groups(study_runs)
    rows = []
    for algo, dataset, k in sorted({key[:3] for key in groups}):
        for arm in arms_in_order([r for r in study_runs if r.status == "complete"], arms):
            group = groups.get((algo, dataset, k, arm), [])
            if not group:
                continue
            row = {"algo": algo, "dataset": dataset, "k": k, "arm": arm}
            for name, fn, _ in DIAGNOSTICS:
                n = min(len(r.steps) for r in group)
                y = np.array([[np.nan if v is None else v for v in fn(r)[:n]] for r in group], float)
                row[f"{name} | first"] = float(stats.nanmean(y[:, 1])) if n > 1 else math.nan
                row[f"{name} | run"] = float(stats.nanmean(y[:, 1:])) if n > 1 else math.nan
            rows.append(row)
    return rows


def diagnostics_markdown(rows: list[dict]) -> str:
    if not rows:
        return "No runs yet."
    names = [name for name, _, _ in DIAGNOSTICS]

    def cell(a, b):
        return f"{a:.3g} / {b:.3g}" if np.isfinite(a) else "—"

    columns = ["algo", "dataset", "k", "arm"] + [f"{n}: first / run" for n in names]
    return _table(columns, [
        [r["algo"], r["dataset"], f"{r['k']:g}", r["arm"]] + [cell(r[f"{n} | first"], r[f"{n} | run"]) for n in names]
        for r in rows
    ])  # fmt: skip


# --------------------------------------------------------------------------------------
# Figures and records
# --------------------------------------------------------------------------------------
def figures(study_runs, arms: list[str], figures_dir: str | Path | None) -> list[tuple[str, bytes]]:
    """The study's two figures as PNG bytes (to show inline), also written as PNG/SVG."""
    from hrl_core import static

    note = plots.data_note(study_runs)
    out = []
    for name, make in (
        ("study_returns", lambda: static.study_curves_figure(study_runs, arms, note)),
        ("study_diagnostics", lambda: static.study_diagnostics_figure(study_runs, arms, DIAGNOSTICS, note)),
    ):
        if figures_dir:
            static.save(make(), figures_dir, name)
        out.append((name, static.png_bytes(make())))
    return out


def missing_cells(cells, study_runs: list[runs.Run]) -> list[str]:
    """Run names of the grid's cells without a complete run folder."""
    done = {r.run_name for r in study_runs if r.status == "complete"}
    return [f"{c.run_name} ({c.arm})" for c in cells if c.run_name not in done]


def provenance_markdown(study_runs: list[runs.Run]) -> str:
    """Where the data and checkpoints came from, read from the runs' config.json."""
    datasets, checkpoints, budgets = {}, {}, set()
    for r in study_runs:
        ds = r.config["provenance"]["dataset"]
        datasets[(ds.get("path"), ds.get("sha256"))] = ds.get("kind", "unknown")
        ck = r.config["provenance"]["phase1_checkpoint"]
        checkpoints[(ck["path"], ck["sha256"])] = ck.get("gradient_steps")
        s = r.config["settings"]
        budgets.add((r.algo, s["online_steps"], s["eval_interval"], s["eval_episodes"], s["n_ensemble"]))
    lines = ["**Offline data** (as recorded in each run's `config.json`):"]
    lines += [f"- `{p}` (sha256 `{h[:12]}…`): **{kind}**" for (p, h), kind in sorted(datasets.items())]
    lines.append("\n**Phase I checkpoints:**")
    lines += [f"- `{p}` (sha256 `{h[:12]}…`, {n:,} gradient steps)" for (p, h), n in sorted(checkpoints.items())]
    lines.append("\n**Budget** (algo: online steps, eval interval, eval episodes, N):")
    lines += [f"- {b[0]}: {b[1]:,} / {b[2]:,} / {b[3]} / {b[4]}" for b in sorted(budgets)]
    if any(not k.startswith("D4RL v2 layout") for k in datasets.values()):
        lines.append(
            "\n> **Not D4RL.** The offline data above are stand-ins in the D4RL layout (see their `kind`); "
            "numbers here describe the method on these data, not on D4RL."
        )
    return "\n".join(lines)


def design_markdown(spec: dict) -> str:
    """What a study grid file asks for: description, axes, budget, cost, arms, comparisons."""
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
    lines += ["", "| effect | arm − reference |", "|---|---|"]
    for label, (arm, ref) in comparisons_of(spec).items():
        lines.append(f"| {label} | `{arm}` − `{ref}` |")
    return "\n".join(lines)


def completeness_markdown(cells, complete: list[runs.Run], missing: list[str]) -> str:
    line = f"**{len(complete)} of {len(cells)} cells complete.**"
    if missing:
        shown = ", ".join(f"`{m}`" for m in missing[:12]) + (" …" if len(missing) > 12 else "")
        line += f" Missing or unfinished ({len(missing)}; the numbers below leave them out): {shown}"
    return line
