"""3DiM's 3D-consistency protocol (Watson et al. 2023, Sec. 5): fit a position-only NeRF on a subset of a
scene's views and render it at the held-out cameras; comparing those renders with the held-out views scores how
well one 3D scene explains all views.

The training subset is chosen one of three ways (`SubsetConfig`): explicit view indices, a fraction drawn from a
seed, or every k-th view held out. Whichever way, the input view of a generated scene always trains: it was given
to the generator, not generated, so scoring it would measure nothing about the model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from nerf.fit import FittedNeRF, NeRFConfig, fit_nerf, render_geometry, render_views
from scenes.errors import InvalidInputError
from scenes.scene import MultiViewScene

logger = logging.getLogger(__name__)


@dataclass
class SubsetConfig:
    """Which views of a scene train the NeRF; all others are held out and rendered. The first way that is set
    wins: `train_views`, then `train_fraction`, then `heldout_every`."""

    heldout_every: int = 4
    """Hold out every k-th view, counted from the kept view + k // 2 (so the kept view trains)."""
    train_fraction: float = 0.0
    """If > 0: train on round(fraction * N) views (at least the kept view), the others drawn at random from
    `seed`; the rest are held out."""
    train_views: tuple[int, ...] = ()
    """If not empty: the indices of the training views (the kept view is added if missing)."""
    keep_view: int = 0
    """Index of the view that always trains (the input view of a generated scene)."""
    seed: int = 0
    """Seed of the random draw of `train_fraction`."""


def heldout_indices(num_views: int, every: int, keep_view: int = 0) -> np.ndarray:
    """Indices of every `every`-th view, starting at keep_view + every // 2 and wrapping around the scene, in
    increasing order (`keep_view` is never among them)."""
    if int(every) < 2:
        raise InvalidInputError("heldout_every", f"must be at least 2, got {every}",
                                "hold out every 2nd view or sparser, so the kept view and others remain for training")
    every, num_views = int(every), int(num_views)
    indices = np.flatnonzero((np.arange(num_views) - keep_view) % every == every // 2)
    if len(indices) == 0:
        raise InvalidInputError("heldout_every", f"holds out no view of a scene with {num_views} views "
                                                 f"(every={every})",
                                "use a smaller heldout_every or a scene with more views")
    return indices


def split_indices(num_views: int, subset: SubsetConfig) -> tuple[np.ndarray, np.ndarray]:
    """(training indices, held-out indices) of a scene with `num_views` views, each increasing."""
    keep = int(subset.keep_view)
    if not 0 <= keep < num_views:
        raise InvalidInputError("SubsetConfig.keep_view", f"view {keep} does not exist in a scene of {num_views} views",
                                f"use an index in 0..{num_views - 1}")
    if len(subset.train_views) > 0:
        chosen = np.asarray(subset.train_views)
        if chosen.dtype.kind not in "iu" or chosen.ndim != 1 or chosen.min() < 0 or chosen.max() >= num_views:
            raise InvalidInputError("SubsetConfig.train_views", f"{list(subset.train_views)} are not all view "
                                                                f"indices of a scene with {num_views} views",
                                    f"list integers in 0..{num_views - 1}")
        train = np.union1d(chosen, [keep])
    elif subset.train_fraction > 0:
        if not subset.train_fraction < 1:
            raise InvalidInputError("SubsetConfig.train_fraction",
                                    f"{subset.train_fraction} leaves no view to hold out",
                                    "use a fraction in (0, 1), e.g. 0.75")
        count = max(1, int(round(subset.train_fraction * num_views)))
        others = np.random.default_rng(subset.seed).permutation(np.setdiff1d(np.arange(num_views), [keep]))
        train = np.union1d(others[: count - 1], [keep])
    else:
        heldout = heldout_indices(num_views, subset.heldout_every, keep)
        return np.setdiff1d(np.arange(num_views), heldout), heldout
    heldout = np.setdiff1d(np.arange(num_views), train)
    if len(heldout) == 0:
        raise InvalidInputError("SubsetConfig", f"trains on all {num_views} views and holds none out",
                                "train on fewer views")
    return train, heldout


def split_views(scene: MultiViewScene, subset: SubsetConfig) -> tuple[MultiViewScene, MultiViewScene]:
    """(training views, held-out views) of `scene`, each in the original order."""
    train, heldout = split_indices(len(scene), subset)
    return scene.subset(train), scene.subset(heldout)


@dataclass
class ProtocolResult:
    """What one run of the protocol produced."""

    scene: MultiViewScene
    """Every view of the scene, in its original order."""
    train: MultiViewScene
    """The views the NeRF was fitted on."""
    heldout: MultiViewScene
    """The held-out views (compare them with `renders` for the consistency score)."""
    renders: MultiViewScene
    """The fitted NeRF at the held-out cameras, with the held-out views' names: images [M, H, W, 3]."""
    fitted: FittedNeRF
    """The fitted field and the statistics of its fit."""
    surface_points: np.ndarray | None = None
    """The field's expected surface point [M, H, W, 3] (world space) at each held-out pixel."""
    opacity: np.ndarray | None = None
    """The field's opacity [M, H, W] at each held-out pixel (below 0.5: the ray hits nothing)."""


def run_protocol(scene: MultiViewScene, subset: SubsetConfig, config: NeRFConfig) -> ProtocolResult:
    """Fit a NeRF on the training subset of `scene` and render it at the held-out cameras."""
    train, heldout = split_views(scene, subset)
    logger.info("consistency protocol: fitting on %d views, rendering %d held-out views", len(train), len(heldout))
    fitted = fit_nerf(train, config)
    renders = MultiViewScene(render_views(fitted, heldout.cameras), heldout.cameras, heldout.names)
    points, opacity = render_geometry(fitted, heldout.cameras)
    return ProtocolResult(scene, train, heldout, renders, fitted, points, opacity)
