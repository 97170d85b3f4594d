"""What one return curve says about recovery (pure functions of steps and returns).

Fine-tuning an offline checkpoint online usually loses return first (the
offline-to-online dip) and may then climb back. A metric that every arm meets at step 0
says nothing, so beside the final return and the area under the curve a run is read by:

- the **dip**: its lowest evaluated return after step 0, how far that is below step 0
  (``dip_depth``; negative when the curve never falls below its start) and where it is;
- **steps to regain** the step-0 level after the dip: the first evaluation at or after
  the dip's lowest point whose return is back at the step-0 level (0 when the curve never
  fell below it; ``inf``: not regained within the budget);
- **steps to the clean level**: the first evaluation at or above the clean checkpoint's
  return (100% of the k=0 Phase I return of the same algorithm and dataset; 0 = at step 0);
- the spec's **steps to 80%** of the clean return, kept for the record; a corrupted
  checkpoint that starts above it reaches it "at step 0", which is no evidence of anything.

Steps are evaluation steps (the first evaluation that meets a level), so their resolution
is the run's ``eval_interval``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SPEC_FRACTION = 0.8  # the spec's "recovered" line: 80% of the clean Phase I return


@dataclass(frozen=True)
class Recovery:
    """The recovery metrics of one run (returns are normalized)."""

    step0: float  # the Phase I checkpoint's return (step 0)
    final: float  # mean of the last ``final_evaluations`` evaluations after step 0 (1: the last one)
    auc: float  # mean return over the run (trapezoid rule / step span)
    budget: float  # the last evaluated step
    dip_return: float  # lowest evaluated return after step 0
    dip_depth: float  # step0 - dip_return; negative: never below step 0
    dip_step: float  # where the lowest return after step 0 is (first such evaluation)
    regain_step: float  # first step at/after the dip back at the step-0 level; 0: never below; inf: not regained
    clean_step: float  # first step at the clean level; 0: at step 0; inf: not reached; nan: no clean level
    spec80_step: float  # first step at 80% of the clean level (same conventions)
    last: float = math.nan  # the last evaluation alone (what `final` is with one evaluation)

    @property
    def dipped(self) -> bool:
        return self.dip_depth > 0


def auc(steps, values) -> float:
    """Area under the curve divided by the step span: the mean normalized return."""
    steps, values = np.asarray(steps, float), np.asarray(values, float)
    if len(steps) < 2:
        return float(values[0]) if len(values) else math.nan
    return float(np.trapezoid(values, steps) / (steps[-1] - steps[0]))


def first_step_at(steps, values, level: float, start: int = 0) -> float:
    """First evaluation step (from index ``start``) whose value reaches ``level``;
    ``inf`` if none does, ``nan`` when there is no level."""
    if level is None or math.isnan(level):
        return math.nan
    values = np.asarray(values, float)[start:]
    hit = np.flatnonzero(values >= level)
    return float(np.asarray(steps, float)[start + hit[0]]) if len(hit) else math.inf


def final_return(returns, evaluations: int = 1) -> float:
    """Mean of the last ``evaluations`` evaluations after step 0 (fewer if the run has fewer): one
    evaluation of 10 episodes moves by several points between neighbours, a mean of three less."""
    returns = np.asarray(returns, float)
    after = returns[1:] if len(returns) > 1 else returns
    return float(np.mean(after[-max(1, evaluations) :]))


def recovery(steps, returns, clean_level: float = math.nan, final_evaluations: int = 1) -> Recovery:
    """The metrics of one curve; ``clean_level``: the clean checkpoint's return (nan: unknown);
    ``final_evaluations``: how many last evaluations the final return averages (a study declares it)."""
    steps, returns = np.asarray(steps, float), np.asarray(returns, float)
    step0 = float(returns[0])
    if len(returns) < 2:
        nan = math.nan
        return Recovery(step0, step0, step0, float(steps[0]), nan, nan, nan, nan,
                        first_step_at(steps, returns, clean_level),
                        first_step_at(steps, returns, SPEC_FRACTION * clean_level), step0)  # fmt: skip
    low = 1 + int(np.argmin(returns[1:]))  # the dip's lowest point (first of equal minima)
    dip_return = float(returns[low])
    if dip_return >= step0:
        regain = 0.0  # never fell below its start: nothing to regain
    else:
        regain = first_step_at(steps, returns, step0, start=low)
    return Recovery(
        step0=step0,
        final=final_return(returns, final_evaluations),
        last=float(returns[-1]),
        auc=auc(steps, returns),
        budget=float(steps[-1]),
        dip_return=dip_return,
        dip_depth=step0 - dip_return,
        dip_step=float(steps[low]),
        regain_step=regain,
        clean_step=first_step_at(steps, returns, clean_level),
        spec80_step=first_step_at(steps, returns, SPEC_FRACTION * clean_level),
    )


def capped(steps_to: float, budget: float) -> float:
    """Steps to a level with "not reached" counted at the budget (the restricted time of
    survival analysis: every run is followed to the same budget)."""
    return float(min(steps_to, budget)) if not math.isnan(steps_to) else math.nan


def steps_text(value: float, kind: str = "reach") -> str:
    """How a steps-to-level value reads: 'at step 0', 'never below its start', 'not reached', '12,000'."""
    if math.isnan(value):
        return "—"
    if math.isinf(value):
        return "not regained" if kind == "regain" else "not reached"
    if value == 0:
        return "never below its start" if kind == "regain" else "at step 0"
    return f"{value:,.0f}"


def median_text(values: list[float], budget: float, kind: str = "reach") -> str:
    """Median over seeds with 'not reached' counted at the budget, and how many seeds got there:
    ``20,000 (3/5)``; ``not reached (1/5)`` when the median is censored."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return "—"
    med = float(np.median([min(v, budget) for v in finite]))
    reached = sum(math.isfinite(v) for v in finite)
    censored = sum(not math.isfinite(v) for v in finite) * 2 >= len(finite) and med >= budget
    text = ("not regained" if kind == "regain" else "not reached") if censored else steps_text(med, kind)
    return f"{text} ({reached}/{len(finite)})"
