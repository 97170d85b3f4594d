"""Intervals called 95% cover 95% at the seed counts the studies use (simulated, fixed RNG)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hrl_core.lab import stats


def welch(a, b):
    d = stats.welch_interval(a, b)
    return d.low, d.high


def percentile_bootstrap(a, b, n_boot: int = 2000):
    """The interval the project used before: percentile bootstrap of the difference of means."""
    rng = np.random.default_rng(0)
    boot_a = rng.choice(a, size=(n_boot, len(a))).mean(1)
    boot_b = rng.choice(b, size=(n_boot, len(b))).mean(1)
    return tuple(np.percentile(boot_a - boot_b, [2.5, 97.5]))


@pytest.mark.parametrize("n", [3, 5])
@pytest.mark.parametrize("shift, sd_b", [(0.0, 1.0), (4.0, 1.0), (0.0, 3.0), (-2.0, 2.0)])
def test_welch_interval_covers_95_percent(n, shift, sd_b):
    cov = stats.coverage(welch, n, n, shift=shift, sd_b=sd_b, sims=4000, seed=1)
    assert 0.93 <= cov <= 0.97, cov


@pytest.mark.parametrize("n", [3, 5])
def test_the_old_percentile_bootstrap_fails_the_same_check(n):
    """The check has teeth: the bootstrap the summaries used covers ~80% (n=3) / ~88% (n=5)."""
    cov = stats.coverage(percentile_bootstrap, n, n, sims=1500, seed=1)
    assert cov < 0.93, cov


def test_welch_by_hand_and_edge_cases():
    d = stats.welch_interval([47, 45], [35, 37])  # s^2 = 2 each, n = 2: se = sqrt 2, df = 2
    assert d.estimate == 10 and d.df == pytest.approx(2.0)
    assert d.low == pytest.approx(10 - 4.302653 * math.sqrt(2), abs=1e-4)
    assert stats.verdict(d) == "better"
    one = stats.welch_interval([1.0], [0.0, 0.5])
    assert one.estimate == pytest.approx(0.75) and not one.has_interval and stats.verdict(one) == "no interval"
    assert "no interval" in one.text()
    same = stats.welch_interval([2.0, 2.0, 2.0], [1.0, 1.0, 1.0])  # no spread: the difference is exact
    assert (same.low, same.high) == (1.0, 1.0) and stats.verdict(same) == "better"
    spans = stats.welch_interval([1, 2, 3], [1.5, 2, 2.5])
    assert stats.verdict(spans) == "inconclusive"
    assert stats.verdict(stats.welch_interval([], [1, 2])) == "no reference"


def test_pooled_mean_difference_covers_95_percent():
    """Mean over 4 settings of per-setting differences, 3 seeds each, settings of different spread."""
    rng = np.random.default_rng(7)
    hits, sims = 0, 3000
    for _ in range(sims):
        shift = rng.normal(0, 5)
        pairs = [(p[0] + shift, p[1]) for p in stats.simulate_null_pairs(rng, 3, 4)]
        d = stats.pooled_mean_difference(pairs)
        hits += d.low <= shift <= d.high
    assert 0.93 <= hits / sims <= 0.97, hits / sims


def test_probability_of_improvement_interval_reaches_95_percent_at_the_study_design():
    """Calibrated by one simulation, checked by another (other seed): 4 settings x 3 seeds."""
    nominal, calibrated = stats.calibrated_level("probability_of_improvement", 3, 4)
    assert calibrated >= 0.95 and nominal > 0.95  # plain 95% percentile intervals are too narrow here
    rng = np.random.default_rng(2024)
    hits, sims = 0, 400
    for _ in range(sims):
        pairs = stats.simulate_null_pairs(rng, 3, 4)
        lo, hi = stats.bootstrap_interval(pairs, "probability_of_improvement", nominal, reps=1000, rng=rng)
        hits += lo <= 0.5 <= hi
    assert hits / sims >= 0.93, hits / sims


def test_iqm_and_probability_of_improvement_definitions():
    assert stats.iqm([1, 2, 3, 4, 5, 6, 7, 100]) == pytest.approx(np.mean([3, 4, 5, 6]))
    # Setting 1: X always above Y -> 1; setting 2: of 4 pairs one tie (3 vs 3), no win -> 0.5 / 4
    pairs = [([5, 6], [1, 2]), ([1, 3], [3, 4])]
    assert stats.probability_of_improvement(pairs) == pytest.approx((1.0 + 0.125) / 2)
    p = stats.pooled([([5, 6, 7], [1, 2, 3]), ([8, 9, 10], [1, 2, 3])], reps=500)
    assert p.n_settings == 2 and p.mean_difference.estimate == pytest.approx(5.5)
    assert stats.verdict(p.mean_difference) == "better" and p.probability_of_improvement.estimate == 1.0
    assert "simulated coverage" in p.iqm_difference.method


def test_nanmean_of_a_metric_no_run_logs_is_nan_without_a_warning():
    import warnings

    y = np.array([[np.nan, 1.0], [np.nan, 3.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning would fail here (it would land in the records)
        mean, std = stats.nanmean(y, 0), stats.nanstd(y, 0)
    assert np.isnan(mean[0]) and mean[1] == 2.0 and np.isnan(std[0]) and std[1] == 1.0


def test_steps_intervals_are_calibrated_for_censoring():
    """Steps to a level, capped at the budget, are tied and bimodal: Welch's plain 95% interval
    covers too little there (worst scenario), so the level is calibrated and its coverage shown."""
    for n in (3, 5):
        cov = stats.censored_coverage(n, n)
        assert cov[0] < 0.93  # nominal 0.95: too narrow in the worst scenario at these seed counts
        nominal, worst = stats.censored_level(n, n)
        assert nominal > 0.95 and worst == cov[list(stats.CENSORED_NOMINALS).index(nominal)]
        assert worst >= 0.93  # the coverage printed beside the interval
    d = stats.capped_steps_difference([2_000, 4_000, 10_000], [10_000, 10_000, 8_000])
    assert d.estimate == pytest.approx(-4_000) and d.has_interval and "simulated coverage" in d.method
    assert d.high - d.low > 2 * (stats.welch_interval([2_000, 4_000, 10_000], [10_000, 10_000, 8_000]).high + 4_000)
    cut = stats.capped_steps_difference([2_000, 4_000, 10_000], [10_000, 10_000, 8_000], budget=10_000)
    assert (cut.estimate, cut.low, cut.high) == (d.estimate, max(d.low, -10_000), min(d.high, 10_000))
    assert d.low < -10_000 and cut.low == -10_000 and "within ±budget" in cut.method  # wider than possible, cut
    same = stats.capped_steps_difference([10_000] * 3, [10_000] * 3)  # no seed of either arm got there
    assert same.estimate == 0 and not same.has_interval and stats.verdict(same) == "no interval"
