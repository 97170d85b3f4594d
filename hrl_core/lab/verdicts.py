"""The statistics of a declared analysis (``hrl_core.lab.analysis``): intervals and tests that hold
on data shaped like ours, a family corrected, equivalence within a margin, and the power a design has.

Per effect (arm − reference on one setting) the per-seed values come in strata (one per Phase I
checkpoint; one stratum when a study has one checkpoint):

- **Estimate**: the mean over strata of the within-stratum difference of means (each checkpoint
  weighs the same; arms are compared within a checkpoint only).
- **Statistic**: that estimate, minus the difference tested, over its Welch standard error
  (the variances of both sides of every stratum, as in Welch-Satterthwaite).
- **Calibration** (:class:`Calibration`): the statistic's distribution is not Student's t when a
  side's per-seed values are a mixture (one collapsed or outlying seed among three to eight), which
  is what the records hold: a nominal 95% Welch interval covered 0.67-0.86 on resamples of them. So
  its distribution at the true difference is simulated, at the design's seed counts, under every
  scenario resampled from the committed records' own per-seed values (smoothed: each value plus a
  little noise, so a lone collapsed seed stays a rare mode) and under normal values with equal and
  unequal spreads; p-values and critical values are the *worst* over those scenarios. An interval
  then covers the true difference at least at its level in every one of them (checked by an
  independent simulation and printed), a test rejects a true hypothesis at most at its level, and
  the price is width where the records are lumpy.
- **Family** (:func:`holm`): Holm's step-down correction over the primary family.
- **Equivalence**: two one-sided tests against -margin and +margin (Schuirmann's TOST) with the
  calibrated one-sided p-values, Holm-corrected like the differences: an equivalent effect's
  calibrated 90% interval lies inside ±margin.
- **Power** (:meth:`Calibration.detectable`): the smallest difference detected with 80% power by
  the calibrated two-sided test, for normal per-seed values with the setting's pooled SD.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

Strata = list[tuple[np.ndarray, np.ndarray]]  # per stratum: (arm values, reference values)


def _clean(x) -> np.ndarray:
    x = np.asarray(x, dtype=float).reshape(-1)
    return x[np.isfinite(x)]


def usable(strata) -> Strata:
    """The strata with at least two values on each side (a spread on both), as float arrays."""
    out = [(_clean(a), _clean(b)) for a, b in strata]
    return [(a, b) for a, b in out if len(a) >= 2 and len(b) >= 2]


def estimate(strata) -> float:
    """Mean over strata of mean(arm) - mean(reference)."""
    strata = usable(strata)
    return float(np.mean([a.mean() - b.mean() for a, b in strata])) if strata else math.nan


def standard_error(strata) -> float:
    """The estimate's Welch standard error."""
    strata = usable(strata)
    if not strata:
        return math.nan
    v = sum(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b) for a, b in strata)
    return math.sqrt(v) / len(strata)


@dataclass(frozen=True)
class Design:
    """Seeds per side per stratum: ((n_a, n_b), ...)."""

    sizes: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, strata) -> Design:
        return cls(tuple((len(a), len(b)) for a, b in usable(strata)))

    def text(self) -> str:
        """'3 vs 3 seeds', '3 vs 3 seeds x 2 checkpoints'; where the checkpoints differ, each in
        stratum order ('2 vs 3 + 2 vs 2 seeds, per checkpoint'), never merged into one count."""
        per = [f"{a} vs {b}" for a, b in self.sizes]
        if len(set(per)) <= 1:
            return f"{per[0] if per else '0 vs 0'} seeds" + (f" x {len(per)} checkpoints" if len(per) > 1 else "")
        return f"{' + '.join(per)} seeds, per checkpoint"


def holm(pvalues, family_size: int = 0) -> np.ndarray:
    """Holm's step-down adjusted p-values (nan stays nan and is not counted in the family).

    ``family_size``: the number of tests the family was declared with, when some of them are not
    in ``pvalues`` yet (a study still running, a part of it): each missing test counts as p = 1,
    which keeps the adjustment valid for the declared family (they would be ranked last)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = max(len(ok), int(family_size))
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


# --------------------------------------------------------------------------------------
# Scenarios: per-seed distributions taken from records (and normal ones)
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    """Two per-seed distributions: each a smoothed resample of a record's values (or normal)."""

    name: str
    arm: tuple[float, ...]
    reference: tuple[float, ...]
    normal_sd: tuple[float, float] | None = None  # (arm, reference) SDs of a normal scenario instead

    def draw(self, rng: np.random.Generator, side: int, shape: tuple) -> np.ndarray:
        if self.normal_sd is not None:
            return rng.normal(0.0, self.normal_sd[side], shape)
        v = np.asarray(self.arm if side == 0 else self.reference, dtype=float)
        sd = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
        h = 0.2 * sd if sd > 0 else 0.1  # kernel width: keeps a lone collapsed or outlying seed apart
        return rng.choice(v, shape) + rng.normal(0, h, shape)

    def mean(self, side: int) -> float:
        if self.normal_sd is not None:
            return 0.0
        return float(np.mean(self.arm if side == 0 else self.reference))  # the kernel has mean 0


NORMAL_SCENARIOS = (Scenario("normal, equal spreads", (), (), (1.0, 1.0)),
                    Scenario("normal, spreads 1:3", (), (), (1.0, 3.0)))  # fmt: skip


def simulate_t(scenario: Scenario, design: Design, sims: int, rng: np.random.Generator) -> np.ndarray:
    """The statistic (estimate - truth) / standard error over ``sims`` simulated experiments."""
    truth = scenario.mean(0) - scenario.mean(1)
    diff = np.zeros(sims)
    var = np.zeros(sims)
    for n_a, n_b in design.sizes:
        a = scenario.draw(rng, 0, (sims, n_a))
        b = scenario.draw(rng, 1, (sims, n_b))
        diff += a.mean(1) - b.mean(1)
        var += a.var(1, ddof=1) / n_a + b.var(1, ddof=1) / n_b
    k = len(design.sizes)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (diff / k - truth) / (np.sqrt(var) / k)
    return np.where(var > 0, t, 0.0)  # no spread anywhere: the estimate is exact (a rounding case)


# --------------------------------------------------------------------------------------
# The calibration of one design
# --------------------------------------------------------------------------------------
class Calibration:
    """The statistic's worst-case distribution for one design over a set of scenarios."""

    def __init__(self, design: Design, scenarios: tuple[Scenario, ...], sims: int = 20_000, seed: int = 17):
        self.design = design
        self.scenarios = tuple(scenarios) + NORMAL_SCENARIOS
        rng = np.random.default_rng(seed)
        self._t = [np.sort(simulate_t(sc, design, sims, rng)) for sc in self.scenarios]

    # tail probabilities, worst over the scenarios
    def p_two_sided(self, t: float) -> float:
        t = abs(t)
        return max(float(np.mean(np.abs(x) >= t)) for x in self._t)

    def p_greater(self, t: float) -> float:
        """P(T >= t), worst case: the p-value of "difference > tested value"."""
        return max(float(1 - np.searchsorted(x, t, "left") / len(x)) for x in self._t)

    def p_less(self, t: float) -> float:
        return max(float(np.searchsorted(x, t, "right") / len(x)) for x in self._t)

    def interval(self, est: float, se: float, level: float) -> tuple[float, float]:
        """est - [upper, lower] quantiles x se: each tail misses at most (1 - level)/2 in every scenario."""
        tail = (1 - level) / 2
        hi = max(float(np.quantile(x, 1 - tail)) for x in self._t)
        lo = min(float(np.quantile(x, tail)) for x in self._t)
        return est - hi * se, est - lo * se

    def coverage(self, level: float, sims: int = 4000, seed: int = 99) -> tuple[float, str]:
        """Worst coverage of :meth:`interval` at ``level`` over the scenarios, on fresh simulations."""
        rng = np.random.default_rng(seed)
        tail = (1 - level) / 2
        hi = max(float(np.quantile(x, 1 - tail)) for x in self._t)
        lo = min(float(np.quantile(x, tail)) for x in self._t)
        worst = (1.0, "")
        for sc in self.scenarios:
            t = simulate_t(sc, self.design, sims, rng)
            cov = float(np.mean((t >= lo) & (t <= hi)))
            worst = min(worst, (cov, sc.name))
        return worst

    def detectable(self, alpha: float = 0.05, power: float = 0.8, sims: int = 4000, seed: int = 5) -> float:
        """Smallest difference, in per-seed SDs, the calibrated two-sided test at ``alpha`` detects with
        ``power`` for normal per-seed values of SD 1 on both sides."""
        rng = np.random.default_rng(seed)
        hi = max(float(np.quantile(np.abs(x), 1 - alpha)) for x in self._t)  # the critical |T|
        diff = np.zeros(sims)
        var = np.zeros(sims)
        for n_a, n_b in self.design.sizes:
            a, b = rng.standard_normal((sims, n_a)), rng.standard_normal((sims, n_b))
            diff += a.mean(1) - b.mean(1)
            var += a.var(1, ddof=1) / n_a + b.var(1, ddof=1) / n_b
        k = len(self.design.sizes)
        diff, se = diff / k, np.sqrt(var) / k

        def power_at(delta: float) -> float:
            return float(np.mean(np.abs((diff + delta) / se) > hi))

        lo_d, hi_d = 0.0, 1.0
        while power_at(hi_d) < power:
            lo_d, hi_d = hi_d, 2 * hi_d
            if hi_d > 1e3:
                return math.inf
        for _ in range(30):
            mid = (lo_d + hi_d) / 2
            lo_d, hi_d = (mid, hi_d) if power_at(mid) < power else (lo_d, mid)
        return hi_d


@cache
def calibration(design: Design, scenarios: tuple[Scenario, ...]) -> Calibration:
    return Calibration(design, scenarios)


def pooled_sd(strata) -> float:
    """The per-seed SD within arms and strata, pooled (the power calculation's unit)."""
    num, den = 0.0, 0
    for a, b in usable(strata):
        for x in (a, b):
            if len(x) > 1:
                num += float(np.var(x, ddof=1)) * (len(x) - 1)
                den += len(x) - 1
    return math.sqrt(num / den) if den else math.nan


# --------------------------------------------------------------------------------------
# A distribution-free check of the same estimate (sensitivity, not the declared test)
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Permutation:
    """Two-sided stratified permutation test of :func:`estimate`: the seeds' arm labels relabelled
    within each checkpoint (Fisher's randomization test; it assumes only that, with no effect, the
    labels are exchangeable within a checkpoint). ``smallest``: the least p this design can give (a
    few seeds per side bound it from below whatever the data, e.g. 2/400 at 3 vs 3 x 2 checkpoints)."""

    p: float
    smallest: float
    exact: bool  # every relabelling enumerated (else ``draws`` random ones)
    relabellings: int


def _stratum_differences(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """mean(arm) - mean(reference) for every choice of which of the stratum's seeds are the arm's."""
    from itertools import combinations

    pooled, n = np.concatenate([a, b]), len(a)
    total = pooled.sum()
    picks = np.array(list(combinations(range(len(pooled)), n)), dtype=int)  # [C, n]
    arm_sum = pooled[picks].sum(1)  # [C]
    return arm_sum / n - (total - arm_sum) / len(b)


def permutation_test(strata, exact_limit: int = 200_000, draws: int = 20_000, seed: int = 3) -> Permutation:
    """The exact test when the design has at most ``exact_limit`` relabellings, else ``draws`` random
    ones (p = (1 + hits) / (1 + draws), which keeps it valid)."""
    strata = usable(strata)
    if not strata:
        return Permutation(math.nan, math.nan, True, 0)
    observed = abs(estimate(strata))
    tol = 1e-9 * max(1.0, observed)  # relabellings equal to the observed one in exact arithmetic count as hits
    count = math.prod(math.comb(len(a) + len(b), len(a)) for a, b in strata)
    if count <= exact_limit:
        dist = np.zeros(1)
        for a, b in strata:  # every combination of the strata's relabellings: [C_1 * C_2 * ...]
            dist = np.add.outer(dist, _stratum_differences(a, b)).reshape(-1)
        dist = np.abs(dist / len(strata))
        top = dist.max()
        return Permutation(float(np.mean(dist >= observed - tol)), float(np.mean(dist >= top - tol)), True, count)
    rng = np.random.default_rng(seed)
    total = np.zeros(draws)
    for a, b in strata:  # relabel each stratum independently: [draws, n_a + n_b] shuffled
        pooled = np.concatenate([a, b])
        shuffled = rng.permuted(np.broadcast_to(pooled, (draws, len(pooled))), axis=1)
        total += shuffled[:, : len(a)].mean(1) - shuffled[:, len(a) :].mean(1)
    hits = int(np.sum(np.abs(total / len(strata)) >= observed - tol))
    return Permutation((1 + hits) / (1 + draws), 1 / (1 + draws), False, draws)
