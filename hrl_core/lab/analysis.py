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

from hrl_core.errors import HrlError

KEYS = {
    "primary_metric", "primary_family", "equivalence_margin", "margin_why", "alpha", "secondary_metrics",
    "final_evaluations", "strata", "min_runs_for_iqm",
}  # fmt: skip
STRATA = ("phase1_seed", "none")
METRIC_KEYS = ("auc", "final", "dip_depth", "regain", "clean", "spec80")  # hrl_core.lab.summary.METRICS


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

    def in_family(self, comparison: str) -> bool:
        """Whether a comparison (by its label) is in the primary family."""
        if not self.primary_family:
            return True
        return any(comparison == name or comparison.split(" (")[0] == name for name in self.primary_family)
