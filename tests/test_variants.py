"""Ensemble variants' mechanics on tiny inputs; defaults stay the spec's."""

from __future__ import annotations

import math

import pytest
import torch

from hrl_core.errors import HrlError
from hrl_core.rl.agents import make_agent
from hrl_core.rl.ensemble import EnsembleQ, perturb_fresh_members, target_min
from hrl_core.rl.explorers import ucb_choice
from hrl_core.run import phase1
from hrl_core.run.config import FinetuneConfig
from hrl_core.run.finetune import finetune
from hrl_core.run.phase1 import load_state


def test_min_all_is_the_spec_min():
    q = torch.randn(5, 7)
    assert torch.equal(target_min(q, "min_all"), q.min(0).values)


def test_min_random2_takes_the_min_of_two_distinct_members():
    q = torch.tensor([[0.0], [10.0], [20.0], [30.0]])  # member i has value 10 * i
    seen = {float(target_min(q, "min_random2")) for _ in range(300)}
    # min over a pair of distinct members: 30 would need member 3 twice; 0, 10, 20 all occur.
    assert seen == {0.0, 10.0, 20.0}


def test_ucb_picks_argmax_of_mean_plus_coeff_std():
    # Three candidates: high mean/low spread, low mean/high spread, middling.
    q = torch.tensor([[5.0, 0.0, 3.0], [5.0, 8.0, 3.0], [5.0, 1.0, 3.0]])  # [N=3, K=3]
    assert ucb_choice(q, 0.0) == 0  # pure mean
    assert ucb_choice(q, 2.0) == 1  # mean 3 + 2 * std 4.36 beats 5
    scores = q.mean(0) + 2.0 * q.std(0)
    assert ucb_choice(q, 2.0) == int(scores.argmax())


def test_perturb_starts_fresh_members_near_loaded_ones(phase1_dir):
    state = load_state(phase1_dir / "iql_hopper-medium-v2_k60_noise0.0_s1" / "checkpoint.pt")["critic"]
    ens = EnsembleQ(11, 3, n_members=5)
    phase1.double_q_into(ens, state)
    before = {k: v.clone() for k, v in ens.state_dict().items()}
    torch.manual_seed(0)
    perturb_fresh_members(ens, scale=0.1)
    w = ens.l1.weight
    assert torch.equal(w[:2], before["l1.weight"][:2])  # loaded members untouched
    for member, source in ((2, 0), (3, 1), (4, 0)):
        rel = (w[member] - w[source]).std() / w[source].std()
        assert 0.08 < rel < 0.12  # noise of about scale x weight std
    x = torch.randn(64, 14)
    q = ens.forward_input(x)
    # Near the loaded members' values (not ~0 as fresh members would be), but not equal.
    assert (q[2] - q[0]).abs().mean() < 0.5 * q[0].abs().mean()
    assert not torch.equal(q[2], q[0])


def test_agents_take_target_reduce():
    for algo in ("cql", "iql"):
        assert make_agent(algo, 11, 3, 3, target_reduce="min_random2").cfg.target_reduce == "min_random2"
        assert make_agent(algo, 11, 3, 3).cfg.target_reduce == "min_all"


@pytest.mark.parametrize(
    "variant",
    [{"member_init": "perturb"}, {"target_reduce": "min_random2"}, {"exploration": "ucb_action"}],
)
def test_variant_runs_end_to_end(tmp_path, d4rl_env, phase1_dir, variant):
    cfg = FinetuneConfig(algo="iql", env="hopper-medium-v2", remove_top_k=60, bonus_type="ensemble", seed=1,
                         online_steps=30, eval_interval=30, eval_episodes=1, batch_size=32,
                         phase1_dir=str(phase1_dir), save_dir=str(tmp_path), **variant)  # fmt: skip
    result = finetune(cfg, progress=False)
    m = result.metrics
    assert m["status"] == "complete" and m["ensemble_disagreement"][-1] > 0
    if variant.get("exploration") == "ucb_action":
        assert m["bonus_mean"][-1] == 0.0  # UCB changes actions, not rewards
        assert torch.equal(result.replay.bonus[: result.replay.size], torch.zeros(result.replay.size))


def test_warmstart_fits_fresh_members_to_loaded_targets_only(phase1_dir, d4rl_dir):
    from hrl_core.data import OfflineData, read_hdf5
    from hrl_core.rl.ensemble import warmstart_fresh_members

    state = load_state(phase1_dir / "iql_hopper-medium-v2_k60_noise0.0_s1" / "checkpoint.pt")
    torch.manual_seed(0)
    agent = make_agent("iql", 11, 3, n_ensemble=4)
    phase1.load_into(agent, state)
    data = OfflineData(read_hdf5(d4rl_dir / "hopper_medium-v2.hdf5"))
    probe = {k: v[:512] for k, v in data.tensors.items()}

    def fresh_error():
        with torch.no_grad():
            y = agent.loaded_bellman_target(probe)
            return ((agent.critic(probe["obs"], probe["act"])[2:] - y) ** 2).mean().item()

    loaded_before = agent.critic.l1.weight[:2].clone()
    before = fresh_error()

    def sample():
        idx = torch.randint(0, data.size, (256,))
        return {k: v[idx] for k, v in data.tensors.items()}

    losses = warmstart_fresh_members(agent, sample, steps=300)
    after = fresh_error()
    assert after < 0.25 * before and losses[-1] < losses[0]
    assert torch.equal(agent.critic.l1.weight[:2], loaded_before)  # loaded members did not move
    assert torch.equal(agent.critic_target.l1.weight[2:], agent.critic.l1.weight[2:])


def test_normalized_bonus_scales_with_the_rewards():
    from hrl_core.rl.explorers import BonusScale

    gen = torch.Generator().manual_seed(0)
    stds, qs, rs = (torch.rand(200, generator=gen) * s + s for s in (2.0, 100.0, 3.0))
    for c in (0.1, 10.0):
        base, scaled = BonusScale(), BonusScale()
        for std, q, r in zip(stds.tolist(), qs.tolist(), rs.tolist(), strict=True):
            b1 = base(std, q, r)
            b2 = scaled(c * std, c * q, c * r)  # rewards x c -> Q and its std x c
            assert b2 == pytest.approx(c * b1, rel=1e-9)  # bonus / reward unchanged


def _drive_through_zero(explorer) -> list[float]:
    """The CQL halfcheetah k=60 warm start + bonus run's course: mean Q rises from -204 through 0
    to +76 while std(Q) falls 3.8 -> 2.7 and rewards stay near 5; the explorer's multipliers."""
    steps = 4_000
    out = []
    for i in range(steps):
        frac = i / (steps - 1)
        explorer.disagreement = 3.8 - 1.1 * frac
        q = -204 + 280 * frac  # one step lands within 0.04 of 0
        explorer.mean_abs_q = abs(q) + 0.5 * explorer.disagreement  # |Q| over members: at least about std/2
        explorer.bonus(5.0 + 0.5 * math.sin(i))
        out.append(explorer.multiplier)
    return out


def test_horizon_bonus_multiplier_stays_bounded_when_q_crosses_zero():
    from types import SimpleNamespace

    from hrl_core.rl.explorers import RewardBonus

    old = _drive_through_zero(RewardBonus(10.0, "normalized"))
    # the old normalizer's factor grows by more than 10x as mean |Q| passes 0 (what the long study logged)
    assert max(old) > 10 * old[0]
    new = RewardBonus(10.0, "horizon")
    new.scaler.bind(SimpleNamespace(cfg=SimpleNamespace(gamma=0.99), algo="iql"))
    factors = _drive_through_zero(new)
    assert max(factors) <= 0.01 + 1e-12 and min(factors) >= 0.01 - 1e-12  # 1 - gamma, whatever Q does
    # reward units: rewards (and so Q and std(Q)) x c -> bonus x c
    new.disagreement = 2.0
    b1 = new.bonus(5.0)
    new.disagreement = 2.0 * 7
    assert new.bonus(35.0) == pytest.approx(7 * b1)


def test_horizon_bonus_needs_a_discount():
    from types import SimpleNamespace

    from hrl_core.rl.explorers import RewardBonus

    with pytest.raises(HrlError, match="gamma"):
        RewardBonus(1.0, "horizon").scaler.bind(SimpleNamespace(cfg=SimpleNamespace(), algo="tiny"))


@pytest.mark.parametrize("variant", [{"member_init": "warmstart", "warmstart_steps": 20},
                                     {"bonus_scale": "normalized", "bonus_clip": 5.0},
                                     {"bonus_scale": "horizon", "bonus_coeff": 10.0}])  # fmt: skip
def test_more_variants_run_end_to_end(tmp_path, d4rl_env, phase1_dir, variant):
    cfg = FinetuneConfig(algo="iql", env="hopper-medium-v2", remove_top_k=60, bonus_type="ensemble", seed=1,
                         online_steps=30, eval_interval=30, eval_episodes=1, batch_size=32,
                         phase1_dir=str(phase1_dir), save_dir=str(tmp_path), **variant)  # fmt: skip
    result = finetune(cfg, progress=False)
    assert result.metrics["status"] == "complete"
    if "bonus_clip" in variant:
        assert float(result.replay.bonus[: result.replay.size].max()) <= 5.0
    if variant.get("bonus_scale") == "horizon":  # the multiplier is logged per interval: 1 - gamma
        assert result.metrics["bonus_multiplier"][-1] == pytest.approx(0.01)
        bonus, disagreement = result.metrics["bonus_mean"][-1], result.metrics["ensemble_disagreement"][-1]
        assert bonus == pytest.approx(10.0 * 0.01 * disagreement, rel=1e-6)
