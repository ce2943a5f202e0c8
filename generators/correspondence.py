"""Pixel correspondences between the views of one scene, computed in torch on the model's device.

MVDiffusion (Tang et al. 2023, Sec. 3 and 4) lets every pixel s of view i attend to the pixels around its
corresponding location t^l in every other view l. Where t^l comes from depends on the task:

  - depth-conditioned multi-view generation (Sec. 4.2): unproject s with the depth of view i, project the 3D point
    into view l: t^l = K_l [R_l | t_l]^-1 (c_i + depth_i(s) K_i^-1 s~), invalid behind camera l or outside its image;
  - panoramas (Sec. 4.1, rotation-only cameras sharing one centre): the homography t^l ~ K R_l^T R_i K^-1 s~ (with
    camera-to-world rotations R; written with world-to-camera rotations it is the K R_l R_i^T K^-1 of the paper).

Conventions are `scenes.cameras`': camera-to-world matrices with OpenGL axes, pixel (u, v) with u right and v down,
pixel centres at (i + 0.5, j + 0.5); `Cameras.project` is the reference the tests check against. Correspondences are
needed at every UNet level's resolution: the intrinsics scale with the image (`Intrinsics.resized`), and the depth
map is reduced to that resolution by a min-pool, which keeps the nearest surface at object boundaries instead of
averaging it with the infinite background.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from scenes.errors import InvalidInputError

# OpenGL camera axes (x right, y up, looking along -z) to OpenCV ones (x right, y down, looking along +z).
_GL_TO_CV = (1.0, -1.0, -1.0)
#: Points closer to a camera than this (along its viewing axis) count as behind it.
MIN_DEPTH = 1e-6


@dataclass
class Correspondences:
    """Where every pixel of every view lands in M other views, at one resolution h x w."""

    others: torch.Tensor
    """[B, N, M] long: the views that view i reads (all views but i by default, see `other_views`)."""
    uv: torch.Tensor
    """[B, N, M, h, w, 2] sub-pixel location (u right, v down, pixel centres at i + 0.5) in each other view."""
    valid: torch.Tensor
    """[B, N, M, h, w] bool: the point lies in front of the other camera and inside its image (and, for depth
    correspondences, the source pixel has a finite depth)."""


def other_views(num_views: int, device: torch.device | str | None = None) -> torch.Tensor:
    """[N, N - 1] long: row i lists every view index but i, in increasing order."""
    index = torch.arange(num_views, device=device)
    others = index[None, :].expand(num_views, num_views)
    return others[others != index[:, None]].reshape(num_views, num_views - 1)


def nearest_views(c2w: torch.Tensor, count: int, anchor: int | None = None) -> torch.Tensor:
    """[B, N, M] long: for every view, the M = min(count, N - 1) other views whose viewing directions are closest
    (all other views, in increasing order, when count >= N - 1 or count <= 0), sorted. With `anchor`, that view
    is always among them (for every view but itself).

    Bounds the cost of CAA when many views are generated together, and keeps what each pixel attends to as it was
    in training: groups of `num_views` views, where every generated view reads the conditioning view (the anchor)
    and its other views.
    """
    batch, views = c2w.shape[:2]
    if count <= 0 or count >= views - 1:
        return other_views(views, c2w.device).expand(batch, views, views - 1)
    forward = -c2w[..., :3, 2]  # OpenGL cameras look along -z
    score = torch.einsum("bnk,bmk->bnm", forward, forward)  # cosines in [-1, 1]
    if anchor is not None:
        score[..., anchor] += 4.0
    score = score - 16.0 * torch.eye(views, device=c2w.device, dtype=score.dtype)  # never the view itself
    return score.topk(count, dim=-1).indices.sort(dim=-1).values


def _gather_views(values: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """values [B, N, ...] at others [B, N, M] -> [B, N, M, ...] (values of view others[b, i, m] of scene b)."""
    scene = torch.arange(values.shape[0], device=values.device)[:, None, None]
    return values[scene, others]


def scale_intrinsics(intrinsics: torch.Tensor, factor: float) -> torch.Tensor:
    """(fx, fy, cx, cy) [..., 4] of images `factor` times as wide and high (as `Intrinsics.resized`)."""
    return intrinsics * factor


def pool_depth(depth: torch.Tensor, factor: int) -> torch.Tensor:
    """Depth [..., H, W] reduced to [..., H / factor, W / factor] by taking the nearest surface of each block."""
    if factor == 1:
        return depth
    shape = depth.shape
    flat = depth.reshape(-1, 1, *shape[-2:])
    pooled = -F.max_pool2d(-flat, factor)
    return pooled.reshape(*shape[:-2], *pooled.shape[-2:])


def _camera_rays(intrinsics: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[B, h, w, 3] OpenCV camera-frame rays (x, y, 1) through every pixel centre; intrinsics [B, 4]."""
    fx, fy, cx, cy = (intrinsics[:, i, None, None] for i in range(4))
    v, u = torch.meshgrid(torch.arange(height, device=intrinsics.device, dtype=intrinsics.dtype) + 0.5,
                          torch.arange(width, device=intrinsics.device, dtype=intrinsics.dtype) + 0.5, indexing="ij")
    return torch.stack([(u - cx) / fx, (v - cy) / fy, torch.ones_like((u - cx) / fx)], dim=-1)


def _opencv_rotation_translation(c2w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera-to-world rotation [B, N, 3, 3] with OpenCV camera axes, and the camera centres [B, N, 3]."""
    flip = torch.tensor(_GL_TO_CV, device=c2w.device, dtype=c2w.dtype)
    return c2w[..., :3, :3] * flip, c2w[..., :3, 3]


def _project(points_in_other: torch.Tensor, intrinsics: torch.Tensor, height: int, width: int
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel locations [B, N, M, h, w, 2] and in-front-and-inside mask of OpenCV camera-frame points
    [B, N, M, h, w, 3]; intrinsics [B, 4] of the h x w images."""
    x, y, z = points_in_other.unbind(-1)
    k = intrinsics[:, None, None, None, None, :]
    in_front = z > MIN_DEPTH
    safe_z = torch.where(in_front, z, torch.ones_like(z))
    u = k[..., 0] * x / safe_z + k[..., 2]
    v = k[..., 1] * y / safe_z + k[..., 3]
    inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    return torch.stack([u, v], dim=-1), in_front & inside


def _check(c2w: torch.Tensor, intrinsics: torch.Tensor) -> None:
    if c2w.ndim != 4 or tuple(c2w.shape[-2:]) != (4, 4) or c2w.shape[1] < 2:
        raise InvalidInputError("c2w", f"shape {list(c2w.shape)}", "pass [B, N, 4, 4] cameras with N >= 2 views")
    if tuple(intrinsics.shape) != (c2w.shape[0], 4):
        raise InvalidInputError("intrinsics", f"shape {list(intrinsics.shape)}",
                                "pass (fx, fy, cx, cy) per scene, [B, 4]")


def depth_correspondences(c2w: torch.Tensor, intrinsics: torch.Tensor, depth: torch.Tensor,
                          others: torch.Tensor | None = None) -> Correspondences:
    """Correspondences of the depth-conditioned task at the resolution of `depth`.

    c2w [B, N, 4, 4] (OpenGL axes), intrinsics [B, 4] (fx, fy, cx, cy) in pixels of the h x w depth maps,
    depth [B, N, h, w] along each camera's viewing axis (+inf or <= 0 where nothing was hit), others [B, N, M]
    (which views each view reads; default all others).
    """
    _check(c2w, intrinsics)
    others = nearest_views(c2w, 0) if others is None else others
    batch, views, height, width = depth.shape
    if tuple(depth.shape[:2]) != tuple(c2w.shape[:2]):
        raise InvalidInputError("depth", f"shape {list(depth.shape)} for cameras {list(c2w.shape)}",
                                "pass one depth map per view, [B, N, h, w]")
    rotation, centre = _opencv_rotation_translation(c2w)
    rays = _camera_rays(intrinsics, height, width)  # [B, h, w, 3], z = 1: multiplying by depth gives the point
    known = torch.isfinite(depth) & (depth > 0)
    local = rays[:, None] * torch.where(known, depth, torch.zeros_like(depth))[..., None]  # [B, N, h, w, 3]
    world = torch.einsum("bnij,bnhwj->bnhwi", rotation, local) + centre[:, :, None, None, :]
    # Into camera l: R_l^T (X - c_l), for every source view i and each of its other views l.
    offset = world[:, :, None] - _gather_views(centre, others)[:, :, :, None, None, :]  # [B, N, M, h, w, 3]
    in_other = torch.einsum("bnlji,bnlhwj->bnlhwi", _gather_views(rotation, others), offset)
    uv, valid = _project(in_other, intrinsics, height, width)
    return Correspondences(others, uv, valid & known[:, :, None])


def homography_correspondences(c2w: torch.Tensor, intrinsics: torch.Tensor, height: int, width: int,
                               others: torch.Tensor | None = None) -> Correspondences:
    """Correspondences of rotation-only cameras (panoramas) at h x w: the homography K R_l^T R_i K^-1.

    c2w [B, N, 4, 4] (OpenGL axes; translations are ignored, the cameras are taken to share one centre),
    intrinsics [B, 4] in pixels of the h x w images, others [B, N, M] (default all other views).
    """
    _check(c2w, intrinsics)
    others = nearest_views(c2w, 0) if others is None else others
    rotation, _ = _opencv_rotation_translation(c2w)
    rays = _camera_rays(intrinsics, height, width)  # [B, h, w, 3]
    world = torch.einsum("bnij,bhwj->bnhwi", rotation, rays)  # directions: points at infinity
    in_other = torch.einsum("bnlji,bnhwj->bnlhwi", _gather_views(rotation, others), world)
    uv, valid = _project(in_other, intrinsics, height, width)
    return Correspondences(others, uv, valid)
