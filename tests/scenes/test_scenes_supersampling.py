"""Supersampled rendering: a pixel's colour is the mean of its factor x factor rays (checked against a direct
render at the fine size, averaged in float64), its depth is the centre ray's (the one-ray-per-pixel depth)."""

from __future__ import annotations

import numpy as np
import pytest

from scenes.cameras import Cameras
from scenes.dataset import ProceduralDatasetConfig, check_config, render_supersampled
from scenes.errors import InvalidInputError
from scenes.panorama import make_room, panorama_cameras
from scenes.render import render_mesh


def test_supersampled_pixels_average_their_rays_and_keep_the_centre_depth():
    mesh, albedo = make_room(np.random.default_rng(0))
    cameras = panorama_cameras(3, 90.0, 8, centre=np.array([0.0, 0.0, 1.4]))
    images, depth = render_supersampled(mesh, cameras, albedo, 3)
    k = cameras.intrinsics
    fine, _ = render_mesh(mesh, Cameras(cameras.c2w, k.resized(24, 24)), albedo_fn=albedo)
    expected = fine.astype(np.float64).reshape(3, 8, 3, 8, 3, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(images, expected, atol=1e-6)
    _, coarse_depth = render_mesh(mesh, cameras, albedo_fn=albedo)
    np.testing.assert_allclose(depth, coarse_depth, rtol=1e-6)
    assert np.abs(images - render_mesh(mesh, cameras, albedo_fn=albedo)[0]).max() > 1e-3  # it does average


@pytest.mark.parametrize("factor", [0, 2, 1.5])
def test_an_even_or_non_positive_factor_is_refused(factor):
    with pytest.raises(InvalidInputError, match="supersampling"):
        check_config(ProceduralDatasetConfig(supersampling=factor))
