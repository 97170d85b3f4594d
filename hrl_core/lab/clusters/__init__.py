"""Where a grid's cells run: back-ends behind one interface (as submitit's executors).

A :class:`Backend` says what it would start (``describe``, for ``--dry_run``), how many
cells run at once (``concurrent_cells``, for the time estimate), how many torch threads a
cell should pin when the back-end does not set them itself (``cell_threads``), and starts it:
``with executor(backend) as ex: fut = ex.submit(fn, *args)`` hands out futures (submitit's
shape: ``fut.result()``), and ``ex.wait(futures, timeout)`` returns the finished ones. The
Dask client behind it (``backend.open()``) is the back-ends' business, not the grid's. The
back-ends:

- :class:`~.local.LocalBackend`: worker processes on this machine, one per core (or per GPU
  slot), listening on loopback only;
- :class:`~.slurm.SlurmBackend`: dask-jobqueue workers as Slurm jobs (``hrl[slurm]``);
- :class:`~.scheduler.SchedulerBackend`: an existing Dask cluster at an address.

The environment variables a cell needs (where the data, the checkpoints and the plug-ins
are) reach every back-end's workers from :func:`propagated_env`.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

PROPAGATED = ("D4RL_DATASET_DIR", "HRL_PHASE1_DIR", "HRL_PLUGINS")  # what a cell reads from its environment


def propagated_env() -> dict[str, str]:
    """The grid's values of :data:`PROPAGATED` (set them in the workers' own environment when a remote
    cluster sees other paths)."""
    return {k: os.environ[k] for k in PROPAGATED if k in os.environ}


class Backend(Protocol):
    cell_threads: int | None  # torch threads a cell pins (None: the worker's environment sets them)

    def describe(self) -> str: ...

    def concurrent_cells(self) -> int: ...

    def open(self) -> AbstractContextManager: ...  # yields a dask.distributed.Client


def backend(cluster: str = "local", scheduler: str | None = None, slurm=None, workers: int | None = None,
            cells_per_gpu: int = 1, threads_per_cell: int = 1) -> Backend:  # fmt: skip
    """The back-end the command line asks for."""
    if scheduler:
        from hrl_core.lab.clusters.scheduler import SchedulerBackend

        return SchedulerBackend(scheduler, threads_per_cell)
    if cluster == "slurm":
        from hrl_core.lab.clusters.slurm import SlurmBackend, SlurmOptions

        return SlurmBackend(slurm or SlurmOptions())
    from hrl_core.lab.clusters.local import LocalBackend

    return LocalBackend(workers=workers, cells_per_gpu=cells_per_gpu, threads_per_cell=threads_per_cell)


class Executor:
    """What a started back-end offers a grid: ``submit(fn, *args, key=...) -> future`` and
    ``wait(futures, timeout) -> (done, pending)`` (a Dask client underneath)."""

    def __init__(self, client):
        self._client = client

    def submit(self, fn, *args, key: str | None = None):
        # pure=False: the same cell submitted twice is run twice (its lock decides), never cached
        return self._client.submit(fn, *args, key=key, pure=False, retries=0)

    def wait(self, futures, timeout: float | None = None) -> tuple[set, set]:
        """The futures finished within ``timeout`` seconds (at least one, unless the time ran out)."""
        from dask.distributed import TimeoutError as DaskTimeout
        from dask.distributed import wait

        futures = set(futures)
        try:
            result = wait(list(futures), timeout=timeout, return_when="FIRST_COMPLETED")
        except (DaskTimeout, TimeoutError):  # none finished yet: the caller reports progress and waits again
            return set(), futures
        return set(result.done), set(result.not_done)


@contextmanager
def executor(backend: Backend):
    """Start a back-end; yields its :class:`Executor`; stops what it started at the end."""
    with backend.open() as client:
        yield Executor(client)


@contextmanager
def client_of(cluster):
    """A Dask client of a cluster object this grid started, closing both at the end."""
    from dask.distributed import Client

    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()
