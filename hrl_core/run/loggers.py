"""Experiment tracking: ``--logger none | csv | tensorboard | wandb``.

Every evaluation point (and the training window before it) is logged under namespaced
names (:func:`namespaced`): ``eval/normalized_return``, ``train/critic_loss``,
``explore/bonus_mean``, ``time/wall`` ...; the run's settings are logged once. Files go
to ``<run>/logs/``; ``metrics.json`` stays the record the project's own tools read.

- ``csv``: ``logs/metrics.csv`` in long form (``step,name,value``; one row per number),
  appended as the run goes, plus ``logs/settings.json``.
- ``tensorboard`` (extra ``[tensorboard]``): event files in ``logs/tensorboard/``;
  ``tensorboard --logdir results_phase2`` shows every run.
- ``wandb`` (extra ``[wandb]``): a W&B run named after the run folder, offline unless
  ``WANDB_MODE`` says otherwise (``wandb sync`` uploads it later); files in ``logs/wandb/``.
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

from hrl_core.errors import HrlError

# metrics.json key -> namespaced name (keys ending in _avg are train/<key without _avg>)
_NAMES = {
    "normalized_return": "eval/normalized_return",
    "normalized_return_std": "eval/normalized_return_std",
    "raw_return_mean": "eval/raw_return_mean",
    "raw_return_std": "eval/raw_return_std",
    "ep_len_mean": "eval/episode_length",
    "ensemble_disagreement": "explore/ensemble_disagreement",
    "bonus_mean": "explore/bonus_mean",
    "reward_mean": "explore/env_reward_mean",
    "train_episode_return": "train/episode_return",
    "train_episodes": "train/episodes",
    "online_buffer_size": "train/online_buffer_size",
    "eval_time": "time/eval",
    "wall_time": "time/wall",
}


def namespaced(point: dict) -> dict[str, float]:
    """One evaluation point as ``{namespaced name: number}`` (per-member lists split)."""
    out = {}
    for key, value in point.items():
        name = _NAMES.get(key) or (f"train/{key[:-4]}" if key.endswith("_avg") else None)
        if name is None or value is None:
            continue
        if isinstance(value, list):
            for i, v in enumerate(value):
                if v is not None:
                    out[f"{name}/{i}"] = float(v)
        elif isinstance(value, (int, float)):
            out[name] = float(value)
    return out


class Logger:
    """``none``: logs nothing."""

    def log_point(self, step: int, point: dict) -> None:
        pass

    def finish(self, metrics: dict) -> None:
        pass

    def close(self) -> None:
        pass


class CSVLogger(Logger):
    def __init__(self, folder: Path, config: dict):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "settings.json").write_text(json.dumps(config["settings"], indent=2) + "\n")
        self.path = folder / "metrics.csv"
        new = not self.path.exists()
        self._fh = open(self.path, "a", newline="")
        self._writer = csv.writer(self._fh)
        if new:
            self._writer.writerow(["step", "name", "value"])

    def log_point(self, step: int, point: dict) -> None:
        for name, value in namespaced(point).items():
            self._writer.writerow([step, name, repr(value)])
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


class TensorBoardLogger(Logger):
    def __init__(self, folder: Path, config: dict):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise HrlError(
                "--logger tensorboard needs the tensorboard package: pip install 'hrl[tensorboard]'"
            ) from None
        self.writer = SummaryWriter(log_dir=str(folder / "tensorboard"))
        rows = "\n".join(f"| {k} | {v} |" for k, v in config["settings"].items())
        self.writer.add_text("settings", f"| setting | value |\n|---|---|\n{rows}", global_step=0)
        self.writer.add_text("run_name", config["run_name"], global_step=0)

    def log_point(self, step: int, point: dict) -> None:
        for name, value in namespaced(point).items():
            self.writer.add_scalar(name, value, global_step=step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbLogger(Logger):
    def __init__(self, folder: Path, config: dict):
        try:
            import wandb
        except ImportError:
            raise HrlError("--logger wandb needs the wandb package: pip install 'hrl[wandb]'") from None
        folder.mkdir(parents=True, exist_ok=True)
        name = config["run_name"]
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "hrl"),
            name=name,
            id=re.sub(r"[^A-Za-z0-9_-]", "-", name)[:128],  # one W&B run per run folder, resumable
            resume="allow",
            dir=str(folder),
            mode=os.environ.get("WANDB_MODE", "offline"),
            config=config["settings"],
        )

    def log_point(self, step: int, point: dict) -> None:
        self.run.log(namespaced(point), step=step)

    def finish(self, metrics: dict) -> None:
        self.run.summary["status"] = metrics.get("status")

    def close(self) -> None:
        self.run.finish()


EXTRAS = {"tensorboard": (("tensorboard",), "tensorboard"), "wandb": (("wandb",), "wandb")}  # logger: modules, extra


def require(logger: str) -> None:
    """One error line with the install command when a logger's package is missing (checked
    before a run reads its data or creates its folder)."""
    from hrl_core.run.runtime import require_extra

    if logger in EXTRAS:
        modules, extra = EXTRAS[logger]
        require_extra(modules, extra, f"--logger {logger}")


def make_logger(cfg, run_dir: Path, config: dict) -> Logger:
    folder = Path(run_dir) / "logs"
    if cfg.logger == "csv":
        return CSVLogger(folder, config)
    if cfg.logger == "tensorboard":
        return TensorBoardLogger(folder, config)
    if cfg.logger == "wandb":
        return WandbLogger(folder, config)
    return Logger()
