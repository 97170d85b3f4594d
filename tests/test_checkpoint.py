"""Finding and checking Phase I checkpoints."""

from __future__ import annotations

import shutil

import pytest
import torch

from hrl_core.errors import HrlError
from hrl_core.run.phase1 import find_phase1, load_phase1_file, phase1_run_name

HOPPER = dict(obs_dim=11, act_dim=3)


def load_phase1(phase1_dir, algo, dataset, k, noise, seed, obs_dim, act_dim):
    """Find and load a Phase I checkpoint as a run does (seed 0 stands in for a missing seed)."""
    from types import SimpleNamespace

    path, used, substituted = find_phase1(phase1_dir, algo, dataset, k, noise, seed)
    found = SimpleNamespace(checkpoint=path, phase1_seed_used=used, substituted=substituted, requested_seed=seed)
    return load_phase1_file(found, algo, obs_dim, act_dim)


def test_run_name_matches_phase1_layout(phase1_dir):
    name = phase1_run_name("iql", "hopper-medium-v2", 60.0, 0.0, 1)
    assert name == "iql_hopper-medium-v2_k60_noise0.0_s1"
    assert (phase1_dir / name / "checkpoint.pt").exists()


def test_loads_with_provenance(phase1_dir):
    ck = load_phase1(phase1_dir, "cql", "hopper-medium-v2", 30, 0.0, 1, **HOPPER)
    assert set(ck.state) >= {"actor", "critic", "critic_target", "log_alpha"}
    p = ck.provenance
    assert p["used_seed"] == 1 and not p["substituted"] and p["gradient_steps"] == 500_000
    assert p["phase1_config"]["remove_top_k"] == 30.0


def test_missing_seed_falls_back_to_seed_0_and_says_so(phase1_dir):
    # seed 5 has no Phase I run in ../shared (seeds 0-2 do; seed 2 arrived with the full-length checkpoints)
    ck = load_phase1(phase1_dir, "iql", "hopper-medium-v2", 0, 0.0, 5, **HOPPER)
    assert ck.provenance["used_seed"] == 0 and ck.provenance["substituted"]
    assert "seed 5 missing" in ck.provenance["substitution_note"]


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(HrlError, match="iql_hopper-medium-v2_k60_noise0.0_s3/checkpoint.pt not found"):
        find_phase1(tmp_path, "iql", "hopper-medium-v2", 60, 0.0, 3)


def test_wrong_env_dims(phase1_dir):
    with pytest.raises(HrlError, match="obs_dim=11.*obs_dim=17"):
        load_phase1(phase1_dir, "iql", "hopper-medium-v2", 0, 0.0, 1, obs_dim=17, act_dim=6)


def test_algo_mismatch_both_ways(phase1_dir, tmp_path):
    for wrong, right in (("iql", "cql"), ("cql", "iql")):
        src = phase1_dir / phase1_run_name(right, "hopper-medium-v2", 0, 0.0, 1)
        dst = tmp_path / phase1_run_name(wrong, "hopper-medium-v2", 0, 0.0, 1)
        shutil.copytree(src, dst)
        with pytest.raises(HrlError, match=f"is an {right.upper()} checkpoint but --algo {wrong}"):
            load_phase1(tmp_path, wrong, "hopper-medium-v2", 0, 0.0, 1, **HOPPER)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "pickle_code"])
def test_damaged_checkpoint_is_one_line(phase1_dir, tmp_path, damage):
    src = phase1_dir / phase1_run_name("iql", "hopper-medium-v2", 0, 0.0, 1) / "checkpoint.pt"
    dst_dir = tmp_path / phase1_run_name("iql", "hopper-medium-v2", 0, 0.0, 1)
    dst_dir.mkdir()
    dst = dst_dir / "checkpoint.pt"
    if damage == "truncate":
        dst.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    elif damage == "garbage":
        dst.write_bytes(b"\x00" * 1000)
    else:  # a checkpoint that would run code if loaded without weights_only
        torch.save({"actor": print}, dst)
    # a pickle that would run code is not "corrupt": it is refused unloaded, and says so
    expected = "not a plain tensor file" if damage == "pickle_code" else "truncated or corrupt"
    with pytest.raises(HrlError, match=expected) as err:
        load_phase1(tmp_path, "iql", "hopper-medium-v2", 0, 0.0, 1, **HOPPER)
    assert "\n" not in str(err.value)
