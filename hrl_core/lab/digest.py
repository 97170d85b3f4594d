"""Digests of committed records for README.md and docs/results.md, generated, never copied.

A digest is a markdown block between ``<!-- digest:NAME -->`` and ``<!-- /digest:NAME -->``
in a document, computed by the summary engine from a record's runs (the results folder, else
the committed copy in ``records/``). ``python -m hrl_core.lab.digest`` rewrites every block
of README.md and docs/*.md from the records; a test fails when a block differs from what
the records give, so the numbers in the documents cannot drift from the records.

Block names: ``effects:<grid file stem>[:<part>]`` (arm − reference per setting on AUC,
final return, dip depth and steps to regain, with intervals and verdicts),
``exploration:<stem>[:<part>]`` (the measured bonus / reward, its drift, mean Q, the
disagreement trend, and the groups that end above the clean level), ``completeness:<stem>``,
and ``notebook:<executed notebook>#<heading>`` (a section's tables of an executed record).
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import replace
from pathlib import Path

from hrl_core import resources
from hrl_core.errors import HrlError
from hrl_core.lab import analysis, records, study, summary
from hrl_core.lab.record import Record

BLOCK = re.compile(r"(<!-- digest:(?P<name>[^ ]+) -->\n)(?P<body>.*?)(<!-- /digest:(?P=name) -->)", re.S)
METRICS = summary.HEADLINE  # hrl_core.lab.metrics


def _record(stem: str, part: str = "") -> Record:
    return Record.open(resources.folder("params") / f"{stem}.yaml", part)


def _cell(d, metric: str, verdict: str) -> str:
    text = summary._steps_diff(d) if summary.BY_KEY[metric].unit == "steps" else d.text()
    mark = {"better": " **better**", "worse": " **worse**", "no interval": ""}.get(verdict, f" {verdict}")
    return text + mark


def effects_block(stem: str, part: str = "") -> str:
    rec = _record(stem, part)
    arms = list(rec.spec["arms"]) if "arms" in rec.spec else None
    comparisons = study.comparisons_of(rec.spec, arms) if arms else {"ensemble − vanilla": ("ensemble", "vanilla")}
    effects = summary.effect_rows(rec.complete, comparisons, rec.levels, METRICS, rec.analysis.final_evaluations)
    if not effects:
        return "_No comparison has complete runs on both sides yet._\n"
    columns = ["effect", "setting", "seeds"] + [f"{summary.BY_KEY[m].label} [interval]" for m in METRICS]
    body = [[e["comparison"], f"{e['algo'].upper()} {e['dataset'].split('-')[0]} k={e['k']:g}",
             f"{e['n_arm']} vs {e['n_reference']}"] + [_cell(e[m], m, e[f"{m}_verdict"]) for m in METRICS]
            for e in effects]  # fmt: skip
    note = summary.steps_intervals_note(effects)
    gaps = summary.start_gap_note(effects)
    return (
        summary.table(columns, body)
        + "\n\n"
        + " ".join(
            [
                "Returns and the dip: Welch nominal 95% t-interval over seeds (uncorrected and descriptive: on these "
                "records' lumpy per-seed values it covers as little as 0.72, docs/statistics.md); dip depth: lower is "
                "better.",
                note,
            ]
        ).strip()
        + "\n"
        + (f"\n{gaps}\n" if gaps else "")
    )


def exploration_block(stem: str, part: str = "") -> str:
    rec = _record(stem, part)
    levels = rec.levels
    arms = list(rec.spec.get("arms") or []) or None
    rows = summary.setting_rows(rec.complete, arms, levels, rec.analysis.final_evaluations)
    if not rows:
        return "_No complete runs yet._\n"
    columns = ["setting", "arm", "seeds", "step 0 → final", "clean level", "ends above clean", "bonus / reward: run",
               "first → last interval", "mean Q: first → last", "disagreement last/first (fell)"]  # fmt: skip

    def f(v, fmt=".3f"):
        return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

    body = [[f"{r.algo.upper()} {r.dataset.split('-')[0]} k={r.k:g}", r.arm, r.n_seeds,
             f"{r.step0_return:.1f} → {r.final_mean:.1f}", levels[(r.algo, r.dataset)].text(),
             "—" if math.isnan(r.clean_level) else ("yes" if r.final_mean > r.clean_level else "no"),
             f(r.bonus_reward_ratio), f"{f(r.bonus_ratio_first)} → {f(r.bonus_ratio_last)}",
             f"{f(r.mean_q_first, '.0f')} → {f(r.mean_q_last, '.0f')}",
             f"{f(r.disagreement_trend, '.2f')} ({r.disagreement_fell})"] for r in rows]  # fmt: skip
    return summary.table(columns, body) + "\n"


def completeness_block(stem: str, part: str = "") -> str:
    rec = _record(stem, part)
    spec, cells, complete = rec.spec, rec.cells, rec.complete
    root = resources.base_dir()
    shown = [Path(s).relative_to(root) if Path(s).is_relative_to(root) else Path(s) for s in records.sources(complete)]
    where = ", ".join(f"`{s}`" for s in shown) or "nowhere yet"
    own = {c.run_name for c in cells}
    done, read = sum(r.run_name in own for r in complete), sum(r.run_name not in own for r in complete)
    also = f"; with {read} reference run(s) of other parts ({', '.join(spec['reference_arms'])})" if read else ""
    return f"{done} of {len(cells)} cells complete (runs read from {where}){also}.\n"


def _slug(heading: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")


def notebook_block(where: str) -> str:
    """The markdown outputs under one heading of an executed record, as the record shows them:
    ``notebook:<path from the repository root>#<heading slug>`` (e.g.
    ``notebook:executed/study_iql.ipynb#pooled-over-settings``). For records whose runs are
    not committed: the numbers still come from the record, never from a hand copy."""
    path, _, slug = where.partition("#")
    nb = json.loads((resources.base_dir() / path).read_text())
    found, inside = [], False
    for cell in nb["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            if source.startswith("#"):
                inside = _slug(source.splitlines()[0].lstrip("#")) == slug
            continue
        if inside:
            found += ["".join(o["data"]["text/markdown"]).strip() for o in cell.get("outputs", [])
                      if "text/markdown" in o.get("data", {})]  # fmt: skip
    if not found:
        raise HrlError(f"{path} has no heading #{slug} with markdown output; check the digest name")
    return "\n\n".join(found) + "\n"


def primary_block(stem: str, part: str = "") -> str:
    """The declared analysis's answer: the primary table and how to read it."""
    rec = Record.open(resources.folder("params") / f"{stem}.yaml", part)
    if not rec.analysis.declared:
        raise HrlError(f"digest primary:{stem}: params/{stem}.yaml declares no analysis")
    found, progress = rec.effects(), rec.study_progress()
    note = analysis.primary_note(found, rec.analysis, progress=progress)
    return analysis.primary_markdown(found, rec.analysis, progress) + "\n\n" + note + "\n"


def reanalysis_block(stem: str, declaring: str = "") -> str:
    """A record read under another study file's declared analysis (``reanalysis:study_long:study_review``):
    the same runs, that file's primary metric, family, margin, calibration and final-return rule."""
    rec = Record.open(resources.folder("params") / f"{stem}.yaml")
    other = Record.open(resources.folder("params") / f"{declaring}.yaml")
    declared = replace(other.analysis, comparisons=tuple(rec.comparisons), strata="phase1_seed")
    rec.analysis = declared
    comparisons = {k: v for k, v in rec.comparisons.items() if declared.in_family(k)}
    found = analysis.effects(rec.complete, comparisons, declared, rec.levels)
    note = analysis.primary_note(found, declared, f"params/{declaring}.yaml")
    return analysis.primary_markdown(found, declared) + "\n\n" + note + "\n"


MAKERS = {"effects": effects_block, "exploration": exploration_block, "completeness": completeness_block,
          "primary": primary_block, "reanalysis": reanalysis_block}  # fmt: skip


def render(name: str) -> str:
    kind, _, rest = name.partition(":")
    if kind == "notebook":
        return notebook_block(rest)
    if kind not in MAKERS:
        raise HrlError(f"unknown digest {name!r}: its kind is one of notebook, {', '.join(MAKERS)}")
    stem, _, part = rest.partition(":")
    return MAKERS[kind](stem, part)


def refresh(path: Path, check_only: bool = False) -> list[str]:
    """Rewrite the digest blocks of one document; returns the names of blocks that changed."""
    text = path.read_text()
    changed = []

    def sub(m):
        new = render(m.group("name"))
        if new != m.group("body"):
            changed.append(m.group("name"))
        return m.group(1) + new + m.group(4)

    out = BLOCK.sub(sub, text)
    if changed and not check_only:
        path.write_text(out)
    return changed


def documents() -> list[Path]:
    root = resources.base_dir()
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def main(argv=None) -> int:
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    stale = {str(p): refresh(p, check) for p in documents() if p.exists()}
    for doc, names in stale.items():
        for name in names:
            print(f"{'stale' if check else 'rewrote'}: {doc} {name}")
    return 1 if check and any(stale.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
