"""Run identity is pinned: the folder names (and settings hashes) of representative runs,
computed with the code that made the committed records (commit 808abe6), must never change,
or existing run folders would no longer be found complete or resumed."""

from __future__ import annotations

from pathlib import Path

import pytest

from hrl_core.run.config import FinetuneConfig

REPO = Path(__file__).resolve().parents[1]

# (settings, run name) -- computed with the code of commit 808abe6 / 571aba6, not with this code.
PINNED = [
    ({}, 'ft_iql_hopper-medium-v2_k0_noise0.0_ensemble_s0'),
    ({'algo': 'cql', 'env': 'halfcheetah-medium-v2', 'remove_top_k': 60, 'bonus_type': 'none', 'seed': 2}, 'ft_cql_halfcheetah-medium-v2_k60_noise0.0_vanilla_s2'),
    ({'seed': 1, 'online_steps': 10000, 'eval_interval': 1000, 'phase1_seed': 1}, 'ft_iql_hopper-medium-v2_k0_noise0.0_ensemble_s1_1b348b07'),
    ({'algo': 'cql', 'remove_top_k': 60, 'bonus_type': 'ensemble', 'seed': 0, 'online_steps': 2000, 'eval_interval': 500, 'phase1_seed': 1}, 'ft_cql_hopper-medium-v2_k60_noise0.0_ensemble_s0_7549a4ed'),
    ({'remove_top_k': 60, 'bonus_type': 'none', 'member_init': 'warmstart', 'online_steps': 100000, 'phase1_seed': 1, 'seed': 3}, 'ft_iql_hopper-medium-v2_k60_noise0.0_vanilla_s3_warmstart-a73f8228'),
    ({'remove_top_k': 60, 'bonus_type': 'ensemble', 'member_init': 'warmstart', 'bonus_scale': 'normalized', 'bonus_coeff': 10, 'online_steps': 100000, 'phase1_seed': 1, 'seed': 4}, 'ft_iql_hopper-medium-v2_k60_noise0.0_ensemble_s4_warmstart-normalized-a3674e4e'),
    ({'algo': 'cql', 'bonus_type': 'none', 'n_ensemble': 2, 'online_steps': 20000, 'eval_interval': 2000, 'phase1_seed': 1, 'seed': 1}, 'ft_cql_hopper-medium-v2_k0_noise0.0_vanilla_s1_9da0ceba'),
    ({'bonus_type': 'ensemble', 'exploration': 'ucb_action', 'ucb_candidates': 5}, 'ft_iql_hopper-medium-v2_k0_noise0.0_ensemble_s0_ucb_action-bf18f26d'),
    ({'target_reduce': 'min_random2', 'member_init': 'perturb', 'perturb_scale': 0.2}, 'ft_iql_hopper-medium-v2_k0_noise0.0_ensemble_s0_perturb-min_random2-5a9dda11'),
    ({'algo': 'cql', 'cql_alpha': 2.0, 'batch_size': 128, 'online_ratio': 0.25}, 'ft_cql_hopper-medium-v2_k0_noise0.0_ensemble_s0_ba08a4b6'),
    ({'reward_noise_std': 0.1, 'corruption_seed': 3, 'remove_top_k': 30}, 'ft_iql_hopper-medium-v2_k30_noise0.1_ensemble_s0_fcbe85f5'),
    ({'bonus_clip': 0.5, 'bonus_coeff': 2.0}, 'ft_iql_hopper-medium-v2_k0_noise0.0_ensemble_s0_284599e0'),
    ({'bonus_type': 'none', 'bonus_coeff': 9.0, 'cql_alpha': 3.0}, 'ft_iql_hopper-medium-v2_k0_noise0.0_vanilla_s0'),
    ({'save_dir': 'x', 'device': 'cpu', 'threads': 1, 'logger': 'csv', 'compile': 'off', 'dataset_source': 'generated'}, 'ft_iql_hopper-medium-v2_k0_noise0.0_ensemble_s0'),
]  # fmt: skip


@pytest.mark.parametrize("settings,name", PINNED)
def test_run_names_and_hashes_never_change(settings, name):
    cfg = FinetuneConfig(**settings)
    assert cfg.run_name == name
    h = cfg.settings_hash
    assert (name[-9:] in (f"_{h}", f"-{h}")) if h else len(name.split("_")) == 7  # the hash ends the name, or none


@pytest.mark.parametrize("grid_file,folder", [("grid_cpu.yaml", "executed/grid_cpu")])
def test_the_committed_records_are_still_the_grid_files_runs(grid_file, folder):
    """Every executed cell notebook of a committed record is named by a cell of its grid file."""
    from hrl_core.lab import grids

    names = {c.run_name for c in grids.expand(grids.load_grid(REPO / "params" / grid_file))}
    recorded = {p.stem for p in (REPO / folder).glob("*.ipynb")}
    assert len(recorded) == 72 and recorded == names
