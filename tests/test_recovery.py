"""Recovery metrics of one curve (hrl_core.lab.recovery), on curves whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hrl_core.lab.recovery import capped, median_text, recovery, steps_text

STEPS = np.arange(0, 10_001, 2_000.0)  # 0, 2,000, ..., 10,000


def test_a_dip_then_recovery_past_the_clean_level():
    # start 46, dip to 33.5 at 4,000, back above 46 at 8,000, clean level 50 reached at 10,000
    r = recovery(STEPS, [46.0, 40.0, 33.5, 41.0, 47.0, 52.0], clean_level=50.0)
    assert (r.step0, r.final, r.budget) == (46.0, 52.0, 10_000.0)
    assert (r.dip_return, r.dip_depth, r.dip_step) == (33.5, 12.5, 4_000.0) and r.dipped
    assert r.regain_step == 8_000.0
    assert r.clean_step == 10_000.0
    assert r.spec80_step == 0.0  # 80% of 50 = 40 <= 46: the spec's line is met at step 0, before any online step
    assert steps_text(r.spec80_step) == "at step 0"
    # AUC by hand (trapezoids over 2,000-step intervals, divided by 10,000)
    assert r.auc == pytest.approx(2_000 * (43 + 36.75 + 37.25 + 44 + 49.5) / 10_000)


def test_not_regained_and_not_reached():
    r = recovery(STEPS, [46.0, 30.0, 20.0, 35.0, 44.0, 45.9], clean_level=50.0)
    assert r.dip_step == 4_000.0 and r.dip_depth == pytest.approx(26.0)
    assert math.isinf(r.regain_step) and steps_text(r.regain_step, "regain") == "not regained"
    assert math.isinf(r.clean_step) and steps_text(r.clean_step) == "not reached"
    assert capped(r.regain_step, r.budget) == 10_000.0  # counted at the budget when summarized
    # Regaining counts only after the lowest point: above 46 early, then a deeper dip never regained.
    r = recovery(STEPS, [46.0, 47.0, 20.0, 30.0, 40.0, 45.0])
    assert r.dip_step == 4_000.0 and math.isinf(r.regain_step)
    assert math.isnan(r.clean_step) and steps_text(r.clean_step) == "—"  # no clean level known


def test_a_curve_that_never_falls_below_its_start_has_nothing_to_regain():
    r = recovery(STEPS, [40.0, 41.0, 40.0, 45.0, 50.0, 49.0], clean_level=48.0)
    assert r.dip_depth == 0.0 and not r.dipped and r.dip_step == 4_000.0  # lowest after step 0: 40, at its start
    assert r.regain_step == 0.0 and steps_text(r.regain_step, "regain") == "never below its start"
    r = recovery(STEPS, [40.0, 42.0, 43.0, 45.0, 50.0, 49.0], clean_level=48.0)
    assert r.dip_depth == pytest.approx(-2.0) and r.dip_step == 2_000.0  # negative: the lowest point is above step 0
    assert r.clean_step == 8_000.0
    one = recovery([0.0], [40.0], clean_level=30.0)  # only the step-0 evaluation
    assert math.isnan(one.dip_depth) and one.clean_step == 0.0


def test_medians_count_censored_seeds_at_the_budget():
    assert median_text([2_000.0, 4_000.0, math.inf], 10_000.0) == "4,000 (2/3)"
    assert median_text([2_000.0, math.inf, math.inf], 10_000.0) == "not reached (1/3)"
    assert median_text([0.0, 0.0, 6_000.0], 10_000.0, "regain") == "never below its start (3/3)"
    assert median_text([10_000.0, 10_000.0, math.inf], 10_000.0) == "10,000 (2/3)"  # reached at the last evaluation
    assert median_text([math.nan], 10_000.0) == "—"
