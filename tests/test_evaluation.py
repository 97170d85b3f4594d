"""Loaded Phase I actors reproduce the scores measured in ../shared/README.md."""

from __future__ import annotations

import numpy as np
import pytest

from hrl_core.rl.agents import make_agent
from hrl_core.rl.evaluation import Evaluator, eval_seeds
from hrl_core.run import phase1
from hrl_core.run.phase1 import load_state

# (run, dataset, normalized score in ../shared/README.md: tanh(mean), 5 episodes)
KNOWN = [
    ("cql_halfcheetah-medium-v2_k0_noise0.0_s1", "halfcheetah-medium-v2", 47),
    ("cql_hopper-medium-v2_k0_noise0.0_s1", "hopper-medium-v2", 52),
    ("iql_halfcheetah-medium-v2_k0_noise0.0_s1", "halfcheetah-medium-v2", 45),
    ("iql_hopper-medium-v2_k0_noise0.0_s1", "hopper-medium-v2", 43),
]


@pytest.mark.parametrize("run, dataset, score", KNOWN)
def test_phase1_actor_reproduces_known_score(phase1_dir, run, dataset, score):
    state = load_state(phase1_dir / run / "checkpoint.pt")
    obs_dim, act_dim = (17, 6) if "halfcheetah" in dataset else (11, 3)
    agent = make_agent(run[:3], obs_dim, act_dim, n_ensemble=3)
    phase1.load_into(agent, state)
    result = Evaluator(dataset, n_episodes=5, seed=0).run(lambda o: agent.act(o, deterministic=True))
    # Hopper's returns vary from start state to start state; 8 points covers 5-episode noise.
    tolerance = 3 if "halfcheetah" in dataset else 8
    assert result["normalized_return"] == pytest.approx(score, abs=tolerance)
    assert len(result["episode_returns"]) == 5


def test_eval_seeds_are_disjoint_from_training_seeds():
    seeds = [s for run_seed in range(10) for s in eval_seeds(run_seed, 10)]
    assert len(set(seeds)) == len(seeds) and min(seeds) >= 1_000_000


def _one_by_one(dataset, seeds, policy):
    """The plain reference: each episode on its own, the policy called per observation."""
    from hrl_core.rl.envs import make_env

    returns, lengths = [], []
    for seed in seeds:
        env = make_env(dataset)
        obs, _ = env.reset(seed=seed)
        total, steps, done = 0.0, 0, False
        while not done:
            obs, r, terminated, truncated, _ = env.step(policy(obs[None])[0])
            total, steps, done = total + r, steps + 1, terminated or truncated
        env.close()
        returns.append(total)
        lengths.append(steps)
    return returns, lengths


@pytest.mark.parametrize("dataset", ["hopper-medium-v2", "halfcheetah-medium-v2"])
def test_batched_evaluation_matches_one_episode_at_a_time(dataset):
    # An element-wise policy gives every row the same action whatever the batch, so
    # any difference comes from the evaluator's bookkeeping (which env gets which
    # action, episodes ending at different steps), not from batched matmuls.
    act_dim = 3 if "hopper" in dataset else 6

    def policy(obs):  # damps the joint velocities (the last act_dim entries): hopper stays up 350-470 steps
        return np.tanh(-2.0 * obs[:, -act_dim:])

    evaluator = Evaluator(dataset, n_episodes=4, seed=3)
    result = evaluator.run(policy)
    evaluator.close()
    returns, lengths = _one_by_one(dataset, eval_seeds(3, 4), policy)
    assert result["episode_returns"] == returns  # bit for bit
    assert result["ep_len_mean"] == np.mean(lengths)
    if "hopper" in dataset:  # the case the bookkeeping is for: episodes end at different steps
        assert len(set(lengths)) > 1
