"""The README's main job on a bare machine: no D4RL file, no Phase I results, no network."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hrl_core.lab.demo import DATASET
from hrl_core.rl.envs import dataset_spec


@pytest.mark.slow
def test_demo_from_nothing_marks_everything_generated(tmp_path):
    # The default dataset only: the demo's pipeline does not depend on the dataset, and hopper's
    # own part, its shipped behaviour policy reaching the medium level, is tested in test_generate.
    dataset = DATASET
    empty_d4rl, phase1, out = tmp_path / "d4rl", tmp_path / "results", tmp_path / "out"
    empty_d4rl.mkdir()
    env = {
        **os.environ,
        "D4RL_DATASET_DIR": str(empty_d4rl),
        "HRL_PHASE1_DIR": str(phase1),
        # Network unreachable: every HTTP(S) request goes to a closed local port.
        "http_proxy": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
    }
    run = subprocess.run(
        [sys.executable, "-m", "hrl_core.cli", "demo", "--tiny", "--out_root", str(out), "--dataset", dataset],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "generating a stand-in" in run.stdout and "[demo] Phase II:" in run.stdout
    assert "rolling out the behaviour policy shipped with hrl" in run.stdout  # not the weak SAC fallback
    assert "what the curves show" in run.stdout and "summary.md" in run.stdout  # it ends by saying what it shows
    assert (empty_d4rl / "generated" / dataset_spec(dataset).file_name).exists()
    assert (phase1 / f"iql_{dataset}_k0_noise0.0_s0" / "checkpoint.pt").exists()
    assert (phase1 / f"iql_{dataset}_k60_noise0.0_s0" / "checkpoint.pt").exists()
    notebooks = sorted(p.name for p in (out / "executed").glob("*.ipynb"))
    assert len([n for n in notebooks if n.startswith("ft_")]) == 4  # Phase II cells
    assert len([n for n in notebooks if n.startswith("iql_")]) == 2  # Phase I cells, run in parallel
    for run_dir in (out / "results_phase2").iterdir():
        config = json.loads((run_dir / "config.json").read_text())
        assert config["provenance"]["dataset"]["source"] == "generated"
        assert json.loads((run_dir / "metrics.json").read_text())["status"] == "complete"
    summary = (out / "figures" / "summary.md").read_text()
    assert "generated" in summary and "No expected cell is missing" in summary
    html = (out / "figures" / f"finetune_curves_iql_{dataset}.html").read_text()
    assert "data: generated" in html
    assert (out / "figures" / f"finetune_curves_iql_{dataset}.png").stat().st_size > 10_000
