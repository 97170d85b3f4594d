"""Offline data: D4RL reading, corruption, replay buffers and hybrid sampling."""

from hrl_core.data.buffers import HybridSampler, OfflineData, ReplayBuffer, split_batch_size
from hrl_core.data.corruption import add_reward_noise, remove_top_k, top_k_mask, trajectory_ids
from hrl_core.data.d4rl import Transitions, dataset_dir, load_dataset, locate, read_hdf5

__all__ = [
    "HybridSampler",
    "OfflineData",
    "ReplayBuffer",
    "Transitions",
    "add_reward_noise",
    "dataset_dir",
    "load_dataset",
    "locate",
    "read_hdf5",
    "remove_top_k",
    "split_batch_size",
    "top_k_mask",
    "trajectory_ids",
]
