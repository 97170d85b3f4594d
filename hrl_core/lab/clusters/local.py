"""Workers on this machine: one process per core (or per GPU slot), loopback only."""

from __future__ import annotations

import os
from dataclasses import dataclass

LOOPBACK = "127.0.0.1"  # where a local grid's scheduler and workers listen


@dataclass
class WorkerSpec:
    """One Dask worker of a local grid: its name, the GPU it is pinned to, its torch threads."""

    name: str
    gpu: int | None  # CUDA device index made visible to it (CUDA_VISIBLE_DEVICES); None: CPU
    threads: int  # torch threads of the cell it runs

    @property
    def env(self) -> dict:
        env = {"OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
        if self.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(self.gpu)
        return env


def visible_gpus() -> int:
    """CUDA GPUs this machine offers (0 without torch CUDA)."""
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no usable CUDA means no GPUs
        return 0


def plan_workers(n_gpus: int, cpu_count: int, cells_per_gpu: int = 1, workers: int | None = None,
                 threads_per_cell: int | None = None) -> list[WorkerSpec]:  # fmt: skip
    """The local workers of a grid.

    With G GPUs: ``cells_per_gpu`` workers per GPU, each seeing only its own GPU (so a
    cell's ``device=auto`` is that GPU), the cores shared out among them. Without: one
    worker per core (or ``workers``) with one torch thread each -- measured on 2 cores,
    two 1-thread cells finish more steps per second than one 2-thread cell (IQL 14.3 vs
    10.3 ms per update, CQL 135 vs 96 ms), and more threads than cores run several
    times slower.
    """
    if n_gpus > 0:
        n = workers or n_gpus * max(1, cells_per_gpu)
        threads = threads_per_cell or max(1, cpu_count // n)
        return [WorkerSpec(f"gpu{i % n_gpus}-{i // n_gpus}", i % n_gpus, threads) for i in range(n)]
    n = workers or max(1, cpu_count)
    threads = threads_per_cell or 1
    return [WorkerSpec(f"cpu{i}", None, threads) for i in range(n)]


def local_cluster(specs: list[WorkerSpec]):
    """A Dask cluster on this machine with one process per WorkerSpec (its env, its GPU)."""
    from dask.distributed import Nanny, Scheduler, SpecCluster

    # Loopback only: Dask's comm protocol runs whatever function it is sent, so a worker
    # listening on the machine's network address (its default: all interfaces) lets anyone
    # who reaches the node run code as the user. The worker's HTTP endpoints follow its host.
    options = {"nthreads": 1, "silence_logs": 40, "host": LOOPBACK}
    workers = {s.name: {"cls": Nanny, "options": {**options, "env": s.env, "name": s.name}} for s in specs}
    # Its HTTP endpoints (health, no dashboard) on a free loopback port: Dask's default, 8787, is
    # taken by the second grid on a machine and Dask then warns about it on the user's terminal.
    http = {"dashboard_address": f"{LOOPBACK}:0", "dashboard": False}
    scheduler = {"cls": Scheduler, "options": {**http, "host": LOOPBACK}}
    return SpecCluster(workers=workers, scheduler=scheduler, silence_logs=40)


class LocalBackend:
    """A Dask cluster of this machine's cores (or GPUs)."""

    cell_threads = None  # each worker's OMP_NUM_THREADS sets its cells' threads

    def __init__(self, workers: int | None = None, cells_per_gpu: int = 1, threads_per_cell: int = 1,
                 n_gpus: int | None = None, cpu_count: int | None = None):  # fmt: skip
        self.n_gpus = visible_gpus() if n_gpus is None else n_gpus
        self.cells_per_gpu = cells_per_gpu
        self.specs = plan_workers(self.n_gpus, cpu_count or os.cpu_count() or 1, cells_per_gpu, workers,
                                  threads_per_cell if not self.n_gpus else None)  # fmt: skip

    def describe(self) -> str:
        if self.n_gpus:
            return (f"local: {len(self.specs)} worker(s) on {self.n_gpus} GPU(s) ({self.cells_per_gpu} cell(s) per "
                    f"GPU), {self.specs[0].threads} torch thread(s) per cell")  # fmt: skip
        return f"local: {len(self.specs)} worker(s), no GPU, {self.specs[0].threads} torch thread(s) per cell"

    def concurrent_cells(self) -> int:
        return len(self.specs)

    def open(self):
        from hrl_core.lab.clusters import client_of

        return client_of(local_cluster(self.specs))
