"""TSED: thresholded symmetric epipolar distance (Yu et al. 2023, "Long-Term Photometric Consistent Novel View
Synthesis with Diffusion Models", Sec. 5), a 3D-consistency score that needs no learned weights.

For each pair of neighbouring views (consecutive in the order given, as along a camera trajectory): SIFT keypoints
matched by descriptor; for each match the symmetric epipolar distance (SED) under the fundamental matrix of the two
*known* cameras; the pair is consistent when it has at least `min_matches` matches and their median SED is below
`max_median_error` pixels. TSED = the fraction of consistent pairs (higher is better).

Matchers (`TSEDConfig.matcher`):

- ``"colmap"`` (the default) computes TSED as its authors do. Their scripts (YorkUCVIL/Photoconsistent-NVS,
  `src/scripts/colmap-recover-matches.py`, `compute_sed.py`, `eval_consistency.py`) run COLMAP's
  `feature_extractor` with `--SiftExtraction.edge_threshold 30` and otherwise default options, then COLMAP's
  `exhaustive_matcher` with default options, and read the raw matches (the `matches` table, before geometric
  verification). This mode reproduces that with OpenCV's SIFT, setting by setting (COLMAP 3.8's
  `SiftExtractionOptions` / `SiftMatchingOptions` defaults, unchanged in pycolmap 4.2):

  - grey image: FreeImage's Rec. 709 luma, here `0.2126 R + 0.7152 G + 0.0722 B` of the 8-bit view, rounded;
  - `first_octave` -1: OpenCV's default too (both double the image first);
  - `octave_resolution` 3: `nOctaveLayers=3`;
  - `num_octaves` 4: keypoints of OpenCV's octaves above 2 (of -1, 0, 1, 2) are dropped;
  - `peak_threshold` 0.02 / 3: `contrastThreshold=0.02`, since OpenCV rejects `abs(D) * nOctaveLayers <
    contrastThreshold` where VLFeat rejects `abs(D) < peak_threshold`, both on the DoG of a [0, 1] image;
  - `edge_threshold` 30 (the authors' flag; COLMAP's default is 10): `edgeThreshold=30`, both keeping keypoints
    with `tr^2 / det < (r + 1)^2 / r`;
  - `max_num_orientations` 2: at most 2 keypoints per location (OpenCV makes one per orientation peak);
  - `max_num_features` 8192: the 8192 of largest scale kept;
  - `normalization` L1_ROOT: RootSIFT, each descriptor L1-normalised and square-rooted (which leaves it of unit L2
    norm), stored as `uint8(round(512 x))` (`root_sift_uint8`);
  - `max_distance` 0.7: a cap on the angle `arccos(d_a . d_b / 512^2)` between stored descriptors, in radians
    (`descriptor_angles`), not on an L2 distance;
  - `max_ratio` 0.8: Lowe's ratio on those angles, a match kept when best < 0.8 x second best;
  - `cross_check` true: a match must be the best, and pass both tests, in both directions;
  - `TwoViewGeometry.min_num_inliers` 15: COLMAP writes no matches for a pair with fewer (`matches = {}` in its
    matcher), so the paper's 10 (`eval_consistency.py --tm 10`) acts as 15: `min_matches=15`.

  What OpenCV does not allow: its DoG pyramid, keypoint refinement, orientation histogram and descriptor
  (quantised to 8 bits before RootSIFT here) are OpenCV's, not VLFeat's (COLMAP's CPU path) or SiftGPU's (the
  authors ran the GPU path), so keypoints and descriptors differ in detail; the matching rule applied to them is
  COLMAP's exactly (`match_descriptors`). COLMAP computes the angles in float32, this module in float64.
- ``"opencv"``: nvsc's matcher before it followed the authors (OpenCV's SIFT defaults, Lowe's ratio 0.75 on L2
  descriptor distances, no cross-check, 10 matches). Kept only to compare with scores reported before that change:
  its verdicts differ from COLMAP's more often (on ground truth of 6 procedural objects, 24 views each, it agrees
  with COLMAP on 117 and 99 of 138 pairs at 256 and 128 px, where `colmap` agrees on 126 and 117:
  `benchmarks/tsed_agreement.py`).

A field left as None takes the matcher's value (`MATCHER_DEFAULTS`); a value passed wins.

The stored `matches` count is the matcher's own (a pair with 12 matches shows 12, where the reference's
`neighbors.json` shows 0 because COLMAP dropped them); the verdict is the same.

SIFT finds almost no keypoints on views of a few pixels (32 x 32 gives about 2 matches per ground-truth pair), so
views smaller than `TSEDConfig.min_side` are first upsampled (bicubic) by an integer factor; keypoints are mapped
back, so matches, epipolar distances and the 2 px threshold are all in the views' own pixels. Yu et al. scored
256 px views, where no upsampling happens. With the `colmap` matcher on 32 px ground truth of 6 procedural objects,
x4 (`min_side` 128) lifts the consistent pairs from 0 to 66 of 138 (COLMAP itself on the same upsampled views: 83,
on the views themselves: 0); x6 or x8 do no better (60). Read TSED beside its ground-truth control.

TSED checks only the distance of a match to its epipolar line, so it is blind to errors *along* the lines: on an
orbit around an object the lines run nearly horizontal, so views shifted horizontally stay "consistent", and so do
views mirror-flipped left to right when the orbit is at the cameras' height (`reports.tsed_curve` says more).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields

import cv2
import numpy as np

from reports.pair_metric import PairMeanMetric
from scenes.cameras import Cameras
from scenes.errors import InvalidInputError

logger = logging.getLogger(__name__)

#: The matchers `TSEDConfig.matcher` names.
MATCHERS = ("colmap", "opencv")
#: Per matcher, the value of each `TSEDConfig` field left as None.
MATCHER_DEFAULTS = {
    # COLMAP's SiftMatchingOptions (max_ratio, max_distance, cross_check) and TwoViewGeometry min_num_inliers.
    "colmap": {"ratio": 0.8, "max_distance": 0.7, "cross_check": True, "min_matches": 15},
    # nvsc before it followed the authors: Lowe's 0.75, no distance cap, no cross-check, the paper's 10 matches.
    "opencv": {"ratio": 0.75, "max_distance": math.inf, "cross_check": False, "min_matches": 10},
}

#: COLMAP's SIFT detector (SiftExtractionOptions, COLMAP 3.8 to pycolmap 4.2), with the authors' edge threshold.
COLMAP_OCTAVE_RESOLUTION = 3
COLMAP_FIRST_OCTAVE = -1
COLMAP_NUM_OCTAVES = 4
COLMAP_PEAK_THRESHOLD = 0.02 / COLMAP_OCTAVE_RESOLUTION
#: `--SiftExtraction.edge_threshold 30` in the authors' colmap-recover-matches.py (COLMAP's default: 10).
COLMAP_EDGE_THRESHOLD = 30.0
COLMAP_MAX_NUM_ORIENTATIONS = 2
COLMAP_MAX_NUM_FEATURES = 8192
#: COLMAP stores descriptors as uint8(round(512 x)) of unit vectors (FeatureDescriptorsToUnsignedByte).
DESCRIPTOR_SCALE = 512.0
#: FreeImage's grey conversion (FreeImage_ConvertToGreyscale, Rec. 709 luma), which COLMAP's Bitmap uses.
REC709_LUMA = (0.2126, 0.7152, 0.0722)


@dataclass(frozen=True)
class TSEDConfig:
    """How TSED matches and judges (defaults: the authors' COLMAP pipeline, see the module's table)."""

    #: `colmap` (the reference's matching, the default) or `opencv` (nvsc's earlier matcher, for comparisons).
    matcher: str = "colmap"
    #: A pair needs at least this many matches to count as consistent (None: 15 for `colmap`, whose matcher keeps
    #: no matches below 15; 10, the paper's, for `opencv`).
    min_matches: int | None = None
    #: A pair is consistent when the median SED of its matches is below this, in pixels (the paper's 2).
    max_median_error: float = 2.0
    #: Lowe's ratio test (Lowe 2004, Sec. 7.1): keep a match when its descriptor distance is below this fraction
    #: of the second-nearest one (None: 0.8 on angles for `colmap`, 0.75 on L2 distances for `opencv`).
    ratio: float | None = None
    #: Largest descriptor distance of a match (None: 0.7 rad between RootSIFT descriptors for `colmap`, no cap
    #: for `opencv`).
    max_distance: float | None = None
    #: Keep only mutual best matches (None: True for `colmap`, False for `opencv`).
    cross_check: bool | None = None
    #: Views whose shorter side is below this many pixels are upsampled by the smallest integer factor that reaches
    #: it before SIFT runs (on 32 px views, x4 lifts ground-truth pairs from ~2 to ~14 matches).
    min_side: int = 128

    def __post_init__(self):
        if self.matcher not in MATCHERS:
            raise InvalidInputError("TSED matcher", f"{self.matcher!r} is not a matcher",
                                    f"use one of {list(MATCHERS)}")
        for name, value in MATCHER_DEFAULTS[self.matcher].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if not 0.0 < self.ratio <= 1.0 or not self.max_distance > 0.0 or self.min_matches < 1:
            raise InvalidInputError("TSEDConfig", f"ratio {self.ratio}, max_distance {self.max_distance}, "
                                                  f"min_matches {self.min_matches}",
                                    "pass a ratio in (0, 1], a positive max_distance and min_matches >= 1")

    def describe(self) -> str:
        """One line naming every setting, for logs and reports."""
        return ", ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))


@dataclass(frozen=True)
class Features:
    """SIFT keypoints of one view and their descriptors."""

    #: [K, 2] float64 pixel coordinates in the view's own pixels, nvsc's convention (pixel centres at i + 0.5).
    points: np.ndarray
    #: [K, 128]: `colmap`: uint8 RootSIFT scaled by 512, as COLMAP stores them; `opencv`: OpenCV's float32 ones.
    descriptors: np.ndarray
    #: [K] scale (OpenCV's keypoint size) in the pixels SIFT ran on.
    sizes: np.ndarray


@dataclass(frozen=True)
class PairResult:
    """The verdict on one pair of neighbouring views."""

    #: Indices of the two views.
    first: int
    second: int
    #: Matches the matcher kept between the two views.
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


def upsampling_factor(height: int, width: int, min_side: int) -> int:
    """The smallest integer factor that brings the shorter side of an image to at least `min_side` pixels."""
    return max(1, -(-min_side // min(height, width)))


def grey_uint8(image: np.ndarray, matcher: str = "colmap") -> np.ndarray:
    """[H, W] uint8 grey of an RGB image [H, W, 3] in [0, 1], first rounded to 8 bits per channel as a PNG holds
    it: Rec. 709 luma (FreeImage's, COLMAP's) for `colmap`, OpenCV's RGB2GRAY (0.299, 0.587, 0.114) for `opencv`."""
    if matcher == "opencv":  # exactly as nvsc rounded before
        return cv2.cvtColor((np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), cv2.COLOR_RGB2GRAY)
    rgb = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)  # as `scenes.images.write_png` stores it
    luma = rgb.astype(np.float32) @ np.asarray(REC709_LUMA, dtype=np.float32)
    return np.clip(luma + 0.5, 0, 255).astype(np.uint8)


def root_sift_uint8(descriptors: np.ndarray) -> np.ndarray:
    """[K, 128] uint8 RootSIFT of SIFT descriptors [K, 128] as COLMAP stores them: each row L1-normalised and
    square-rooted (L1_ROOT; the result has unit L2 norm), then `uint8(round(512 x))`, clipped at 255."""
    descriptors = np.asarray(descriptors, dtype=np.float64)
    total = descriptors.sum(axis=1, keepdims=True)
    root = np.sqrt(descriptors / np.where(total > 0, total, 1.0))
    return np.clip(np.round(DESCRIPTOR_SCALE * root), 0, 255).astype(np.uint8)


def _octave(keypoint: cv2.KeyPoint) -> int:
    """OpenCV's octave of a keypoint (-1 for the doubled image), from the low byte of `KeyPoint.octave`."""
    return ((keypoint.octave & 255) ^ 128) - 128


def _colmap_keypoints(keypoints) -> list[int]:
    """Indices of OpenCV keypoints that COLMAP's detector settings keep: octaves -1 to 2 (num_octaves 4 from
    first_octave -1), at most `COLMAP_MAX_NUM_ORIENTATIONS` per location (the first in OpenCV's order), and of
    those the `COLMAP_MAX_NUM_FEATURES` largest (COLMAP's ExtractTopScaleFeatures)."""
    last_octave = COLMAP_FIRST_OCTAVE + COLMAP_NUM_OCTAVES - 1
    per_location: dict[tuple[float, float, float], int] = {}
    kept = []
    for index, keypoint in enumerate(keypoints):
        if _octave(keypoint) > last_octave:
            continue
        location = (keypoint.pt[0], keypoint.pt[1], keypoint.size)
        if per_location.get(location, 0) >= COLMAP_MAX_NUM_ORIENTATIONS:
            continue
        per_location[location] = per_location.get(location, 0) + 1
        kept.append(index)
    if len(kept) > COLMAP_MAX_NUM_FEATURES:
        sizes = np.array([keypoints[i].size for i in kept])
        kept = [kept[i] for i in np.sort(np.argsort(-sizes, kind="stable")[:COLMAP_MAX_NUM_FEATURES])]
    return kept


def sift_features(image: np.ndarray, matcher: str = "colmap", factor: int = 1) -> Features:
    """SIFT keypoints and descriptors of an RGB view [H, W, 3] in [0, 1] with `matcher`'s detector and
    descriptor normalisation (module docstring). With `factor` > 1 SIFT runs on the view upsampled (bicubic) by
    `factor`; points are still in the view's own pixels."""
    if factor > 1:
        image = cv2.resize(np.asarray(image, dtype=np.float32), None, fx=factor, fy=factor,
                           interpolation=cv2.INTER_CUBIC)
    grey = grey_uint8(image, matcher)
    if matcher == "colmap":
        sift = cv2.SIFT_create(nOctaveLayers=COLMAP_OCTAVE_RESOLUTION,
                               contrastThreshold=COLMAP_PEAK_THRESHOLD * COLMAP_OCTAVE_RESOLUTION,
                               edgeThreshold=COLMAP_EDGE_THRESHOLD)
    else:
        sift = cv2.SIFT_create()
    keypoints, descriptors = sift.detectAndCompute(grey, None)
    if descriptors is None or len(keypoints) == 0:
        empty_descriptors = np.zeros((0, 128), dtype=np.uint8 if matcher == "colmap" else np.float32)
        return Features(np.zeros((0, 2)), empty_descriptors, np.zeros(0))
    if matcher == "colmap":
        kept = _colmap_keypoints(keypoints)
        keypoints, descriptors = [keypoints[i] for i in kept], root_sift_uint8(descriptors[kept])
    # OpenCV's pixel centre i in the upsampled image sits at (i + 0.5) / factor in nvsc's coordinates.
    points = (np.array([k.pt for k in keypoints], dtype=np.float64).reshape(-1, 2) + 0.5) / factor
    return Features(points, descriptors, np.array([k.size for k in keypoints], dtype=np.float64))


def descriptor_angles(descriptors_a: np.ndarray, descriptors_b: np.ndarray) -> np.ndarray:
    """[Ka, Kb] angles in radians between uint8 descriptors stored as COLMAP stores them (unit vectors times 512):
    `arccos(min(d_a . d_b / 512^2, 1))`, COLMAP's descriptor distance (FindBestMatchesOneWayBruteForce). The dot
    products of integers below 2^53 are exact in float64."""
    dots = np.asarray(descriptors_a, dtype=np.float64) @ np.asarray(descriptors_b, dtype=np.float64).T
    return np.arccos(np.minimum(dots / DESCRIPTOR_SCALE ** 2, 1.0))


def best_matches_one_way(distances: np.ndarray, ratio: float, max_distance: float) -> np.ndarray:
    """[Ka] the index in b of each a's match, -1 for none, from distances [Ka, Kb] (smaller is closer): the
    nearest b (the first on ties) when its distance is at most `max_distance` and below `ratio` times the
    second nearest's (a tie fails). With one b the second distance is pi / 2, the angle of a zero dot product,
    as in COLMAP."""
    count_a, count_b = distances.shape
    best = np.full(count_a, -1)
    if count_a == 0 or count_b == 0:
        return best
    nearest = np.argmin(distances, axis=1)
    rows = np.arange(count_a)
    first = distances[rows, nearest]
    if count_b > 1:
        others = distances.copy()
        others[rows, nearest] = np.inf
        second = others.min(axis=1)
    else:
        second = np.full(count_a, np.pi / 2)
    keep = (first <= max_distance) & (first < ratio * second)
    best[keep] = nearest[keep]
    return best


def match_descriptors(features_a: Features, features_b: Features, config: TSEDConfig = TSEDConfig()) -> np.ndarray:
    """[M, 2] index pairs (into a's and b's keypoints) of the matches between two views' features.

    `colmap`: COLMAP's brute-force rule on descriptor angles (`descriptor_angles`): the ratio test and the
    distance cap in each direction, then (with `cross_check`) only pairs each side's best for the other.
    `opencv`: OpenCV's brute-force k=2 nearest neighbours on L2 distances with Lowe's ratio test (and the same
    cross-check and distance cap when set), as nvsc matched before.
    """
    empty = np.zeros((0, 2), dtype=int)
    if len(features_a.points) == 0 or len(features_b.points) == 0:
        return empty
    if config.matcher == "colmap":
        distances = descriptor_angles(features_a.descriptors, features_b.descriptors)
        forward = best_matches_one_way(distances, config.ratio, config.max_distance)
        backward = (best_matches_one_way(distances.T, config.ratio, config.max_distance) if config.cross_check
                    else None)
    else:
        forward = _opencv_one_way(features_a.descriptors, features_b.descriptors, config)
        backward = (_opencv_one_way(features_b.descriptors, features_a.descriptors, config) if config.cross_check
                    else None)
    first = np.flatnonzero(forward >= 0)
    second = forward[first]
    if backward is not None:
        mutual = backward[second] == first
        first, second = first[mutual], second[mutual]
    return np.stack([first, second], axis=1) if len(first) else empty


def _opencv_one_way(descriptors_a: np.ndarray, descriptors_b: np.ndarray, config: TSEDConfig) -> np.ndarray:
    best = np.full(len(descriptors_a), -1)
    if len(descriptors_b) < 2:
        return best
    for pair in cv2.BFMatcher(cv2.NORM_L2).knnMatch(descriptors_a, descriptors_b, k=2):
        if (len(pair) == 2 and pair[0].distance < config.ratio * pair[1].distance
                and pair[0].distance <= config.max_distance):
            best[pair[0].queryIdx] = pair[0].trainIdx
    return best


def sift_matches(image_a: np.ndarray, image_b: np.ndarray, config: TSEDConfig = TSEDConfig(), factor: int = 1
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates [M, 2] in each view of the SIFT matches between images [H, W, 3] in [0, 1] that
    `config`'s matcher keeps; in the convention of `Cameras.project` (OpenCV puts pixel centres at integers, nvsc
    at i + 0.5). With `factor` > 1, SIFT runs on the images upsampled by `factor`; coordinates are still in the
    input's pixels."""
    features_a = sift_features(image_a, config.matcher, factor)
    features_b = sift_features(image_b, config.matcher, factor)
    matches = match_descriptors(features_a, features_b, config)
    return features_a.points[matches[:, 0]], features_b.points[matches[:, 1]]


def pair_consistency(images: np.ndarray, cameras: Cameras, first: int, second: int,
                     config: TSEDConfig = TSEDConfig()) -> PairResult:
    """The verdict on views `first` and `second` of images [N, H, W, 3] under their cameras."""
    height, width = images.shape[1:3]
    factor = upsampling_factor(height, width, config.min_side)
    points_a, points_b = sift_matches(images[first], images[second], config, factor)
    return judge_pair(first, second, points_a, points_b, cameras, config)


def judge_pair(first: int, second: int, points_a: np.ndarray, points_b: np.ndarray, cameras: Cameras,
               config: TSEDConfig = TSEDConfig()) -> PairResult:
    """The verdict on matched pixels points_a, points_b [M, 2] of views `first` and `second` of `cameras`:
    consistent with at least `min_matches` matches whose median SED is below `max_median_error`."""
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


class ThresholdedSymmetricEpipolarDistance(PairMeanMetric):
    """TSED over every scene given to `update`: consistent pairs over all pairs."""

    def __init__(self, config: TSEDConfig = TSEDConfig(), **kwargs):
        super().__init__(**kwargs)
        self.config = config

    def pair_values(self, images: np.ndarray, cameras: Cameras) -> list[float]:
        return [float(pair.consistent) for pair in tsed_pairs(images, cameras, self.config)]
