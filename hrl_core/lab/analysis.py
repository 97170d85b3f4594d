"""A study's declared analysis: what it tests, on which metric, against which margin, fixed in the
study file before its runs (Patterson et al., "Empirical Design in Reinforcement Learning", JMLR
2024: the primary question and its test are chosen before the data are seen).

In a grid file::

    analysis:
      primary_metric: auc                   # the metric the answer is stated on
      primary_family: [bonus, spec, member init]   # comparisons (by label prefix) x every setting
      equivalence_margin: 5.0               # +-points of the primary metric that do not matter
      margin_why: ...                       # why that margin (printed with the table)
      alpha: 0.05                           # family-wise error rate (Holm) and TOST level
      secondary_metrics: [final, dip_depth, regain]   # reported, labelled secondary, uncorrected
      final_evaluations: 3                  # final return = mean of the last 3 evaluations
      strata: phase1_seed                   # comparisons within a Phase I checkpoint, pooled by stratum

The summary engine (:mod:`hrl_core.lab.summary`) applies it: Holm's step-down correction over
the primary family, one of four verdicts per primary effect (better, worse, equivalent by two
one-sided tests inside the margin, inconclusive), secondary metrics uncorrected and labelled so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hrl_core.errors import HrlError
from hrl_core.lab.metrics import RECOVERY

KEYS = {
    "primary_metric", "primary_family", "equivalence_margin", "margin_why", "alpha", "secondary_metrics",
    "final_evaluations", "strata", "min_runs_for_iqm",
}  # fmt: skip
STRATA = ("phase1_seed", "none")
METRIC_KEYS = tuple(m.key for m in RECOVERY)  # hrl_core.lab.metrics


@dataclass(frozen=True)
class Analysis:
    """The declared analysis of a study (defaults: what studies without a declaration get)."""

    primary_metric: str = "auc"
    primary_family: tuple[str, ...] = ()  # comparison labels (or their first word); (): every comparison
    equivalence_margin: float = math.nan  # nan: no equivalence claim is possible
    margin_why: str = ""
    alpha: float = 0.05
    secondary_metrics: tuple[str, ...] = ("final", "dip_depth", "regain")
    final_evaluations: int = 1  # final return = mean of the last n evaluations
    strata: str = "none"  # phase1_seed: comparisons within a checkpoint
    min_runs_for_iqm: int = 8  # IQM and probability of improvement once a side has this many runs
    declared: bool = False  # False: no analysis block in the file (legacy studies)
    comparisons: tuple[str, ...] = field(default=(), repr=False)
    family_size: int = 0  # tests of the primary family over the whole study file (0: those present)

    @classmethod
    def from_spec(cls, path: str | Path, spec: dict) -> Analysis:
        block = spec.get("analysis")
        comparisons = tuple(spec.get("comparisons") or ())
        if block is None:
            return cls(comparisons=comparisons)
        where = f"grid file {path}: analysis"
        if not isinstance(block, dict):
            raise HrlError(f"{where} must be a mapping (primary_metric, primary_family, equivalence_margin, ...)")
        unknown = set(block) - KEYS
        if unknown:
            raise HrlError(f"{where} has unknown keys {sorted(unknown)}; valid: {', '.join(sorted(KEYS))}")
        metric = block.get("primary_metric", "auc")
        if metric not in METRIC_KEYS:
            raise HrlError(f"{where}.primary_metric={metric!r}: use one of {', '.join(METRIC_KEYS)}")
        secondary = tuple(block.get("secondary_metrics") or ())
        bad = [m for m in secondary if m not in METRIC_KEYS or m == metric]
        if bad:
            raise HrlError(f"{where}.secondary_metrics {bad}: use metrics of {', '.join(METRIC_KEYS)} "
                           "other than the primary one")  # fmt: skip
        family = tuple(str(x) for x in block.get("primary_family") or ())
        for name in family:
            if not any(c == name or c.split(" (")[0] == name for c in comparisons):
                raise HrlError(f"{where}.primary_family names {name!r}, which is not one of the file's "
                               f"comparisons ({', '.join(comparisons)})")  # fmt: skip
        margin = block.get("equivalence_margin", math.nan)
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin) or margin <= 0:
            raise HrlError(f"{where}.equivalence_margin={margin!r}: give a positive finite number "
                           "(points of the primary metric)")  # fmt: skip
        alpha = block.get("alpha", 0.05)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 0.5:
            raise HrlError(f"{where}.alpha={alpha!r}: give a level in (0, 0.5), e.g. 0.05")
        n_final = block.get("final_evaluations", 1)
        if isinstance(n_final, bool) or not isinstance(n_final, int) or n_final < 1:
            raise HrlError(f"{where}.final_evaluations={n_final!r}: give a whole number of evaluations >= 1")
        strata = block.get("strata", "none")
        if strata not in STRATA:
            raise HrlError(f"{where}.strata={strata!r}: use one of {', '.join(STRATA)}")
        n_iqm = block.get("min_runs_for_iqm", 8)
        if isinstance(n_iqm, bool) or not isinstance(n_iqm, int) or n_iqm < 4:
            raise HrlError(f"{where}.min_runs_for_iqm={n_iqm!r}: give a whole number >= 4")
        return cls(metric, family, float(margin), str(block.get("margin_why", "")), float(alpha), secondary,
                   n_final, strata, n_iqm, True, comparisons)  # fmt: skip

    @property
    def level(self) -> str:
        """The intervals' level as a table prints it (1 − alpha: "95%")."""
        from hrl_core.lab.stats import percent

        return percent(1 - self.alpha)

    @property
    def tost_level(self) -> str:
        """The level of the interval the equivalence test reads (1 − 2·alpha: "90%")."""
        from hrl_core.lab.stats import percent

        return percent(1 - 2 * self.alpha)

    def in_family(self, comparison: str) -> bool:
        """Whether a comparison (by its label) is in the primary family."""
        if not self.primary_family:
            return True
        return any(comparison == name or comparison.split(" (")[0] == name for name in self.primary_family)


def family_tests(cells, comparisons: dict[str, tuple[str, str]], analysis: Analysis) -> int:
    """How many tests the primary family declares over the whole study file (``cells``: all of
    its cells, every part): each comparison of the family in each setting (algorithm x dataset x
    k) where the file plans both of its arms. A record of one part, or of a study still running,
    holds fewer; Holm's correction is taken over this number all the same
    (:func:`hrl_core.lab.verdicts.holm`), so an early or partial look is not a smaller family."""
    planned: dict[str, set] = {}  # arm -> the settings that plan it
    for c in cells:
        planned.setdefault(c.arm, set()).add((c.config.algo, c.config.env, float(c.config.remove_top_k)))
    return sum(len(planned.get(arm, set()) & planned.get(ref, set()))
               for label, (arm, ref) in comparisons.items() if analysis.in_family(label))  # fmt: skip


# --------------------------------------------------------------------------------------
# The primary analysis: one verdict per effect of the family
# --------------------------------------------------------------------------------------
@dataclass
class CheckpointEffect:
    """An effect within one Phase I checkpoint (descriptive: Welch 95% interval)."""

    phase1_seed: int
    estimate: float
    low: float
    high: float
    n_arm: int
    n_reference: int


@dataclass
class Effect:
    """arm − reference on one setting, as the declared analysis reads it."""

    comparison: str
    arm: str
    reference: str
    algo: str
    dataset: str
    k: float
    metric: str
    primary: bool
    design: object  # verdicts.Design
    estimate: float
    ci: tuple  # (low, high) at 1 - alpha
    ci90: tuple  # (low, high) at 1 - 2 alpha: inside ±margin <=> TOST rejects (before Holm)
    p: float
    p_tost: float
    alpha: float  # the family's level
    coverage: float = math.nan  # worst simulated coverage of ``ci`` on the records' scenarios
    coverage90: float = math.nan
    worst_scenario: str = ""
    method: str = ""  # how a secondary steps interval was made, or why there is none (stats.Diff.method)
    p_holm: float = math.nan
    p_tost_holm: float = math.nan
    verdict: str = ""
    detectable: float = math.nan  # smallest difference detected with 80% power at alpha (same units)
    # ... at alpha / (family size): Holm's first, strictest step, so an effect this large is
    # detected with 80% power whatever the family's other tests give
    detectable_holm: float = math.nan
    sd: float = math.nan  # pooled per-seed SD (the power calculation's unit)
    per_checkpoint: list = field(default_factory=list)
    # a distribution-free check of the same estimate (verdicts.Permutation), Holm-adjusted over the
    # same family: reported beside the declared test, never deciding the verdict
    permutation: object = None
    p_permutation_holm: float = math.nan
    iqm: object = None  # stats.Diff of IQM(arm) - IQM(reference), stratified bootstrap (>= min runs)
    poi: object = None  # stats.Diff of P(arm > reference)

    @property
    def setting(self) -> str:
        return f"{self.algo.upper()} {self.dataset.split('-')[0]} k={self.k:g}"

    @property
    def largest_not_excluded(self) -> float:
        """The largest |difference| the interval still allows."""
        return max(abs(self.ci[0]), abs(self.ci[1]))

    @property
    def agreement(self) -> str:
        """Whether the checkpoints tell the same story: the same sign (or both within noise)."""
        if len(self.per_checkpoint) < 2:
            return "one checkpoint"
        signs = {int(np.sign(c.estimate)) for c in self.per_checkpoint if abs(c.estimate) > 1e-12}
        return "agree" if len(signs) <= 1 else "opposite signs"


def stratum_of(run) -> int:
    """A run's Phase I checkpoint (seed) as it was asked for (None -> the online seed)."""
    s = (run.config.get("identity") or {}).get("settings") or run.config.get("settings") or {}
    value = s.get("phase1_seed")
    return int(run.seed if value is None else value)


def _strata(group_a, group_b, metric: str, by_checkpoint: bool) -> tuple[list, list]:
    """Per stratum (arm values, reference values) of a metric, and the strata's checkpoint seeds."""
    from hrl_core.lab.summary import value

    def split(group):
        out = {}
        for run, rec in zip(group.runs, group.recs, strict=True):
            out.setdefault(stratum_of(run) if by_checkpoint else 0, []).append(value(rec, metric))
        return out

    a, b = split(group_a), split(group_b)
    keys = sorted(set(a) & set(b))
    if by_checkpoint and keys and all(len(a[s]) < 2 or len(b[s]) < 2 for s in keys):
        # every checkpoint holds one seed a side (its checkpoint follows the online seed): no
        # within-checkpoint spread to compare with, so the seeds are one stratum
        return [(np.concatenate([a[s] for s in keys]), np.concatenate([b[s] for s in keys]))], [keys[0]]
    return [(np.asarray(a[s]), np.asarray(b[s])) for s in keys], keys


def scenarios_from(runs, comparisons: dict, metric: str = "auc", final_evaluations: int = 1) -> list:
    """Coverage scenarios from a record's own per-seed values: one per (comparison, setting) with
    runs on both sides, each side its per-seed values pooled over checkpoints."""
    from hrl_core.lab import summary, verdicts

    found = summary.groups(runs, None, final_evaluations)
    out = []
    for label, (arm, ref) in comparisons.items():
        for algo, dataset, k in summary.settings_of(found):
            a, b = found.get((algo, dataset, k, arm)), found.get((algo, dataset, k, ref))
            if a is None or b is None or len(a.recs) < 2 or len(b.recs) < 2:
                continue
            name = f"{label}, {algo.upper()} {dataset.split('-')[0]} k={k:g}"
            out.append(verdicts.Scenario(name, tuple(a.values(metric)), tuple(b.values(metric))))
    return out


def effects(runs, comparisons: dict, analysis: Analysis, levels: dict | None = None,
            scenarios: list | None = None) -> list[Effect]:  # fmt: skip
    """Every effect of the study under its declared analysis: the primary metric for the family
    (calibrated on the records' scenarios, Holm-corrected, four verdicts), and the secondary
    metrics, labelled and uncorrected (Welch-Satterthwaite over the checkpoints)."""
    from hrl_core.lab import stats, summary, verdicts

    found = summary.groups(runs, levels, analysis.final_evaluations)
    by_checkpoint = analysis.strata == "phase1_seed"
    if scenarios is None:
        scenarios = scenarios_from(runs, comparisons, analysis.primary_metric, analysis.final_evaluations)
    scenarios = tuple(scenarios)
    alpha, margin = analysis.alpha, analysis.equivalence_margin
    out = []
    for label, (arm, ref) in comparisons.items():
        primary = analysis.in_family(label)
        for algo, dataset, k in summary.settings_of(found):
            ga, gb = found.get((algo, dataset, k, arm)), found.get((algo, dataset, k, ref))
            if ga is None or gb is None:
                continue
            metrics = ((analysis.primary_metric,) if primary else ()) + tuple(analysis.secondary_metrics)
            for metric in metrics:
                strata, seeds = _strata(ga, gb, metric, by_checkpoint)
                is_primary = primary and metric == analysis.primary_metric
                if summary.BY_KEY[metric].unit == "steps":  # censored: the calibrated Welch of hrl_core.lab.stats
                    d = summary.difference(metric, [v for a, _ in strata for v in a], [v for _, b in strata for v in b],
                                           max(ga.recs[0].budget, gb.recs[0].budget))  # fmt: skip
                    design = verdicts.Design(tuple((len(a), len(b)) for a, b in strata))
                    e = Effect(label, arm, ref, algo, dataset, k, metric, False, design, d.estimate, (d.low, d.high),
                               (math.nan, math.nan), math.nan, math.nan, alpha)  # fmt: skip
                    e.verdict = stats.verdict(d, summary.BY_KEY[metric].higher_is_better) + " (secondary)"
                    e.method = d.method
                    out.append(e)
                    continue
                usable = verdicts.usable(strata)
                if not usable:
                    continue
                design = verdicts.Design.of(usable)
                est, se = verdicts.estimate(usable), verdicts.standard_error(usable)
                if not is_primary:
                    d = stats.pooled_mean_difference(usable, 1 - alpha)
                    e = Effect(label, arm, ref, algo, dataset, k, metric, False, design, est, (d.low, d.high),
                               (math.nan, math.nan), _welch_p(d, est, 1 - alpha), math.nan, alpha)  # fmt: skip
                    out.append(e)
                    continue
                cal = verdicts.calibration(design, scenarios)
                if se > 0:
                    p = cal.p_two_sided(est / se)
                    p_tost = max(cal.p_greater((est + margin) / se), cal.p_less((est - margin) / se))
                    ci, ci90 = cal.interval(est, se, 1 - alpha), cal.interval(est, se, 1 - 2 * alpha)
                else:  # every seed equal on both sides of every checkpoint: the difference is exact
                    p, p_tost = (0.0 if est else 1.0), (0.0 if abs(est) < margin else 1.0)
                    ci = ci90 = (est, est)
                e = Effect(label, arm, ref, algo, dataset, k, metric, True, design, est, ci, ci90, p, p_tost, alpha)
                e.permutation = verdicts.permutation_test(usable)
                e.coverage, e.worst_scenario = cal.coverage(1 - alpha)
                e.coverage90 = cal.coverage(1 - 2 * alpha)[0]
                e.sd = verdicts.pooled_sd(usable)
                e.detectable = cal.detectable(alpha) * e.sd
                for s, (a, b) in zip(seeds, strata, strict=True):
                    w = stats.welch_interval(a, b)
                    e.per_checkpoint.append(CheckpointEffect(s, w.estimate, w.low, w.high, len(a), len(b)))
                if min(len(ga.runs), len(gb.runs)) >= analysis.min_runs_for_iqm:
                    pooled = stats.pooled(usable)
                    e.iqm, e.poi = pooled.iqm_difference, pooled.probability_of_improvement
                out.append(e)
    _verdicts(out, analysis)
    m = max(analysis.family_size, sum(e.primary for e in out))
    for e in out:
        if e.primary and math.isfinite(e.sd):
            e.detectable_holm = verdicts.calibration(e.design, scenarios).detectable(alpha / max(m, 1)) * e.sd
    return out


def _welch_p(d, est: float, level: float) -> float:
    """Two-sided p of a Welch-Satterthwaite difference (secondary metrics) whose interval ``d`` is
    at ``level`` (1 - the declared alpha: the standard error is read back at that level, so p does
    not move with alpha)."""
    from scipy import stats as sps

    if not d.has_interval or not math.isfinite(d.df) or d.high == d.low:
        return math.nan
    se = (d.high - d.low) / 2 / float(sps.t.ppf(0.5 + level / 2, d.df))
    return float(2 * sps.t.sf(abs(est) / se, d.df)) if se > 0 else math.nan


def _verdicts(found: list[Effect], analysis: Analysis) -> None:
    """Holm over the primary family; better / worse / equivalent / inconclusive. Secondary
    effects: better / worse at their own level, uncorrected, and labelled so."""
    from hrl_core.lab import summary, verdicts

    primary = [e for e in found if e.primary]
    m = analysis.family_size
    for e, p in zip(primary, verdicts.holm([e.p for e in primary], m), strict=True):
        e.p_holm = p
    for e, p in zip(primary, verdicts.holm([e.p_tost for e in primary], m), strict=True):
        e.p_tost_holm = p
    permuted = [e.permutation.p if e.permutation is not None else math.nan for e in primary]
    for e, p in zip(primary, verdicts.holm(permuted, m), strict=True):
        e.p_permutation_holm = p
    for e in found:
        if e.verdict:
            continue
        higher = summary.BY_KEY[e.metric].higher_is_better
        p = e.p_holm if e.primary else e.p
        if math.isnan(p):
            e.verdict = "no interval"
        elif p < e.alpha:
            e.verdict = "better" if (e.estimate > 0) == higher else "worse"
        elif e.primary and e.p_tost_holm < e.alpha:
            e.verdict = "equivalent"
        else:
            e.verdict = "inconclusive"
        if not e.primary:
            e.verdict += " (secondary)"


# --------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------
def _iv(low: float, high: float, digits: int = 1) -> str:
    def f(x):
        return "−∞" if x == -math.inf else ("+∞" if x == math.inf else f"{x:+.{digits}f}")

    return f"[{f(low)}, {f(high)}]"


def _p(p: float) -> str:
    return "—" if math.isnan(p) else (f"{p:.3f}" if p >= 0.001 else "<0.001")


def primary_markdown(found: list[Effect], analysis: Analysis, progress: tuple[int, int] | None = None) -> str:
    """The answer's table: per effect of the family, its verdict after Holm, interval, what it
    still allows, what the design could detect, and whether the checkpoints agree. ``progress``:
    (complete, declared) cells of the study file; while it is not full every verdict reads
    "(interim)" (:func:`interim_note` says why)."""
    from hrl_core.lab import summary

    rows = [e for e in found if e.primary]
    if not rows:
        return "No effect of the primary family has complete runs on both sides yet."
    label = summary.BY_KEY[analysis.primary_metric].label
    head = ["effect", "setting", "seeds", f"{label} difference [{analysis.level} interval]", "p (Holm)", "verdict",
            "largest effect not excluded", "detectable (80% power)", "per checkpoint", "interval coverage",
            "permutation p (Holm), a check"]  # fmt: skip
    body = []
    for e in rows:
        per = "; ".join(f"ckpt {c.phase1_seed}: {c.estimate:+.1f} ({c.n_arm} vs {c.n_reference})"
                        for c in e.per_checkpoint)  # fmt: skip
        verdict = f"**{e.verdict}**" if e.verdict in ("better", "worse", "equivalent") else e.verdict
        verdict += " (interim)" if is_interim(progress) else ""
        body.append([
            e.comparison, e.setting, e.design.text(), f"{e.estimate:+.1f} {_iv(*e.ci)}",
            f"{_p(e.p)} ({_p(e.p_holm)})", verdict, f"{e.largest_not_excluded:.1f}",
            _detectable(e),
            f"{per} ({e.agreement})" if len(e.per_checkpoint) > 1 else "—",
            f"{e.coverage:.0%} / {e.coverage90:.0%}" if math.isfinite(e.coverage) else "—",
            f"{_p(e.permutation.p)} ({_p(e.p_permutation_holm)})" if e.permutation is not None else "—",
        ])  # fmt: skip
    return summary.table(head, body)


def is_interim(progress: tuple[int, int] | None) -> bool:
    """Whether (complete, declared) cells leave the study file unfinished."""
    return progress is not None and progress[0] < progress[1]


def interim_note(progress: tuple[int, int] | None) -> str:
    """Why a verdict of an unfinished study is not its answer (empty once every declared cell is in)."""
    if not is_interim(progress):
        return ""
    done, total = progress
    return (
        f"**Interim: {done} of {total} cells of the study file are complete.** Every verdict above can still "
        "change: the intervals are calibrated on the whole file's per-seed values, whose worst case moves as "
        "cells of any part arrive (at three values a side, by a lot), and Holm counts the tests still to come at "
        "p = 1. The study's answer is the table once every cell is in."
    )


def _detectable(e: Effect) -> str:
    """Detectable with 80% power: at α (as a single test), then at Holm's first step (α / family)."""

    def f(x):
        return f"{x:.1f}" if math.isfinite(x) else "none"

    if not math.isfinite(e.detectable_holm) or e.detectable_holm == e.detectable:
        return f(e.detectable)
    return f"{f(e.detectable)} ({f(e.detectable_holm)} after Holm)"


def primary_note(found: list[Effect], analysis: Analysis, source: str = "",
                 progress: tuple[int, int] | None = None) -> str:  # fmt: skip
    """How to read the primary table (the declaration, the tests, the calibration). ``source``: the
    study file whose declared analysis is applied to these runs, when it is not their own;
    ``progress``: as for :func:`primary_markdown` (an unfinished study's note opens with :func:`interim_note`)."""
    rows = [e for e in found if e.primary]
    if not rows:
        return ""
    worst = min(rows, key=lambda e: e.coverage if math.isfinite(e.coverage) else 1.0)
    lead = f"The analysis declared in {source}, applied to these runs" if source else "Declared before the runs"
    text = (interim_note(progress) + " " if is_interim(progress) else "") + (
        f"{lead} ({analysis.primary_metric} primary; family: {_family_text(len(rows), analysis.family_size)}, "
        f"Holm's correction at α = {analysis.alpha:g}; equivalence margin ±{analysis.equivalence_margin:g} points: "
        f"{analysis.margin_why.rstrip('.')}). Estimate: mean over Phase I checkpoints of the within-checkpoint "
        "difference of means. Its Welch statistic is calibrated: p-values and intervals use the statistic's worst-case "
        "distribution, simulated at these seed counts over scenarios resampled from the records' own per-seed "
        "values (collapsed and outlying seeds included) and normal ones. **equivalent**: both one-sided tests "
        f"reject ±margin after Holm (the calibrated {analysis.tost_level} interval lies inside ±margin). "
        "*Detectable*: the smallest difference the calibrated test finds with 80% power at this design, for normal "
        "per-seed values with the setting's pooled SD, as a single test and (in brackets) at Holm's strictest step, "
        "α over the family's size: an effect that large is found with 80% power whatever the family's other tests "
        f"give. *Largest effect not excluded*: the far end of the {analysis.level} interval. *Interval coverage*: "
        f"worst coverage of the {analysis.level} / {analysis.tost_level} intervals over the scenarios, on fresh "
        "simulations"
    )
    if math.isfinite(worst.coverage):
        text += f" (lowest: {worst.worst_scenario})"
    return (
        text
        + ". "
        + permutation_note(rows, analysis)
        + (" Secondary metrics are labelled so and not corrected (Welch-Satterthwaite over checkpoints).")
    )


def permutation_note(rows: list[Effect], analysis: Analysis) -> str:
    """What the distribution-free check says beside the declared verdicts: where a verdict rests on the
    calibration alone, and how small a p the permutation test can give at these designs."""
    checked = [e for e in rows if e.permutation is not None and math.isfinite(e.permutation.p)]
    if not checked:
        return ""
    m = max(analysis.family_size, len(rows))
    text = (
        "*Permutation p*: a check, not the declared test: the same estimate under every relabelling of the seeds "
        "within each checkpoint (exact up to 200,000 relabellings, else 20,000 random ones), Holm-adjusted over the "
        "same family; it tests that the arm changes nothing (seeds exchangeable within a checkpoint) and assumes "
        "nothing of the per-seed distribution's shape."
    )
    decided = [e for e in checked if e.verdict in ("better", "worse")]
    alone = [e for e in decided if not e.p_permutation_holm < e.alpha]
    floor = [e for e in alone if min(1.0, m * e.permutation.smallest) >= e.alpha]
    if decided:
        text += f" {len(decided) - len(alone)} of {len(decided)} better/worse verdicts also hold under it" + (
            f"; {_names(alone)} rest{'s' if len(alone) == 1 else ''} on the calibration" if alone else ""
        )
        if floor:  # a design too small for the permutation test to reach the family's level at all
            e = floor[0]
            text += (
                f" (at {e.design.text()} no relabelling can give less than p = {e.permutation.smallest:.3f}, "
                f"{min(1.0, m * e.permutation.smallest):.3f} after Holm over {m}: the check cannot decide there)"
            )
        text += "."
    only = [e for e in checked if e.verdict not in ("better", "worse") and e.p_permutation_holm < e.alpha]
    if only:  # the calibration's price: width where the records are lumpy
        text += f" It rejects where the declared test does not on {_names(only)}."
    return text


def _names(effects: list[Effect]) -> str:
    return ", ".join(f"{e.comparison.split(' (')[0]} on {e.setting}" for e in effects)


def _family_text(present: int, declared: int) -> str:
    if declared <= present:
        return f"{present} effects"
    return (f"{declared} effects declared over the study file, {present} with runs on both sides here, the "
            "missing counted at p = 1")  # fmt: skip


def checkpoint_markdown(runs, levels: dict | None = None) -> str:
    """Per setting and Phase I checkpoint: its offline return (step 0 of the cells that start
    from it) and, where known, the clean checkpoint's level."""
    from hrl_core.lab import summary

    rows = {}
    for r in runs:
        if r.status != "complete":
            continue
        key = (r.algo, r.dataset, r.k, stratum_of(r))
        rows.setdefault(key, []).append(float(r.returns[0]))
    body = []
    for (algo, dataset, k, seed), step0 in sorted(rows.items()):
        level = (levels or {}).get((algo, dataset, seed), math.nan)
        level = float(getattr(level, "level", level))
        body.append([f"{algo.upper()} {dataset.split('-')[0]} k={k:g}", seed, f"{np.mean(step0):.1f}",
                     f"{np.min(step0):.1f}–{np.max(step0):.1f}", len(step0),
                     "—" if math.isnan(level) else f"{level:.1f}"])  # fmt: skip
    return summary.table(["setting", "Phase I checkpoint (seed)", "step-0 return (mean)", "range over cells",
                          "cells", "clean (k=0) level"], body)  # fmt: skip
