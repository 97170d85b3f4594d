"""Every metric the records report, declared once: its name, label, unit, direction, how its seeds
combine, and where it is shown. Tables, CSVs, figures, digests, the explorer and the declared analysis
(``analysis.METRIC_KEYS``) read them from here; a new metric is one entry here (and, for a recovery
metric, its computation in ``hrl_core.lab.recovery``).

- :data:`RECOVERY`: per-seed numbers of one run's return curve (``recovery.Recovery``), compared arm −
  reference with intervals; ``headline`` ones are the effect tables' columns, ``summary`` ones ``hrl
  plot``'s;
- :data:`CURVES`: per-evaluation series of ``metrics.json`` the explorers draw;
- the study's diagnostics (per-interval quantities with their own pooling) live with the study
  (``study.DIAGNOSTICS``) because each is a function of a run; their names are declared here too.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str  # "points" (normalized return) | "steps"
    higher_is_better: bool
    kind: str = "reach"  # how its steps read (recovery.steps_text): reach | regain
    combine: str = "mean over seeds"  # steps: the median with a censored seed counted at the budget
    headline: bool = False  # a column of the effect tables (README, docs/results.md, the study record)
    summary: bool = False  # in hrl plot's summary.md / summary.csv


RECOVERY = (
    Metric("final", "final return", "points", True, headline=True, summary=True),
    Metric("auc", "AUC", "points", True, headline=True, summary=True),
    Metric("dip_depth", "dip depth", "points", False, headline=True, summary=True),
    Metric(
        "regain",
        "steps to regain step 0",
        "steps",
        False,
        "regain",
        "median, censored at the budget",
        headline=True,
        summary=True,
    ),  # fmt: skip
    Metric(
        "clean", "steps to the clean level", "steps", False, combine="median, censored at the budget", summary=True
    ),  # fmt: skip
    Metric("spec80", "steps to 80% of clean", "steps", False, combine="median, censored at the budget"),
)
BY_KEY = {m.key: m for m in RECOVERY}
# the order the effect tables state an answer in: AUC first
HEADLINE = ("auc", "final", "dip_depth", "regain")
SUMMARY = tuple(m.key for m in RECOVERY if m.summary)
STEPS_KIND = {m.key: m.kind for m in RECOVERY if m.unit == "steps"}  # how a steps value reads


@dataclass(frozen=True)
class Curve:
    """A per-evaluation series of metrics.json, as an explorer offers it."""

    label: str  # the selector's text
    key: str  # metrics.json key


CURVES = (
    Curve("return", "normalized_return"),
    Curve("disagreement", "ensemble_disagreement"),
    Curve("critic loss", "critic_loss_avg"),
    Curve("bonus", "bonus_mean"),
)

# the study's diagnostics, by name (their definitions: hrl_core.lab.study.DIAGNOSTICS)
RATIO = "bonus / env reward"
MULTIPLIER = "bonus / (λ·std(Q))"
