"""The torchmetrics `Metric` under nvsc's pair-based scores (TSED, rotation-only TSED, overlap PSNR): each scene
given to `update` adds one value per neighbouring pair of its views, and `compute` gives the mean over every pair
of every scene (a scene with more pairs weighs more, as when all pairs are pooled). Summed states, so it reduces
across processes like any torchmetrics metric."""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import Metric

from scenes.cameras import Cameras


class PairMeanMetric(Metric):
    """Mean of a per-pair value over all pairs of the scenes given to `update`; subclasses define `pair_values`."""

    higher_is_better = True
    is_differentiable = False
    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("pairs", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def pair_values(self, images: np.ndarray, cameras: Cameras) -> list[float]:
        """One value per neighbouring pair of one scene's views."""
        raise NotImplementedError

    def update(self, images: np.ndarray, cameras: Cameras) -> None:
        """images: [N, H, W, 3] in [0, 1], the views of one scene in trajectory order; cameras: theirs."""
        values = self.pair_values(images, cameras)
        self.total += float(sum(values))
        self.pairs += len(values)

    def compute(self) -> torch.Tensor:
        return self.total / self.pairs
