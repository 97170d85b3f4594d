"""Shared runtime helpers: devices and threads (their effect on the numbers: tests/test_finetune.py)."""

from __future__ import annotations

import pytest
import torch

from hrl_core.errors import HrlError
from hrl_core.run.runtime import ThreadGovernor, default_threads, idle_cores, resolve_device


def test_device_choice_with_and_without_gpus():
    assert resolve_device("auto", cuda_count=0).type == "cpu"
    assert resolve_device("auto", cuda_count=2) == torch.device("cuda")
    assert resolve_device("cuda:1", cuda_count=2) == torch.device("cuda:1")
    with pytest.raises(HrlError, match="sees no CUDA GPU; use --device cpu or auto"):
        resolve_device("cuda", cuda_count=0)
    with pytest.raises(HrlError, match=r"sees 2 CUDA GPU\(s\) \(cuda:0..cuda:1\)"):
        resolve_device("cuda:2", cuda_count=2)


def test_threads_follow_the_idle_cores(monkeypatch):
    assert idle_cores(0.0, 2) == 2 and idle_cores(1.0, 2) == 1 and idle_cores(2.0, 2) == 1
    assert idle_cores(0.4, 2) == 1 and idle_cores(0.3, 2) == 2  # a core 70%+ idle counts as free
    assert idle_cores(3.0, 8) == 5
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert default_threads(cpu_count=2, others_busy=1.0) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # an explicit environment wins
    assert default_threads(cpu_count=2, others_busy=1.0) == 3
    gov = ThreadGovernor(None)
    assert gov.fixed and gov.threads == 3 and gov.maybe_adjust() == 3


def test_governor_shrinks_beside_a_busy_process(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    gov = ThreadGovernor(2, every=0.0)
    assert gov.fixed and gov.maybe_adjust() == 2  # --threads given: never changed
    monkeypatch.setattr("hrl_core.run.runtime.busy_cores_of_others", lambda interval=0.25: 0.0)  # idle at the start
    gov = ThreadGovernor(None, every=0.0)
    assert gov.threads == 2
    monkeypatch.setattr("hrl_core.run.runtime._others_busy", lambda *a: 1.0)  # another process holds a core
    assert gov.maybe_adjust() == 1 and torch.get_num_threads() == 1
    monkeypatch.setattr("hrl_core.run.runtime._others_busy", lambda *a: 0.0)  # it finished
    assert gov.maybe_adjust() == 2 and gov.changes == 2
