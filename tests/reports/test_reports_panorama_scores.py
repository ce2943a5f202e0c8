"""Overlap PSNR and rotation-only TSED on rendered panoramas: the homography against `Cameras.project`, the score
against a direct per-pixel computation, and the controls (ground truth high, noise and wrong angles low)."""

from __future__ import annotations

import numpy as np
import pytest

from generators.controls import noise_views, perturbed_views
from reports.overlap import OverlapPSNR, homography, overlap_psnr, overlap_psnr_pairs, ring_pairs
from reports.rotation_tsed import RotationTSED, rotation_tsed, rotation_tsed_pairs, symmetric_transfer_error
from reports.tsed import TSEDConfig
from scenes.camera_paths import intrinsics_from_fov, orbit_cameras
from scenes.cameras import Cameras
from scenes.errors import InvalidInputError
from scenes.images import to_uint8
from scenes.panorama import make_room, panorama_cameras
from scenes.render import render_mesh
from scenes.scene import MultiViewScene

EYE = np.array([0.0, 0.0, 1.4])


def render_room(size: int, seed: int = 0, yaw_of_view: dict[int, float] | None = None) -> MultiViewScene:
    """A room's 8 views (8-bit exact) at the nominal ring; views in `yaw_of_view` rendered at another yaw instead."""
    mesh, albedo = make_room(np.random.default_rng(seed))
    cameras = panorama_cameras(8, 90.0, size, 0.0, EYE)
    c2w = cameras.c2w.copy()
    for view, yaw in (yaw_of_view or {}).items():
        c2w[view] = panorama_cameras(1, 90.0, size, yaw, EYE).c2w[0]
    images, _ = render_mesh(mesh, Cameras(c2w, cameras.intrinsics), albedo_fn=albedo)
    return MultiViewScene(to_uint8(images) / 255.0, cameras)


@pytest.fixture(scope="module")
def room64() -> MultiViewScene:
    return render_room(64)


def test_homography_agrees_with_camera_projection():
    cameras = panorama_cameras(8, 90.0, 40, 17.0, EYE)
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(200, 3))
    points = EYE + directions * rng.uniform(0.5, 5.0, size=(200, 1))  # any depth: no parallax
    pixels, depths = cameras.project(points)
    for a, b in [(0, 1), (3, 4), (7, 0), (2, 1)]:
        seen = (depths[a] > 0) & (depths[b] > 0)
        mapped = np.concatenate([pixels[a][seen], np.ones((seen.sum(), 1))], axis=1) @ homography(cameras, a, b).T
        np.testing.assert_allclose(mapped[:, :2] / mapped[:, 2:], pixels[b][seen], rtol=1e-9, atol=1e-8)


def test_overlap_psnr_matches_a_direct_per_pixel_computation():
    rng = np.random.default_rng(1)
    size = 10
    cameras = panorama_cameras(8, 90.0, size, 5.0, EYE)
    images = rng.random((8, size, size, 3))
    for pair, result in zip(ring_pairs(8), overlap_psnr_pairs(images, cameras)):
        a, b = pair
        h = homography(cameras, a, b)
        errors = []
        for row in range(size):
            for col in range(size):
                x, y, w = h @ [col + 0.5, row + 0.5, 1.0]
                if w <= 0:
                    continue
                u, v = x / w - 0.5, y / w - 0.5  # continuous index of pixel centres
                if not (0 <= u <= size - 1 and 0 <= v <= size - 1):
                    continue
                c0, r0 = min(int(np.floor(u)), size - 2), min(int(np.floor(v)), size - 2)
                fu, fv = u - c0, v - r0
                sample = ((1 - fu) * (1 - fv) * images[b, r0, c0] + fu * (1 - fv) * images[b, r0, c0 + 1]
                          + (1 - fu) * fv * images[b, r0 + 1, c0] + fu * fv * images[b, r0 + 1, c0 + 1])
                errors.append(np.mean((images[a, row, col] - sample) ** 2))
        assert result.overlap == pytest.approx(len(errors) / size**2)
        assert result.psnr == pytest.approx(-10 * np.log10(np.mean(errors)), rel=1e-9)


def test_overlap_psnr_controls_on_a_rendered_panorama(room64):
    truth = overlap_psnr_pairs(room64.images, room64.cameras)
    assert all(0.4 < pair.overlap < 0.55 for pair in truth)  # neighbours overlap by about half
    ground_truth = np.mean([pair.psnr for pair in truth])
    noise = overlap_psnr(noise_views(room64.cameras, 0), room64.cameras)
    perturbed = overlap_psnr(perturbed_views(room64, 0), room64.cameras)
    assert ground_truth > 20 and noise < 10 and noise + 2 < perturbed < ground_truth - 5
    wrong = render_room(64, yaw_of_view={3: 3 * 45.0 + 15.0})  # view 3 turned by 15 degrees too far
    scores = {(p.first, p.second): p.psnr for p in overlap_psnr_pairs(wrong.images, wrong.cameras)}
    for pair in truth:
        key = (pair.first, pair.second)
        if 3 in key:
            assert scores[key] < pair.psnr - 4
        else:
            assert scores[key] == pair.psnr
    metric = OverlapPSNR()
    metric.update(room64.images, room64.cameras)
    metric.update(wrong.images, wrong.cameras)
    expected = np.mean([p.psnr for p in truth] + list(scores.values()))
    assert metric.compute().item() == pytest.approx(expected) and OverlapPSNR.higher_is_better


def test_scores_refuse_views_with_parallax_and_bad_pairs():
    cameras = Cameras(orbit_cameras(4, 2.7, 20.0), intrinsics_from_fov(45.0, 16))
    images = np.zeros((4, 16, 16, 3))
    with pytest.raises(InvalidInputError, match="centres differ.*parallax"):
        overlap_psnr(images, cameras)
    with pytest.raises(InvalidInputError, match="centres differ"):
        rotation_tsed(images, cameras)
    ring = panorama_cameras(8, 90.0, 16)
    with pytest.raises(InvalidInputError, match="views 0 and 4 do not overlap"):
        overlap_psnr_pairs(np.zeros((8, 16, 16, 3)), ring, pairs=[(0, 4)])
    with pytest.raises(InvalidInputError, match="one \\[H, W, 3\\] view per camera"):
        overlap_psnr(np.zeros((7, 16, 16, 3)), ring)


def test_transfer_error_against_direct_formula():
    cameras = panorama_cameras(8, 90.0, 64, 0.0, EYE)
    h = homography(cameras, 0, 1)
    rng = np.random.default_rng(2)
    points_a = rng.uniform(2, 30, size=(20, 2))  # the left half of view 0 lands in view 1
    mapped = np.concatenate([points_a, np.ones((20, 1))], axis=1) @ h.T
    exact_b = mapped[:, :2] / mapped[:, 2:]
    np.testing.assert_allclose(symmetric_transfer_error(h, points_a, exact_b), 0.0, atol=1e-9)
    moved = exact_b + [3.0, 4.0]
    back = np.concatenate([moved, np.ones((20, 1))], axis=1) @ np.linalg.inv(h).T
    expected = 0.5 * (5.0 + np.linalg.norm(back[:, :2] / back[:, 2:] - points_a, axis=1))
    np.testing.assert_allclose(symmetric_transfer_error(h, points_a, moved), expected, rtol=1e-9)


def test_rotation_tsed_controls(room64):
    truth = rotation_tsed_pairs(room64.images, room64.cameras)
    ground_truth = np.mean([pair.consistent for pair in truth])
    assert ground_truth >= 0.5
    consistent = [pair for pair in truth if pair.consistent]
    assert all(pair.matches >= 10 and pair.median_error < 2.0 for pair in consistent)
    assert rotation_tsed(noise_views(room64.cameras, 0), room64.cameras) == 0.0
    assert rotation_tsed(perturbed_views(room64, 0), room64.cameras) < ground_truth
    strict = rotation_tsed(room64.images, room64.cameras, TSEDConfig(max_median_error=0.05))
    assert strict < ground_truth  # the threshold is applied
    metric = RotationTSED()
    metric.update(room64.images, room64.cameras)
    assert metric.compute().item() == pytest.approx(ground_truth) and RotationTSED.higher_is_better
