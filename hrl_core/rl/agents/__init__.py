"""Phase II algorithms, one module per algorithm, registered by name (d3rlpy style).

``algo``'s allowed values are the registered names; :func:`make_agent` builds an agent
from a name. An algorithm's module declares everything about it (``AlgoConfig``); a new
one is a new module with a registered config (a plug-in: ``hrl_core.plugins``).
"""

from hrl_core.errors import HrlError
from hrl_core.rl.agents.base import AlgoConfig, Batch, EnsembleAgent

_REGISTRY: dict[str, type[AlgoConfig]] = {}


def register(cls: type[AlgoConfig]) -> type[AlgoConfig]:
    """Class decorator: make an algorithm config available as ``algo=<cls.name>``."""
    _REGISTRY[cls.name] = cls
    return cls


def names() -> tuple[str, ...]:
    """Registered algorithm names (built-ins first, then plug-ins)."""
    from hrl_core import plugins

    plugins.load()
    return tuple(_REGISTRY)


def get(name: str) -> type[AlgoConfig]:
    """The config class of a registered algorithm."""
    if name not in names():
        raise HrlError(f"unknown algo {name!r}: use one of {', '.join(names())}")
    return _REGISTRY[name]


def settings_of(name: str) -> frozenset[str]:
    """The hyper-parameter names of an algorithm's config (a run setting of one of these names sets it)."""
    from dataclasses import fields

    return frozenset(f.name for f in fields(get(name)))


def make_agent(algo: str, obs_dim: int, act_dim: int, n_ensemble: int, device="cpu", **overrides) -> EnsembleAgent:
    """Build an agent with its algorithm's defaults; ``overrides`` set config fields."""
    return get(algo)(n_ensemble=n_ensemble, **overrides).create(obs_dim, act_dim, device)


# The built-in algorithms register themselves on import.
from hrl_core.rl.agents import cql, iql  # noqa: E402, F401
from hrl_core.rl.agents.cql import CQLAgent, CQLConfig  # noqa: E402
from hrl_core.rl.agents.iql import IQLAgent, IQLConfig  # noqa: E402

__all__ = ["AlgoConfig", "Batch", "CQLAgent", "CQLConfig", "EnsembleAgent", "IQLAgent", "IQLConfig", "get",
           "make_agent", "names", "register", "settings_of"]  # fmt: skip
