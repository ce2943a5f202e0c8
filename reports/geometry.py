"""Geometry against the truth: the NeRF distilled from a method's views compared with the scene's real depth.

A method whose views agree in 3D and show the right object gives a NeRF whose surface is the object's; blank
views give no surface, another object's views the wrong one, blur a swollen one. At each held-out camera the
fitted field's expected surface point per pixel and its opacity (`nerf.fit.render_geometry`) are compared with
the dataset's depth along the viewing axis (+inf on the background):

- `iou`: silhouette overlap, pixels the NeRF covers (opacity >= 0.5) against pixels the object covers;
- `depth_l1`: mean |depth difference| along the viewing axis where both cover the pixel, in scene units;
- `chamfer`: symmetric Chamfer distance between the two point clouds of all held-out pixels (the mean distance
  from each point to the other cloud's nearest point, averaged over both directions), in scene units;
- `fscore`: F-score of the two clouds at `threshold` scene units (Knapitsch et al. 2017, Tanks and Temples):
  precision = share of NeRF points within it of a true point, recall the converse.

Alignment: none is estimated, and none is needed. The NeRF is fitted in the dataset's world frame under the
dataset's own cameras, so both clouds are already in one frame and one scale (a learned reconstructor with its
own frame would need a similarity fit first). The procedural objects fit the unit sphere, so one scene unit is
the object's radius.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from scenes.cameras import Cameras
from scenes.errors import InvalidInputError

#: Opacity from which a NeRF ray counts as hitting a surface.
OPACITY_THRESHOLD = 0.5


@dataclass(frozen=True)
class GeometryConfig:
    """Thresholds of the geometry scores."""

    #: Distance (scene units) under which a point counts as matched, for the F-score (0.05: 5% of the radius of
    #: the procedural objects).
    threshold: float = 0.05


def depth_to_points(depth: np.ndarray, cameras: Cameras) -> np.ndarray:
    """World points [N, H, W, 3] of depth [N, H, W] along each camera's viewing axis at the pixel centres
    (NaN where the depth is not finite)."""
    k = cameras.intrinsics
    v, u = np.mgrid[0:k.height, 0:k.width] + 0.5  # pixel centres, as `Cameras.project` places them
    rays = np.stack([(u - k.cx) / k.fx, (v - k.cy) / k.fy, np.ones_like(u)], axis=-1)  # [H, W, 3], z = 1
    finite = np.where(np.isfinite(depth), depth, np.nan)
    in_camera = rays[None] * finite[..., None]  # [N, H, W, 3], OpenCV camera axes
    c2w = cameras.to_opencv()  # [N, 4, 4]
    return np.einsum("nij,nhwj->nhwi", c2w[:, :3, :3], in_camera) + c2w[:, None, None, :3, 3]


def viewing_depth(points: np.ndarray, cameras: Cameras) -> np.ndarray:
    """Depth [N, H, W] along each camera's viewing axis of world points [N, H, W, 3] seen by camera n."""
    c2w = cameras.to_opencv()
    forward, centre = c2w[:, :3, 2], c2w[:, :3, 3]  # OpenCV's +z is the viewing direction
    return np.einsum("nhwi,ni->nhw", points - centre[:, None, None], forward)


def chamfer_and_fscore(predicted: np.ndarray, true: np.ndarray, threshold: float) -> tuple[float, float]:
    """(symmetric Chamfer distance, F-score at `threshold`) of point clouds [P, 3] and [Q, 3]; (NaN, 0) when
    either is empty."""
    if len(predicted) == 0 or len(true) == 0:
        return math.nan, 0.0
    to_true = cKDTree(true).query(predicted)[0]  # [P]
    to_predicted = cKDTree(predicted).query(true)[0]  # [Q]
    chamfer = 0.5 * (to_true.mean() + to_predicted.mean())
    precision, recall = np.mean(to_true < threshold), np.mean(to_predicted < threshold)
    fscore = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return float(chamfer), float(fscore)


def geometry_scores(points: np.ndarray, opacity: np.ndarray, true_depth: np.ndarray, cameras: Cameras,
                    config: GeometryConfig = GeometryConfig()) -> dict[str, float]:
    """The geometry scores of one scene: NeRF surface points [N, H, W, 3] and opacity [N, H, W] against the true
    depth [N, H, W] (+inf on the background) at the same `cameras`."""
    if not (points.shape[:3] == opacity.shape == true_depth.shape and len(cameras) == len(true_depth)):
        raise InvalidInputError("geometry", f"surface points {list(points.shape)}, opacity {list(opacity.shape)}, "
                                f"depth {list(true_depth.shape)} for {len(cameras)} cameras",
                                "pass one [H, W] map per held-out camera, in the same order")
    covered, occupied = opacity >= OPACITY_THRESHOLD, np.isfinite(true_depth)
    union = np.logical_or(covered, occupied).sum()
    iou = float(np.logical_and(covered, occupied).sum() / union) if union else math.nan
    both = covered & occupied
    depth_l1 = float(np.abs(viewing_depth(points, cameras)[both] - true_depth[both]).mean()) if both.any() \
        else math.nan
    chamfer, fscore = chamfer_and_fscore(points[covered].astype(np.float64),
                                         depth_to_points(true_depth, cameras)[occupied], config.threshold)
    return {"iou": iou, "depth_l1": depth_l1, "chamfer": chamfer, "fscore": fscore}
