"""A variants study (a grid file with ``arms:``, e.g. params/study_long.yaml): what the study
notebook (notebooks/study.ipynb) shows, as pure functions of the grid file and its runs.

A run belongs to the study when it is one of the grid file's cells (runs are named by their
settings, so a run shared with another record is read here under this file's arm label).
The numbers are the summary engine's (:mod:`hrl_core.lab.summary`): per setting and arm the
recovery metrics, per comparison (``comparisons: {label: [arm, reference]}``, default every
arm against ``vanilla``) arm − reference with intervals and verdicts, per setting and pooled.
A grid file with ``parts:`` is analysed one part at a time (``hrl study --part``).
"""

from __future__ import annotations

import math

import numpy as np

from hrl_core.lab import metrics, stats, summary
from hrl_core.lab.figures import catalog, to_matplotlib

REFERENCE_ARM = summary.REFERENCE_ARM


def comparisons_of(spec: dict, arms: list[str] | None = None) -> dict[str, tuple[str, str]]:
    """The grid file's comparisons (label -> (arm, reference)), those between ``arms`` when given;
    default every arm vs vanilla."""
    if spec.get("comparisons"):
        pairs = {label: (pair[0], pair[1]) for label, pair in spec["comparisons"].items()}
    else:
        pairs = {f"{arm} − {REFERENCE_ARM}": (arm, REFERENCE_ARM) for arm in spec["arms"] if arm != REFERENCE_ARM}
    return {k: v for k, v in pairs.items() if arms is None or set(v) <= set(arms)}


def part_spec(spec: dict, part: str = "") -> dict:
    """The grid file as one part's record sees it: its own axes and arms, then the arms it reads
    from other parts for its comparisons (``compare_with``, listed under ``reference_arms``);
    the whole file without a part."""
    if not part:
        return spec
    from hrl_core.errors import HrlError
    from hrl_core.lab import grids

    if part not in (spec.get("parts") or {}):
        raise HrlError(f"no part {part!r} in this grid file; its parts: {', '.join(spec.get('parts') or {}) or 'none'}")
    sub = grids.part_grid(spec, part)
    references = spec["parts"][part].get("compare_with") or []
    if references:
        sub["arms"] = {**sub["arms"], **{a: spec["arms"][a] for a in references}}
        sub["reference_arms"] = list(references)
    sub["part"] = part
    return sub


# --------------------------------------------------------------------------------------
# What the study is, and what it has
# --------------------------------------------------------------------------------------
def _budget_text(settings: dict, shared: dict | None = None) -> list[str]:
    """``shared``: the grid file's shared settings, which an algorithm's own settings extend."""
    from hrl_core.run.config import FinetuneConfig

    parts = []
    if "online_steps" in settings:
        parts.append(f"{settings['online_steps']:,} online steps")
    if "eval_interval" in settings:
        episodes = settings.get("eval_episodes", (shared or {}).get("eval_episodes", FinetuneConfig.eval_episodes))
        parts.append(f"evaluation every {settings['eval_interval']:,} steps ({episodes} episodes)")
    return parts


def design_markdown(spec: dict) -> str:
    """What a study grid file asks for: description, axes, budget, cost, arms, comparisons."""
    settings = spec.get("settings") or {}
    ks = ", ".join(f"{k:g}" for k in spec["remove_top_k"])
    parts = [
        f"algorithm {', '.join(spec['algos'])}",
        f"data {', '.join(spec['datasets'])}",
        f"k ∈ {{{ks}}}",
        f"online seeds {', '.join(str(s) for s in spec['seeds'])}" + _part_seeds_text(spec),
    ]
    if spec.get("phase1_seeds"):
        seeds = ", ".join(str(s) for s in spec["phase1_seeds"])
        parts.append(f"every online seed from each of the Phase I checkpoints of seeds {seeds}")
    parts += _budget_text(settings)
    for algo, extra in (spec.get("algo_settings") or {}).items():
        if algo in spec["algos"] and _budget_text(extra):
            parts.append(f"{algo}: " + ", ".join(_budget_text(extra, settings)))
    if settings.get("phase1_seed") is not None:
        parts.append(f"every seed starts from the Phase I checkpoint of seed {settings['phase1_seed']}")
    title = spec.get("description", "Study") + (f" — part `{spec['part']}`" if spec.get("part") else "")
    lines = [f"**{title}**: " + "; ".join(parts) + "."]
    if spec.get("cpu_hours"):
        lines[0] += f" Stated cost (whole grid file): {spec['cpu_hours']} CPU-hours."
    lines += ["", "| arm | settings |", "|---|---|"]
    for arm, arm_settings in spec["arms"].items():
        text = ", ".join(f"`{k}={v}`" for k, v in (arm_settings or {}).items()) or "the shared settings"
        if arm in spec.get("reference_arms", ()):
            text += " (a reference: its runs belong to another part and are read here, not run)"
        lines.append(f"| `{arm}` | {text} |")
    lines += ["", "| effect | arm − reference |", "|---|---|"]
    for label, (arm, ref) in comparisons_of(spec, list(spec["arms"])).items():
        lines.append(f"| {label} | `{arm}` − `{ref}` |")
    return "\n".join(lines)


def _part_seeds_text(spec: dict) -> str:
    """The parts whose online seeds differ from the file's (the whole study's design names them)."""
    if spec.get("part"):
        return ""  # a part's view: its seeds are already the part's
    other = {name: part["seeds"] for name, part in (spec.get("parts") or {}).items()
             if (part or {}).get("seeds") is not None and list(part["seeds"]) != list(spec["seeds"])}  # fmt: skip
    if not other:
        return ""
    return " (" + "; ".join(f"part {name}: {', '.join(str(s) for s in seeds)}" for name, seeds in other.items()) + ")"


def missing_cells(cells, found) -> list[str]:
    """Run names of the grid's cells without a complete run folder."""
    done = {r.run_name for r in found if r.status == "complete"}
    damaged = {r.run_name: r.metrics.get("damage") for r in found if r.status == "damaged"}
    return [f"{c.run_name} ({c.arm}" + (f"; damaged, left out: {damaged[c.run_name]})" if c.run_name in damaged
                                         else ")") for c in cells if c.run_name not in done]  # fmt: skip


def completeness_markdown(cells, complete, missing: list[str], references=()) -> str:
    """How many of the record's own cells are complete, and of the reference runs it reads."""
    own = {c.run_name for c in cells}
    line = f"**{sum(r.run_name in own for r in complete)} of {len(cells)} cells complete.**"
    if references:
        read = {r.run_name for r in complete} & {c.run_name for c in references}
        arms = ", ".join(f"`{a}`" for a in dict.fromkeys(c.arm for c in references))
        line += (f" References read from other parts of the grid file ({arms}, not run here): "
                 f"{len(read)} of {len(references)} complete.")  # fmt: skip
    if missing:
        shown = ", ".join(f"`{m}`" for m in missing[:12]) + (" …" if len(missing) > 12 else "")
        line += f" Missing or unfinished ({len(missing)}; the numbers below leave them out): {shown}"
    return line


def provenance_markdown(found) -> str:
    """Where the data, checkpoints and code came from, read from the runs' config.json."""
    datasets, checkpoints, budgets, commits = {}, {}, set(), {}
    for r in found:
        ds = r.config["provenance"]["dataset"]
        datasets[(ds.get("path"), ds.get("sha256"))] = ds.get("kind", "unknown")
        ck = r.config["provenance"]["phase1_checkpoint"]
        checkpoints[(ck["path"], ck["sha256"])] = ck.get("gradient_steps")
        s = r.config["settings"]
        budgets.add((r.algo, s["online_steps"], s["eval_interval"], s["eval_episodes"], s["n_ensemble"]))
        commit = (r.config.get("versions") or {}).get("git_commit") or "unknown"
        commits[commit] = commits.get(commit, 0) + 1
    from hrl_core.lab.record import shown

    lines = ["**Offline data** (as recorded in each run's `config.json`; paths relative to the repository):"]
    lines += [f"- `{shown(p)}` (sha256 `{h[:12]}…`): **{kind}**" for (p, h), kind in sorted(datasets.items())]
    lines.append("\n**Phase I checkpoints:**")
    lines += [f"- `{shown(p)}` (sha256 `{h[:12]}…`, {n:,} gradient steps)"
              for (p, h), n in sorted(checkpoints.items())]  # fmt: skip
    lines.append("\n**Budget** (algo: online steps, eval interval, eval episodes, N):")
    lines += [f"- {b[0]}: {b[1]:,} / {b[2]:,} / {b[3]} / {b[4]}" for b in sorted(budgets)]
    lines.append("\n**Code** (git commit recorded by the runs): " +
                 ", ".join(f"`{c[:12]}` ({n} runs)" for c, n in sorted(commits.items())))  # fmt: skip
    sources = sorted({shown(r.source) for r in found})
    if sources:
        lines.append("\n**Read from:** " + ", ".join(f"`{s}`" for s in sources))
    if any(not k.startswith("D4RL v2 layout") for k in datasets.values()):
        lines.append(
            "\n> **Not D4RL.** The offline data above are stand-ins in the D4RL layout (see their `kind`); "
            "numbers here describe the method on these data, not on D4RL."
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Conclusion
# --------------------------------------------------------------------------------------
def conclusion_markdown(effects: list[dict], pooled: list[dict], rows: list[dict]) -> str:
    """What the effect tables support, said plainly; 'inconclusive' where it is."""
    if not effects:
        return "No comparison has complete runs on both sides yet: nothing to conclude."
    out = []
    for p in pooled:
        label = p["comparison"]
        mine = [e for e in effects if e["comparison"] == label]
        md = p["pooled"].mean_difference
        if p["verdict"] == "better":
            reading = f"**helps** on average ({md.text()} AUC points, 95% CI excludes 0)"
        elif p["verdict"] == "worse":
            reading = f"**hurts** on average ({md.text()} AUC points, 95% CI excludes 0)"
        elif p["verdict"] == "no interval":
            reading = "**no interval** (fewer than 2 seeds in a setting)"
        else:
            reading = f"**inconclusive** on average ({md.text()} AUC points, the 95% CI spans 0)"
        per = []
        for m in summary.HEADLINE:
            counts = {v: sum(e[f"{m}_verdict"] == v for e in mine) for v in ("better", "worse", "inconclusive")}
            per.append(f"{summary.BY_KEY[m].label} {counts['better']}/{counts['worse']}/{counts['inconclusive']}")
        poi = p["pooled"].probability_of_improvement
        out.append(f"- **{label}**: {reading}; per setting (better/worse/inconclusive of {len(mine)}): "
                   f"{', '.join(per)}; P(arm > reference) = {poi.text(2, False)}.")  # fmt: skip
    ratios = [r for r in rows if np.isfinite(r.bonus_reward_ratio) and r.bonus_reward_ratio > 0]
    if ratios:
        by_arm: dict[str, list] = {}
        for r in ratios:
            by_arm.setdefault(r.arm, []).append(r)
        parts = [f"{arm} {np.mean([r.bonus_reward_ratio for r in v]):.3f} "
                 f"({stats.nanmean([r.bonus_ratio_first for r in v]):.3f} → "
                 f"{stats.nanmean([r.bonus_ratio_last for r in v]):.3f})" for arm, v in by_arm.items()]  # fmt: skip
        out.append("- Measured bonus / env reward (mean over settings; first → last interval): " + ", ".join(parts))
    trends = [r for r in rows if np.isfinite(r.disagreement_trend)]
    if trends:
        fell = sum(r.disagreement_trend < 1 for r in trends)
        out.append(
            f"- Disagreement fell from the first to the last interval in {fell} of {len(trends)} (setting, arm) "
            "groups (mean over seeds); the spec expects it to fall as the ensemble learns the online data."
        )
    above = [r for r in rows if np.isfinite(r.clean_level) and r.final_mean > r.clean_level]
    known = [r for r in rows if np.isfinite(r.clean_level)]
    if known:
        out.append(f"- Ending above the clean checkpoint's return (mean final > clean level): {len(above)} of "
                   f"{len(known)} (setting, arm) groups" + (": " + ", ".join(
                       f"{r.algo} {r.dataset.split('-')[0]} k={r.k:g} {r.arm} ({r.final_mean:.1f} vs "
                       f"{r.clean_level:.1f})" for r in above) if above else "") + ".")  # fmt: skip
    n_seeds = sorted({e["n_arm"] for e in effects} | {e["n_reference"] for e in effects})
    out.append(
        f"- Seeds per arm and setting: {', '.join(map(str, n_seeds))}. A verdict needs the interval to exclude "
        "0; everything else is inconclusive, not evidence of no effect. Stand-in data, not D4RL."
    )
    return "\n".join(out)


# --------------------------------------------------------------------------------------
# Diagnostics
# --------------------------------------------------------------------------------------
RATIO = metrics.RATIO


def _ratio(a: list, b: list) -> list:
    """x / y per interval, None where y gives no scale (<= 0: a signed halfcheetah reward)."""
    return [None if x is None or y is None or y <= 0 else x / y for x, y in zip(a, b, strict=True)]


MULTIPLIER = metrics.MULTIPLIER


def _multiplier(r) -> list:
    """The bonus normalizer's factor per interval, bonus / (lambda * std(Q)) of the interval means
    (1 for the raw bonus, 1 - gamma for ``horizon``; ``normalized``'s running |r| / running |Q|), None
    without a bonus. From the logged means, so runs made before it was logged show it too."""
    s = r.config.get("settings", {})
    if s.get("bonus_type") != "ensemble" or s.get("exploration", "reward_bonus") != "reward_bonus":
        return [None] * len(r.steps)
    coeff = float(s.get("bonus_coeff") or 0)
    return [None if b is None or d is None or coeff * d <= 0 else b / (coeff * d)
            for b, d in zip(r.series("bonus_mean"), r.series("ensemble_disagreement"), strict=True)]  # fmt: skip


def _fresh_minus_loaded(q_members: list) -> list:
    """Mean Q of the fresh members (2..N-1) minus that of the loaded ones (0, 1)."""
    return [None if q is None or len(q) < 3 else float(np.mean(q[2:]) - np.mean(q[:2])) for q in q_members]


# (name, fn(run) -> per-point values, y scale, pooled(runs, index=None) -> the seeds' value in one
# interval or over the run, or None: the mean over seeds). A ratio is pooled (mean bonus / mean
# reward), so a seed whose reward is near 0 in an interval does not swamp the arm's value.
DIAGNOSTICS = (
    (RATIO, lambda r: _ratio(r.series("bonus_mean"), r.series("reward_mean")), "log", summary.pooled_bonus_ratio),
    ("disagreement std(Q)", lambda r: r.series("ensemble_disagreement"), "log", None),
    ("critic loss", lambda r: r.series("critic_loss_avg"), "log", None),
    ("mean Q: fresh − loaded", lambda r: _fresh_minus_loaded(r.series("q_member_avg")), "linear", None),
    ("mean Q, loaded members",
     lambda r: [None if q is None else float(np.mean(q[:2])) for q in r.series("q_member_avg")], "linear", None),
    (MULTIPLIER, lambda r: _multiplier(r), "log", None),
)  # fmt: skip


def diagnostics_rows(found, arms: list[str] | None = None) -> list[dict]:
    """Per (setting, arm), means over seeds of the diagnostics in the first evaluation
    interval (where the fresh-member trap acts) and over the whole run."""
    groups = summary.groups(found)
    rows = []
    for algo, dataset, k in summary.settings_of(groups):
        for arm in summary.arms_in_order([r for r in found if r.status == "complete"], arms):
            g = groups.get((algo, dataset, k, arm))
            if g is None:
                continue
            row = {"algo": algo, "dataset": dataset, "k": k, "arm": arm}
            for name, fn, _, pooled in DIAGNOSTICS:
                if pooled is not None:
                    row[f"{name} | first"], row[f"{name} | run"] = pooled(g.runs, 1), pooled(g.runs)
                    continue
                n = min(len(r.steps) for r in g.runs)
                y = np.array([[np.nan if v is None else v for v in fn(r)[:n]] for r in g.runs], float)
                row[f"{name} | first"] = float(stats.nanmean(y[:, 1])) if n > 1 else math.nan
                row[f"{name} | run"] = float(stats.nanmean(y[:, 1:])) if n > 1 else math.nan
            rows.append(row)
    return rows


def diagnostics_markdown(rows: list[dict]) -> str:
    if not rows:
        return "No runs yet."
    names = [name for name, *_ in DIAGNOSTICS]

    def cell(a, b):
        return f"{a:.3g} / {b:.3g}" if np.isfinite(a) else "—"

    columns = ["algo", "dataset", "k", "arm"] + [f"{n}: first / run" for n in names]
    return summary.table(columns, [
        [r["algo"], r["dataset"], f"{r['k']:g}", r["arm"]] + [cell(r[f"{n} | first"], r[f"{n} | run"]) for n in names]
        for r in rows
    ])  # fmt: skip


def forest_rows(effects) -> list[tuple[str, float, float, float, str]]:
    """(label, estimate, low, high, verdict) per effect and setting of the primary metric: the declared
    analysis's effects (``analysis.Effect``), or the Welch rows of a record without one (AUC)."""
    out = []
    for e in effects:
        if isinstance(e, dict):  # summary.effect_rows
            d = e["auc"]
            label = f"{e['comparison'].split(' (')[0]} | {e['algo'].upper()} {e['dataset'].split('-')[0]} k={e['k']:g}"
            out.append((label, d.estimate, d.low, d.high, e["auc_verdict"]))
        elif e.primary:
            out.append((f"{e.comparison.split(' (')[0]} | {e.setting}", e.estimate, e.ci[0], e.ci[1], e.verdict))
    return out


def forest_figure(effects, analysis=None, name: str = "study_forest"):
    rows = forest_rows(effects)
    declared = analysis is not None and analysis.declared
    what = (f"primary metric, calibrated {analysis.level} interval, verdict after Holm" if declared
            else "AUC, Welch nominal 95% interval (descriptive), uncorrected verdict")  # fmt: skip
    margin = analysis.equivalence_margin if declared else None
    title = f"Effects per setting ({what}" + (f"; shaded: ±{margin:g} equivalence margin)" if margin else ")")
    return catalog.forest(rows, "AUC (normalized points)", title, margin, name)


def figures(found, arms: list[str], levels: dict, figures_dir=None, effects=None, analysis=None,
            composite: bool = False) -> list[tuple[str, bytes]]:  # fmt: skip
    """The study's figures as PNG bytes (to show inline), also written as PNG/SVG (300 dpi): every
    seed's return curve and the mean; the forest plot of its effects (when given); the diagnostics;
    recovery per seed. ``composite``: the whole study's record, whose return curves (every setting of the
    study, a panel each) are its composite figure."""
    figs = [catalog.study_curves(found, arms), catalog.study_diagnostics(found, arms, DIAGNOSTICS)]
    if effects:
        figs.append(forest_figure(effects, analysis))
    figs += [catalog.recovery(found, ds, levels) for ds in sorted({r.dataset for r in found})]
    out = []
    for fig in figs:
        if figures_dir:
            to_matplotlib.save(fig, figures_dir)
        out.append((fig.name, to_matplotlib.png_bytes(fig)))
    return out


def declared_conclusion(effects, analysis) -> str:
    """What the declared analysis supports, effect by effect: the verdict after Holm, what the
    interval still allows, what the design could detect, and whether the checkpoints agree."""
    primary = [e for e in effects if e.primary]
    if not primary:
        return "No effect of the primary family has complete runs on both sides yet: nothing to conclude."
    out = []
    for label in dict.fromkeys(e.comparison for e in primary):
        mine = [e for e in primary if e.comparison == label]
        counts = {v: sum(e.verdict == v for e in mine) for v in ("better", "worse", "equivalent", "inconclusive")}
        parts = []
        for e in mine:
            text = f"{e.setting}: **{e.verdict}** ({e.estimate:+.1f} [{e.ci[0]:+.1f}, {e.ci[1]:+.1f}]"
            if e.verdict == "inconclusive":
                text += f"; effects up to {e.largest_not_excluded:.1f} not excluded, detectable ≈ {e.detectable:.1f}"
                if math.isfinite(e.detectable_holm):
                    text += f" ({e.detectable_holm:.1f} after Holm)"
            if len(e.per_checkpoint) > 1:
                text += f"; checkpoints {e.agreement}"
            parts.append(text + ")")
        tally = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
        out.append(f"- **{label}** ({tally} of {len(mine)} settings): " + "; ".join(parts) + ".")
    out.append(
        f"- A verdict is better/worse only when the Holm-adjusted p is below {analysis.alpha:g}; *equivalent* only "
        f"when both one-sided tests reject ±{analysis.equivalence_margin:g} points after Holm. Everything else is "
        "inconclusive, which is not evidence of no effect. Stand-in data, not D4RL."
    )
    return "\n".join(out)


def secondary_markdown(effects) -> str:
    """The secondary metrics, labelled so: estimates and uncorrected intervals."""
    rows = [e for e in effects if not e.primary]
    if not rows:
        return ""

    def difference(e) -> str:
        if summary.BY_KEY[e.metric].unit == "steps":  # censored: says why where there is no interval
            return summary._steps_diff(stats.Diff(e.estimate, *e.ci, method=e.method))
        return f"{e.estimate:+.1f} [{e.ci[0]:+.1f}, {e.ci[1]:+.1f}]"

    # returns at 1 - alpha (Welch-Satterthwaite); steps at 95% (their calibrated nominal, hrl_core.lab.stats)
    level = stats.percent(1 - rows[0].alpha)
    header = f"difference [{level} interval]" + ("" if level == "95%" else "; steps: 95%")
    return summary.table(
        ["effect", "setting", "metric (secondary, uncorrected)", header, "verdict"],
        [[e.comparison, e.setting, summary.BY_KEY[e.metric].label, difference(e), e.verdict] for e in rows],
    )


def iqm_markdown(effects, min_runs: int) -> str:
    """IQM difference and probability of improvement per setting (rliable's definitions, stratified
    bootstrap over checkpoints), where a side has at least ``min_runs`` runs."""
    rows = [e for e in effects if e.primary and e.iqm is not None]
    if not rows:
        return f"_IQM and probability of improvement: shown where a side has ≥ {min_runs} runs (none yet)._"
    return summary.table(
        ["effect", "setting", "IQM difference [interval]", "P(arm > reference) [interval]"],
        [[e.comparison, e.setting, f"{e.iqm.text()} ({e.iqm.method})", f"{e.poi.text(2, False)} ({e.poi.method})"]
         for e in rows],
    )  # fmt: skip
