"""Helpers that keep the notebooks thin: the parameters cell, parameters -> config, the record.

The ``parameters`` cell of ``notebooks/finetune.ipynb`` is generated from
:class:`~hrl_core.run.config.FinetuneConfig` by :func:`parameters_source` (a test fails when
the notebook's cell differs; ``python -m hrl_core.lab.workbook`` rewrites it), so the notebook,
the command line and the grid offer the same settings with the same defaults.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, fields
from pathlib import Path

from hrl_core import resources
from hrl_core.run.config import FinetuneConfig

REPO = resources.base_dir()  # relative paths in a notebook run by hand start here
FINETUNE_NOTEBOOK = resources.folder("notebooks") / "finetune.ipynb"
# Notebook-only parameters (not settings of the run), after the settings.
EXTRA_PARAMETERS = (
    ("restart", False, "True: discard an existing run of this cell and start over"),
    ("progress", True, "progress bar (off under hrl grid)"),
    ("grid_cell", False, "True under hrl grid: a complete run is reported, not recorded again"),
)


def parameters_source() -> str:
    """The ``parameters`` cell: every FinetuneConfig field, its default and its help."""

    from hrl_core.run.config import field_choices, field_help, range_text

    helps = field_help()
    lines = ["# Parameters (papermill overrides these). Generated from hrl_core.run.config.FinetuneConfig:",
             "# python -m hrl_core.lab.workbook rewrites this cell after a setting is added."]  # fmt: skip
    for f in fields(FinetuneConfig):
        default = f.default_factory() if f.default is MISSING else f.default
        if f.name == "phase1_dir":
            default = "results"  # not the machine's $HRL_PHASE1_DIR: the notebook must not depend on it
        choices = field_choices(FinetuneConfig, f.name)
        allowed = f" (one of: {', '.join(map(str, choices))})" if choices else ""
        if f.metadata.get("lo") is not None or f.metadata.get("hi") is not None:
            allowed = f" (range {range_text(f)})"
        lines.append(f"{f.name} = {default!r}  # {helps.get(f.name, '')}{allowed}")
    for name, default, text in EXTRA_PARAMETERS:
        lines.append(f"{name} = {default!r}  # {text}")
    return "\n".join(lines)


def write_parameters_cell(notebook: Path = FINETUNE_NOTEBOOK) -> bool:
    """Rewrite the notebook's ``parameters`` cell from the config; True if it changed."""
    nb = json.loads(notebook.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    new = parameters_source()
    if "".join(cell["source"]) == new:
        return False
    cell["source"] = new.splitlines(keepends=True)
    notebook.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return True


def config_from_parameters(namespace: dict) -> FinetuneConfig:
    """The run's config from the notebook's parameter variables (checked on construction).

    Relative paths mean "from the repository root": Jupyter and papermill start the
    notebook in notebooks/ (``hrl grid`` passes absolute paths)."""
    values = {f.name: namespace[f.name] for f in fields(FinetuneConfig) if f.name in namespace}
    return FinetuneConfig(**values).resolve_paths(REPO)


def show_config(cfg: FinetuneConfig) -> None:
    from IPython.display import Markdown, display

    from hrl_core.lab.record import shown

    paths = ("save_dir", "phase1_dir")  # shown relative to the repository: a record names no machine's folders
    rows = "\n".join(f"| `{k}` | `{shown(v) if k in paths else v}` |" for k, v in cfg.to_dict().items())
    display(Markdown(f"**Run `{cfg.run_name}`**\n\n| setting | value |\n|---|---|\n{rows}"))


def show_run(result, title: str = "") -> None:
    """The run's curves as one static PNG (a few tens of kB: the executed notebook stays
    small enough to share; interactive plots live in notebooks/analysis.ipynb)."""
    from IPython.display import Image, display

    from hrl_core.lab.figures import catalog, to_matplotlib

    display(Image(to_matplotlib.png_bytes(catalog.run_curves(result.metrics, title or result.run_dir.name))))


def record_summary(result) -> dict:
    """Headline numbers and file locations, displayed and returned."""
    from IPython.display import Markdown, display

    m = result.metrics
    config = json.loads((result.run_dir / "config.json").read_text())
    ds = config["provenance"]["dataset"]
    ck = config["provenance"]["phase1_checkpoint"]
    from hrl_core.lab.record import shown

    summary = {
        "run_dir": shown(result.run_dir),
        "status": m["status"],
        "step0_normalized_return": m["normalized_return"][0],
        "final_normalized_return": m["normalized_return"][-1],
        "final_step": m["step"][-1],
        "settings_hash": config.get("identity", {}).get("settings_hash") or "(the spec's settings)",
        "dataset": f"{shown(ds['path'])} ({ds['kind']}; sha256 {ds['sha256'][:12]}…)",
        "phase1_checkpoint": f"{shown(ck['path'])} (seed {ck['used_seed']}"
        + (", substituted" if ck["substituted"] else "")
        + ")",
    }
    display(Markdown("\n".join(f"- **{k}**: {v}" for k, v in summary.items())))
    return summary


def pretrain_config_from_parameters(namespace: dict):
    """Phase I config from the pretrain notebook's parameter variables."""
    from hrl_core.run.pretrain import PretrainConfig

    values = {f.name: namespace[f.name] for f in fields(PretrainConfig) if f.name in namespace}
    if "save_dir" in values:
        p = Path(values["save_dir"]).expanduser()
        values["save_dir"] = str(p if p.is_absolute() else REPO / p)
    return PretrainConfig(**values)


if __name__ == "__main__":
    changed = write_parameters_cell()
    print(f"{FINETUNE_NOTEBOOK}: parameters cell {'rewritten' if changed else 'already current'}")


def read_metrics(run_dir) -> dict:
    """A run folder's metrics.json (Phase I or Phase II)."""
    return json.loads((Path(run_dir) / "metrics.json").read_text())
