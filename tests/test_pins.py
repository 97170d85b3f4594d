"""Each part of a study runs at its own commit: the study file declares it, HRL_STUDY_COMMIT may
repeat it but not contradict it, else the committed runs name it; scripts/study.sh refuses a commit
or a clone it cannot use, in one line, before any work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hrl_core.errors import HrlError
from hrl_core.lab import pins

REPO = Path(__file__).resolve().parents[1]


def _study(path: Path, commits: dict[str, str | None]) -> Path:
    """A two-part study file (hopper / halfcheetah, IQL, 1 seed), each part's ``commit:`` as given."""
    parts = []
    for name, dataset in (("a", "hopper-medium-v2"), ("b", "halfcheetah-medium-v2")):
        pin = f", commit: {commits[name]}" if commits.get(name) is not None else ""
        parts.append(f"  {name}: {{datasets: [{dataset}]{pin}}}")
    path.write_text(
        "algos: [iql]\ndatasets: [hopper-medium-v2, halfcheetah-medium-v2]\nremove_top_k: [60]\nseeds: [0]\n"
        "arms:\n  vanilla: {bonus_type: none}\n  spec: {bonus_type: ensemble}\n"
        "parts:\n" + "\n".join(parts) + "\n"
    )
    return path


def _records(folder: Path, commits: list[str]) -> Path:
    for i, commit in enumerate(commits):
        (folder / f"run{i}").mkdir(parents=True)
        (folder / f"run{i}" / "config.json").write_text(json.dumps({"versions": {"git_commit": commit}}))
    return folder


def test_a_declared_commit_wins_and_may_only_be_repeated(tmp_path):
    path = _study(tmp_path / "study_t.yaml", {"a": '"2db35b6"', "b": '"ff4fdd0"'})
    mixed = _records(tmp_path / "records", ["2db35b6" + "0" * 33, "ff4fdd0" + "0" * 33])
    assert pins.part_commits(path, record_dir=mixed) == {"a": "2db35b6", "b": "ff4fdd0"}
    assert pins.part_commits(path, ["b"], override="ff4fdd0816b583d1") == {"b": "ff4fdd0"}  # the same commit
    with pytest.raises(HrlError, match="part a is pinned at 2db35b6 .* HRL_STUDY_COMMIT=ff4fdd0 differs"):
        pins.part_commits(path, ["a"], override="ff4fdd0")
    with pytest.raises(HrlError, match="no part c in"):
        pins.part_commits(path, ["c"])


def test_without_a_declaration_the_override_then_the_records_then_head(tmp_path):
    path = _study(tmp_path / "study_t.yaml", {"a": '"2db35b6"'})  # b declares none
    one = _records(tmp_path / "one", ["9f27d69" + "1" * 33] * 2)
    assert pins.part_commits(path, ["b"], record_dir=one) == {"b": "9f27d69" + "1" * 33}
    assert pins.part_commits(path, ["b"], override="abcdef0", record_dir=one) == {"b": "abcdef0"}
    assert pins.part_commits(path, ["b"], record_dir=tmp_path / "none") == {"b": ""}  # a first run: HEAD
    mixed = _records(tmp_path / "mixed", ["2db35b6" + "0" * 33, "ff4fdd0" + "0" * 33])
    with pytest.raises(HrlError, match="holds runs of 2 commits .* part b declares none: add commit:"):
        pins.part_commits(path, ["b"], record_dir=mixed)
    assert pins.part_commits(path, ["a"], record_dir=mixed) == {"a": "2db35b6"}  # a declared part never asks them
    with pytest.raises(HrlError, match="HRL_STUDY_COMMIT='main' is not a git commit"):
        pins.part_commits(path, ["b"], override="main")


@pytest.mark.parametrize("value", ["2345678", '"not-a-commit"', "[2db35b6]", '"2db35"'])
def test_a_commit_that_is_not_one_is_refused_naming_the_fix(tmp_path, value):
    path = _study(tmp_path / "study_t.yaml", {"a": value})
    with pytest.raises(HrlError, match=r"part 'a': commit must be a git commit, 7 to 40 hex digits in quotes"):
        pins.part_commits(path)


def test_the_review_study_declares_every_parts_commit():
    found = pins.part_commits(REPO / "params" / "study_review.yaml")
    assert set(found) == {"cql-hopper", "cql-halfcheetah", "iql-halfcheetah", "iql-hopper"} and all(found.values())


def _script(clone: Path, *args, **env) -> subprocess.CompletedProcess:
    full = {**os.environ, "HRL_VENV": str(Path(sys.executable).parent.parent), **env}
    full.pop("HRL_STUDY_COMMIT", None)
    return subprocess.run(["bash", "scripts/study.sh", *args], cwd=clone, env=full, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_study_script_refuses_a_commit_or_a_clone_it_cannot_use_before_any_work(tmp_path):
    """On a clone of this repository (its own params/study_t.yaml): a part pinned at a commit the
    repository does not have, and a clone at another commit than the part's, each one error line;
    no results folder is made."""
    if not (Path(sys.executable).parent / "hrl").exists():
        pytest.skip("the package's environment has no hrl command (scripts/setup_env.sh makes it)")
    clone = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    head = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    results = tmp_path / "results"

    _study(clone / "params" / "study_t.yaml", {"a": '"deadbee"'})
    out = _script(clone, "t", "a", HRL_STUDY_RESULTS=str(results))
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "hrl: error: commit deadbee (part a) is not in this repository; git fetch it first"
    ], out.stderr
    _study(clone / "params" / "study_t.yaml", {"a": f'"{head.strip()[:7]}"'})
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(REPO), str(other)], check=True)
    subprocess.run(["git", "-C", str(other), "checkout", "-q", "HEAD~1"], check=True)
    out = _script(clone, "t", "a", HRL_STUDY_RESULTS=str(results), HRL_STUDY_CLONE=str(other))
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1].startswith(f"hrl: error: {other} is at "), out
    assert f"part a at {head.strip()[:7]}; remove the clone or set HRL_STUDY_CLONE" in out.stderr
    assert not results.exists()


def test_study_script_runs_consecutive_parts_at_one_commit_as_one_grid(tmp_path, d4rl_dir, phase1_dir):
    """Two parts pinned at one commit are one `hrl grid` (so the first part's last cells share the cores
    with the second part's first ones); --dry_run lists them and runs nothing. The pinned clone is this
    environment's (its .venv a link to it), so the script's setup finds it installed."""
    venv = Path(sys.executable).parent.parent
    if not (venv / "bin" / "hrl").exists():
        pytest.skip("the package's environment has no hrl command (scripts/setup_env.sh makes it)")
    clone = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    stamp = venv / ".hrl-installed"
    digest = subprocess.run(["sha256sum", str(clone / "pyproject.toml")], capture_output=True, text=True).stdout[:16]
    if not stamp.exists() or stamp.read_text().strip() != digest:
        pytest.skip("this environment was not made by scripts/setup_env.sh from the committed pyproject.toml")
    (clone / ".venv").symlink_to(venv)
    head = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    _study(clone / "params" / "study_t.yaml", {"a": f'"{head.strip()[:7]}"', "b": f'"{head.strip()[:7]}"'})
    results = tmp_path / "results"
    env = {"HRL_STUDY_RESULTS": str(results), "HRL_STUDY_CLONE": str(clone), "D4RL_DATASET_DIR": str(d4rl_dir),
           "HRL_PHASE1_DIR": str(phase1_dir)}  # fmt: skip
    out = _script(clone, "t", "--dry_run", **env)
    assert out.returncode == 0, out.stderr
    starts = [line for line in out.stdout.splitlines() if line.startswith("study: t, ")]
    assert len(starts) == 1 and starts[0].startswith("study: t, parts a b ("), out.stdout
    assert "4 cells, 4 to run" in out.stdout, out.stdout  # 2 parts x 2 arms x 1 seed, in one plan
    assert not any((results / "executed").glob("*")) and not any(results.glob("ft_*")), "a dry run ran a cell"

    out = _script(clone, "t", "--workers", "1", **env)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "hrl: error: study.sh takes no option --workers; usage: bash scripts/study.sh NAME [PART ...] [--dry_run] "
        "(params/study_NAME.yaml)"
    ], out.stderr
