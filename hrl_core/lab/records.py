"""Reading runs back: the reader's side of a run folder (the writer's is ``hrl_core.run.folder``).

A run is read from its folder in the results (``<save_dir>/<run_name>/config.json`` and
``metrics.json``). A record that is shared (committed beside its executed notebooks and
figures) keeps a compact copy of its runs -- those two files per run, no checkpoint or
snapshot -- under ``records/<save_dir name>/<run_name>/`` of the repository;
:func:`load_cells` reads a run from there when the results folder does not hold it
complete, so a fresh clone can explore, plot and re-analyse a record it did not run.
:func:`write_compact` makes that copy.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hrl_core.run import files

CONFIG, METRICS = "config.json", "metrics.json"
RECORDS = "records"  # the repository folder of committed compact runs


@dataclass
class Run:
    """One Phase II run folder, read back."""

    run_name: str
    algo: str
    dataset: str
    k: float
    bonus_type: str
    seed: int
    status: str
    metrics: dict
    data_kind: str  # provenance label of the offline data
    arm: str = ""  # the label the grid file gives this run (its arm; the bonus type in a grid without arms)
    config: dict = field(default_factory=dict, repr=False)  # the whole config.json
    source: str = ""  # the folder it was read from

    @property
    def steps(self) -> np.ndarray:
        return np.asarray(self.metrics["step"], dtype=float)

    @property
    def returns(self) -> np.ndarray:
        return np.asarray(self.metrics["normalized_return"], dtype=float)

    def series(self, key: str) -> list:
        """A per-point metric (None where a point has no value)."""
        return self.metrics.get(key) or [None] * len(self.metrics["step"])


def read_run(run_dir: Path, arm: str = "") -> Run | None:
    """A run folder with readable config.json and metrics.json and at least one point."""
    run_dir = Path(run_dir)
    try:
        metrics = files.read_json(run_dir / METRICS)
        config = files.read_json(run_dir / CONFIG)
    except (OSError, ValueError):
        return None
    if not isinstance(metrics, dict) or not metrics.get("step"):
        return None
    from hrl_core.run.folder import metrics_damage

    damage = metrics_damage(metrics, required=("step", "normalized_return"))
    if damage:  # never summarized nor drawn: reported as damaged (its status says why), not read as complete
        metrics = {**metrics, "status": "damaged", "damage": damage}
    s = config["settings"]
    return Run(
        run_name=run_dir.name,
        algo=s["algo"],
        dataset=s["env"],
        k=float(s["remove_top_k"]),
        bonus_type=s["bonus_type"],
        seed=int(s["seed"]),
        status=metrics.get("status", "running"),
        metrics=metrics,
        data_kind=config.get("provenance", {}).get("dataset", {}).get("kind", "unknown"),
        arm=arm,
        config=config,
        source=str(run_dir.parent),
    )


def record_dir(save_dir: str | Path) -> Path:
    """The committed compact copy of a results folder: ``records/<its name>`` in the repository."""
    from hrl_core import resources

    return resources.base_dir() / RECORDS / Path(save_dir).name


def record_dirs(cell) -> list[Path]:
    """Where a cell's complete run may be read besides its results folder, in order: the
    committed copy of its results folder, then the records its grid file reuses."""
    own = record_dir(cell.run_dir.parent)
    return [own] + [record_dir(name) for name in getattr(cell, "reuse", ()) if record_dir(name) != own]


def label(cell) -> str:
    """The label a run is read under: its arm; in a grid without arms, how it explores:
    ``ensemble`` (the spec's reward bonus), ``vanilla`` (none), or the explorer's name (e.g.
    ``ucb_action``, which adds no bonus although its folder name says ``ensemble``: folder names
    never change)."""
    if cell.arm:
        return cell.arm
    if cell.config.bonus_type != "ensemble":
        return "vanilla"
    return "ensemble" if cell.config.exploration == "reward_bonus" else cell.config.exploration


def load_cells(cells, records: bool = True) -> list[Run]:
    """The runs of a grid file's cells, each labelled (:func:`label`).

    A run shared by two grid files (the same settings and inputs) is read once per cell,
    so each record labels it its own way. ``records``: where the results folder does not
    hold a cell's run complete, the record's committed copy is read instead (if it has one)."""
    from hrl_core.lab import reuse

    out, checks = [], {}
    for cell in cells:
        run = read_run(cell.run_dir, arm=label(cell))
        if records and (run is None or run.status != "complete"):
            roots = record_dirs(cell)
            if cell.reuse:
                save_dir = cell.run_dir.parent
                checks.setdefault(save_dir, reuse.read(save_dir))
                if not reuse.allowed(cell, checks[save_dir]):
                    roots = roots[:1]  # its arm failed the reuse check: only this study's own runs
            for root in roots:
                kept = read_run(root / cell.run_name, arm=label(cell))
                if kept is not None and (run is None or kept.status == "complete"):
                    run = kept
                if run is not None and run.status == "complete":
                    break
        if run is not None:
            out.append(run)
    return out


def sources(found: list[Run]) -> list[str]:
    """The folders runs were read from (results folders and/or committed records)."""
    return sorted({r.source for r in found})


def write_compact(cells, to: Path | None = None, extra=("clean_levels.json", "reuse_check.json")) -> tuple[int, int]:
    """Copy config.json and metrics.json of the cells' complete runs into the record folder
    (``records/<save_dir name>``, or ``to``), with the results folder's ``extra`` files.

    Returns (runs copied, bytes written). Only complete runs are copied; a copy that is
    already there and identical is left alone."""
    copied, size = 0, 0
    roots = set()
    for cell in cells:
        src = Path(cell.run_dir)
        run = read_run(src)
        if run is None or run.status != "complete":
            continue
        dst = (Path(to) if to else record_dir(src.parent)) / cell.run_name
        dst.mkdir(parents=True, exist_ok=True)
        for name in (CONFIG, METRICS):
            if not (dst / name).exists() or (dst / name).read_bytes() != (src / name).read_bytes():
                shutil.copyfile(src / name, dst / name)
            size += (dst / name).stat().st_size
        roots.add((src.parent, dst.parent))
        copied += 1
    for src_root, dst_root in roots:
        for name in extra:
            if (src_root / name).exists():
                shutil.copyfile(src_root / name, dst_root / name)
                size += (dst_root / name).stat().st_size
    return copied, size
