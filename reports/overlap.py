"""Overlap PSNR: MVDiffusion's consistency score for panoramas (Tang et al. 2023, Sec. 4.1, "we compute the PSNR
between the overlapping regions of neighbouring images"), for views whose cameras only rotate about one centre.

Cameras that share a centre see the scene without parallax, so a pixel x_i of view i and the pixel x_j of view j
that sees the same point are related by a homography, whatever the depth (Hartley & Zisserman, Sec. 13.4.2; with
OpenCV world-to-camera rotations R and intrinsics K):

    x_j ~ H_ij x_i,    H_ij = K R_j R_i^T K^-1

Each view is compared with its neighbour warped into it by H (bilinear sampling), on the overlap only: the pixels
of view i whose centre lands inside view j, in front of its camera. Pixel coordinates follow `Cameras.project`
(u right, v down, pixel centres at i + 0.5), which a test checks H against. The score of a panorama is the mean
PSNR over neighbouring pairs (higher is better); the ground-truth views bound it from above (not at +inf: the
bilinear resampling of 8-bit views is not exact: on 6 procedural test rooms, ground truth / perturbed / noise
score 21.8 / 11.9 / 9.3 dB at 64 px and 18.8 / 12.0 / 9.2 dB at 32 px).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from reports.pair_metric import PairMeanMetric
from scenes.cameras import Cameras
from scenes.errors import InvalidInputError

logger = logging.getLogger(__name__)

#: Largest distance between camera centres (scene units) still treated as one centre.
CENTRE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class OverlapPair:
    """The overlap PSNR of one pair of neighbouring views."""

    #: Index of the view compared (its pixels are the reference).
    first: int
    #: Index of its neighbour, warped into the first view.
    second: int
    #: PSNR in dB over the overlap (+inf when identical there).
    psnr: float
    #: Fraction of the first view's pixels that land inside the second view.
    overlap: float


def check_rotation_only(images: np.ndarray, cameras: Cameras, what: str = "panorama views") -> np.ndarray:
    """images [N, H, W, 3] as float64, after checking one view per camera and that every camera has one centre."""
    images = np.asarray(images, dtype=np.float64)
    k = cameras.intrinsics
    if images.ndim != 4 or images.shape[1:] != (k.height, k.width, 3) or len(images) != len(cameras):
        raise InvalidInputError(what, f"images of shape {list(images.shape)} for {len(cameras)} cameras of "
                                      f"{k.height} x {k.width}", "pass one [H, W, 3] view per camera")
    if len(images) < 2:
        raise InvalidInputError(what, f"{len(images)} view", "pass at least two views: the score compares pairs")
    spread = np.abs(cameras.centers - cameras.centers[0]).max()
    if spread > CENTRE_TOLERANCE:
        raise InvalidInputError(what, f"camera centres differ by up to {spread:.3g}: the views have parallax, so no "
                                      "homography relates them", "use rotation-only cameras (a panorama), or score "
                                                                 "these views with TSED and the NeRF score")
    return images


def ring_pairs(count: int, closed: bool = True) -> list[tuple[int, int]]:
    """Neighbouring pairs (i, i + 1) of `count` views in ring order, and (count - 1, 0) when the ring is `closed`."""
    pairs = [(i, i + 1) for i in range(count - 1)]
    return pairs + [(count - 1, 0)] if closed and count > 2 else pairs


def intrinsic_matrix(cameras: Cameras) -> np.ndarray:
    """K [3, 3] in `Cameras.project`'s pixel convention."""
    k = cameras.intrinsics
    return np.array([[k.fx, 0.0, k.cx], [0.0, k.fy, k.cy], [0.0, 0.0, 1.0]])


def homography(cameras: Cameras, source: int, target: int) -> np.ndarray:
    """H [3, 3] with x_target ~ H x_source for pixels x = (u, v, 1) of one direction, cameras sharing a centre."""
    rotations = np.linalg.inv(cameras.to_opencv())[:, :3, :3]  # world-to-camera rotations, OpenCV axes
    intrinsic = intrinsic_matrix(cameras)
    return intrinsic @ rotations[target] @ rotations[source].T @ np.linalg.inv(intrinsic)


def pixel_centres(height: int, width: int) -> np.ndarray:
    """Homogeneous pixel centres [H, W, 3] (u + 0.5, v + 0.5, 1)."""
    v, u = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    return np.stack([u, v, np.ones_like(u)], axis=-1)


def warp_into(images_b: torch.Tensor, homographies: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Views b [P, 3, H, W] resampled (bilinear) at the pixels of views a, and the overlap masks [P, H, W].

    homographies [P, 3, 3] map pixels of a to pixels of b. A pixel of a is in the overlap when it maps in front of
    camera b (positive homogeneous scale: K's last row is (0, 0, 1), so it is the depth along b's axis) and inside
    the span of b's pixel centres, so the bilinear weights fall on real pixels only.
    """
    count, _, height, width = images_b.shape
    centres = torch.from_numpy(pixel_centres(height, width)).to(images_b)  # [H, W, 3]
    mapped = torch.einsum("pij,hwj->phwi", homographies.to(images_b), centres)  # [P, H, W, 3]
    scale = mapped[..., 2]
    in_front = scale > 1e-9
    uv = mapped[..., :2] / torch.where(in_front, scale, torch.ones_like(scale))[..., None]
    inside = in_front & (uv[..., 0] >= 0.5) & (uv[..., 0] <= width - 0.5) & (uv[..., 1] >= 0.5) \
        & (uv[..., 1] <= height - 0.5)
    # grid_sample with align_corners=False puts pixel centres at (i + 0.5) / size * 2 - 1, nvsc's convention.
    grid = torch.stack([uv[..., 0] / width, uv[..., 1] / height], dim=-1) * 2.0 - 1.0
    grid = torch.where(inside[..., None], grid, torch.zeros_like(grid))
    warped = F.grid_sample(images_b, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return warped, inside


def overlap_psnr_pairs(images: np.ndarray, cameras: Cameras, pairs: list[tuple[int, int]] | None = None,
                       closed: bool = True) -> list[OverlapPair]:
    """Overlap PSNR of each pair (default: `ring_pairs`) of images [N, H, W, 3] in [0, 1] under `cameras`.

    Float64 throughout. A pair that does not overlap at all raises: its score is undefined, and the views are
    then not neighbours.
    """
    images = check_rotation_only(images, cameras)
    pairs = ring_pairs(len(images), closed) if pairs is None else [(int(a), int(b)) for a, b in pairs]
    bad = [pair for pair in pairs if not all(0 <= i < len(images) for i in pair)]
    if bad:
        raise InvalidInputError("view pairs", f"{bad[:3]} are not indices of {len(images)} views",
                                f"use indices 0 .. {len(images) - 1}")
    if not pairs:
        return []
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2)  # [N, 3, H, W] float64
    first, second = (list(side) for side in zip(*pairs))
    homographies = torch.from_numpy(np.stack([homography(cameras, a, b) for a, b in pairs]))
    warped, inside = warp_into(tensor[second], homographies)
    squared = ((tensor[first] - warped) ** 2).mean(dim=1)  # [P, H, W]
    results = []
    for p, (a, b) in enumerate(pairs):
        count = int(inside[p].sum())
        if count == 0:
            raise InvalidInputError("view pairs", f"views {a} and {b} do not overlap",
                                    "compare neighbouring views of the panorama (ring order)")
        mse = float(squared[p][inside[p]].mean())
        psnr = float("inf") if mse == 0.0 else -10.0 * np.log10(mse)
        results.append(OverlapPair(a, b, psnr, count / inside[p].numel()))
    return results


def overlap_psnr(images: np.ndarray, cameras: Cameras, closed: bool = True) -> float:
    """Overlap PSNR of a panorama, images [N, H, W, 3] in [0, 1]: the mean over its neighbouring pairs, in dB."""
    pairs = overlap_psnr_pairs(images, cameras, closed=closed)
    logger.debug("overlap PSNR pairs: %s", pairs)
    return float(np.mean([pair.psnr for pair in pairs]))


class OverlapPSNR(PairMeanMetric):
    """Overlap PSNR over every panorama given to `update`: the mean over all their neighbouring pairs."""

    def __init__(self, closed: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.closed = closed

    def pair_values(self, images: np.ndarray, cameras: Cameras) -> list[float]:
        return [pair.psnr for pair in overlap_psnr_pairs(images, cameras, closed=self.closed)]
