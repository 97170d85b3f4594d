"""Plug-ins: algorithms and explorers registered from outside the package.

A plug-in is a Python module that registers what it brings when imported
(``hrl_core.rl.agents.register`` for an algorithm, ``hrl_core.rl.explorers.register``
for an explorer). It is found in two ways, both read once per process, before the first
lookup of an algorithm or explorer name:

- ``$HRL_PLUGINS``: comma-separated module names, importable from ``sys.path``
  (``HRL_PLUGINS=mylab.awac,mylab.rnd``); grid cells inherit it, since workers and kernels
  inherit the grid's environment;
- installed packages' entry points in the group ``hrl.plugins``.
"""

from __future__ import annotations

import importlib
import os

from hrl_core.errors import HrlError

ENV = "HRL_PLUGINS"
GROUP = "hrl.plugins"
_loaded: set[str] = set()
_loading = False


def load() -> None:
    """Import every plug-in module not imported yet (cheap after the first call)."""
    global _loading
    if _loading:  # a plug-in being imported asks for names: the built-ins are there already
        return
    wanted = [m.strip() for m in os.environ.get(ENV, "").split(",") if m.strip()]
    _loading = True
    try:
        for name in wanted:
            if name in _loaded:
                continue
            _loaded.add(name)
            try:
                importlib.import_module(name)
            except ImportError as exc:
                raise HrlError(f"plug-in {name!r} (from ${ENV}) cannot be imported ({exc}); fix ${ENV} or "
                               "its module's path") from None  # fmt: skip
        if "entry points" not in _loaded:
            _loaded.add("entry points")
            from importlib.metadata import entry_points

            for ep in entry_points(group=GROUP):
                ep.load()
    finally:
        _loading = False
