"""The benchmark's FLOP model against torch's own FLOP counter, and the command."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from hrl_core.lab.bench import eval_share, update_flops
from hrl_core.rl.agents import make_agent


@pytest.mark.parametrize("algo", ["cql", "iql"])
@pytest.mark.parametrize("n", [2, 5])
def test_analytic_flops_match_torch_counter(algo, n):
    obs_dim, act_dim, batch = 17, 6, 32
    agent = make_agent(algo, obs_dim, act_dim, n)
    data = {
        "obs": torch.randn(batch, obs_dim),
        "act": torch.rand(batch, act_dim) * 2 - 1,
        "rew": torch.randn(batch),
        "next_obs": torch.randn(batch, obs_dim),
        "done": torch.zeros(batch),
    }
    counter = FlopCounterMode(display=False)
    with counter:
        agent.update(data)
    assert update_flops(algo, obs_dim, act_dim, n, batch) == counter.get_total_flops()


def test_eval_share():
    # 10 ms/step * 5000 steps = 50 s of training, 1 s of evaluation -> 1/51.
    assert eval_share(10.0, 1.0) == pytest.approx(1 / 51)


def test_bench_command_json():
    out = subprocess.run(
        [sys.executable, "-m", "hrl_core.cli", "bench", "--algo", "iql", "--env", "hopper-medium-v2",
         "--n_ensemble", "3", "--repeats", "2", "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    (cell,) = report["cells"]
    assert cell["algo"] == "iql" and cell["n_ensemble"] == 3
    assert cell["ms_per_step"] == pytest.approx(sum(cell["parts_ms"].values()))
    assert report["gemm_gflops"] > 0
    # The worst case is full-length episodes even for hopper with an untrained policy.
    (evaluation,) = report["evaluation"]
    assert evaluation["env_steps"] == evaluation["episodes"] * 1000
