"""The declared analysis: Holm over the family, four verdicts, intervals calibrated on data shaped
like the records, robust final returns."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from hrl_core.lab import analysis, grids, records, stats, verdicts
from hrl_core.lab.recovery import recovery

REPO = Path(__file__).resolve().parents[1]


def test_holm_adjusts_a_family_step_down():
    # Holm (1979): sorted p = .005, .01, .03, .04 times 4, 3, 2, 1, kept non-decreasing
    p = [0.01, 0.04, 0.03, 0.005, math.nan]
    adjusted = verdicts.holm(p)
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert math.isnan(adjusted[4])  # not a member of the family
    assert verdicts.holm([0.04]) == pytest.approx([0.04])  # a family of one is not corrected
    # a family declared with 4 tests of which 2 are in: the 2 missing count as p = 1 (ranked last)
    assert verdicts.holm([0.01, 0.02], family_size=4) == pytest.approx([0.04, 0.06])
    assert verdicts.holm([0.01, 0.04, 0.03, 0.005], family_size=4) == pytest.approx(adjusted[:4])


def test_a_part_record_corrects_over_the_family_the_whole_file_declares():
    from hrl_core.lab.record import Record

    spec = grids.load_grid(REPO / "params" / "study_review.yaml")
    settings = len(spec["algos"]) * len(spec["datasets"]) * len(spec["remove_top_k"])
    declared = len(spec["analysis"]["primary_family"]) * settings
    part = Record.open(REPO / "params" / "study_review.yaml", "cql-hopper")
    assert part.analysis.family_size == declared > 3  # not the 3 effects of the part's one setting
    # one effect of that family in: its p is multiplied by the declared size, not left alone
    rng = np.random.default_rng(0)
    runs = _arms([50.0, 51.0, 49.0], +3.0, 1.0, "cql", rng)
    found = [e for e in analysis.effects(runs, {"bonus": ("arm", "ref")}, part.analysis) if e.primary]
    assert len(found) == 1 and found[0].p_holm == pytest.approx(min(1.0, declared * found[0].p))
    assert f"{declared} effects declared over the study file, 1 with runs" in analysis.primary_note(
        found, part.analysis
    )


def test_final_return_is_the_mean_of_the_last_evaluations():
    steps = [0, 2000, 4000, 6000, 8000]
    returns = [46.0, 30.0, 50.0, 33.4, 45.9]
    rec = recovery(steps, returns, final_evaluations=3)
    assert rec.final == pytest.approx((50.0 + 33.4 + 45.9) / 3) and rec.last == 45.9
    assert recovery(steps, returns).final == 45.9  # one evaluation: the last one, as before
    assert recovery(steps[:2], returns[:2], final_evaluations=3).final == 30.0  # fewer than asked: those there


def _run(arm: str, seed: int, ckpt: int, auc: float, algo="iql", dataset="hopper-medium-v2") -> records.Run:
    """A complete run whose curve is flat at ``auc`` (so its AUC and final return are ``auc``)."""
    metrics = {"step": [0, 5000, 10000], "normalized_return": [auc, auc, auc], "status": "complete"}
    config = {"settings": {"algo": algo, "env": dataset, "remove_top_k": 60, "bonus_type": "none", "seed": seed},
              "identity": {"settings": {"phase1_seed": ckpt}}}  # fmt: skip
    return records.Run(f"{arm}-{seed}-{ckpt}", algo, dataset, 60.0, "none", seed, "complete", metrics, "test", arm,
                       config)  # fmt: skip


def _arms(reference: list[float], shift: float, noise: float, algo: str, rng) -> list:
    out = []
    for ckpt in (1, 2):
        for seed, value in enumerate(reference):
            out.append(_run("ref", seed, ckpt, value, algo))
            out.append(_run("arm", seed, ckpt, value + shift + rng.normal(0, noise), algo))
    return out


def test_the_four_verdicts_on_constructed_data():
    rng = np.random.default_rng(3)
    base = [50.0, 51.0, 49.0, 50.5, 49.5, 50.2, 49.8, 50.1]  # eight seeds, spread ~0.6
    runs = (_arms(base, +20.0, 0.5, "iql", rng) + _arms(base, -20.0, 0.5, "cql", rng)
            + [r for r in _arms(base, 0.2, 0.5, "tiny", rng)]  # well inside ±5, tight: equivalent
            + [r for r in _arms([30.0, 70.0, 45.0], 3.0, 25.0, "noisy", rng)])  # fmt: skip
    an = analysis.Analysis(equivalence_margin=5.0, final_evaluations=1, strata="phase1_seed", declared=True,
                           primary_family=("effect",), comparisons=("effect",))  # fmt: skip
    found = [e for e in analysis.effects(runs, {"effect": ("arm", "ref")}, an) if e.primary]
    by_algo = {e.algo: e for e in found}
    assert by_algo["iql"].verdict == "better" and by_algo["cql"].verdict == "worse"
    assert by_algo["tiny"].verdict == "equivalent"
    assert by_algo["noisy"].verdict == "inconclusive"
    assert all(e.p_holm >= e.p for e in found)  # Holm over the family of four
    assert by_algo["tiny"].ci90[0] > -5 and by_algo["tiny"].ci90[1] < 5  # its 90% interval inside the margin
    assert by_algo["noisy"].largest_not_excluded > 5 and by_algo["noisy"].detectable > 5
    # at Holm's strictest step (alpha / 4 here) the design needs a larger effect than as a single test
    assert all(e.detectable_holm > e.detectable for e in found)
    assert len(by_algo["iql"].per_checkpoint) == 2 and by_algo["iql"].agreement == "agree"


@pytest.fixture(scope="module")
def record_scenarios():
    spec = grids.load_grid(REPO / "params" / "study_long.yaml")
    cells = grids.expand(spec, {"parts": ["iql-hopper", "iql-halfcheetah", "cql-hopper", "cql-halfcheetah"]},
                         {"save_dir": "results_long"})  # fmt: skip
    runs = records.load_cells(cells)
    comparisons = {k: v for k, v in spec["comparisons"].items() if "double" not in k}
    scenarios = tuple(analysis.scenarios_from(runs, comparisons, "auc", 3))
    assert len(scenarios) == 12
    return scenarios


# the long study's designs and the review study's (three seeds per arm per checkpoint; eight on IQL hopper)
DESIGNS = [((3, 3),), ((5, 5),), ((3, 3), (3, 3)), ((8, 8), (8, 8))]


@pytest.mark.parametrize("sizes", DESIGNS)
def test_intervals_cover_on_the_records_own_per_seed_values(record_scenarios, sizes):
    design = verdicts.Design(sizes)
    cal = verdicts.Calibration(design, record_scenarios, sims=20_000)
    assert cal.coverage(0.95)[0] >= 0.94  # the interval that decides better / worse
    assert cal.coverage(0.90)[0] >= 0.89  # the one that decides equivalence
    # the uncalibrated Welch interval does not hold there: the calibration is what makes it
    rng = np.random.default_rng(1)
    welch = []
    for sc in record_scenarios:
        truth = sc.mean(0) - sc.mean(1)
        hits = 0
        for _ in range(300):
            pairs = [(sc.draw(rng, 0, (a,)), sc.draw(rng, 1, (b,))) for a, b in sizes]
            d = stats.pooled_mean_difference(pairs)
            hits += d.low <= truth <= d.high
        welch.append(hits / 300)
    assert min(welch) < 0.92


def test_step_zero_pairs_seeds_within_a_checkpoint():
    """Seed 0 from checkpoint 1 and seed 0 from checkpoint 2 start from different networks: their
    step 0 differs and says nothing about the machines. Within a checkpoint a gap is still found."""
    from hrl_core.lab import summary

    def run(arm, seed, ckpt, start):
        r = _run(arm, seed, ckpt, 50.0)
        r.metrics["normalized_return"] = [start, 50.0, 50.0]
        return r

    runs = [run(arm, seed, ckpt, 40.0 + ckpt) for arm in ("arm", "ref") for seed in (0, 1) for ckpt in (1, 2)]
    rows = summary.effect_rows(runs, {"effect": ("arm", "ref")})
    assert rows[0]["start_gaps"] == [] and summary.start_gap_note(rows) == ""
    runs[0].metrics["normalized_return"][0] += 0.5  # arm, seed 0, checkpoint 1
    rows = summary.effect_rows(runs, {"effect": ("arm", "ref")})
    assert [(g["phase1_seed"], g["seed"], g["gap"]) for g in rows[0]["start_gaps"]] == [(1, 0, 0.5)]


def test_the_explorer_tells_seeds_of_two_checkpoints_apart():
    from hrl_core.lab.widgets import seed_options

    two = [_run(arm, seed, ckpt, 50.0) for arm in ("arm", "ref") for seed in (0, 1) for ckpt in (1, 2)]
    assert seed_options(two) == [("seed 0 · ckpt 1", (1, 0)), ("seed 1 · ckpt 1", (1, 1)),
                                 ("seed 0 · ckpt 2", (2, 0)), ("seed 1 · ckpt 2", (2, 1))]  # fmt: skip
    own = [_run("arm", seed, seed, 50.0) for seed in (0, 1, 2)]  # each seed its own checkpoint: seeds alone
    assert [label for label, _ in seed_options(own)] == ["0", "1", "2"]


def test_a_design_names_each_checkpoints_seeds_where_they_differ():
    # an interim two-checkpoint design: 2 vs 3 seeds on checkpoint 1, 2 vs 2 on checkpoint 2;
    # "2 vs 2 + 2 vs 3 seeds x 2 checkpoints" would read as four strata (or as 4-5 seeds a side)
    text = verdicts.Design(((2, 3), (2, 2))).text()
    assert text.index("2 vs 3") < text.index("2 vs 2")  # in stratum order
    assert "x 2 checkpoints" not in text and "per checkpoint" in text
    assert verdicts.Design(((3, 3), (3, 3))).text() == "3 vs 3 seeds x 2 checkpoints"
    assert verdicts.Design(((5, 5),)).text() == "5 vs 5 seeds"


def test_a_secondary_steps_difference_without_an_interval_says_why():
    from hrl_core.lab import study

    # flat curves: every seed of both arms regains its start at once, so the steps differ by exactly 0
    runs = [_run(arm, seed, 1, 50.0) for arm in ("arm", "ref") for seed in (0, 1, 2)]
    an = analysis.Analysis(final_evaluations=1, declared=True, primary_family=("effect",), comparisons=("effect",),
                           secondary_metrics=("regain",))  # fmt: skip
    table = study.secondary_markdown(analysis.effects(runs, {"effect": ("arm", "ref")}, an))
    row = next(line for line in table.splitlines() if line.startswith("| effect | IQL"))
    assert "no interval: every seed equal on both sides" in row and "welch-t" not in row


def test_a_secondary_p_is_the_welch_satterthwaite_p_whatever_alpha_is_declared():
    """A secondary metric's p is read back from its interval at 1 - alpha: it was read at 0.975
    whatever the declaration, so a study declaring alpha = 0.1 got p-values (and verdicts) too small."""
    from dataclasses import replace

    from scipy import stats as sps

    rng = np.random.default_rng(11)
    runs = _arms([50.0, 53.0, 47.0, 51.0], +3.0, 2.0, "iql", rng)  # two checkpoints, four seeds each
    an = analysis.Analysis(final_evaluations=1, strata="phase1_seed", declared=True, primary_family=("effect",),
                           comparisons=("effect",), secondary_metrics=("final",))  # fmt: skip
    ps = {}
    for alpha in (0.05, 0.1):
        (sec,) = [e for e in analysis.effects(runs, {"effect": ("arm", "ref")}, replace(an, alpha=alpha))
                  if e.metric == "final"]  # fmt: skip
        ps[alpha] = sec.p
    # by hand: the mean over checkpoints of the within-checkpoint differences, Welch-Satterthwaite
    per = {c: ([r.returns[-1] for r in runs if r.arm == "arm" and r.config["identity"]["settings"]["phase1_seed"] == c],
               [r.returns[-1] for r in runs if r.arm == "ref" and r.config["identity"]["settings"]["phase1_seed"] == c])
           for c in (1, 2)}  # fmt: skip
    est = np.mean([np.mean(a) - np.mean(b) for a, b in per.values()])
    parts = [np.var(x, ddof=1) / len(x) for a, b in per.values() for x in (a, b)]
    df = sum(parts) ** 2 / sum(p**2 / 3 for p in parts)
    expected = 2 * sps.t.sf(abs(est) / (np.sqrt(sum(parts)) / 2), df)
    assert ps[0.05] == pytest.approx(expected, rel=1e-9)
    assert ps[0.1] == pytest.approx(expected, rel=1e-9)


def test_tables_name_the_level_their_intervals_are_at():
    """The intervals are at 1 - alpha (TOST reads 1 - 2 alpha): a study declaring alpha = 0.1 gets
    90% intervals, and its tables said "95%" and "90%"."""
    from dataclasses import replace

    from hrl_core.lab import study

    rng = np.random.default_rng(2)
    runs = _arms([50.0, 53.0, 47.0, 51.0], +3.0, 2.0, "iql", rng)
    an = analysis.Analysis(final_evaluations=1, strata="phase1_seed", declared=True, primary_family=("effect",),
                           comparisons=("effect",), secondary_metrics=("final",), equivalence_margin=5.0)  # fmt: skip
    for alpha, level, tost in ((0.05, "95%", "90%"), (0.1, "90%", "80%"), (0.025, "97.5%", "95%")):
        a = replace(an, alpha=alpha)
        effects = analysis.effects(runs, {"effect": ("arm", "ref")}, a)
        assert f"difference [{level} interval]" in analysis.primary_markdown(effects, a)
        note = analysis.primary_note(effects, a)
        assert f"calibrated {tost} interval lies inside" in note and f"{level} / {tost} intervals" in note
        assert f"difference [{level} interval" in study.secondary_markdown(effects)


def test_an_unfinished_studys_verdicts_read_interim_and_a_full_ones_do_not():
    """While cells of the study file are missing its calibration and Holm family are not final: an
    interim 'better' once turned 'inconclusive' two cells later on the same runs."""
    rng = np.random.default_rng(3)
    runs = _arms([50.0, 51.0, 49.0], +12.0, 0.5, "iql", rng)
    an = analysis.Analysis(final_evaluations=1, strata="phase1_seed", declared=True, primary_family=("effect",),
                           comparisons=("effect",), equivalence_margin=5.0)  # fmt: skip
    effects = analysis.effects(runs, {"effect": ("arm", "ref")}, an)
    verdicts = {e.verdict for e in effects if e.primary}
    assert len(verdicts) == 1
    final = analysis.primary_markdown(effects, an, (12, 12))
    interim = analysis.primary_markdown(effects, an, (11, 12))
    assert "(interim)" not in final and final == analysis.primary_markdown(effects, an)
    rows = [r for r in interim.splitlines() if "(interim)" in r]
    assert len(rows) == sum(e.primary for e in effects) == 1
    assert analysis.interim_note((12, 12)) == ""
    assert analysis.interim_note((11, 12)).startswith("**Interim: 11 of 12 cells")


def test_the_explorers_comparison_shows_each_checkpoint_beside_the_pooled_effect():
    from hrl_core.lab import widgets

    rng = np.random.default_rng(5)
    runs = _arms([50.0, 51.0, 49.0], +10.0, 0.5, "iql", rng)  # two checkpoints, three seeds each
    an = analysis.Analysis(final_evaluations=1, strata="phase1_seed", declared=True, primary_family=("effect",),
                           comparisons=("effect",), secondary_metrics=("regain",))  # fmt: skip
    effects = analysis.effects(runs, {"effect": ("arm", "ref")}, an)
    rows = widgets.comparison_rows(None, effects, "effect", ("iql", "hopper-medium-v2", 60.0))
    assert [r["metric"] for r in rows] == ["AUC", "AUC, checkpoint 1", "AUC, checkpoint 2", "steps to regain step 0"]
    pooled = next(e for e in effects if e.primary)
    assert [r["difference"] for r in rows[1:3]] == [c.estimate for c in pooled.per_checkpoint]
    assert all(r["verdict"] == "checkpoints agree" for r in rows[1:3])
    html = widgets.comparison_html(rows, "effect")
    steps = html.split("steps to regain")[1]
    assert "+0.0" not in steps and "+0<" in steps  # a whole number of steps, no empty interval
    assert "every seed equal on both sides" in steps  # and why there is none


def test_the_permutation_check_by_hand_and_against_every_labelling():
    """Exact stratified permutation p of the estimate: derived by hand where every arm seed beats every
    reference seed (only that labelling and its mirror are as extreme: 2 of C(6,3)^2 = 400, and 2 of 20
    with one checkpoint), equal to a brute-force enumeration of label assignments on uneven strata, and
    the random-relabelling path close to the exact one."""
    from itertools import combinations

    apart = [(np.array([10.0, 11, 12]), np.array([1.0, 2, 3])), (np.array([20.0, 21, 23]), np.array([5.0, 6, 8]))]
    both = verdicts.permutation_test(apart)
    assert both.exact and both.relabellings == 400 and both.p == pytest.approx(2 / 400) == both.smallest
    assert verdicts.permutation_test(apart[:1]).p == pytest.approx(2 / 20)

    rng = np.random.default_rng(4)
    strata = [(rng.normal(1, 1, 3), rng.normal(0, 2, 2)), (rng.normal(0.5, 1, 2), rng.normal(0, 1, 4))]
    observed = abs(verdicts.estimate(strata))
    per_stratum = []
    for a, b in strata:  # every way to label n_a of the stratum's seeds as the arm's
        pooled = np.concatenate([a, b])
        diffs = []
        for arm in combinations(range(len(pooled)), len(a)):
            mask = np.zeros(len(pooled), bool)
            mask[list(arm)] = True
            diffs.append(pooled[mask].mean() - pooled[~mask].mean())
        per_stratum.append(diffs)
    stats = [abs((x + y) / 2) for x in per_stratum[0] for y in per_stratum[1]]
    brute = np.mean([s >= observed - 1e-12 for s in stats])
    exact = verdicts.permutation_test(strata)
    assert exact.relabellings == 10 * 15 and exact.p == pytest.approx(brute)
    drawn = verdicts.permutation_test(strata, exact_limit=10, draws=40_000)
    assert not drawn.exact and abs(drawn.p - exact.p) < 0.01 and drawn.smallest == pytest.approx(1 / 40_001)


def test_a_verdict_the_permutation_check_cannot_reach_is_said_to_rest_on_the_calibration():
    """Every warm-started seed above every fresh one on both checkpoints at 3 vs 3 seeds x 2 checkpoints: the
    calibrated test may call it better, but no relabelling gives p below 2/400, 0.060 after Holm over the 12
    declared tests, and the note says the verdict rests on the calibration."""
    from hrl_core.lab.record import Record

    declared = Record.open(REPO / "params" / "study_review.yaml", "cql-hopper").analysis
    strata = [(np.array([60.0, 68, 65]), np.array([26.6, 25.3, 25.6])),
              (np.array([60.3, 54.2, 59.4]), np.array([29.0, 23.5, 26.1]))]  # fmt: skip
    design = verdicts.Design.of(strata)
    est = verdicts.estimate(strata)
    e = analysis.Effect("member init (warmstart - vanilla)", "warmstart", "vanilla", "cql", "hopper-medium-v2", 60.0,
                        "auc", True, design, est, (30.0, 50.0), (32.0, 48.0), 1e-4, 1.0, 0.05)  # fmt: skip
    e.permutation = verdicts.permutation_test(strata)
    analysis._verdicts([e], declared)
    assert e.verdict == "better" and e.p_holm == pytest.approx(12e-4)  # the declared test, Holm over 12
    assert e.permutation.p == pytest.approx(2 / 400) and e.p_permutation_holm == pytest.approx(12 * 2 / 400)
    note = analysis.permutation_note([e], declared)
    assert "0 of 1 better/worse verdicts also hold under it" in note
    assert "member init on CQL hopper k=60 rests on the calibration" in note and "0.060 after Holm over 12" in note
