"""Which commit each part of a study runs at (``scripts/study.sh`` pins a clone there).

A study's record is one code version per part: the runs of a part name the commit that made them
(``config.json``: ``versions.git_commit``), and a part resumed later, on any machine, must go on at
that commit. The part says which, in this order:

1. ``commit:`` declared with the part in the study file (``parts: {iql-hopper: {..., commit: "ff4fdd0"}}``);
   ``HRL_STUDY_COMMIT`` may repeat it but not contradict it;
2. else ``HRL_STUDY_COMMIT``;
3. else the one commit of the study's committed runs (``records/results_<name>``); runs of several
   commits there and nothing declared: an error naming the fix;
4. else none: the checkout's HEAD (a study's first run).

``python -m hrl_core.lab.pins STUDY.yaml [PART ...]`` prints ``part commit`` lines (commit ``-`` for
HEAD) for every part (default: all, in the file's order).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from hrl_core.errors import HrlError


def recorded_commits(record_dir: Path) -> set[str]:
    """The commits that made the committed runs of a study."""
    found = set()
    for config in Path(record_dir).glob("*/config.json"):
        commit = (json.loads(config.read_text()).get("versions") or {}).get("git_commit")
        if commit:
            found.add(commit)
    return found


def _same(a: str, b: str) -> bool:
    return a.startswith(b) or b.startswith(a)  # a short and a full form of one commit


def part_commits(path: str | Path, parts=(), override: str = "", record_dir: Path | None = None) -> dict[str, str]:
    """part -> the commit it runs at ("" : HEAD), for ``parts`` (default every part of the file)."""
    from hrl_core.lab import grids

    path = Path(path)
    spec = grids.load_grid(path)
    declared = {name: (part or {}).get("commit", "") for name, part in (spec.get("parts") or {"": {}}).items()}
    unknown = [p for p in parts if p not in declared]
    if unknown:
        raise HrlError(f"no part {', '.join(unknown)} in {path}; its parts: {', '.join(declared)}")
    override = override.strip()
    if override and not grids.COMMIT.fullmatch(override):
        raise HrlError(f"HRL_STUDY_COMMIT={override!r} is not a git commit (7 to 40 hex digits); unset it or fix it")
    recorded = None  # read only when a part needs it
    out = {}
    for part in parts or list(declared):
        pin = declared[part]
        if pin and override and not _same(pin, override):
            raise HrlError(f"part {part} is pinned at {pin} in {path}; HRL_STUDY_COMMIT={override} differs: unset it "
                           "(a part's record is one code version)")  # fmt: skip
        if pin or override:
            out[part] = pin or override
            continue
        if recorded is None:
            recorded = sorted(recorded_commits(record_dir)) if record_dir is not None else []
        if len(recorded) > 1:
            raise HrlError(f"{record_dir} holds runs of {len(recorded)} commits ({', '.join(c[:7] for c in recorded)}) "
                           f"and part {part or 'the study'} declares none: add commit: to the part in {path}, "
                           "or set HRL_STUDY_COMMIT")  # fmt: skip
        out[part] = recorded[0] if recorded else ""
    return out


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m hrl_core.lab.pins STUDY.yaml [PART ...]", file=sys.stderr)
        return 2
    path = Path(args[0])
    record = Path("records") / f"results_{path.stem.removeprefix('study_')}"
    try:
        found = part_commits(path, args[1:], os.environ.get("HRL_STUDY_COMMIT", ""), record)
    except HrlError as e:
        print(f"hrl: error: {e}", file=sys.stderr)
        return 2
    for part, commit in found.items():
        print(f"{part or '-'} {commit or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
