"""``hrl plot``: the figures and the summary of a grid file's runs.

For the runs of a grid file's cells (a plain grid: the arms are the bonus types,
``ensemble`` and ``vanilla``), written as PNG + SVG (matplotlib) and HTML (plotly):

- ``finetune_curves_<algo>_<dataset>``, ``disagreement_<algo>_<dataset>``;
- ``sample_efficiency_<dataset>``: per seed, steps to the clean checkpoint's return and
  to regain the step-0 level after the dip (the thresholds that discriminate);
- ``summary.md`` / ``summary.csv``: per setting and arm the recovery metrics
  (:mod:`hrl_core.lab.summary`), and ensemble − vanilla with intervals and verdicts.

The numbers come from the same engine as ``hrl study``'s.
"""

from __future__ import annotations

import csv
from pathlib import Path

from hrl_core.errors import HrlError
from hrl_core.lab import clean_level, summary
from hrl_core.lab.figures import catalog, to_matplotlib, to_plotly
from hrl_core.lab.metrics import SUMMARY

SUMMARY_METRICS = SUMMARY  # hrl_core.lab.metrics


def plain_arms(runs) -> list[str]:
    """A plain grid's labels: vanilla, the spec's ensemble bonus, then any other explorer."""
    return ["vanilla", "ensemble"] + sorted({r.arm for r in runs} - {"vanilla", "ensemble"})


def write_summary(rows: list[dict], effects: list[dict], levels: dict, missing: list[str], out_dir: Path,
                  n_runs: int) -> tuple[Path, Path]:  # fmt: skip
    """summary.md (tables) and summary.csv (one row per setting and arm, plus its effects)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / "summary.csv", out_dir / "summary.md"
    by_setting = {(e["algo"], e["dataset"], e["k"], e["arm"]): e for e in effects}
    flat = []
    for row in rows:
        out = {k: v for k, v in row.as_dict().items() if not k.endswith("_each")}
        e = by_setting.get((row.algo, row.dataset, row.k, row.arm))
        for m in SUMMARY_METRICS if e else ():
            d = e[m]
            out.update({f"ens_minus_vanilla_{m}": d.estimate, f"{m}_ci_low": d.low, f"{m}_ci_high": d.high,
                        f"{m}_verdict": e[f"{m}_verdict"]})  # fmt: skip
        flat.append(out)
    keys = list(dict.fromkeys(k for row in flat for k in row))
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(flat)

    lines = [
        "# Phase II summary",
        "",
        f"{n_runs} runs read; numbers use complete runs only. Returns are D4RL-normalized. AUC = mean return over",
        "the run. The dip is the lowest evaluated return after step 0 (how far below step 0, at which step); steps",
        "to regain step 0 count from the start to the first evaluation after the dip back at the step-0 level",
        "(median over seeds with *not regained* counted at the budget; how many seeds regained); steps to the clean",
        "level are to the clean (k=0) Phase I return, and the spec's steps to 80% of it are kept for the record",
        "(*at step 0* means the checkpoint already starts above the line: no evidence of recovery).",
        "",
    ]
    kinds = sorted({row.data for row in rows})
    if any("not D4RL" in k or "unverified" in k or "generated" in k for k in kinds):
        lines += [f"**Offline data: {', '.join(kinds)}** — not the official D4RL files.", ""]
    lines += [clean_level.clean_levels_markdown(levels), "", summary.setting_markdown(rows), ""]
    lines += ["## Each method − vanilla", "",
              "Welch's 95% t-interval over seeds for returns and the dip (no interval below 2 seeds on a side); "
              "a verdict says better/worse only when the interval excludes 0, else inconclusive.", "",
              summary.effects_markdown(effects, SUMMARY_METRICS), ""]  # fmt: skip
    for note in (summary.steps_intervals_note(effects), summary.start_gap_note(effects)):
        if note:
            lines += [note, ""]
    if missing:
        lines += [f"## Missing cells ({len(missing)})", ""] + [f"- {m}" for m in missing]
    else:
        lines.append("No expected cell is missing.")
    md_path.write_text("\n".join(lines) + "\n")
    return md_path, csv_path


def write_all(rec, out_dir: Path, static: bool = True, html: bool = True) -> dict:
    """Every figure and the summary of a grid's record (a ``hrl_core.lab.record.Record``, or a list of
    a grid file's cells)."""
    from hrl_core.lab.record import Record

    if not isinstance(rec, Record):
        rec = Record.of_cells(Path("grid"), list(rec), whole={})
    if rec.is_study or any(c.arm for c in rec.cells):
        # Arms of a variants study share (algo, dataset, k, bonus): this summary would pool them.
        raise HrlError("this grid file has arms (a variants study): use hrl study --params with it")
    if html:
        try:
            import plotly  # noqa: F401 - the [lab] extra; a core install writes PNG/SVG only
        except ImportError:
            html = False
    runs, levels = rec.complete, rec.levels
    done = {r.run_name for r in runs}
    damaged = {r.run_name: r.metrics.get("damage") for r in rec.runs if r.status == "damaged"}
    missing = [c.run_name + (f" (damaged, left out: {damaged[c.run_name]})" if c.run_name in damaged else "")
               for c in rec.cells if c.run_name not in done]  # fmt: skip
    out_dir = Path(out_dir)
    rows = rec.rows()
    effects = rec.legacy_effects(SUMMARY_METRICS)
    figures = []
    drawn = rec.drawn
    for algo, dataset in sorted({(r.algo, r.dataset) for r in drawn}):
        figures += [catalog.curves(drawn, algo, dataset), catalog.exploration(drawn, algo, dataset)]
    for dataset in sorted({r.dataset for r in runs if r.status == "complete"}):
        figures.append(catalog.recovery(drawn, dataset, levels))
    written: list[Path] = []
    for fig in figures:
        if html:
            written.append(to_plotly.export_html(fig, out_dir))
        if static:
            written += to_matplotlib.save(fig, out_dir)
    written += list(write_summary(rows, effects, levels, missing, out_dir, len(rec.runs)))
    return {"runs": len(rec.runs), "files": written, "missing": missing, "rows": rows, "effects": effects,
            "html": html, "sources": rec.sources, "levels": levels}  # fmt: skip
