"""Faithfulness to the input view: do the generated views near the input camera show what the input view shows?

A model that ignores its conditioning view can still draw some object consistently: 3DiM's NeRF score and TSED
rate it like the truth (the `other_scene` control), and only fidelity to the ground truth exposes it. This score
asks the narrower question a conditional model must answer first, judged by no ground-truth pixel but the input's
own: each generated view at the `nearest` cameras closest to the input camera is carried into the input camera
through the scene's true depth, and compared with the input view where both cameras see the same surface.

For each input pixel on the object (finite true depth), its surface point (the depth along the viewing axis,
`reports.geometry.depth_to_points`) is projected into the target camera (`Cameras.project`). It counts only where
the target sees that point: inside the target image, in front of its camera, the four target pixels that bilinear
sampling reads all on the object (no background mixed in), and not hidden there (the target's true depth,
interpolated like the colour, within `depth_tolerance`, a fraction of the depth, of the point's); so silhouette
edges and surfaces only one camera sees are left out. The generated view's colour there is bilinearly sampled
(pixel centres at i + 0.5, as `Cameras.project` places them).

The direction matters. The resampling blurs what it carries, so the generated view is the one carried and the
input is left as it is: a blurred generated view then matches the input worse than the sharp truth does. (Carried
the other way, the blurred input would match slightly blurred views best: on 6 procedural objects at 32 px,
views blurred by 0.5 px beat the truth by 1-3 dB.)

- `psnr` (the report's `faithfulness_psnr`): PSNR in dB over those pixels (all three channels), capped at
  `PSNR_CAP_DB` like every PSNR nvsc reports; the scene's score is the mean over its nearest target views;
- `coverage`: the share of the input's object pixels that the target sees (the same for every method of a scene:
  it says how much of the input the score rests on; in `per_view.csv`, not ranked).

What it can and cannot show. It is won only by views that reproduce the input's own pixels where the geometry
carries them: blank views, another object, a pasted (so misplaced) input and blur lose, and the ground truth
bounds it from above (below the cap by what resampling and view-dependent shading cost). It says nothing about
the parts of the object the input does not see (that is fidelity's and the NeRF scores' job), and it needs the
scene's true depth (procedural and SRN-style datasets with `depth/`); without depth it is not computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from reports.geometry import depth_to_points
from reports.tables import PSNR_CAP_DB
from scenes.cameras import Cameras
from scenes.errors import InvalidInputError


@dataclass(frozen=True)
class FaithfulnessConfig:
    """Which views the score reads and how strictly visibility is tested."""

    #: Target views scored: the ones whose viewing direction is closest to the input camera's.
    nearest: int = 2
    #: A point counts as seen by the input where the input's true depth agrees with the point's within this
    #: fraction of the depth (2%: a fiftieth of the object's distance).
    depth_tolerance: float = 0.02


def nearest_views(cameras: Cameras, input_view: int, count: int) -> list[int]:
    """Indices of the `count` cameras (other than `input_view`) whose viewing directions are closest in angle to
    the input camera's, nearest first (ties by index)."""
    forward = cameras.to_opencv()[:, :3, 2]  # OpenCV +z: the viewing direction
    cosine = np.round(forward @ forward[input_view], 9)  # equal angles tie exactly, then go by index
    order = [int(i) for i in np.lexsort((np.arange(len(cameras)), -cosine)) if i != input_view]
    return order[:count]


def carried_into(image: np.ndarray, image_depth: np.ndarray, image_camera: Cameras, target_depth: np.ndarray,
                 target_cameras: Cameras, depth_tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """A view [H, W, 3] seen by `image_camera` (true depth [H, W] there) carried into each target camera through
    the targets' true depth [M, H, W]: colours [M, H, W, 3] and the mask [M, H, W] of target pixels whose surface
    point the view shows."""
    points = depth_to_points(target_depth, target_cameras)  # [M, H, W, 3], NaN off the object
    m, h, w = target_depth.shape
    with np.errstate(divide="ignore", invalid="ignore"):  # points at the camera's centre plane fail `inside`
        uv, z = image_camera.project(np.nan_to_num(points.reshape(-1, 3)))  # [1, P, 2], [1, P]
    # Points off the object or behind the camera land off the image: kept finite and outside (-1), then masked.
    u, v, z = (np.nan_to_num(a, nan=-1.0, posinf=-1.0, neginf=-1.0).clip(-1.0, 1e6)
               for a in (uv[0, :, 0], uv[0, :, 1], z[0]))
    k = image_camera.intrinsics
    # Bilinear sampling at (u, v) reads the pixels around the point (pixel centres at i + 0.5).
    left, top = np.floor(u - 0.5).astype(np.int64), np.floor(v - 0.5).astype(np.int64)
    inside = (np.isfinite(points.reshape(-1, 3)).all(axis=1) & (z > 0)
              & (left >= 0) & (top >= 0) & (left + 1 < k.width) & (top + 1 < k.height))
    # Seen: all four pixels that bilinear sampling reads lie on the object (no background colour mixed in), and
    # the view's depth interpolated there agrees with the point's (not hidden behind other surface).
    weights_x, weights_y = u - 0.5 - left, v - 0.5 - top
    seen, there = inside.copy(), np.zeros_like(z)
    for dx in (0, 1):
        for dy in (0, 1):
            rows, cols = np.clip(top + dy, 0, k.height - 1), np.clip(left + dx, 0, k.width - 1)
            neighbour = image_depth[rows, cols].astype(np.float64)
            seen &= np.isfinite(neighbour)
            weight = (weights_x if dx else 1 - weights_x) * (weights_y if dy else 1 - weights_y)
            there += weight * np.where(np.isfinite(neighbour), neighbour, 0.0)
    seen &= np.abs(there - z) <= depth_tolerance * np.abs(z)
    grid = torch.from_numpy(np.stack([2 * u / k.width - 1, 2 * v / k.height - 1], axis=-1)).float()
    source = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
    sampled = F.grid_sample(source, grid.view(1, 1, -1, 2), mode="bilinear", align_corners=False)  # [1, 3, 1, P]
    colours = sampled[0, :, 0].T.numpy().reshape(m, h, w, 3)
    return colours, seen.reshape(m, h, w)


def masked_psnr(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """PSNR in dB of prediction against target [H, W, 3] over the pixels of mask [H, W] (NaN where it is empty),
    capped at `PSNR_CAP_DB`."""
    if not mask.any():
        return math.nan
    error = (prediction.astype(np.float64) - target.astype(np.float64))[mask]
    mse = float(np.mean(error ** 2))
    return PSNR_CAP_DB if mse == 0 else min(PSNR_CAP_DB, 10 * math.log10(1.0 / mse))


def faithfulness_per_view(generated: np.ndarray, targets: list[int], input_image: np.ndarray, depth: np.ndarray,
                         cameras: Cameras, input_view: int, config: FaithfulnessConfig = FaithfulnessConfig()
                         ) -> list[dict[str, float]]:
    """`{"psnr", "coverage"}` of each target view: generated views [K, H, W, 3] at `cameras[targets]` (normally
    `nearest_views`), the real input view [H, W, 3] at `cameras[input_view]`, the scene's true depth [N, H, W]
    (+inf on the background) at every camera. PSNR is NaN where the input sees nothing of the target's object."""
    if len(generated) != len(targets) or depth.shape[1:] != generated.shape[1:3] or len(depth) != len(cameras):
        raise InvalidInputError("faithfulness inputs", f"views {list(generated.shape)} for {len(targets)} targets, "
                                f"depth {list(depth.shape)} for {len(cameras)} cameras",
                                "pass one generated view per target and one depth map per camera")
    scores = []
    on_object = np.isfinite(depth[input_view])
    for view, target in zip(generated, targets):
        colours, seen = carried_into(view, depth[target], cameras[[target]], depth[[input_view]],
                                     cameras[[input_view]], config.depth_tolerance)
        scores.append({"psnr": masked_psnr(colours[0], input_image, seen[0]),
                       "coverage": float(seen[0].sum() / on_object.sum()) if on_object.any() else 0.0})
    return scores
