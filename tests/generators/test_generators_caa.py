"""Correspondences and correspondence-aware attention against direct per-pixel computations with `Cameras.project`."""

import math

import numpy as np
import pytest
import torch
import trimesh
from torch import nn

from generators.caa import CorrespondenceAttention
from generators.correspondence import (depth_correspondences, homography_correspondences, nearest_views,
                                       pool_depth)
from scenes.camera_paths import intrinsics_from_fov, orbit_cameras
from scenes.cameras import Cameras, camera_rays, look_at
from scenes.render import render_mesh

SIZE = 8


def panorama_cameras(views: int = 4, size: int = SIZE) -> Cameras:
    """Rotation-only cameras at the origin, 90 degree field of view, about 45 degrees apart (neighbours overlap by
    about half). Not exactly 45: then a pixel edge maps exactly onto a pixel centre and rounding decides its pixel."""
    c2w = []
    for k in range(views):
        yaw = math.radians(46.3 * k)
        c2w.append(look_at(np.zeros(3), np.array([math.cos(yaw), math.sin(yaw), 0.1 * k])))
    return Cameras(np.stack(c2w), intrinsics_from_fov(90.0, size))


@pytest.fixture(scope="module")
def object_views():
    """Cameras on an orbit around a box, with the box's depth rendered by the mesh renderer."""
    cameras = Cameras(orbit_cameras(8, 2.5, 30.0)[[0, 1, 2]], intrinsics_from_fov(45.0, SIZE))
    _, depth = render_mesh(trimesh.creation.box(extents=(1.2, 0.9, 0.8)), cameras)
    return cameras, depth


def reference_points(cameras: Cameras, view: int, depth: np.ndarray | None) -> np.ndarray:
    """World points [h * w, 3] seen through every pixel centre of `view` (float64): at `depth` along the viewing axis,
    or one unit along the ray (rotation-only cameras at the origin project it as the point at infinity)."""
    k = cameras.intrinsics
    origins, directions = camera_rays(torch.as_tensor(cameras.c2w[view:view + 1]),
                                      torch.tensor([k.fx, k.fy, k.cx, k.cy], dtype=torch.float64), k.height, k.width)
    origins, directions = origins[0].reshape(-1, 3).numpy(), directions[0].reshape(-1, 3).numpy()
    if depth is None:
        return origins + directions
    forward = -cameras.c2w[view, :3, 2]
    return origins + directions * (depth.reshape(-1) / (directions @ forward))[:, None]


def reference_correspondences(cameras: Cameras, depth: np.ndarray | None):
    """uv [N, N - 1, h * w, 2] and valid [N, N - 1, h * w] from `Cameras.project`, one view pair at a time."""
    n, k = len(cameras), cameras.intrinsics
    uv, valid = np.zeros((n, n - 1, k.height * k.width, 2)), np.zeros((n, n - 1, k.height * k.width), bool)
    for i in range(n):
        points = reference_points(cameras, i, None if depth is None else depth[i])
        known = np.ones(len(points), bool) if depth is None else np.isfinite(depth[i].reshape(-1))
        for slot, j in enumerate(o for o in range(n) if o != i):
            pixel, z = cameras[j].project(np.where(known[:, None], points, 0.0))
            pixel, z = pixel[0], z[0]
            uv[i, slot] = pixel
            valid[i, slot] = known & (z > 1e-6) & (pixel[:, 0] >= 0) & (pixel[:, 0] < k.width) \
                & (pixel[:, 1] >= 0) & (pixel[:, 1] < k.height)
    return uv, valid


def as_batch(cameras: Cameras):
    k = cameras.intrinsics
    return torch.as_tensor(cameras.c2w)[None], torch.tensor([[k.fx, k.fy, k.cx, k.cy]], dtype=torch.float64)


def test_homography_correspondences_match_projection():
    cameras = panorama_cameras()
    c2w, intrinsics = as_batch(cameras)
    found = homography_correspondences(c2w, intrinsics, SIZE, SIZE)
    uv, valid = reference_correspondences(cameras, None)
    got_valid = found.valid[0].flatten(2).numpy()
    np.testing.assert_array_equal(got_valid, valid)
    assert valid.mean() > 0.2  # neighbours 45 degrees apart overlap by half
    np.testing.assert_allclose(found.uv[0].flatten(2, 3).numpy()[valid], uv[valid], atol=1e-9)


def test_depth_correspondences_match_projection(object_views):
    cameras, depth = object_views
    c2w, intrinsics = as_batch(cameras)
    found = depth_correspondences(c2w, intrinsics, torch.from_numpy(depth)[None].double())
    uv, valid = reference_correspondences(cameras, depth)
    np.testing.assert_array_equal(found.valid[0].flatten(2).numpy(), valid)
    assert valid.sum() > 20
    np.testing.assert_allclose(found.uv[0].flatten(2, 3).numpy()[valid], uv[valid], atol=1e-6)


def test_pool_depth_keeps_the_nearest_surface():
    depth = torch.tensor([[1.0, math.inf], [math.inf, math.inf]])[None]
    assert pool_depth(depth, 2).item() == 1.0


def identity_caa(channels: int, kernel_size: int, zero_query: bool) -> CorrespondenceAttention:
    """A CAA block that reads raw features: one head, identity (or zero) projections, no norm, no position term."""
    block = CorrespondenceAttention(channels, num_heads=1, kernel_size=kernel_size).double()
    block.norm = nn.Identity()
    with torch.no_grad():
        for linear in (block.query, block.key, block.value, block.out):
            linear.weight.copy_(torch.eye(channels))
            linear.bias.zero_()
        if zero_query:
            block.query.weight.zero_()
        block.position.weight.zero_()
        block.position.bias.zero_()
    return block


def reference_attention(features: np.ndarray, uv: np.ndarray, valid: np.ndarray, kernel_size: int,
                        zero_query: bool) -> np.ndarray:
    """Per-pixel softmax attention [N, h * w, C] of each pixel over the K x K pixels around its correspondences
    (with a zero query: the plain mean of those pixels)."""
    n, channels, h, w = features.shape
    radius = kernel_size // 2
    out = np.zeros((n, h * w, channels))
    for i in range(n):
        query = features[i].reshape(channels, -1).T * (0.0 if zero_query else 1.0)
        for p in range(h * w):
            keys = []
            for slot, j in enumerate(o for o in range(n) if o != i):
                if not valid[i, slot, p]:
                    continue
                cu, cv = (math.floor(c) for c in uv[i, slot, p])
                for dv in range(-radius, radius + 1):
                    for du in range(-radius, radius + 1):
                        if 0 <= cu + du < w and 0 <= cv + dv < h:
                            keys.append(features[j, :, cv + dv, cu + du])
            if keys:
                keys = np.stack(keys)
                logits = keys @ query[p] / math.sqrt(channels)
                weights = np.exp(logits - logits.max())
                out[i, p] = weights @ keys / weights.sum()
    return out


@pytest.mark.parametrize("case", ["homography", "depth"])
@pytest.mark.parametrize("kernel_size,zero_query", [(1, True), (3, False)])
def test_caa_reads_the_corresponding_pixels(case, kernel_size, zero_query, object_views):
    """K = 1 with a zero query: the mean of the features at the corresponding pixels; K = 3: the attention."""
    if case == "homography":
        cameras, depth = panorama_cameras(), None
        c2w, intrinsics = as_batch(cameras)
        found = homography_correspondences(c2w, intrinsics, SIZE, SIZE)
    else:
        cameras, depth = object_views
        c2w, intrinsics = as_batch(cameras)
        found = depth_correspondences(c2w, intrinsics, torch.from_numpy(depth)[None].double())
    uv, valid = reference_correspondences(cameras, depth)
    channels = 4
    features = torch.randn(len(cameras), channels, SIZE, SIZE, generator=torch.Generator().manual_seed(0),
                           dtype=torch.float64)
    block = identity_caa(channels, kernel_size, zero_query)
    got = (block(features, found) - features).flatten(2).transpose(1, 2).detach().numpy()
    expected = reference_attention(features.numpy(), uv, valid, kernel_size, zero_query)
    np.testing.assert_allclose(got, expected, atol=1e-10)
    assert np.abs(expected).sum() > 0


def test_untrained_caa_is_the_identity():
    cameras = panorama_cameras()
    c2w, intrinsics = as_batch(cameras)
    block = CorrespondenceAttention(8, num_heads=2).double()
    features = torch.randn(len(cameras), 8, SIZE, SIZE, dtype=torch.float64)
    out = block(features, homography_correspondences(c2w, intrinsics, SIZE, SIZE))
    assert torch.equal(out, features)


def test_nearest_views_are_the_orbit_neighbours():
    c2w = torch.as_tensor(orbit_cameras(8, 2.5, 30.0))[None]
    nearest = nearest_views(c2w, 2)[0]
    expected = torch.tensor([sorted([(i - 1) % 8, (i + 1) % 8]) for i in range(8)])
    assert torch.equal(nearest, expected)
    assert torch.equal(nearest_views(c2w, 0)[0, 3], torch.tensor([0, 1, 2, 4, 5, 6, 7]))
    anchored = nearest_views(c2w, 3, anchor=0)[0]
    assert anchored[4].tolist() == [0, 3, 5] and anchored[2].tolist() == [0, 1, 3]


def test_caa_reads_only_the_chosen_views():
    """With M = 1 nearest view, the attention equals the reference restricted to that view."""
    cameras = panorama_cameras()
    c2w, intrinsics = as_batch(cameras)
    others = nearest_views(c2w, 1)
    found = homography_correspondences(c2w, intrinsics, SIZE, SIZE, others)
    uv, valid = reference_correspondences(cameras, None)
    slots = [[o for o in range(len(cameras)) if o != i].index(int(others[0, i, 0])) for i in range(len(cameras))]
    keep = np.zeros_like(valid)
    for i, slot in enumerate(slots):
        keep[i, slot] = valid[i, slot]
    features = torch.randn(len(cameras), 4, SIZE, SIZE, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    got = (identity_caa(4, 3, False)(features, found) - features).flatten(2).transpose(1, 2).detach().numpy()
    np.testing.assert_allclose(got, reference_attention(features.numpy(), uv, keep, 3, False), atol=1e-10)
