"""The one summary engine behind ``hrl plot`` and ``hrl study``: per setting and arm, the
recovery metrics of its runs; per comparison, arm − reference with an interval and a verdict.

A *setting* is (algo, dataset, k); an *arm* is the label a grid file gives a run (its arm
in a study, ``ensemble``/``vanilla`` by bonus type in a plain grid). Only complete runs
enter the numbers. Metrics (:mod:`hrl_core.lab.recovery`):

| metric | per seed | better | interval |
|---|---|---|---|
| ``final`` | return at the last evaluation (a declared analysis: mean of the last n) | higher | Welch 95% t |
| ``auc`` | mean return over the run | higher | Welch 95% t |
| ``dip_depth`` | step-0 return − lowest return after step 0 | lower | Welch 95% t |
| ``regain`` | steps to regain the step-0 level after the dip | fewer | Welch on capped steps, calibrated |
| ``clean`` | steps to the clean checkpoint's return | fewer | Welch on capped steps, calibrated |
| ``spec80`` | steps to 80% of it (the spec's line) | fewer | Welch on capped steps, calibrated |

Steps are right-censored ("not regained" / "not reached" within the budget): per arm they
are summarized by the median with a censored seed counted at the budget (and how many seeds
got there), and compared by the difference of their means with censored seeds counted at
the budget (the restricted mean of survival analysis; every run of a setting has the same
budget), with a Welch interval whose nominal level is calibrated by simulation
(:func:`hrl_core.lab.stats.capped_steps_difference`; its simulated coverage is printed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hrl_core.lab import stats
from hrl_core.lab.metrics import BY_KEY, HEADLINE, Metric  # noqa: F401 - the one declaration of the metrics
from hrl_core.lab.metrics import RECOVERY as METRICS
from hrl_core.lab.recovery import SPEC_FRACTION, Recovery, capped, median_text, recovery
from hrl_core.run.runtime import versions_changed

REFERENCE_ARM = "vanilla"


def value(rec: Recovery, metric: str) -> float:
    """The per-seed value of a metric (steps capped at the budget)."""
    if metric in ("final", "auc", "dip_depth"):
        return getattr(rec, metric)
    raw = {"regain": rec.regain_step, "clean": rec.clean_step, "spec80": rec.spec80_step}[metric]
    return capped(raw, rec.budget)


def raw_steps(rec: Recovery, metric: str) -> float:
    return {"regain": rec.regain_step, "clean": rec.clean_step, "spec80": rec.spec80_step}[metric]


@dataclass
class Group:
    """The complete runs of one (setting, arm), by seed, with their metrics."""

    algo: str
    dataset: str
    k: float
    arm: str
    runs: list
    recs: list[Recovery]
    clean_level: float

    def values(self, metric: str) -> list[float]:
        return [value(r, metric) for r in self.recs]


def groups(runs, levels: dict | None = None, final_evaluations: int = 1) -> dict[tuple, Group]:
    """(algo, dataset, k, arm) -> :class:`Group` over the complete runs.

    ``levels``: (algo, dataset) -> clean level (a float or a ``CleanLevel``); without one,
    steps to the clean level and to 80% of it are unknown (nan). ``final_evaluations``: the
    final return is the mean of that many last evaluations (a study's declared analysis)."""
    from hrl_core.lab.analysis import stratum_of

    out: dict[tuple, Group] = {}
    for r in sorted((r for r in runs if r.status == "complete"), key=lambda r: r.seed):
        key = (r.algo, r.dataset, r.k, r.arm)
        level = (levels or {}).get((r.algo, r.dataset), math.nan)
        level = float(getattr(level, "level", level))
        # a run's own checkpoint's clean level, where the record has one per checkpoint
        own = (levels or {}).get((r.algo, r.dataset, stratum_of(r)))
        own = level if own is None else float(getattr(own, "level", own))
        if key not in out:
            out[key] = Group(*key, runs=[], recs=[], clean_level=level)
        out[key].runs.append(r)
        out[key].recs.append(recovery(r.steps, r.returns, own if not math.isnan(own) else level, final_evaluations))
    return out


def arms_in_order(found, arms: list[str] | None = None) -> list[str]:
    """Arms in the grid file's order (reference first), else alphabetical."""
    present = {r.arm for r in found}
    order = [a for a in (arms or sorted(present)) if a in present]
    if REFERENCE_ARM in order:
        order.remove(REFERENCE_ARM)
        order.insert(0, REFERENCE_ARM)
    return order


def settings_of(found: dict[tuple, Group]) -> list[tuple]:
    return sorted({key[:3] for key in found})


# --------------------------------------------------------------------------------------
# Per setting and arm
# --------------------------------------------------------------------------------------
def _mean(values) -> float:
    vals = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else math.nan


def _sd(values) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def _median(values) -> float:
    return float(np.median(values)) if len(values) else math.nan


def _interval_means(r, key: str) -> list:
    return [None if v is None else float(v) for v in r.series(key)[1:]]


def _positive_ratio(bonus: float, reward: float) -> float:
    """bonus / reward as a scale, or NaN where the reward gives none (<= 0 or not finite)."""
    return bonus / reward if np.isfinite(bonus) and np.isfinite(reward) and reward > 0 else math.nan


def _interval_value(r, key: str, index: int) -> float:
    v = r.series(key)
    return float(v[index]) if len(v) >= 2 and v[index] is not None else math.nan


def pooled_bonus_ratio(runs, index: int | None = None) -> float:
    """Mean bonus / mean env reward over the seeds of one arm: over the whole run, or in one
    evaluation interval (``index``). A ratio of means, not a mean of per-seed ratios: a
    halfcheetah reward is a signed velocity, so a seed whose policy has collapsed has a mean
    reward near 0 in some interval, and its own ratio (bonus / ~0) would swamp the others."""
    if index is None:
        bonus = _mean(_mean(r.series("bonus_mean")[1:]) for r in runs)
        reward = _mean(_mean(r.series("reward_mean")[1:]) for r in runs)
    else:
        bonus = _mean(_interval_value(r, "bonus_mean", index) for r in runs)
        reward = _mean(_interval_value(r, "reward_mean", index) for r in runs)
    return _positive_ratio(bonus, reward)


def mean_q(r, index: int) -> float:
    """Mean Q over the members in one evaluation interval."""
    q = r.series("q_member_avg")
    return float(np.mean(q[index])) if len(q) > 1 and q[index] is not None else math.nan


def disagreement_trend(r) -> float:
    """Disagreement in the last evaluation interval / in the first (< 1: it fell)."""
    d = [v for v in r.series("ensemble_disagreement")[1:] if v is not None]
    return d[-1] / d[0] if len(d) >= 2 and d[0] > 0 else math.nan


@dataclass
class SettingRow:
    """One (setting, arm) of a record over its complete runs: the recovery metrics and the
    exploration signal, as every table, CSV and digest reads them (``row.auc_mean``)."""

    algo: str
    dataset: str
    k: float
    arm: str
    n_seeds: int
    seeds: str  # "0,1,2"
    online_steps: int
    data: str  # the offline data's provenance kind(s)
    step0_return: float
    final_mean: float
    final_sd: float
    auc_mean: float
    auc_sd: float
    dip_return_mean: float
    dip_depth_mean: float
    dip_depth_sd: float
    dip_step_median: float
    dipped: str  # "2/3" seeds below step 0
    regain_each: list  # per seed: steps to regain step 0 (0: never below its start; inf: not regained)
    regain_text: str
    clean_level: float
    clean_each: list
    clean_text: str
    spec80_each: list
    spec80_text: str
    threshold80: float
    steps_to_80_median: float
    reached_80: str
    steps_to_100_median: float
    reached_100: str
    bonus_reward_ratio: float  # mean bonus / mean env reward over the run (a ratio of means)
    bonus_ratio_first: float
    bonus_ratio_last: float
    mean_q_first: float
    mean_q_last: float
    disagreement_trend: float  # last / first interval
    disagreement_fell: str  # "3/3" seeds

    def __getitem__(self, key: str):
        return getattr(self, key)  # reads by name still work (a CSV column, an older caller)

    def as_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def setting_rows(runs, arms: list[str] | None = None, levels: dict | None = None,
                 final_evaluations: int = 1) -> list[SettingRow]:  # fmt: skip
    """One row per (algo, dataset, k, arm) over the complete runs (``final_evaluations``: as
    :func:`groups`; a record passes its declared analysis's, so every table's final return is one)."""
    found = groups(runs, levels, final_evaluations)
    rows = []
    for algo, dataset, k in settings_of(found):
        for arm in arms_in_order([g.runs[0] for g in found.values()], arms):
            g = found.get((algo, dataset, k, arm))
            if g is None:
                continue
            budget = g.recs[0].budget
            finals, aucs, depths = g.values("final"), g.values("auc"), g.values("dip_depth")
            regain, clean, spec80 = ([raw_steps(r, m) for r in g.recs] for m in ("regain", "clean", "spec80"))
            trends = [disagreement_trend(r) for r in g.runs]
            rows.append(SettingRow(**{
                "algo": algo, "dataset": dataset, "k": k, "arm": arm, "n_seeds": len(g.runs),
                "seeds": ",".join(str(r.seed) for r in g.runs), "online_steps": int(budget),
                "data": "; ".join(sorted({r.data_kind.split(":")[0] for r in g.runs})),
                "step0_return": float(np.mean([r.step0 for r in g.recs])),
                "final_mean": float(np.mean(finals)), "final_sd": _sd(finals),
                "auc_mean": float(np.mean(aucs)), "auc_sd": _sd(aucs),
                "dip_return_mean": _mean(r.dip_return for r in g.recs),
                "dip_depth_mean": _mean(depths), "dip_depth_sd": _sd(depths),
                "dip_step_median": _median([r.dip_step for r in g.recs if not math.isnan(r.dip_step)]),
                "dipped": f"{sum(r.dipped for r in g.recs)}/{len(g.recs)}",
                "regain_each": regain, "regain_text": median_text(regain, budget, "regain"),
                "clean_level": g.clean_level, "clean_each": clean, "clean_text": median_text(clean, budget),
                "spec80_each": spec80, "spec80_text": median_text(spec80, budget),
                "threshold80": SPEC_FRACTION * g.clean_level,
                "steps_to_80_median": _median(spec80), "reached_80": f"{sum(np.isfinite(spec80))}/{len(spec80)}",
                "steps_to_100_median": _median(clean), "reached_100": f"{sum(np.isfinite(clean))}/{len(clean)}",
                "bonus_reward_ratio": pooled_bonus_ratio(g.runs),
                "bonus_ratio_first": pooled_bonus_ratio(g.runs, 1),
                "bonus_ratio_last": pooled_bonus_ratio(g.runs, -1),
                "mean_q_first": _mean(mean_q(r, 1) for r in g.runs),
                "mean_q_last": _mean(mean_q(r, -1) for r in g.runs),
                "disagreement_trend": _mean(trends),
                "disagreement_fell": f"{sum(t < 1 for t in trends if np.isfinite(t))}/{len(trends)}",
            }))  # fmt: skip
    return rows


# --------------------------------------------------------------------------------------
# Comparisons
# --------------------------------------------------------------------------------------
def difference(metric: str, a: list[float], b: list[float], budget: float | None = None) -> stats.Diff:
    """arm − reference of a metric's per-seed values, with its interval (steps: within ±budget)."""
    if BY_KEY[metric].unit == "steps":
        return stats.capped_steps_difference(a, b, budget)
    return stats.welch_interval(a, b)


def effect_rows(runs, comparisons: dict[str, tuple[str, str]], levels: dict | None = None,
                metrics=tuple(m.key for m in METRICS), final_evaluations: int = 1) -> list[dict]:  # fmt: skip
    """Per comparison and setting: arm − reference for each metric, with interval and verdict
    (``final_evaluations``: as :func:`groups`)."""
    found = groups(runs, levels, final_evaluations)
    rows = []
    for label, (arm, ref) in comparisons.items():
        for algo, dataset, k in settings_of(found):
            a, b = found.get((algo, dataset, k, arm)), found.get((algo, dataset, k, ref))
            if a is None or b is None:
                continue
            row = {"comparison": label, "arm": arm, "reference": ref, "algo": algo, "dataset": dataset, "k": k,
                   "n_arm": len(a.runs), "n_reference": len(b.runs)}  # fmt: skip
            for m in metrics:
                d = difference(m, a.values(m), b.values(m), max(a.recs[0].budget, b.recs[0].budget))
                row[m] = d
                row[f"{m}_verdict"] = stats.verdict(d, BY_KEY[m].higher_is_better)
            row["start_gaps"] = start_gaps(a, b)
            rows.append(row)
    return rows


START_TOLERANCE = 1e-6  # normalized-return points: step 0 of the same seed on both sides is the same evaluation


def start_gaps(a: Group, b: Group) -> list[dict]:
    """Seeds whose step 0 differs between the two sides of a comparison.

    Both sides start from the same checkpoint and evaluate it on the seed's own episodes, so
    step 0 of one seed must be equal on both sides. When it is not, the two cells did not run
    the same computation: on another machine (MuJoCo's halfcheetah is not bit-reproducible
    across CPUs) or with other library versions, as their ``config.json`` says. A difference
    between the arms of that size is then not evidence of anything. Seeds pair within a Phase I
    checkpoint: seed 0 from checkpoint 1 and seed 0 from checkpoint 2 start from different
    networks and are not expected to agree."""
    from hrl_core.lab.analysis import stratum_of

    ref = {(stratum_of(r), r.seed): r for r in b.runs}
    out = []
    for r in a.runs:
        other = ref.get((stratum_of(r), r.seed))
        if other is None or abs(float(r.returns[0]) - float(other.returns[0])) <= START_TOLERANCE:
            continue
        changed = list(versions_changed(r.config.get("versions") or {}, other.config.get("versions") or {}))
        out.append({"seed": r.seed, "phase1_seed": stratum_of(r), "gap": float(r.returns[0]) - float(other.returns[0]),
                    "differs": changed})  # fmt: skip
    return out


def start_gap_note(rows: list[dict]) -> str:
    """A warning for every comparison whose two sides start differently at the same seed."""
    lines = []
    for r in rows:
        gaps = r.get("start_gaps") or []
        if not gaps:
            continue
        each = ", ".join(f"{g['seed']} ({g['gap']:+.2f} points)" for g in gaps)
        seeds = ("seeds " if len(gaps) > 1 else "seed ") + each
        differs = sorted({k for g in gaps for k in g["differs"]})
        why = (f"their config.json differ in {', '.join(differs)}" if differs
               else "their config.json record the same versions and platform")  # fmt: skip
        lines.append(f"**Step 0 differs** in {r['comparison']}, {r['algo'].upper()} {r['dataset'].split('-')[0]} "
                     f"k={r['k']:g}, at {seeds} (arm − reference), although both sides evaluate the "
                     f"same checkpoint on the same episodes: {why}. The two sides did not run the same computation "
                     "there; a difference between them of that size is not evidence.")  # fmt: skip
    return "\n\n".join(lines)


def pooled_rows(runs, comparisons: dict[str, tuple[str, str]], metric: str = "auc",
                final_evaluations: int = 1) -> list[dict]:  # fmt: skip
    """Per comparison, pooled over its settings: mean difference, IQM, P(improvement)
    (``final_evaluations``: as :func:`groups`)."""
    found = groups(runs, None, final_evaluations)
    out = []
    for label, (arm, ref) in comparisons.items():
        pairs, settings = [], []
        for algo, dataset, k in settings_of(found):
            a, b = found.get((algo, dataset, k, arm)), found.get((algo, dataset, k, ref))
            if a is not None and b is not None:
                pairs.append((a.values(metric), b.values(metric)))
                settings.append((algo, dataset, k))
        if pairs:
            p = stats.pooled(pairs)
            out.append({"comparison": label, "arm": arm, "reference": ref, "settings": settings, "pooled": p,
                        "verdict": stats.verdict(p.mean_difference)})  # fmt: skip
    return out


# --------------------------------------------------------------------------------------
# Tables (markdown)
# --------------------------------------------------------------------------------------
def _f(v: float, fmt: str = ".1f") -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def table(columns: list[str], rows: list[list]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def dip_text(row: dict) -> str:
    """``33.5 (−12.7, at 2,000; 3/3 below step 0)``: mean lowest return, its depth, median step."""
    if math.isnan(row.dip_return_mean):
        return "—"
    return (f"{row.dip_return_mean:.1f} ({-row.dip_depth_mean:+.1f}, at {_f(row.dip_step_median, ',.0f')}; "
            f"{row.dipped} below step 0)")  # fmt: skip


def _or_no_level(row: dict, key: str) -> str:
    return getattr(row, key) if not math.isnan(row.clean_level) else "— (no clean level)"


def setting_markdown(rows: list[dict]) -> str:
    """Per setting and arm: returns, the dip, steps to regain and to the clean level."""
    columns = ["algo", "dataset", "k", "arm", "seeds", "step 0", "final (mean ± sd)", "AUC (mean ± sd)",
               "dip: lowest (vs step 0, at step)", "steps to regain step 0", "clean level", "steps to clean",
               "steps to 80% of clean"]  # fmt: skip
    return table(columns, [
        [r.algo, r.dataset, f"{r.k:g}", r.arm, r.n_seeds, f"{r.step0_return:.1f}",
         f"{r.final_mean:.1f} ± {_f(r.final_sd)}", f"{r.auc_mean:.1f} ± {_f(r.auc_sd)}", dip_text(r),
         r.regain_text, _f(r.clean_level), _or_no_level(r, "clean_text"), _or_no_level(r, "spec80_text")]
        for r in rows
    ])  # fmt: skip


def exploration_markdown(rows: list[dict]) -> str:
    """Per setting and arm: the measured bonus / env reward and how it drifts, with mean Q and
    the disagreement trend."""
    columns = ["algo", "dataset", "k", "arm", "bonus / reward: run", "first → last interval", "mean Q: first → last",
               "disagreement last/first (fell)"]  # fmt: skip
    return table(columns, [
        [r.algo, r.dataset, f"{r.k:g}", r.arm, _f(r.bonus_reward_ratio, ".3f"),
         f"{_f(r.bonus_ratio_first, '.3f')} → {_f(r.bonus_ratio_last, '.3f')}",
         f"{_f(r.mean_q_first, '.0f')} → {_f(r.mean_q_last, '.0f')}",
         f"{_f(r.disagreement_trend, '.2f')} ({r.disagreement_fell})"]
        for r in rows
    ])  # fmt: skip


DESCRIPTIVE = "uncorrected reading"  # the column's name where a declared analysis gives the verdicts


def _reading(verdict: str, descriptive: bool) -> str:
    """A verdict word, or (descriptive) the same word in brackets: what a plain uncorrected interval says,
    shown beside a declared analysis whose verdicts these are not."""
    return f"({verdict})" if descriptive and verdict in ("better", "worse") else verdict


def effects_markdown(rows: list[dict], metrics=HEADLINE, descriptive: bool = False) -> str:
    """The effect table: each comparison per setting and metric, its interval and verdict (``descriptive``:
    a study with a declared analysis, whose verdicts are elsewhere: the column says "uncorrected reading")."""
    if not rows:
        return "No comparison has complete runs on both sides yet."
    columns = ["effect", "algo", "dataset", "k", "seeds"]
    for m in metrics:
        columns += [f"{BY_KEY[m].label}: diff [interval]", DESCRIPTIVE if descriptive else "verdict"]
    body = []
    for r in rows:
        line = [r["comparison"], r["algo"], r["dataset"], f"{r['k']:g}", f"{r['n_arm']} vs {r['n_reference']}"]
        for m in metrics:
            line += [_steps_diff(r[m]) if BY_KEY[m].unit == "steps" else r[m].text(),
                     _reading(r[f"{m}_verdict"], descriptive)]  # fmt: skip
        body.append(line)
    return table(columns, body)


def _steps_diff(d: stats.Diff) -> str:
    if math.isnan(d.estimate):
        return "—"
    if not d.has_interval:
        return f"{d.estimate:+,.0f} ({d.method.replace('welch-t on capped steps', 'no interval: < 2 seeds')})"
    return f"{d.estimate:+,.0f} [{d.low:+,.0f}, {d.high:+,.0f}]"


def steps_intervals_note(rows: list[dict]) -> str:
    """What the steps intervals are (their calibrated level and simulated coverage)."""
    methods = sorted({r[m].method for r in rows for m in BY_KEY if BY_KEY[m].unit == "steps" and m in r
                      and r[m].has_interval})  # fmt: skip
    if not methods:
        return ""
    return ("Steps: difference of per-seed steps with *not regained / not reached* counted at the budget "
            "(restricted means); intervals: " + "; ".join(methods) + ".")  # fmt: skip


def pooled_markdown(rows: list[dict], descriptive: bool = False) -> str:
    """Pooled over settings (``descriptive``: as :func:`effects_markdown`)."""
    if not rows:
        return "No pooled comparison yet."
    columns = ["effect", "settings", "AUC: mean difference [95% CI]", DESCRIPTIVE if descriptive else "verdict",
               "IQM arm / reference", "IQM difference [interval]", "P(arm > reference) [interval]"]  # fmt: skip
    # (the bootstrap intervals aim at 95% and print the coverage they reach: at 3 seeds it is less)

    def with_method(d, digits: int = 1, signed: bool = True) -> str:
        return d.text(digits, signed) + (f" ({d.method})" if d.has_interval else "")

    return table(columns, [
        [r["comparison"], r["pooled"].n_settings, r["pooled"].mean_difference.text(),
         _reading(r["verdict"], descriptive),
         f"{r['pooled'].iqm_arm:.1f} / {r['pooled'].iqm_reference:.1f}",
         with_method(r["pooled"].iqm_difference), with_method(r["pooled"].probability_of_improvement, 2, False)]
        for r in rows
    ])  # fmt: skip
