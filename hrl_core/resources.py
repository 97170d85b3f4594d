"""The files `hrl grid / study / plot / demo` need beside the code: notebooks and grid files.

In a checkout they are the repository's ``notebooks/`` and ``params/``. An installed wheel
carries copies as package data (``hrl_core/_data/``, put there by setup.py's build step),
so the commands work from any folder without the repository.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from hrl_core.errors import HrlError

_CHECKOUT = Path(__file__).resolve().parents[1]


def checkout_root() -> Path | None:
    """The repository root when running from a checkout (editable install), else None."""
    if (_CHECKOUT / "notebooks" / "finetune.ipynb").is_file() and (_CHECKOUT / "params").is_dir():
        return _CHECKOUT
    return None


def _packaged(sub: str) -> Path:
    return Path(str(resources.files("hrl_core") / "_data" / sub))


def folder(sub: str) -> Path:
    """``notebooks`` or ``params``: the checkout's folder, else the packaged copy."""
    root = checkout_root()
    return root / sub if root is not None else _packaged(sub)


def notebook(name: str) -> Path:
    path = folder("notebooks") / name
    if not path.is_file():
        raise HrlError(f"notebook {name} not found in {path.parent}; reinstall hrl (its package data is missing)")
    return path


def params_file(name: str | Path) -> Path:
    """A grid file: the path as given if it exists, else the shipped file of that name."""
    given = Path(name).expanduser()
    if given.is_file():
        return given.resolve()
    shipped = folder("params") / given.name
    if shipped.is_file():
        return shipped
    available = ", ".join(sorted(p.name for p in folder("params").glob("*.yaml")))
    raise HrlError(f"grid file {name} not found (here or among the shipped ones: {available}); check the path")


def base_dir() -> Path:
    """Where relative paths of a notebook run by hand point: the checkout, else the current folder."""
    return checkout_root() or Path.cwd()
