"""A record: one grid or study file (or one part of it) and its runs, read once.

Everything that shows a record -- the study notebook, ``hrl study``, ``hrl plot``, the digests
of README and docs, the explorer's widgets -- opens it here and renders from the one object:

    rec = Record.open("params/study_long.yaml", part="iql-hopper")
    rec.complete            # the complete runs (each labelled with its arm)
    rec.levels              # the clean (k=0) checkpoint's level per (algo, dataset)
    rec.rows()              # per setting and arm: the recovery metrics
    rec.effects()           # per comparison and setting: arm − reference (the declared analysis if any)
    rec.tidy()              # a pandas DataFrame, one row per run x evaluation: one groupby away

Opening: the grid file (``grids.load_grid``), the part's view of it (``study.part_spec``), its
cells and the cells of other parts its comparisons read (``grids.reference_cells``), their runs
(``records.load_cells``: the results folder, else the committed record, else a record the file
reuses), and the clean levels stored beside them (``clean_level.clean_levels``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from hrl_core.lab import clean_level, grids, records, study, summary
from hrl_core.lab.analysis import Analysis, stratum_of


def shown(path: str | Path, root: Path | None = None) -> str:
    """A path as a record prints it: relative to the repository (``records/results_long``,
    ``../shared/d4rl/hopper_medium-v2.hdf5``), so a record made on one machine reads the same on
    another; absolute only where it shares nothing with the repository's folder."""
    import os

    from hrl_core import resources

    root = root or resources.base_dir()
    p = Path(path)
    try:
        rel = os.path.relpath(p.resolve() if p.is_absolute() else p, root)
    except ValueError:  # another drive
        return str(p)
    return str(p) if rel.startswith(os.pardir + os.sep + os.pardir + os.sep) else rel


@dataclass
class Record:
    """One grid or study file (one part of it) and its runs."""

    params: Path
    whole: dict  # the grid file
    spec: dict  # the part's view of it (the whole file without a part)
    part: str
    save_dir: Path
    cells: list  # grids.Cell: the record's own cells
    references: list  # grids.Cell: runs of other parts its comparisons read (not run here)
    runs: list  # records.Run: every run found (complete or not)
    levels: dict = field(default_factory=dict)
    analysis: Analysis = field(default_factory=Analysis)
    _scenarios: list | None = field(default=None, repr=False, compare=False)
    _whole_file: tuple[list, list] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def open(cls, params: str | Path, part: str = "", save_dir: str | Path | None = None,
             evaluate_levels: bool = False) -> Record:  # fmt: skip
        """Read a record. ``save_dir``: the runs' folder (default the file's); ``evaluate_levels``:
        evaluate a clean checkpoint whose level is not stored yet (needs the checkpoints)."""
        from hrl_core import resources

        path = resources.params_file(params)
        whole = grids.load_grid(path)
        overrides = {"save_dir": str(save_dir)} if save_dir else None
        cells = grids.expand(whole, {"parts": [part]} if part else None, overrides)
        references = grids.reference_cells(whole, part, overrides) if part else []
        return cls.of_cells(path, cells, part, references, save_dir, evaluate_levels, whole)

    @classmethod
    def of_cells(cls, params: Path, cells: list, part: str = "", references=(), save_dir=None,
                 evaluate_levels: bool = False, whole: dict | None = None) -> Record:  # fmt: skip
        """A record of chosen cells of a grid file (``hrl plot``'s filters)."""
        whole = whole if whole is not None else grids.load_grid(params)
        spec = study.part_spec(whole, part) if part else whole
        runs = records.load_cells(list(cells) + list(references))
        root = Path(cells[0].config.save_dir) if cells else Path(save_dir or ".")
        complete = [r for r in runs if r.status == "complete"]
        levels = clean_level.clean_levels(complete, root, evaluate=evaluate_levels) if complete else {}
        if complete and len({stratum_of(r) for r in complete}) > 1:  # each checkpoint its own clean level too
            levels.update(clean_level.levels_by_checkpoint(complete, root))
        analysis = Analysis.from_spec(params, spec)
        if analysis.declared:  # Holm over the family the whole file declares, whatever this record holds
            from hrl_core.lab.analysis import family_tests

            size = family_tests(grids.expand(whole), study.comparisons_of(whole), analysis)
            analysis = dataclasses.replace(analysis, family_size=size)
        return cls(Path(params), whole, spec, part, root, list(cells), list(references), runs, levels, analysis)

    # -- what it is ------------------------------------------------------------------
    @property
    def is_study(self) -> bool:
        return "arms" in self.spec

    @property
    def name(self) -> str:
        return self.params.stem + (f"_{self.part}" if self.part else "")

    @property
    def complete(self) -> list:
        return [r for r in self.runs if r.status == "complete"]

    @property
    def drawn(self) -> list:
        """The runs a figure may draw (complete or unfinished; never a damaged one)."""
        return [r for r in self.runs if r.status != "damaged"]

    @property
    def arms(self) -> list[str]:
        """Arms in the file's order (a plain grid: vanilla, the spec's ensemble bonus, any explorer)."""
        if self.is_study:
            return list(self.spec["arms"])
        from hrl_core.lab.plot import plain_arms

        return plain_arms(self.runs)

    @property
    def comparisons(self) -> dict[str, tuple[str, str]]:
        if self.is_study:
            return study.comparisons_of(self.spec, self.arms)
        return {f"{arm} − vanilla": (arm, "vanilla") for arm in self.arms if arm != "vanilla"}

    @property
    def missing(self) -> list[str]:
        """Cells without a complete run (a damaged one says why)."""
        return study.missing_cells(self.cells + self.references, self.runs)

    @property
    def sources(self) -> list[str]:
        """The folders its runs were read from, as a record prints them."""
        return [shown(s) for s in records.sources(self.runs)]

    # -- its numbers -----------------------------------------------------------------
    def rows(self) -> list[dict]:
        return summary.setting_rows(self.complete, self.arms, self.levels, self.analysis.final_evaluations)

    def legacy_effects(self, metrics=None) -> list[dict]:
        """Per comparison and setting, Welch intervals and verdicts (records without a declared analysis)."""
        kw = {"metrics": metrics} if metrics else {}
        return summary.effect_rows(self.complete, self.comparisons, self.levels,
                                   final_evaluations=self.analysis.final_evaluations, **kw)  # fmt: skip

    def pooled(self, metric: str = "auc") -> list[dict]:
        """Per comparison, pooled over its settings (``summary.pooled_rows``)."""
        return summary.pooled_rows(self.complete, self.comparisons, metric, self.analysis.final_evaluations)

    def _whole_file_runs(self) -> tuple[list, list]:
        """The whole file's cells and complete runs, read once (a part's record reads the other parts'
        runs; the whole file's record has them already)."""
        if self._whole_file is None:
            whole = grids.expand(self.whole, None, {"save_dir": str(self.save_dir)})
            runs = self.complete
            if {c.run_name for c in whole} - {c.run_name for c in self.cells}:  # a part, or chosen cells
                runs = [r for r in records.load_cells(whole) if r.status == "complete"]
            self._whole_file = (whole, runs)
        return self._whole_file

    def study_progress(self) -> tuple[int, int]:
        """(complete, declared) cells of the *whole file*, whichever part this record shows. A declared
        analysis is final only when it is full: Holm counts the missing tests at p = 1 and the intervals
        are calibrated on the whole file's runs, so an arriving cell of any part can still move a verdict."""
        whole, runs = self._whole_file_runs()
        done = {r.run_name for r in runs}
        return sum(c.run_name in done for c in whole), len(whole)

    def scenarios(self) -> list:
        """The coverage scenarios a declared analysis calibrates its intervals on: the per-seed values
        of the *whole file's* runs, whichever part or cells this record shows. Like the Holm family,
        they belong to the study, not to the slice: a part's record, the whole study's and the
        explorer give one effect one interval (a part calibrated on its own runs alone was narrower
        and could read "worse" where the whole study reads "inconclusive")."""
        if self._scenarios is None:
            from hrl_core.lab import analysis

            _, runs = self._whole_file_runs()
            comparisons = study.comparisons_of(self.whole) if "arms" in self.whole else self.comparisons
            self._scenarios = analysis.scenarios_from(runs, comparisons, self.analysis.primary_metric,
                                                      self.analysis.final_evaluations)  # fmt: skip
        return self._scenarios

    def effects(self, scenarios=None) -> list:
        """The declared analysis's effects (``hrl_core.lab.analysis.effects``), calibrated on the
        whole file's scenarios (:meth:`scenarios`) unless others are given."""
        from hrl_core.lab import analysis

        if scenarios is None and self.analysis.declared:
            scenarios = self.scenarios()
        return analysis.effects(self.complete, self.comparisons, self.analysis, self.levels, scenarios)

    def tidy(self):
        """One row per run x evaluation point, settings and arm as columns (pandas)."""
        import pandas as pd

        from hrl_core.lab.analysis import stratum_of

        rows = []
        for r in self.runs:
            s = r.config.get("settings", {})
            keys = [k for k, v in r.metrics.items() if isinstance(v, list) and len(v) == len(r.metrics["step"])]
            for i, step in enumerate(r.metrics["step"]):
                row = {"run": r.run_name, "arm": r.arm, "algo": r.algo, "dataset": r.dataset, "k": r.k,
                       "seed": r.seed, "phase1_seed": stratum_of(r), "status": r.status, "step": step,
                       "bonus_type": r.bonus_type, "member_init": s.get("member_init"),
                       "bonus_scale": s.get("bonus_scale"), "bonus_coeff": s.get("bonus_coeff")}  # fmt: skip
                for key in keys:
                    v = r.metrics[key][i]
                    if key != "step" and (v is None or isinstance(v, (int, float))):
                        row[key] = math.nan if v is None else v
                rows.append(row)
        return pd.DataFrame(rows)
