"""TSED: thresholded symmetric epipolar distance (Yu et al. 2023, "Long-Term Photometric Consistent Novel View
Synthesis with Diffusion Models", Sec. 5), a 3D-consistency score that needs no learned weights.

For each pair of neighbouring views (consecutive in the order given, as along a camera trajectory): SIFT keypoints
matched with Lowe's ratio test; for each match the symmetric epipolar distance (SED) under the fundamental matrix
of the two *known* cameras; the pair is consistent when it has at least `min_matches` matches and their median SED
is below `max_median_error` pixels. TSED = the fraction of consistent pairs (higher is better).

SIFT finds almost no keypoints on views of a few pixels (32 x 32 gives about 2 matches per ground-truth pair), so
views smaller than `TSEDConfig.min_side` are first upsampled (bicubic) by an integer factor; keypoints are mapped
back, so matches, epipolar distances and the 2 px threshold are all in the views' own pixels. Yu et al. scored
256 px and larger views, where no upsampling happens. Read TSED beside its ground-truth control.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torchmetrics import Metric

from scenes.cameras import Cameras
from scenes.errors import InvalidInputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TSEDConfig:
    """Thresholds of TSED (defaults: Yu et al. 2023)."""

    #: A pair needs at least this many SIFT matches to count as consistent.
    min_matches: int = 10
    #: A pair is consistent when the median SED of its matches is below this, in pixels.
    max_median_error: float = 2.0
    #: Lowe's ratio test (Lowe 2004, Sec. 7.1): keep a match when its descriptor distance is below this
    #: fraction of the second-nearest one.
    ratio: float = 0.75
    #: Views whose shorter side is below this many pixels are upsampled by the smallest integer factor that reaches
    #: it before SIFT runs (on the demo's 32 px views, x4 lifts ground-truth pairs from ~2 to ~14 matches).
    min_side: int = 128


@dataclass(frozen=True)
class PairResult:
    """The verdict on one pair of neighbouring views."""

    #: Indices of the two views.
    first: int
    second: int
    #: SIFT matches that passed the ratio test.
    matches: int
    #: Median SED over the matches in pixels (NaN without matches).
    median_error: float
    consistent: bool


def fundamental_matrix(c2w_a: np.ndarray, c2w_b: np.ndarray, cameras_intrinsics) -> np.ndarray:
    """F [3, 3] with x_b^T F x_a = 0 for pixel coordinates x = (u, v, 1) of one world point in views a and b.

    c2w_*: [4, 4] camera-to-world, OpenGL axes (`scenes.cameras`); pixel coordinates as `Cameras.project` gives
    them (u right, v down, pixel centres at i + 0.5). Hartley & Zisserman, Sec. 9.2.2 and 9.6: with OpenCV
    camera axes and X_b = R X_a + t, E = [t]_x R and F = K^-T E K^-1.
    """
    k = cameras_intrinsics
    intrinsic = np.array([[k.fx, 0.0, k.cx], [0.0, k.fy, k.cy], [0.0, 0.0, 1.0]])
    w2c_a, w2c_b = (np.linalg.inv(Cameras(c2w[None], k).to_opencv()[0]) for c2w in (c2w_a, c2w_b))
    rotation = w2c_b[:3, :3] @ w2c_a[:3, :3].T
    translation = w2c_b[:3, 3] - rotation @ w2c_a[:3, 3]
    cross = np.array([[0.0, -translation[2], translation[1]], [translation[2], 0.0, -translation[0]],
                      [-translation[1], translation[0], 0.0]])
    inverse = np.linalg.inv(intrinsic)
    return inverse.T @ cross @ rotation @ inverse


def symmetric_epipolar_distance(fundamental: np.ndarray, points_a: np.ndarray, points_b: np.ndarray) -> np.ndarray:
    """SED [P] of matched pixels points_a, points_b [P, 2]: the mean of the distance from x_b to the epipolar line
    F x_a and from x_a to F^T x_b, in pixels."""
    homogeneous_a = np.concatenate([points_a, np.ones((len(points_a), 1))], axis=1)
    homogeneous_b = np.concatenate([points_b, np.ones((len(points_b), 1))], axis=1)
    lines_b = homogeneous_a @ fundamental.T  # [P, 3]: F x_a, lines in view b
    lines_a = homogeneous_b @ fundamental    # [P, 3]: F^T x_b, lines in view a
    residual = np.abs(np.einsum("pi,pi->p", homogeneous_b, lines_b))  # x_b^T F x_a, the same for both lines
    distance_b = residual / np.maximum(np.linalg.norm(lines_b[:, :2], axis=1), 1e-12)
    distance_a = residual / np.maximum(np.linalg.norm(lines_a[:, :2], axis=1), 1e-12)
    return 0.5 * (distance_a + distance_b)


def _gray_uint8(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor((np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), cv2.COLOR_RGB2GRAY)


def upsampling_factor(height: int, width: int, min_side: int) -> int:
    """The smallest integer factor that brings the shorter side of an image to at least `min_side` pixels."""
    return max(1, -(-min_side // min(height, width)))


def sift_matches(image_a: np.ndarray, image_b: np.ndarray, ratio: float, factor: int = 1
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates [M, 2] in each view of the SIFT matches between images [H, W, 3] in [0, 1] that pass the
    ratio test; in the convention of `Cameras.project` (OpenCV puts pixel centres at integers, nvsc at i + 0.5).
    With `factor` > 1, SIFT runs on the images upsampled by `factor`; coordinates are still in the input's pixels."""

    def gray(image: np.ndarray) -> np.ndarray:
        if factor > 1:
            image = cv2.resize(image.astype(np.float32), None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
        return _gray_uint8(image)

    sift = cv2.SIFT_create()
    keypoints_a, descriptors_a = sift.detectAndCompute(gray(image_a), None)
    keypoints_b, descriptors_b = sift.detectAndCompute(gray(image_b), None)
    empty = np.zeros((0, 2))
    if descriptors_a is None or descriptors_b is None or len(keypoints_a) < 1 or len(keypoints_b) < 2:
        return empty, empty
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(descriptors_a, descriptors_b, k=2)
    good = [pair[0] for pair in pairs if len(pair) == 2 and pair[0].distance < ratio * pair[1].distance]
    if not good:
        return empty, empty
    # OpenCV's pixel centre i in the upsampled image sits at (i + 0.5) / factor in nvsc's coordinates.
    points_a = (np.array([keypoints_a[m.queryIdx].pt for m in good], dtype=np.float64) + 0.5) / factor
    points_b = (np.array([keypoints_b[m.trainIdx].pt for m in good], dtype=np.float64) + 0.5) / factor
    return points_a, points_b


def pair_consistency(images: np.ndarray, cameras: Cameras, first: int, second: int,
                     config: TSEDConfig = TSEDConfig()) -> PairResult:
    """The verdict on views `first` and `second` of images [N, H, W, 3] under their cameras."""
    height, width = images.shape[1:3]
    factor = upsampling_factor(height, width, config.min_side)
    points_a, points_b = sift_matches(images[first], images[second], config.ratio, factor)
    if len(points_a) == 0:
        return PairResult(first, second, 0, float("nan"), False)
    fundamental = fundamental_matrix(cameras.c2w[first], cameras.c2w[second], cameras.intrinsics)
    median = float(np.median(symmetric_epipolar_distance(fundamental, points_a, points_b)))
    consistent = len(points_a) >= config.min_matches and median < config.max_median_error
    return PairResult(first, second, len(points_a), median, consistent)


def _check(images: np.ndarray, cameras: Cameras) -> np.ndarray:
    images = np.asarray(images)
    k = cameras.intrinsics
    if images.ndim != 4 or images.shape[1:] != (k.height, k.width, 3) or len(images) != len(cameras):
        raise InvalidInputError("TSED views", f"images of shape {list(images.shape)} for {len(cameras)} cameras "
                                              f"of {k.height} x {k.width}", "pass one [H, W, 3] view per camera")
    if len(images) < 2:
        raise InvalidInputError("TSED views", f"{len(images)} view", "pass at least two views: TSED scores pairs")
    return images


def tsed_pairs(images: np.ndarray, cameras: Cameras, config: TSEDConfig = TSEDConfig()) -> list[PairResult]:
    """The verdicts on each pair of consecutive views of images [N, H, W, 3] (N >= 2) under `cameras`."""
    images = _check(images, cameras)
    return [pair_consistency(images, cameras, i, i + 1, config) for i in range(len(images) - 1)]


def tsed(images: np.ndarray, cameras: Cameras, config: TSEDConfig = TSEDConfig()) -> float:
    """TSED of images [N, H, W, 3] in [0, 1] seen by `cameras`: the fraction of consistent neighbouring pairs."""
    pairs = tsed_pairs(images, cameras, config)
    logger.debug("TSED pairs: %s", pairs)
    return float(np.mean([pair.consistent for pair in pairs]))


class ThresholdedSymmetricEpipolarDistance(Metric):
    """TSED over every scene given to `update`: consistent pairs over all pairs."""

    higher_is_better = True
    is_differentiable = False
    full_state_update = False

    def __init__(self, config: TSEDConfig = TSEDConfig(), **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.add_state("consistent", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("pairs", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, images: np.ndarray, cameras: Cameras) -> None:
        """images: [N, H, W, 3] in [0, 1], the views of one scene in trajectory order; cameras: their cameras."""
        pairs = tsed_pairs(images, cameras, self.config)
        self.consistent += sum(pair.consistent for pair in pairs)
        self.pairs += len(pairs)

    def compute(self) -> torch.Tensor:
        return self.consistent.double() / self.pairs
