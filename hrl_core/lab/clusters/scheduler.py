"""An existing Dask cluster (``hrl grid --scheduler tcp://host:8786``).

Its workers must see the repository or an installed hrl, the data and a shared results
folder; the address is the cluster's own (not loopback: it is reachable by design, so
protect it as its Dask documentation says)."""

from __future__ import annotations

from contextlib import contextmanager


class SchedulerBackend:
    def __init__(self, address: str, threads_per_cell: int = 1):
        self.address = address
        self.cell_threads = threads_per_cell  # someone else's workers: the grid pins the cells' threads

    def describe(self) -> str:
        return f"an existing Dask cluster at {self.address} (its workers' own resources)"

    def concurrent_cells(self) -> int:
        return 1  # unknown: the estimate assumes one cell at a time

    @contextmanager
    def open(self):
        from dask.distributed import Client

        client = Client(self.address)
        try:
            yield client
        finally:
            client.close()
