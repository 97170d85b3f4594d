"""README's commands work as written: after the two commands and the activate line, every ``hrl``
line of its code blocks that can run without starting work does (help, dry runs), in a shell that
only sourced the virtual environment the scripts made, from the checkout's root."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def readme_hrl_lines() -> list[str]:
    text = (REPO / "README.md").read_text()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("hrl ") or line == "hrl":
                out.append(line)
    return out


def test_readme_says_how_hrl_gets_on_path():
    text = (REPO / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    assert "source .venv/bin/activate" in first_block and "hrl --help" in first_block


def _runnable(line: str) -> str | None:
    """The line as a test can run it: as written when it only looks (help, dry run); a grid line with
    --dry_run added (it would start training); None for the ones that do work (plot, study, finetune)."""
    if "--help" in line or "--dry_run" in line:
        return line
    if line.startswith("hrl grid"):
        return line + " --dry_run"
    return None


@pytest.mark.parametrize("line", [ln for ln in readme_hrl_lines() if _runnable(ln)])
def test_readme_hrl_line_works_after_activating(line, d4rl_dir, phase1_dir):
    venv = Path(os.environ.get("HRL_VENV", REPO / ".venv"))
    activate = venv / "bin" / "activate"
    if not activate.exists():
        pytest.skip(f"no virtual environment at {venv} (scripts/setup_env.sh makes it)")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not p.startswith(str(Path(sys.executable).parent)))  # fmt: skip
    env.update(D4RL_DATASET_DIR=str(d4rl_dir), HRL_PHASE1_DIR=str(phase1_dir))
    script = f"source '{activate}' && command -v hrl && {_runnable(line)}"
    out = subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{line}\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
    assert str(venv) in out.stdout.splitlines()[0]  # the hrl the activate line put on PATH
