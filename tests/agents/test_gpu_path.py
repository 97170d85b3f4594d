"""The GPU code paths, run on a CPU: the one-baddbmm ensemble layer in full updates, and
snapshots restored onto the agent's device."""

from __future__ import annotations

import pytest
import torch

from hrl_core.rl.agents import make_agent
from hrl_core.rl.ensemble import layer_path


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


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")
def test_every_tensor_of_a_snapshot_is_restored_onto_the_agent_device(phase1_dir, d4rl_env):
    """Snapshots load on the CPU; a run on another device (CUDA) must get every tensor on its own
    device (a run resumed on CUDA after SIGTERM mid-window once added CPU window sums to CUDA
    tensors and failed). Here the other device is torch's "meta" device, which a CPU has."""
    from hrl_core.run import folder
    from hrl_core.run.config import FinetuneConfig
    from hrl_core.run.finetune import RunState, build_parts, load_offline
    from hrl_core.run.phase1 import load_phase1_file
    from hrl_core.run.runtime import ThreadGovernor

    cfg = FinetuneConfig(algo="cql", env="hopper-medium-v2", remove_top_k=60, seed=1, online_steps=50,
                         eval_interval=50, eval_episodes=1, batch_size=32, threads=1,
                         phase1_dir=str(phase1_dir))  # fmt: skip
    inputs = folder.resolve_inputs(cfg)
    data, ckpt = load_offline(cfg, inputs.dataset), load_phase1_file(inputs, "cql", 11, 3)
    parts, _, _ = build_parts(cfg, torch.device("cpu"), data, ckpt, ThreadGovernor(1), fresh=True)
    state = RunState.fresh(cfg, parts)
    for _ in range(40):  # mid-window: online data, update sums, optimizer moments
        action = parts.explorer.act(parts.agent, state.obs)
        obs, reward, terminated, _, _ = parts.env.step(action)
        parts.buffer.add(state.obs, action, reward, 0.0, obs, terminated)
        state.obs = obs
        state.window.add_update(parts.agent.update(parts.sampler.sample()))
    snapshot = state.snapshot(parts, {"settings": {}})

    other, _, _ = build_parts(cfg, torch.device("meta"), data, ckpt, ThreadGovernor(1), fresh=True)
    restored = RunState.restore(snapshot, other, cfg.seed)
    tensors = dict(restored.window.sums)
    for name, obj in other.agent.modules().items():
        if torch.is_tensor(obj):
            tensors[name] = obj
        elif isinstance(obj, torch.nn.Module):
            tensors.update({f"{name}.{k}": v for k, v in obj.state_dict().items()})
        else:  # an optimizer: its moment tensors
            for i, st in enumerate(obj.state.values()):
                tensors.update({f"{name}.{i}.{k}": v for k, v in st.items() if torch.is_tensor(v) and v.dim()})
    tensors.update({f"buffer.{k}": v for k, v in other.buffer.tensors.items()})
    assert len(tensors) > 30 and restored.window.updates == 40 and other.buffer.size == 40
    assert {k for k, v in tensors.items() if v.device.type != "meta"} == set()
