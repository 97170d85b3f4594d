"""An installed wheel works outside the repository (notebooks and grid files are package data)."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel built from this checkout, installed into a fresh venv outside it.

    The venv gets the package from the wheel alone; its dependencies (torch, MuJoCo, Dask ...)
    are those of the test environment, reached through a .pth file, to keep the test offline
    and fast.
    """
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
                          "-q", "-w", str(dist)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    wheel = next(dist.glob("hrl-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    out = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    Path(purelib, "test_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return venv


def _run(venv: Path, args, cwd: Path, env_extra: dict | None = None, timeout: int = 900):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({"PATH": f"{venv / 'bin'}:{env['PATH']}", **(env_extra or {})})
    return subprocess.run([str(venv / "bin" / "hrl"), *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def test_the_installed_package_is_the_wheel(installed, tmp_path):
    out = subprocess.run([str(installed / "bin" / "python"), "-c", "import hrl_core; print(hrl_core.__file__)"],
                         cwd=tmp_path, capture_output=True, text=True)  # fmt: skip
    assert out.stdout.strip().startswith(str(installed)), out.stdout + out.stderr


def test_grid_dry_run_finetune_and_a_one_cell_grid_from_the_wheel(installed, tmp_path, d4rl_dir, phase1_dir):
    data = {"D4RL_DATASET_DIR": str(d4rl_dir), "HRL_PHASE1_DIR": str(phase1_dir)}
    dry = _run(installed, ["grid", "--dry_run"], tmp_path, data)
    assert dry.returncode == 0, dry.stderr
    assert "72 cells" in dry.stdout.splitlines()[-1]  # the shipped params/grid.yaml

    tiny = ["--algo", "iql", "--env", "hopper-medium-v2", "--remove_top_k", "60", "--bonus_type", "none",
            "--seed", "1", "--online_steps", "20", "--eval_interval", "10", "--eval_episodes", "1",
            "--batch_size", "32", "--no_progress"]  # fmt: skip
    ft = _run(installed, ["finetune", *tiny], tmp_path, data)
    assert ft.returncode == 0, ft.stderr
    assert list((tmp_path / "results_phase2").glob("ft_iql_hopper-medium-v2_k60_noise0.0_vanilla_s1_*"))

    params = tmp_path / "one.yaml"
    params.write_text(
        "algos: [iql]\ndatasets: [hopper-medium-v2]\nremove_top_k: [0]\nbonus_types: [ensemble]\nseeds: [1]\n"
        "settings: {online_steps: 20, eval_interval: 10, eval_episodes: 1, batch_size: 32}\n"
    )
    g = _run(installed, ["grid", "--params", params, "--workers", "1", "--no_progress"], tmp_path, data)
    assert g.returncode == 0, g.stdout + g.stderr
    assert "grid: 1 ran" in g.stdout
    nb = next((tmp_path / "executed").glob("ft_iql_hopper-medium-v2_k0_*.ipynb"))
    assert "image/png" in nb.read_text()  # the packaged notebook ran
    cfg = json.loads(next((tmp_path / "results_phase2").glob("ft_iql_hopper-medium-v2_k0_*/config.json")).read_text())
    assert cfg["settings"]["save_dir"] == str(tmp_path / "results_phase2")  # relative to where hrl grid ran


def test_python_dash_m(installed, tmp_path):
    out = subprocess.run([str(installed / "bin" / "python"), "-m", "hrl_core", "--help"], cwd=tmp_path,
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0 and "finetune" in out.stdout


def test_the_wheel_ships_both_behaviour_policies(installed, tmp_path):
    # No D4RL file and no checkout: `hrl data generate` rolls out the policy inside the wheel.
    out = _run(installed, ["data", "generate", "hopper-medium-v2", "--transitions", "1000", "--out",
                           tmp_path / "h.hdf5"], tmp_path, {"D4RL_DATASET_DIR": str(tmp_path / "none")})  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "shipped with hrl" in out.stdout and (tmp_path / "h.hdf5").exists()
    listing = subprocess.run([str(installed / "bin" / "python"), "-c",
                              "from importlib import resources; print(sorted(p.name for p in "
                              "resources.files('hrl_core.data.policies').iterdir() if p.name.endswith('.pt')))"],
                             cwd=tmp_path, capture_output=True, text=True)  # fmt: skip
    assert listing.stdout.strip() == "['halfcheetah-medium-v2.pt', 'hopper-medium-v2.pt']", listing.stderr
