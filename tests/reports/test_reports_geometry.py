"""Geometry scores: depth back-projection round trip, Chamfer and F-score against a brute-force float64
reference, and the scores of a true, a shifted and an empty surface."""

import numpy as np
import pytest

from reports.geometry import GeometryConfig, chamfer_and_fscore, depth_to_points, geometry_scores, viewing_depth
from scenes.camera_paths import intrinsics_from_fov, orbit_cameras
from scenes.cameras import Cameras


@pytest.fixture(scope="module")
def sphere_views():
    """Depth of the unit sphere seen by 4 orbit cameras at 16 px, by ray casting (float64)."""
    cameras = Cameras(orbit_cameras(4, 2.7, 25.0), intrinsics_from_fov(45.0, 16))
    k = cameras.intrinsics
    v, u = np.mgrid[0:16, 0:16] + 0.5
    rays = np.stack([(u - k.cx) / k.fx, (v - k.cy) / k.fy, np.ones_like(u)], -1)  # z = 1 in camera axes
    c2w = cameras.to_opencv()
    depth = np.full((4, 16, 16), np.inf)
    for n in range(4):
        d = rays @ c2w[n, :3, :3].T  # world directions, not unit: t is the depth along the viewing axis
        o = c2w[n, :3, 3]
        a, b, c = (d * d).sum(-1), 2 * (d @ o), o @ o - 1.0
        disc = b * b - 4 * a * c
        hit = disc > 0
        depth[n][hit] = ((-b - np.sqrt(np.where(hit, disc, 0))) / (2 * a))[hit]
    return cameras, depth


def test_back_projected_depth_lies_on_the_sphere_and_projects_back(sphere_views):
    cameras, depth = sphere_views
    points = depth_to_points(depth, cameras)
    hit = np.isfinite(depth)
    assert 0.1 < hit.mean() < 0.9
    np.testing.assert_allclose(np.linalg.norm(points[hit], axis=-1), 1.0, atol=1e-9)
    np.testing.assert_allclose(viewing_depth(points, cameras)[hit], depth[hit], atol=1e-9)
    assert np.isnan(points[~hit]).all()


def test_chamfer_and_fscore_equal_a_brute_force_reference():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 3)), rng.normal(size=(70, 3))
    distances = np.linalg.norm(a[:, None] - b[None], axis=-1)  # [50, 70], float64
    chamfer, fscore = chamfer_and_fscore(a, b, 0.3)
    assert chamfer == pytest.approx(0.5 * (distances.min(1).mean() + distances.min(0).mean()), rel=1e-12)
    precision, recall = (distances.min(1) < 0.3).mean(), (distances.min(0) < 0.3).mean()
    assert fscore == pytest.approx(2 * precision * recall / (precision + recall), rel=1e-12)
    assert chamfer_and_fscore(a[:0], b, 0.3) == (pytest.approx(np.nan, nan_ok=True), 0.0)


def test_true_surface_scores_perfectly_a_shifted_one_by_its_shift_and_an_empty_one_zero(sphere_views):
    cameras, depth = sphere_views
    points = np.nan_to_num(depth_to_points(depth, cameras))
    opacity = np.isfinite(depth).astype(np.float32)
    perfect = geometry_scores(points, opacity, depth, cameras)
    assert perfect["iou"] == 1.0 and perfect["fscore"] == 1.0
    assert perfect["chamfer"] == pytest.approx(0.0, abs=1e-9) and perfect["depth_l1"] == pytest.approx(0, abs=1e-9)
    shift = np.array([0.2, 0.0, 0.0])
    moved = geometry_scores(points + shift, opacity, depth, cameras, GeometryConfig(threshold=0.05))
    assert 0.05 < moved["chamfer"] <= 0.2 + 1e-9 and moved["fscore"] < 0.5
    empty = geometry_scores(points, np.zeros_like(opacity), depth, cameras)
    assert empty["iou"] == 0.0 and empty["fscore"] == 0.0 and np.isnan(empty["chamfer"])
