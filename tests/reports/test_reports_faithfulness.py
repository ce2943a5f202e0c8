"""Faithfulness to the input view: the input carried into a camera through the true depth, against an analytic
reference (a sphere coloured by a smooth function of the world point), the visibility test, the choice of the
nearest views, and the order of the degenerate controls on rendered procedural objects."""

import numpy as np
import pytest

from generators.controls import blurred_views
from reports.faithfulness import faithfulness_per_view, carried_into, masked_psnr, nearest_views
from reports.geometry import depth_to_points
from reports.tables import PSNR_CAP_DB
from scenes.camera_paths import intrinsics_from_fov, orbit_cameras
from scenes.cameras import Cameras


def sphere_depth(cameras: Cameras, radius: float = 1.0) -> np.ndarray:
    """Depth along the viewing axis of a sphere at the origin, by ray casting in float64 (+inf off it)."""
    k = cameras.intrinsics
    v, u = np.mgrid[0:k.height, 0:k.width] + 0.5
    rays = np.stack([(u - k.cx) / k.fx, (v - k.cy) / k.fy, np.ones_like(u)], -1)
    c2w = cameras.to_opencv()
    depth = np.full((len(cameras), k.height, k.width), np.inf)
    for n in range(len(cameras)):
        d, o = rays @ c2w[n, :3, :3].T, c2w[n, :3, 3]
        a, b, c = (d * d).sum(-1), 2 * (d @ o), o @ o - radius ** 2
        disc = b * b - 4 * a * c
        hit = disc > 0
        depth[n][hit] = ((-b - np.sqrt(np.where(hit, disc, 0))) / (2 * a))[hit]
    return depth


def colour_of(points: np.ndarray) -> np.ndarray:
    """A smooth colour per world point (white off the object, where points are NaN)."""
    colour = 0.5 + 0.2 * np.sin(2.0 * np.nan_to_num(points) + np.array([0.0, 1.0, 2.0]))
    return np.where(np.isnan(points), 1.0, colour)


@pytest.fixture(scope="module")
def sphere():
    cameras = Cameras(orbit_cameras(12, 2.7, 25.0), intrinsics_from_fov(45.0, 48))
    depth = sphere_depth(cameras)
    return cameras, depth, colour_of(depth_to_points(depth, cameras))


def test_carried_into_its_own_camera_the_input_is_itself_on_the_object(sphere):
    cameras, depth, images = sphere
    colours, seen = carried_into(images[0], depth[0], cameras[:1], depth[:1], cameras[:1], 0.02)
    on_object = np.isfinite(depth[0])
    assert not (seen[0] & ~on_object).any()
    assert seen[0].sum() > 0.8 * on_object.sum()  # only the silhouette's rim is left out
    np.testing.assert_allclose(colours[0][seen[0]], images[0][seen[0]], atol=1e-5)


def test_a_view_of_the_same_surface_matches_the_input_carried_there(sphere):
    cameras, depth, images = sphere
    targets = nearest_views(cameras, 0, 2)
    scores = faithfulness_per_view(images[targets], targets, images[0], depth, cameras, 0)
    assert all(s["psnr"] > 35 and 0.5 < s["coverage"] < 1 for s in scores), scores
    mirrored = faithfulness_per_view(images[targets][:, :, ::-1], targets, images[0], depth, cameras, 0)
    assert all(s["psnr"] < 30 for s in mirrored), mirrored  # the same colours in the wrong places
    shifted = np.clip(images[targets] + 0.05, 0, 1)  # a colour cast of 5% of the range: ~26 dB
    worse = faithfulness_per_view(shifted, targets, images[0], depth, cameras, 0)
    assert all(24 < s["psnr"] < 28 for s in worse), worse


def test_surface_the_input_does_not_see_is_left_out(sphere):
    cameras, depth, _ = sphere
    opposite = 6  # 180 degrees round the orbit: the input sees the other side of the sphere
    _, seen = carried_into(np.ones((48, 48, 3)), depth[0], cameras[0], depth[[opposite]], cameras[[opposite]],
                               0.02)
    assert seen.mean() < 0.02  # only the rim both cameras graze (the orbit's 25 degree elevation)


def test_the_nearest_views_are_the_orbit_neighbours():
    cameras = Cameras(orbit_cameras(16, 2.7, 25.0), intrinsics_from_fov(45.0, 8))
    assert nearest_views(cameras, 0, 2) == [1, 15]
    assert nearest_views(cameras, 5, 4) == [4, 6, 3, 7]


def test_masked_psnr_is_capped_and_empty_masks_give_nan():
    image = np.full((4, 4, 3), 0.5)
    assert masked_psnr(image, image, np.ones((4, 4), bool)) == PSNR_CAP_DB
    assert np.isnan(masked_psnr(image, image, np.zeros((4, 4), bool)))
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = True
    other = image.copy()
    other[1:] = 0.0  # outside the mask: no effect
    other[0, 0] += 0.1
    assert masked_psnr(other, image, mask) == pytest.approx(20.0)


def test_the_truth_beats_every_degenerate_control_on_rendered_objects(tmp_path):
    from scenes.dataset import ProceduralDatasetConfig, generate_dataset
    from scenes.srn import read_srn_depth, read_srn_instance

    config = ProceduralDatasetConfig(train_instances=0, val_instances=0, test_instances=1, image_size=32)
    folders = generate_dataset(config, tmp_path)
    scenes = [read_srn_instance(f) for f in folders]
    for s, (scene, folder) in enumerate(zip(scenes, folders)):
        depth = read_srn_depth(folder)
        targets = nearest_views(scene.cameras, 0, 2)

        def score(views):
            return np.mean([r["psnr"] for r in faithfulness_per_view(views[targets], targets, scene.images[0],
                                                                       depth, scene.cameras, 0)])
        truth = score(scene.images)
        assert score(blurred_views(scene, 0.5)) < truth - 0.3  # resampling must not reward slight blur
        controls = {"blur_1": blurred_views(scene, 1.0), "blank": np.ones_like(scene.images),
                    "input_copied": np.repeat(scene.images[:1], len(scene), axis=0),
                    "other_scene": scenes[(s + 1) % len(scenes)].images}
        for name, views in controls.items():
            assert score(views) < truth - 2.0, (folder.name, name, score(views), truth)
