"""Shared set-up of the generator tests."""

import pytest
import torch
import trimesh

from scenes.camera_paths import intrinsics_from_fov, orbit_cameras
from scenes.cameras import Cameras
from scenes.render import render_mesh
from scenes.scene import MultiViewScene


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """These models are tiny: one thread is faster, and immune to a busy machine's thread contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def scene_with_depth():
    """Five 16-pixel views of a box on an orbit, rendered with depth (the multi-view UNet's tests)."""
    cameras = Cameras(orbit_cameras(5, 2.5, 30.0), intrinsics_from_fov(45.0, 16))
    images, depth = render_mesh(trimesh.creation.box(extents=(1.2, 0.9, 0.8)), cameras)
    return MultiViewScene(images, cameras), depth
