"""An occupancy grid over the scene box, updated during training, that lets the renderer skip empty space.

instant-NGP (Mueller et al. 2022, Appendix E.2): every `update_every` training steps, each cell's density is
re-estimated at a random point inside it and kept as max(decay * old, new), so a cell empties out slowly and
refills at once; a cell is occupied while the opacity of one sample step through it exceeds a threshold, capped
by the mean over the grid as nerfacc's `OccGridEstimator` does (a field that is still faint everywhere must not
empty the whole grid). Samples in empty cells are not evaluated: they get zero density, which is what the grid
says they have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from scenes.errors import InvalidInputError

if TYPE_CHECKING:
    from nerf.field import HashGridField


@dataclass
class OccupancyConfig:
    """The occupancy grid of a fit."""

    enabled: bool = True
    """Skip samples in empty cells (False: evaluate every sample, as without a grid)."""
    resolution: int = 32
    """Cells per axis across the scene box (32^3 cells: one update costs about one training step)."""
    update_every: int = 16
    """Training steps between two updates of the grid (instant-NGP's 16)."""
    warmup_steps: int = 64
    """Steps before the grid is first updated; until then every cell is occupied (the young field is faint
    everywhere and would empty the grid)."""
    decay: float = 0.95
    """Each update keeps max(decay * old density, new density) per cell (instant-NGP's 0.95)."""
    threshold: float = 0.01
    """A cell is occupied while 1 - exp(-density * step) exceeds min(threshold, mean over the grid), for the
    nominal sample step of the renderer (nerfacc's default 0.01)."""


def check_occupancy_config(config: OccupancyConfig) -> None:
    """Raise `InvalidInputError` naming the first parameter of `config` that cannot work."""
    for name in ("resolution", "update_every"):
        if int(getattr(config, name)) < 1:
            raise InvalidInputError(f"OccupancyConfig.{name}", f"must be a positive integer, got "
                                                               f"{getattr(config, name)}", "use the default")
    if not 0 <= config.decay < 1 or not 0 < config.threshold < 1 or config.warmup_steps < 0:
        raise InvalidInputError("OccupancyConfig", f"decay={config.decay}, threshold={config.threshold}, "
                                                   f"warmup_steps={config.warmup_steps}",
                                "use 0 <= decay < 1, 0 < threshold < 1 and warmup_steps >= 0")


class OccupancyGrid:
    """Which cells of a [G, G, G] grid over the box aabb [2, 3] hold matter (x-major: cell (i, j, k) is entry
    (i * G + j) * G + k)."""

    def __init__(self, config: OccupancyConfig, aabb: Tensor):
        check_occupancy_config(config)
        self.config = config
        self.aabb = aabb.detach().clone()  # [2, 3]
        cells = config.resolution**3
        self.density = torch.zeros(cells, device=aabb.device)  # [G^3] running estimate per cell
        self.occupied = torch.ones(cells, dtype=torch.bool, device=aabb.device)  # [G^3]
        g = torch.arange(config.resolution, device=aabb.device)
        # [G^3, 3] integer coordinates of every cell, in the flat order above.
        self.cell_coords = torch.stack(torch.meshgrid(g, g, g, indexing="ij"), dim=-1).view(-1, 3)

    def due(self, step: int) -> bool:
        """Whether the grid is updated after training step `step` (0-based)."""
        return self.config.enabled and step + 1 >= self.config.warmup_steps and \
            (step + 1 - self.config.warmup_steps) % self.config.update_every == 0

    @torch.no_grad()
    def update(self, field: HashGridField, step_size: float, generator: torch.Generator | None = None,
               chunk: int = 65536) -> None:
        """Re-estimate every cell's density at one random point inside it (the field's `density` at [P, 3])."""
        size = self.aabb[1] - self.aabb[0]
        jitter = torch.rand(self.cell_coords.shape, generator=generator, device=self.aabb.device)
        positions = self.aabb[0] + (self.cell_coords + jitter) / self.config.resolution * size  # [G^3, 3]
        fresh = torch.cat([field.density(positions[i:i + chunk])[0].float() for i in range(0, len(positions), chunk)])
        # In place: a captured CUDA graph of the training step (`nerf/train_step.py`) reads these very buffers.
        torch.maximum(self.density * self.config.decay, fresh, out=self.density)
        opacity = 1.0 - torch.exp(-self.density * step_size)  # [G^3]
        torch.gt(opacity, opacity.mean().clamp(max=self.config.threshold), out=self.occupied)

    def query(self, positions: Tensor) -> Tensor:
        """Whether each of positions [P, 3] (world units) lies in an occupied cell: bool [P]. Positions outside the
        box fall into its border cells."""
        resolution = self.config.resolution
        cells = ((positions - self.aabb[0]) / (self.aabb[1] - self.aabb[0]) * resolution).long()
        cells = cells.clamp(0, resolution - 1)
        return self.occupied[(cells[:, 0] * resolution + cells[:, 1]) * resolution + cells[:, 2]]

    def occupied_fraction(self) -> float:
        """Fraction of the cells that are occupied."""
        return float(self.occupied.float().mean())
