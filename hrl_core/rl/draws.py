"""Where a run's random numbers come from during training.

A run alone draws from torch's default generator, seeded once by ``seed_everything`` (its
numbers are as they have always been). A population (``hrl_core.rl.population``) trains several
runs as one computation; each of its cells keeps its own ``torch.Generator``, started from the
state the default generator would have had in the cell's solo run, and every draw of the
stacked computation takes each cell's part from that cell's generator, with the shapes and in
the order the solo run draws them. So a cell draws the same numbers alone or in any population,
at any position.
"""

from __future__ import annotations

import torch


class Draws:
    """The default generator (a run alone). Methods take the shapes a solo run uses."""

    def normal_like(self, t: torch.Tensor) -> torch.Tensor:
        return torch.randn_like(t)

    def uniform(self, shape: tuple, device, low: float, high: float) -> torch.Tensor:
        return torch.empty(shape, device=device).uniform_(low, high)

    def randperm(self, n: int, device) -> torch.Tensor:
        return torch.randperm(n, device=device)


GLOBAL = Draws()


class CellDraws(Draws):
    """One generator per cell of a population; results are stacked on a leading [P] dimension,
    cell p's slice drawn from ``generators[p]`` exactly as its solo run would draw it."""

    def __init__(self, generators: list[torch.Generator]):
        self.generators = generators

    def normal_like(self, t: torch.Tensor) -> torch.Tensor:  # t: [P, ...]
        out = torch.empty_like(t)
        for p, g in enumerate(self.generators):
            out[p].normal_(generator=g)
        return out

    def uniform(self, shape: tuple, device, low: float, high: float) -> torch.Tensor:  # -> [P, *shape]
        out = torch.empty((len(self.generators), *shape), device=device)
        for p, g in enumerate(self.generators):
            out[p].uniform_(low, high, generator=g)
        return out

    def randperm(self, n: int, device) -> torch.Tensor:  # -> [P, n]
        return torch.stack([torch.randperm(n, device=device, generator=g) for g in self.generators])
