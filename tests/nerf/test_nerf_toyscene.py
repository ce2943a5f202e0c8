"""A coloured box and sphere ray-cast on orbit cameras: the test scene of the nerf package (and its own test).

`make_toy_scene` renders view-consistent images (Lambert shading with a fixed light, white background);
`permute_colors_per_view` and `noise_views` derive the view-inconsistent controls from it.
"""

import numpy as np
import pytest
import torch
import trimesh
from trimesh.ray.ray_pyembree import RayMeshIntersector

from scenes.cameras import Cameras, Intrinsics, camera_rays, look_at
from scenes.scene import MultiViewScene

BOX_COLORS = np.array([[0.9, 0.15, 0.1], [0.1, 0.7, 0.2], [0.15, 0.3, 0.9],
                       [0.95, 0.8, 0.1], [0.7, 0.2, 0.8], [0.1, 0.8, 0.85]])
LIGHT = np.array([0.4, 0.3, 1.0]) / np.linalg.norm([0.4, 0.3, 1.0])


def toy_mesh() -> tuple[trimesh.Trimesh, np.ndarray]:
    """A box and a sphere inside the unit sphere, and a colour [F, 3] per triangle."""
    box = trimesh.creation.box(extents=(0.8, 0.8, 0.8))
    box.apply_translation((-0.25, -0.2, -0.15))
    # Each box side is two triangles whose normals agree: colour sides by their axis and sign.
    side = np.argmax(np.abs(box.face_normals), axis=1) * 2 + (box.face_normals.max(axis=1) > 0.5)
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.38)
    sphere.apply_translation((0.35, 0.3, 0.2))
    sphere_colors = 0.5 + 0.45 * np.sign(sphere.face_normals) * np.abs(sphere.face_normals) ** 0.5
    mesh = trimesh.util.concatenate([box, sphere])
    return mesh, np.concatenate([BOX_COLORS[side], sphere_colors])


def orbit_cameras(num_views: int, size: int, radius: float = 3.0, elevation_deg: float = 25.0,
                  fov_deg: float = 45.0) -> Cameras:
    """`num_views` cameras evenly spaced on a circle at `elevation_deg`, looking at the origin."""
    elevation = np.deg2rad(elevation_deg)
    azimuths = np.linspace(0, 2 * np.pi, num_views, endpoint=False)
    eyes = radius * np.stack([np.cos(azimuths) * np.cos(elevation), np.sin(azimuths) * np.cos(elevation),
                              np.full(num_views, np.sin(elevation))], axis=1)
    focal = 0.5 * size / np.tan(np.deg2rad(fov_deg) / 2)
    return Cameras(np.stack([look_at(eye) for eye in eyes]), Intrinsics(focal, focal, size / 2, size / 2, size, size))


def ray_cast(cameras: Cameras) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images [N, H, W, 3], hit mask [N, H, W] and hit points [N, H, W, 3] of the toy mesh seen by `cameras`."""
    mesh, colors = toy_mesh()
    k = cameras.intrinsics
    origins, directions = camera_rays(torch.as_tensor(cameras.c2w), torch.as_tensor([k.fx, k.fy, k.cx, k.cy]),
                                      k.height, k.width)
    origins, directions = origins.reshape(-1, 3).numpy(), directions.reshape(-1, 3).numpy()
    triangles, rays, locations = RayMeshIntersector(mesh).intersects_id(
        origins, directions, multiple_hits=False, return_locations=True)
    images = np.ones((len(origins), 3))
    hit = np.zeros(len(origins), dtype=bool)
    points = np.zeros((len(origins), 3))
    shade = 0.35 + 0.65 * np.clip(mesh.face_normals[triangles] @ LIGHT, 0.0, 1.0)
    images[rays] = colors[triangles] * shade[:, None]
    hit[rays] = True
    points[rays] = locations
    shape = (len(cameras), k.height, k.width)
    return images.reshape(*shape, 3).astype(np.float32), hit.reshape(shape), points.reshape(*shape, 3)


def make_toy_scene(size: int = 32, num_views: int = 20, radius: float = 3.0, supersample: int = 3) -> MultiViewScene:
    """View-consistent views of the toy mesh on an orbit (white background), each pixel the mean of
    supersample x supersample rays, as a renderer or a generative model gives smooth edges."""
    cameras = orbit_cameras(num_views, size, radius)
    fine = ray_cast(Cameras(cameras.c2w, cameras.intrinsics.resized(size * supersample, size * supersample)))[0]
    images = fine.reshape(num_views, size, supersample, size, supersample, 3).mean(axis=(2, 4))
    return MultiViewScene(images, cameras)


def permute_colors_per_view(scene: MultiViewScene, seed: int = 0) -> MultiViewScene:
    """Each view's RGB channels in a random order of its own: the same geometry, colours that disagree between
    views (a white background stays white)."""
    rng = np.random.default_rng(seed)
    images = np.stack([image[..., rng.permutation(3)] for image in scene.images])
    return MultiViewScene(images, scene.cameras, scene.names)


def noise_views(scene: MultiViewScene, seed: int = 0) -> MultiViewScene:
    """Independent uniform noise in place of every view."""
    rng = np.random.default_rng(seed)
    return MultiViewScene(rng.uniform(size=scene.images.shape).astype(np.float32), scene.cameras, scene.names)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of images in [0, 1], over all pixels of all views."""
    return float(-10 * np.log10(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


def test_ray_cast_hits_project_onto_their_pixels():
    cameras = orbit_cameras(3, 16)
    images, hit, points = ray_cast(cameras)
    assert 0.2 < hit.mean() < 0.8, "the object should fill part of each view"
    assert np.all(images[~hit] == 1.0)
    for i in range(len(cameras)):
        v, u = np.nonzero(hit[i])
        uv, depth = cameras[i].project(points[i][hit[i]])
        np.testing.assert_allclose(uv[0], np.stack([u + 0.5, v + 0.5], axis=1), atol=1e-3)
        assert np.all(depth[0] > 0)
        assert np.all(np.linalg.norm(points[i][hit[i]], axis=1) < 1.0), "the object must sit inside the unit sphere"


def test_controls_change_colours_not_background():
    scene = make_toy_scene(16, 6)
    permuted = permute_colors_per_view(scene)
    white = np.all(scene.images == 1.0, axis=-1)
    np.testing.assert_array_equal(permuted.images[white], 1.0)
    assert np.abs(permuted.images - scene.images).max() > 0.3
    assert noise_views(scene).images.std() == pytest.approx(np.sqrt(1 / 12), rel=0.05)
