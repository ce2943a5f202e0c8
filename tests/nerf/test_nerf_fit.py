"""Fitting: determinism from the seed, rendering, the time budget, the occupancy grid, the scene box from the
cameras, and input checks."""

import dataclasses

import numpy as np
import pytest
import torch

from nerf.field import FieldConfig
from nerf.fit import NeRFConfig, fit_nerf, render_views
from nerf.occupancy import OccupancyConfig
from nerf.scene_box import look_at_point, scene_box_from_cameras
from scenes.errors import InvalidInputError
from tests.nerf.test_nerf_toyscene import make_toy_scene, orbit_cameras, psnr

TINY = NeRFConfig(field=FieldConfig(num_levels=4, log2_hashmap_size=10, base_resolution=4, max_resolution=32,
                                    hidden_dim=16),
                  steps=12, rays_per_batch=64, samples_per_ray=8, device="cpu", eval_chunk=50)


@pytest.fixture(scope="module")
def scene():
    return make_toy_scene(size=8, num_views=6)


def test_cpu_fit_is_a_function_of_the_seed(scene):
    state = torch.get_rng_state()
    first = render_views(fit_nerf(scene, TINY), scene.cameras[:2])
    assert torch.equal(torch.get_rng_state(), state), "a fit must not disturb the caller's random state"
    torch.manual_seed(123)  # the global seed must not matter either
    second = render_views(fit_nerf(scene, TINY), scene.cameras[:2])
    np.testing.assert_array_equal(first, second)
    other = render_views(fit_nerf(scene, dataclasses.replace(TINY, seed=1)), scene.cameras[:2])
    assert np.abs(other - first).max() > 1e-4


def test_fit_learns_and_render_views_format(scene):
    fitted = fit_nerf(scene, dataclasses.replace(TINY, steps=100, rays_per_batch=256))
    renders = render_views(fitted, scene.cameras)
    assert renders.shape == scene.images.shape and renders.dtype == np.float32
    assert renders.min() >= 0 and renders.max() <= 1
    untrained = render_views(fit_nerf(scene, dataclasses.replace(TINY, steps=1)), scene.cameras)
    error = np.mean((renders - scene.images) ** 2)
    assert error < 0.25 * np.mean((untrained - scene.images) ** 2), "training must reduce the error"
    assert np.isfinite(fitted.final_loss) and fitted.seconds > 0


@pytest.mark.parametrize("change, parameter", [(dict(steps=0), "steps"), (dict(samples_per_ray=0), "samples"),
                                               (dict(background=(1.0, 2.0, 0.0)), "background"),
                                               (dict(device="tpu"), "device"), (dict(lr=-1.0), "lr"),
                                               (dict(time_budget_s=-1.0), "time_budget"),
                                               (dict(occupancy=OccupancyConfig(resolution=0)), "resolution"),
                                               (dict(scene_box=((1, 1, 1), (-1, -1, -1))), "scene_box"),
                                               (dict(scene_box=((0, 0), (1, 1))), "scene_box")])
def test_bad_configs_are_refused(scene, change, parameter):
    with pytest.raises(InvalidInputError, match=parameter):
        fit_nerf(scene, dataclasses.replace(TINY, **change))


def test_time_budget_stops_the_fit_early(scene):
    fitted = fit_nerf(scene, dataclasses.replace(TINY, steps=100_000, time_budget_s=0.3))
    # Stopped by the budget (100,000 steps take minutes), not after it: no upper wall-clock bound, which a busy
    # machine would break.
    assert 0 < fitted.steps < 100_000 and fitted.seconds >= 0.3
    assert fit_nerf(scene, TINY).steps == TINY.steps


def test_occupancy_grid_empties_space_and_keeps_the_fit():
    """After a fit, most of the box is empty, the renders skip it, and held-out quality matches a grid-free fit."""
    scene = make_toy_scene(size=16, num_views=8)
    config = dataclasses.replace(TINY, steps=240, rays_per_batch=256, samples_per_ray=16,
                                 occupancy=OccupancyConfig(resolution=16, warmup_steps=32, update_every=8))
    train, heldout = scene.subset([0, 1, 2, 4, 5, 6]), scene.subset([3, 7])
    with_grid = fit_nerf(train, config)
    without = fit_nerf(train, dataclasses.replace(config, occupancy=OccupancyConfig(enabled=False)))
    assert with_grid.occupancy is not None and without.occupancy is None
    assert with_grid.occupancy.occupied_fraction() < 0.5
    # The box and sphere fill the middle of the box: the grid must keep the cells on their surfaces.
    surface = torch.tensor([[-0.25, -0.2, 0.25], [0.35, 0.3, 0.58]])  # top face of the box, top of the sphere
    assert bool(with_grid.occupancy.query(surface).all())
    scores = [psnr(render_views(fitted, heldout.cameras), heldout.images) for fitted in (with_grid, without)]
    assert scores[0] > scores[1] - 1.0, scores


def test_scene_box_from_cameras_holds_the_object_and_fits_every_view():
    cameras = orbit_cameras(12, 32, radius=2.6)
    np.testing.assert_allclose(look_at_point(cameras), 0.0, atol=1e-9)
    low, high = np.array(scene_box_from_cameras(cameras))
    # The sphere of radius r = D sin(half fov) at the orbit's centre: D = 2.6, half fov 22.5 deg.
    np.testing.assert_allclose(high, 2.6 * np.sin(np.deg2rad(22.5)), rtol=1e-6)  # arccos near 1
    np.testing.assert_allclose(low, -high, rtol=1e-6)
    shifted = cameras.c2w.copy()
    shifted[:, :3, 3] += [0.5, -1.0, 2.0]
    moved = np.array(scene_box_from_cameras(type(cameras)(shifted, cameras.intrinsics)))
    np.testing.assert_allclose(moved, [low + [0.5, -1.0, 2.0], high + [0.5, -1.0, 2.0]], atol=1e-6)
    with pytest.raises(InvalidInputError, match="parallel"):
        parallel = np.repeat(cameras.c2w[:1], 3, axis=0)
        parallel[:, :3, 3] += np.arange(3)[:, None] * [[1.0, 0.0, 0.0]] @ parallel[0, :3, :3].T
        scene_box_from_cameras(type(cameras)(parallel, cameras.intrinsics))
