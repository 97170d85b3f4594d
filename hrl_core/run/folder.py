"""The run folder, the writer's side: its files, statuses, identity, snapshots (the reader's side,
for analysis, is ``hrl_core.lab.records``).

A Phase II run folder ``<save_dir>/<run_name>/`` holds:

``config.json``
    ``run_name``; ``settings`` (every :class:`~hrl_core.run.config.FinetuneConfig` field);
    ``identity`` (``settings``: the result settings that apply, ``settings_hash``,
    ``inputs``: ``dataset_sha256``, ``phase1_checkpoint_sha256``); ``agent_config``;
    ``environment`` (``env_id``, ``reference_scores``, ``eval_seeds``); ``provenance``
    (``dataset``: path, sha256, size, HDF5 attributes, ``kind``, corruption counts;
    ``phase1_checkpoint``: path, sha256, seeds, Phase I config); ``versions``; ``device``;
    ``torch_threads``; ``speed``; ``warmstart``; ``command``; ``started``; ``resumed`` (per resume:
    ``at_step``, ``time`` and, when they changed, ``versions_before``).
``metrics.json``
    ``run_name``, ``status`` (:data:`STATUSES`), and one list entry per evaluation point
    under :data:`POINT_KEYS` (plus per-algorithm window averages ``*_avg``); on failure
    ``reason``/``failed_at_step``, ``diverged_at_step``/``diverged_quantity``,
    ``interrupted_at_step``.
``checkpoint.pt``
    the final agent (written when the run completes).
``snapshot.pt``, ``snapshot.prev.pt``
    resume state, while the run is unfinished.
``.hrl.lock``
    while a process writes there (:mod:`hrl_core.run.lock`).

Two runs are the same experiment when their identities are equal: the same result
settings and the same inputs (dataset file and Phase I checkpoint, by sha256). A
folder is reused (complete) or resumed (unfinished) only then.
"""

from __future__ import annotations

import math
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from hrl_core.errors import HrlError
from hrl_core.run import files

CONFIG = "config.json"
METRICS = "metrics.json"
CHECKPOINT = "checkpoint.pt"
SNAPSHOT = "snapshot.pt"
SNAPSHOT_PREV = "snapshot.prev.pt"
# running: in progress, killed or interrupted; complete: the only status later tools
# treat as done; diverged: a non-finite loss/Q/action; failed: an error (resumable).
STATUSES = ("running", "complete", "diverged", "failed")
# Per evaluation point in metrics.json (lists as long as "step"); "_avg" window means
# of the agent's update statistics come on top (critic_loss_avg, q_member_avg, ...).
POINT_KEYS = (
    "step", "train_step", "normalized_return", "normalized_return_std", "raw_return_mean", "raw_return_std",
    "ep_len_mean", "episode_returns", "reward_mean", "bonus_mean", "ensemble_disagreement", "train_episodes",
    "train_episode_return", "eval_time", "wall_time", "online_buffer_size", "snapshot_time",
)  # fmt: skip


# --------------------------------------------------------------------------------------
# Inputs and identity
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Inputs:
    """The files a run reads, found before anything is loaded."""

    dataset: object  # hrl_core.data.sources.DatasetFile
    checkpoint: Path  # the Phase I checkpoint.pt
    requested_seed: int  # the Phase I seed asked for
    phase1_seed_used: int  # the Phase I seed actually found
    substituted: bool  # the requested Phase I seed was missing; seed 0 is used

    def digests(self) -> dict:
        from hrl_core.data.d4rl import sha256_of

        return {"dataset_sha256": self.dataset.sha256, "phase1_checkpoint_sha256": sha256_of(self.checkpoint)}


def resolve_inputs(cfg, allow_download: bool = True) -> Inputs:
    """Find the run's Phase I checkpoint, then its dataset file (one-line errors).

    The checkpoint comes first: a missing one is reported before any download is tried.
    """
    from hrl_core.data.sources import locate_source
    from hrl_core.run.phase1 import find_phase1

    path, used, substituted = find_phase1(
        cfg.phase1_dir,
        cfg.algo,
        cfg.env,
        cfg.remove_top_k,
        cfg.reward_noise_std,
        cfg.effective_phase1_seed,
        named=cfg.phase1_seed is not None,
    )
    dataset = locate_source(cfg.env, cfg.dataset_source, allow_download=allow_download)
    return Inputs(dataset, path, cfg.effective_phase1_seed, used, substituted)


def identity(cfg, inputs: Inputs) -> dict:
    """What makes a run this run: result settings that apply, and input digests."""
    return {"settings": cfg.identity_settings(), "settings_hash": cfg.settings_hash, "inputs": inputs.digests()}


def recorded_identity(run_dir: Path) -> dict | None:
    """The identity recorded in a run folder's config.json (rebuilt from its settings and
    provenance for folders written before identities were recorded); None if unreadable."""
    from dataclasses import fields

    from hrl_core.run.config import FinetuneConfig

    try:
        config = files.read_json(Path(run_dir) / CONFIG)
    except (OSError, ValueError):
        return None
    if "identity" in config:
        return config["identity"]
    names = {f.name for f in fields(FinetuneConfig)}
    try:
        cfg = FinetuneConfig(**{k: v for k, v in config.get("settings", {}).items() if k in names})
        prov = config["provenance"]
        digests = {
            "dataset_sha256": prov["dataset"]["sha256"],
            "phase1_checkpoint_sha256": prov["phase1_checkpoint"]["sha256"],
        }
    except (HrlError, KeyError, TypeError):
        return None
    return {"settings": cfg.identity_settings(), "settings_hash": cfg.settings_hash, "inputs": digests}


def identity_differences(recorded: dict, wanted: dict) -> list[str]:
    """Human-readable differences between two identities ([] when they are equal)."""
    out = []
    rs, ws = recorded.get("settings", {}), wanted.get("settings", {})
    for key in sorted(set(rs) | set(ws)):
        if rs.get(key, "(unset)") != ws.get(key, "(unset)"):
            out.append(f"{key} {rs.get(key, '(unset)')!r} there, {ws.get(key, '(unset)')!r} here")
    ri, wi = recorded.get("inputs", {}), wanted.get("inputs", {})
    for key, label in (("dataset_sha256", "dataset"), ("phase1_checkpoint_sha256", "Phase I checkpoint")):
        if ri.get(key) != wi.get(key):
            out.append(f"{label} sha256 {str(ri.get(key))[:12]}… there, {str(wi.get(key))[:12]}… here")
    return out


@dataclass
class Existing:
    """What a run folder holds relative to a requested run."""

    status: str  # new | complete | running | diverged | failed | other (identity differs) | damaged
    differences: list[str] = field(default_factory=list)  # for "other"

    def damaged_error(self, run_dir: Path) -> HrlError:
        return HrlError(
            f"{run_dir} holds a complete run whose record is damaged ({'; '.join(self.differences)}); nothing was "
            f"recomputed: restore {METRICS} from a copy, or pass --restart to run it again from step 0"
        )

    def conflict_error(self, run_dir: Path) -> HrlError:
        return HrlError(
            f"{run_dir} holds another run ({'; '.join(self.differences)}); pass --restart to replace it "
            "or --save_dir to keep both"
        )


def existing(run_dir: Path, wanted: dict) -> Existing:
    """Compare a folder's recorded run with the requested identity."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).exists():
        return Existing("new")
    recorded = recorded_identity(run_dir)
    if recorded is None:
        return Existing("other", ["its config.json is unreadable"])
    diffs = identity_differences(recorded, wanted)
    if diffs:
        return Existing("other", diffs)
    status = read_status(run_dir)
    if status is None and (run_dir / CHECKPOINT).exists():
        # checkpoint.pt is written only when a run completes: its record is damaged, not unfinished
        return Existing("damaged", [f"its {METRICS} is missing or unreadable but {CHECKPOINT} is there"])
    if status == "complete":
        try:
            damage = metrics_damage(files.read_json(run_dir / METRICS))
        except (OSError, ValueError):
            damage = f"its {METRICS} is unreadable"
        if damage:
            return Existing("damaged", [damage])
    return Existing(status or "running")


CURVE_KEYS = ("step", "normalized_return", "raw_return_mean")  # what every summary reads of a run


def metrics_damage(metrics, required=("step",)) -> str | None:
    """Why a run's metrics.json cannot be summarized (None: it can): the evaluation curve must be
    lists of finite numbers, one per evaluation (JSON writes NaN, and a NaN in a table is a number
    that looks right). ``required``: the curve keys it must have (the others: checked if there)."""
    if not isinstance(metrics, dict) or not isinstance(metrics.get("step"), list) or not metrics["step"]:
        return f"its {METRICS} has no evaluation points"
    n = len(metrics["step"])
    for key in CURVE_KEYS:
        values = metrics.get(key)
        if values is None and key not in required:
            continue
        if not isinstance(values, list) or len(values) != n:
            return f"its {METRICS} has {key} of another length than its {n} evaluation points"
        for i, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                return f"its {METRICS} has {key}[{i}] = {v!r}, not a finite number"
    return None


# --------------------------------------------------------------------------------------
# Status and snapshots
# --------------------------------------------------------------------------------------
def read_status(run_dir: Path) -> str | None:
    try:
        return files.read_json(Path(run_dir) / METRICS).get("status")
    except (OSError, ValueError):
        return None


def load_snapshot(run_dir: Path) -> dict | None:
    """Newest loadable snapshot; a damaged one is reported and the previous one used (with a
    note saying which); None, said plainly, when neither loads."""
    from hrl_core.run.phase1 import load_state

    damaged = []
    for name in (SNAPSHOT, SNAPSHOT_PREV):
        path = Path(run_dir) / name
        if not path.exists():
            continue
        try:
            snapshot = load_state(path)
        except HrlError as exc:
            damaged.append(name)
            then = f"trying {SNAPSHOT_PREV}" if name == SNAPSHOT and (Path(run_dir) / SNAPSHOT_PREV).exists() else (
                "no snapshot left to resume from: the run starts again from step 0")  # fmt: skip
            print(f"hrl: warning: {exc}; {then}", file=sys.stderr)
            continue
        if damaged:
            print(f"hrl: note: resuming from {name} (step {snapshot.get('step', '?')}): {', '.join(damaged)} is "
                  "damaged, so the steps after that snapshot are run again", file=sys.stderr)  # fmt: skip
        return snapshot
    return None


@contextmanager
def take_folder(run_dir: Path):
    """Hold a run folder's lock while writing there (``with take_folder(d) as lock:``); a folder
    this call created and that is still empty at the end (bad input found after the lock was
    taken, another writer) is removed, so nothing is left behind."""
    from hrl_core.run.lock import RunLock

    run_dir = Path(run_dir)
    created = not run_dir.exists()
    lock = RunLock(run_dir).acquire()
    try:
        yield lock
    finally:
        lock.release()
        if created and run_dir.exists() and not any(run_dir.iterdir()):
            run_dir.rmdir()


def write_snapshot(run_dir: Path, snapshot: dict) -> None:
    """Keep the last two snapshots so a damaged newest one still leaves a good one."""
    current = Path(run_dir) / SNAPSHOT
    tmp = Path(run_dir) / f".{SNAPSHOT}.new"
    files.write_torch(tmp, snapshot)
    if current.exists():
        current.replace(Path(run_dir) / SNAPSHOT_PREV)
    tmp.replace(current)


def clear_snapshots(run_dir: Path) -> None:
    for name in (SNAPSHOT, SNAPSHOT_PREV):
        (Path(run_dir) / name).unlink(missing_ok=True)


def clear_folder(run_dir: Path, keep: tuple[str, ...]) -> None:
    """Delete a run folder's contents except ``keep`` (``--restart`` keeps its own lock)."""
    import shutil

    for path in Path(run_dir).iterdir():
        if path.name in keep:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


@dataclass
class RunResult:
    run_dir: Path  # folder of the run
    status: str  # complete | already_complete
    metrics: dict  # contents of metrics.json
    replay: object = None  # the online ReplayBuffer (in memory; for inspection)
    offline: object = None  # the OfflineData as trained on (in memory)
