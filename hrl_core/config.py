"""The settings of one Phase II fine-tuning run, their validation and the run name."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields

from hrl_core.checkpoint import format_k
from hrl_core.envs import DATASETS
from hrl_core.errors import HrlError

BONUS_TYPES = ("ensemble", "none")
DEVICES = ("auto", "cpu", "cuda")
COMPILE_MODES = ("auto", "on", "off")
COMPILE_MIN_STEPS = 2_000  # a compile takes ~20 s: worth it for runs of 2,000+ steps

# --quick: a short run for smoke tests and demos.
QUICK = {"online_steps": 5_000, "eval_interval": 1_000, "eval_episodes": 5}


@dataclass
class FinetuneConfig:
    """One grid cell. Defaults are the study's (250k online steps, N=3, ratio 0.5)."""

    algo: str = "iql"  # Phase I algorithm: cql | iql
    env: str = "hopper-medium-v2"  # D4RL dataset: halfcheetah-medium-v2 | hopper-medium-v2
    remove_top_k: float = 0.0  # % of highest-return trajectories removed (0, 30, 60)
    bonus_type: str = "ensemble"  # exploration bonus: ensemble (lambda*std Q) | none (vanilla)
    seed: int = 0  # online seed (torch, numpy, env)
    online_steps: int = 250_000  # env steps = gradient updates online
    n_ensemble: int = 3  # Q-ensemble members (2..10); 0-1 from Phase I q1/q2
    bonus_coeff: float = 1.0  # lambda of the bonus lambda * std(Q_1..Q_N)(s, a)
    online_ratio: float = 0.5  # fraction of each batch drawn from online data
    batch_size: int = 256  # transitions per gradient update
    cql_alpha: float = 1.0  # CQL penalty weight online (Phase I offline: 5.0); CQL only
    eval_interval: int = 5_000  # online steps between evaluations (and resume snapshots)
    eval_episodes: int = 10  # deterministic episodes per evaluation
    reward_noise_std: float = 0.0  # Gaussian reward noise of the offline data (Phase I corruption)
    corruption_seed: int = 0  # seed of the reward noise (Phase I default)
    phase1_dir: str = field(default_factory=lambda: os.environ.get("HRL_PHASE1_DIR", "results"))  # Phase I runs
    phase1_seed: int | None = None  # Phase I checkpoint seed; None = the online seed
    save_dir: str = "results_phase2"  # where run folders are written
    device: str = "auto"  # auto | cpu | cuda
    threads: int | None = None  # torch CPU threads; None = torch's default
    dataset_source: str = "auto"  # offline data: auto | d4rl | generated | minari (hrl_core.data.sources)
    member_init: str = "fresh"  # fresh members: fresh (spec) | warmstart | perturb (loaded + noise)
    warmstart_steps: int = 5_000  # member_init=warmstart: offline steps training only fresh members
    perturb_scale: float = 0.1  # member_init=perturb: noise std / layer weight std
    target_reduce: str = "min_all"  # targets: min_all (spec) | min_random2 (REDQ/RLPD)
    exploration: str = "reward_bonus"  # reward_bonus (spec) | ucb_action (SUNRISE; no reward change)
    ucb_candidates: int = 10  # exploration=ucb_action: policy samples to choose from
    bonus_scale: str = "raw"  # raw (spec: lambda * std Q) | normalized (see hrl_core.variants.BonusScale)
    bonus_clip: float = 0.0  # cap on the bonus; 0 = no cap
    compile: str = "auto"  # torch.compile the CQL critic pass: auto (CQL on CUDA, >= 2,000 steps) | on | off
    arm: str = ""  # label of a study arm (grid `arms:`); appended to the run name, no effect on results

    def compile_critic(self, device_type: str) -> bool:
        """Whether this run compiles the CQL critic on ``device_type`` ("cpu" | "cuda").

        auto compiles on CUDA only: on a CPU the eager per-member GEMMs of
        ``hrl_core.networks.EnsembleLinear`` are as fast as the compiled pass with one
        thread and faster with two (``hrl bench`` vs ``hrl bench --compile``), without
        the ~20 s compile or a C++ compiler.
        """
        if self.algo != "cql" or self.compile == "off":
            return False
        if self.compile == "on":
            return True
        return device_type == "cuda" and self.online_steps >= COMPILE_MIN_STEPS

    @property
    def run_name(self) -> str:
        tag = "ensemble" if self.bonus_type == "ensemble" else "vanilla"
        name = (
            f"ft_{self.algo}_{self.env}_k{format_k(self.remove_top_k)}"
            f"_noise{float(self.reward_noise_std)}_{tag}_s{self.seed}"
        )
        # Runs that differ only in a variant must not share a folder (or an executed
        # notebook): the arm label, else the non-default variant settings, name them.
        suffix = self.arm or self.variant_tag
        return f"{name}_{suffix}" if suffix else name

    @property
    def variant_tag(self) -> str:
        """Non-default variant settings (issue 7) as a run-name suffix; "" for the spec."""
        parts = []
        if self.member_init != "fresh":
            parts.append(self.member_init)
        if self.bonus_scale != "raw":
            parts.append(f"bonus-{self.bonus_scale}")
        if self.bonus_clip:
            parts.append(f"clip{self.bonus_clip:g}")
        if self.target_reduce != "min_all":
            parts.append(self.target_reduce)
        if self.exploration != "reward_bonus":
            parts.append(self.exploration)
        return "-".join(parts)

    @property
    def effective_phase1_seed(self) -> int:
        return self.seed if self.phase1_seed is None else self.phase1_seed

    def to_dict(self) -> dict:
        return asdict(self)

    def result_settings(self) -> dict:
        """Settings that change results: a resumed run must match these exactly."""
        skip = {"save_dir", "device", "threads", "phase1_dir", "arm"}
        return {k: v for k, v in asdict(self).items() if k not in skip}

    def validate(self) -> FinetuneConfig:
        """Raise HrlError (one line naming the fix) for any invalid value."""
        checks = [
            (self.algo in ("cql", "iql"), f"unknown algo {self.algo!r}: use cql or iql"),
            (self.env in DATASETS, f"unknown dataset {self.env!r}: use one of {', '.join(sorted(DATASETS))}"),
            (0 <= self.remove_top_k < 100, f"remove_top_k={self.remove_top_k} is outside [0, 100)"),
            (self.bonus_type in BONUS_TYPES, f"bonus_type={self.bonus_type!r}: use ensemble or none"),
            (2 <= self.n_ensemble <= 10, f"n_ensemble={self.n_ensemble} is outside 2..10"),
            (0.0 <= self.online_ratio <= 1.0, f"online_ratio={self.online_ratio} is outside [0, 1]"),
            (self.bonus_coeff >= 0, f"bonus_coeff={self.bonus_coeff} is negative; use 0 or more"),
            (self.online_steps >= 1, f"online_steps={self.online_steps} must be at least 1"),
            (self.eval_interval >= 1, f"eval_interval={self.eval_interval} must be at least 1"),
            (self.eval_episodes >= 1, f"eval_episodes={self.eval_episodes} must be at least 1"),
            (self.batch_size >= 1, f"batch_size={self.batch_size} must be at least 1"),
            (self.reward_noise_std >= 0, f"reward_noise_std={self.reward_noise_std} is negative"),
            (self.cql_alpha >= 0, f"cql_alpha={self.cql_alpha} is negative"),
            (self.device in DEVICES, f"device={self.device!r}: use auto, cpu or cuda"),
            (self.threads is None or self.threads >= 1, f"threads={self.threads} must be at least 1"),
            (
                self.dataset_source in ("auto", "d4rl", "generated", "minari"),
                f"dataset_source={self.dataset_source!r}: use auto, d4rl, generated or minari",
            ),
            (
                self.member_init in ("fresh", "warmstart", "perturb"),
                f"member_init={self.member_init!r}: use fresh, warmstart or perturb",
            ),
            (self.warmstart_steps >= 0, f"warmstart_steps={self.warmstart_steps} is negative"),
            (self.bonus_scale in ("raw", "normalized"), f"bonus_scale={self.bonus_scale!r}: use raw or normalized"),
            (self.bonus_clip >= 0, f"bonus_clip={self.bonus_clip} is negative; use 0 for no cap"),
            (self.perturb_scale >= 0, f"perturb_scale={self.perturb_scale} is negative"),
            (
                self.target_reduce in ("min_all", "min_random2"),
                f"target_reduce={self.target_reduce!r}: use min_all or min_random2",
            ),
            (
                self.exploration in ("reward_bonus", "ucb_action"),
                f"exploration={self.exploration!r}: use reward_bonus or ucb_action",
            ),
            (self.ucb_candidates >= 1, f"ucb_candidates={self.ucb_candidates} must be at least 1"),
            (self.compile in COMPILE_MODES, f"compile={self.compile!r}: use auto, on or off"),
            (
                all(ch.isalnum() or ch in "-+._" for ch in self.arm),
                f"arm={self.arm!r}: use letters, digits and - + . _ (it becomes part of a folder name)",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise HrlError(message)
        return self


def config_fields() -> list[str]:
    return [f.name for f in fields(FinetuneConfig)]
