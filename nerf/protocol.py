"""3DiM's 3D-consistency protocol (Watson et al. 2023, Sec. 5): fit a position-only NeRF on a subset of a
scene's views and render it at the held-out cameras; comparing those renders with the held-out views scores how
well one 3D scene explains all views."""

from __future__ import annotations

import logging

import numpy as np

from nerf.fit import NeRFConfig, fit_nerf, render_views
from scenes.errors import InvalidInputError
from scenes.scene import MultiViewScene

logger = logging.getLogger(__name__)


def heldout_indices(num_views: int, every: int) -> np.ndarray:
    """Indices of the held-out views: every `every`-th view from offset every // 2 (so view 0, the input view of
    a generated scene, always stays in the training subset)."""
    if int(every) < 2:
        raise InvalidInputError("every", f"must be at least 2, got {every}",
                                "hold out every 2nd view or sparser, so view 0 and others remain for training")
    indices = np.arange(int(every) // 2, int(num_views), int(every))
    if len(indices) == 0:
        raise InvalidInputError("every", f"holds out no view of a scene with {num_views} views (every={every})",
                                f"use every < {2 * int(num_views)} or a scene with more views")
    return indices


def split_views(scene: MultiViewScene, every: int) -> tuple[MultiViewScene, MultiViewScene]:
    """(training views, held-out views) of `scene`, each in the original order."""
    heldout = heldout_indices(len(scene), every)
    train = np.setdiff1d(np.arange(len(scene)), heldout)
    return scene.subset(train), scene.subset(heldout)


def fit_and_render_heldout(scene: MultiViewScene, every: int, config: NeRFConfig
                           ) -> tuple[np.ndarray, MultiViewScene]:
    """Renders [M, H, W, 3] float32 of a NeRF fitted on the training views at the M held-out cameras, and the
    held-out views themselves (compare the two for the 3D-consistency score)."""
    train, heldout = split_views(scene, every)
    logger.info("consistency protocol: fitting on %d views, rendering %d held-out views", len(train), len(heldout))
    fitted = fit_nerf(train, config)
    return render_views(fitted, heldout.cameras), heldout
