"""Helpers that keep the notebooks thin: parameters -> config, and the run's record."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from hrl_core.config import FinetuneConfig

REPO = Path(__file__).resolve().parents[1]


def _resolve(path: str) -> str:
    """Relative paths in notebooks mean 'from the repository root' (papermill runs
    notebooks with notebooks/ as working directory)."""
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else REPO / p)


def config_from_parameters(namespace: dict) -> FinetuneConfig:
    """Build and check the run's config from the notebook's parameter variables."""
    values = {f.name: namespace[f.name] for f in fields(FinetuneConfig) if f.name in namespace}
    if values.get("phase1_seed", -1) is not None and values.get("phase1_seed", -1) < 0:
        values["phase1_seed"] = None
    if not values.get("threads"):
        values["threads"] = None
    for key in ("phase1_dir", "save_dir"):
        if key in values:
            values[key] = _resolve(values[key])
    return FinetuneConfig(**values).validate()


def show_config(cfg: FinetuneConfig) -> None:
    from IPython.display import Markdown, display

    rows = "\n".join(f"| `{k}` | `{v}` |" for k, v in cfg.to_dict().items())
    display(Markdown(f"**Run `{cfg.run_name}`**\n\n| setting | value |\n|---|---|\n{rows}"))


def record_summary(result) -> dict:
    """Headline numbers and file locations, displayed and returned."""
    import json

    from IPython.display import Markdown, display

    m = result.metrics
    config = json.loads((result.run_dir / "config.json").read_text())
    ds = config["provenance"]["dataset"]
    ck = config["provenance"]["phase1_checkpoint"]
    summary = {
        "run_dir": str(result.run_dir),
        "status": m["status"],
        "step0_normalized_return": m["normalized_return"][0],
        "final_normalized_return": m["normalized_return"][-1],
        "final_step": m["step"][-1],
        "dataset": f"{ds['path']} ({ds['kind']}; sha256 {ds['sha256'][:12]}…)",
        "phase1_checkpoint": f"{ck['path']} (seed {ck['used_seed']}"
        + (", substituted" if ck["substituted"] else "")
        + ")",
    }
    display(Markdown("\n".join(f"- **{k}**: {v}" for k, v in summary.items())))
    return summary


def pretrain_config_from_parameters(namespace: dict):
    """Phase I config from the pretrain notebook's parameter variables."""
    from hrl_core.pretrain import PretrainConfig

    values = {f.name: namespace[f.name] for f in fields(PretrainConfig) if f.name in namespace}
    if "save_dir" in values:
        values["save_dir"] = _resolve(values["save_dir"])
    return PretrainConfig(**values)
