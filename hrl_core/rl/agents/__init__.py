"""Phase II agents (one module per algorithm) and a factory."""

from hrl_core.errors import HrlError
from hrl_core.rl.agents.base import EnsembleAgent
from hrl_core.rl.agents.cql import CQLAgent, CQLConfig
from hrl_core.rl.agents.iql import IQLAgent, IQLConfig

ALGOS = ("cql", "iql")


def make_agent(algo: str, obs_dim: int, act_dim: int, n_ensemble: int, device="cpu", **overrides) -> EnsembleAgent:
    """Build an agent with Phase I defaults; ``overrides`` set config fields."""
    if algo == "cql":
        return CQLAgent(obs_dim, act_dim, CQLConfig(n_ensemble=n_ensemble, **overrides), device)
    if algo == "iql":
        return IQLAgent(obs_dim, act_dim, IQLConfig(n_ensemble=n_ensemble, **overrides), device)
    raise HrlError(f"unknown algo {algo!r}: use one of {', '.join(ALGOS)}")


__all__ = ["ALGOS", "CQLAgent", "CQLConfig", "EnsembleAgent", "IQLAgent", "IQLConfig", "make_agent"]
