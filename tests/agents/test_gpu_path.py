"""The GPU code paths, run on a CPU: the one-baddbmm ensemble layer in full updates, and
snapshots restored onto the agent's device."""

from __future__ import annotations

import pytest
import torch

from hrl_core.agents import make_agent
from hrl_core.networks import layer_path


def _batch(obs_dim: int, act_dim: int, n: int = 256, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "obs": torch.randn(n, obs_dim, generator=g),
        "act": torch.rand(n, act_dim, generator=g) * 2 - 1,
        "rew": torch.randn(n, generator=g),
        "next_obs": torch.randn(n, obs_dim, generator=g),
        "done": (torch.rand(n, generator=g) < 0.05).float(),
    }


@pytest.mark.parametrize("algo", ["cql", "iql"])
def test_full_updates_on_the_gpu_layer_path_match_the_cpu_path(algo):
    """Three updates with every ensemble layer as one baddbmm (what CUDA runs) and as per-member
    GEMMs (what a CPU runs): the same losses and parameters, to float rounding."""
    results = {}
    for path in ("baddbmm", "per_member"):
        torch.manual_seed(0)
        agent = make_agent(algo, 11, 3, 3, "cpu")
        infos = []
        with layer_path(path):
            for step in range(3):
                torch.manual_seed(100 + step)  # the same policy samples on both paths
                infos.append({k: v.detach().clone() for k, v in agent.update(_batch(11, 3, seed=step)).items()})
        results[path] = (infos, {k: v.detach().clone() for k, v in agent.critic.state_dict().items()},
                         {k: v.detach().clone() for k, v in agent.actor.state_dict().items()})  # fmt: skip
    (info_g, critic_g, actor_g), (info_c, critic_c, actor_c) = results["baddbmm"], results["per_member"]
    for a, b in zip(info_g, info_c, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-4, msg=k)
    for k in critic_g:
        torch.testing.assert_close(critic_g[k], critic_c[k], rtol=1e-4, atol=1e-5, msg=k)
    for k in actor_g:
        torch.testing.assert_close(actor_g[k], actor_c[k], rtol=1e-4, atol=1e-5, msg=k)


def test_a_snapshot_window_is_restored_onto_the_agent_device():
    """Snapshots load on the CPU; the metric window's running sums must join the agent's device
    (a CUDA run resumed after SIGTERM mid-window added CPU sums to CUDA tensors and failed)."""
    from hrl_core.finetune import Window

    window = Window()
    window.add_update({"critic_loss": torch.tensor(2.0), "q_member": torch.tensor([1.0, 2.0, 3.0])})
    saved = window.state_dict()
    restored = Window()
    restored.load_state_dict(saved, torch.device("meta"))  # any device other than the CPU
    assert restored.updates == 1
    assert all(v.device.type == "meta" for v in restored.sums.values())
