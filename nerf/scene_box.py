"""The scene box of an object-centric capture, from its cameras alone.

Every camera of such a capture sees the whole object, so the object lies where the cameras look: around the
point nearest to all optical axes (least squares over the axes as lines), inside the largest sphere around it
that lies inside every camera's field of view. The box is the cube around that sphere (its corners may stick out
of some views; the occupancy grid empties them).
"""

from __future__ import annotations

import numpy as np

from scenes.cameras import Cameras
from scenes.errors import InvalidInputError


def look_at_point(cameras: Cameras) -> np.ndarray:
    """The point [3] nearest, in least squares, to the optical axes of `cameras` (OpenGL: the axis is -z)."""
    origins = cameras.c2w[:, :3, 3]  # [N, 3]
    axes = -cameras.c2w[:, :3, 2]
    axes = axes / np.linalg.norm(axes, axis=1, keepdims=True)
    # sum_i (I - a_i a_i^T) (p - o_i) = 0: the normal equations of the distances from p to the lines.
    projectors = np.eye(3)[None] - axes[:, :, None] * axes[:, None, :]  # [N, 3, 3]
    lhs, rhs = projectors.sum(axis=0), np.einsum("nij,nj->i", projectors, origins)
    if np.linalg.cond(lhs) > 1e8:
        raise InvalidInputError("cameras", "all optical axes are parallel, so they point at no common object",
                                "give the scene box explicitly (NeRFConfig.scene_box)")
    return np.linalg.solve(lhs, rhs)


def scene_box_from_cameras(cameras: Cameras) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """(min corner, max corner) of the cube around the largest sphere centred on `look_at_point` that every
    camera sees whole."""
    center = look_at_point(cameras)
    k = cameras.intrinsics
    # Half-angle of the widest cone around the optical axis that stays inside the image.
    half_fov = min(np.arctan(min(k.cx, k.width - k.cx) / k.fx), np.arctan(min(k.cy, k.height - k.cy) / k.fy))
    radius = np.inf
    for c2w in cameras.c2w:
        offset = center - c2w[:3, 3]
        distance = np.linalg.norm(offset)
        off_axis = np.arccos(np.clip(offset @ -c2w[:3, 2] / max(distance, 1e-12), -1.0, 1.0))
        # A sphere of radius r at distance D, off the axis by angle theta, fits in the cone of half-angle alpha
        # when asin(r / D) + theta <= alpha.
        radius = min(radius, distance * np.sin(max(half_fov - off_axis, 0.0)))
    if not radius > 0:
        raise InvalidInputError("cameras", "some camera does not see the point the others look at",
                                "give the scene box explicitly (NeRFConfig.scene_box)")
    return tuple(float(v) for v in center - radius), tuple(float(v) for v in center + radius)
