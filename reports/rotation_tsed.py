"""TSED under the rotation-only constraint: TSED (Yu et al. 2023, `reports.tsed`) for panoramas, whose cameras
share one centre.

Without a baseline the epipolar constraint is void (the essential matrix [t]_x R is zero), but a stronger one holds:
matched pixels are related by the homography H_ij = K R_j R_i^T K^-1 (`reports.overlap.homography`). So each SIFT
match (found exactly as TSED finds them, by `TSEDConfig`'s matcher, small views upsampled first) is scored by its
symmetric transfer error (Hartley & Zisserman, Sec. 4.2.2): the mean of |x_j - H x_i| and |x_i - H^-1 x_j| in
pixels. A pair of neighbouring views is consistent with at least `min_matches` matches and a median error below
`max_median_error` pixels, TSED's thresholds; the score is the fraction of consistent pairs (higher is better), over
the pairs of `reports.overlap.ring_pairs`.

Matches with *both* ends outside the two views' overlap are left out: a point that the other camera does not see has
no correspondent, so such a match is SIFT confusing two similar patches, not evidence about the shared part of the
scene (with the epipolar constraint these confusions often pass unnoticed, as only the distance to a line counts).
A match with one end inside the overlap is kept and scored, so content misplaced into the overlap still counts.
On 6 procedural test rooms (`scenes.panorama`) the ground-truth / perturbed / noise controls score 0.88 / 0.08 /
0 at 64 px, but only 0.04 / 0 / 0 at 32 px, where SIFT finds fewer than TSED's 15 matches in most pairs (nvsc's
earlier matcher, `TSEDConfig(matcher="opencv")` with 10 matches: 0.62 / 0.04 / 0 and 0.19 / 0.08 / 0): read the
score beside its ground-truth control, and prefer 64 px or more for panoramas.
"""

from __future__ import annotations

import logging

import numpy as np

from reports.overlap import check_rotation_only, homography, ring_pairs
from reports.pair_metric import PairMeanMetric
from reports.tsed import PairResult, TSEDConfig, sift_matches, upsampling_factor
from scenes.cameras import Cameras

logger = logging.getLogger(__name__)


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Pixels [P, 2] mapped by the homography `matrix` [3, 3] (points behind the camera map far away)."""
    mapped = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ matrix.T
    scale = mapped[:, 2:]
    return mapped[:, :2] / np.where(np.abs(scale) > 1e-12, scale, 1e-12)


def lands_inside(matrix: np.ndarray, points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Mask [P]: pixels [P, 2] that `matrix` maps in front of the other camera and inside its height x width view."""
    mapped = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ matrix.T
    in_front = mapped[:, 2] > 1e-9
    uv = mapped[:, :2] / np.where(in_front, mapped[:, 2], 1.0)[:, None]
    return in_front & (uv[:, 0] >= 0) & (uv[:, 0] <= width) & (uv[:, 1] >= 0) & (uv[:, 1] <= height)


def symmetric_transfer_error(matrix: np.ndarray, points_a: np.ndarray, points_b: np.ndarray) -> np.ndarray:
    """Error [P] in pixels of matches points_a, points_b [P, 2] under x_b ~ matrix x_a: the mean of the forward and
    the backward transfer distances."""
    forward = np.linalg.norm(_apply(matrix, points_a) - points_b, axis=1)
    backward = np.linalg.norm(_apply(np.linalg.inv(matrix), points_b) - points_a, axis=1)
    return 0.5 * (forward + backward)


def rotation_pair_consistency(images: np.ndarray, cameras: Cameras, first: int, second: int,
                              config: TSEDConfig = TSEDConfig()) -> PairResult:
    """The verdict on views `first` and `second` of images [N, H, W, 3] under rotation-only `cameras`; `matches`
    counts the matches kept (at least one end in the overlap)."""
    height, width = images.shape[1:3]
    factor = upsampling_factor(height, width, config.min_side)
    points_a, points_b = sift_matches(images[first], images[second], config, factor)
    if len(points_a) == 0:
        return PairResult(first, second, 0, float("nan"), False)
    forward = homography(cameras, first, second)
    shared = lands_inside(forward, points_a, height, width) | lands_inside(np.linalg.inv(forward), points_b,
                                                                          height, width)
    points_a, points_b = points_a[shared], points_b[shared]
    if len(points_a) == 0:
        return PairResult(first, second, 0, float("nan"), False)
    median = float(np.median(symmetric_transfer_error(forward, points_a, points_b)))
    consistent = len(points_a) >= config.min_matches and median < config.max_median_error
    return PairResult(first, second, len(points_a), median, consistent)


def rotation_tsed_pairs(images: np.ndarray, cameras: Cameras, config: TSEDConfig = TSEDConfig(),
                        closed: bool = True) -> list[PairResult]:
    """The verdicts on each neighbouring pair (`ring_pairs`) of a panorama's images [N, H, W, 3] in [0, 1]."""
    images = check_rotation_only(images, cameras, "rotation-only TSED views")
    return [rotation_pair_consistency(images, cameras, a, b, config) for a, b in ring_pairs(len(images), closed)]


def rotation_tsed(images: np.ndarray, cameras: Cameras, config: TSEDConfig = TSEDConfig(),
                  closed: bool = True) -> float:
    """Rotation-only TSED of a panorama: the fraction of its neighbouring pairs that are consistent."""
    pairs = rotation_tsed_pairs(images, cameras, config, closed)
    logger.debug("rotation-only TSED pairs: %s", pairs)
    return float(np.mean([pair.consistent for pair in pairs]))


class RotationTSED(PairMeanMetric):
    """Rotation-only TSED over every panorama given to `update`: consistent pairs over all pairs."""

    def __init__(self, config: TSEDConfig = TSEDConfig(), closed: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.config, self.closed = config, closed

    def pair_values(self, images: np.ndarray, cameras: Cameras) -> list[float]:
        return [float(pair.consistent) for pair in rotation_tsed_pairs(images, cameras, self.config, self.closed)]
