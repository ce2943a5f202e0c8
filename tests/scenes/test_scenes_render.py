"""Mesh renderer against direct float64 computations, a second intersector, and mesh loading."""

from __future__ import annotations

import platform

import numpy as np
import pytest
import trimesh
from PIL import Image

import scenes.render as render
from scenes.camera_paths import intrinsics_from_fov, orbit_cameras
from scenes.cameras import Cameras, Intrinsics, look_at
from scenes.render import load_mesh, render_mesh
from tests.scenes.assertions import raises_naming

RADIUS, DISTANCE = 0.5, 3.0


def axis_camera(size: int = 65, distance: float = DISTANCE) -> Cameras:
    """One camera on +x looking at the origin; odd size so the centre pixel's ray is the optical axis."""
    focal = 0.5 * size / np.tan(np.radians(20))
    return Cameras(look_at(np.array([distance, 0.0, 0.0]))[None], Intrinsics(focal, focal, size / 2, size / 2, size, size))


def sphere_hits(cameras: Cameras, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Analytic ray-sphere intersection in float64: hit mask, points and view-axis depth [N, H, W(, 3)]."""
    k = cameras.intrinsics
    v, u = np.meshgrid(np.arange(k.height) + 0.5, np.arange(k.width) + 0.5, indexing="ij")
    local = np.stack([(u - k.cx) / k.fx, -(v - k.cy) / k.fy, -np.ones_like(u)], axis=-1)
    d = np.einsum("nij,hwj->nhwi", cameras.c2w[:, :3, :3], local)
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    o = cameras.c2w[:, None, None, :3, 3]
    b = np.sum(o * d, axis=-1)
    disc = b**2 - (np.sum(o * o, axis=-1) - radius**2)
    t = -b - np.sqrt(np.maximum(disc, 0))
    depth = t * np.einsum("nhwi,ni->nhw", d, -cameras.c2w[:, :3, 2])
    return disc > 0, o + t[..., None] * d, depth


def test_sphere_depth_background_and_lambert():
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=RADIUS)
    sphere.visual.face_colors = [200, 100, 50, 255]
    albedo = np.array([200, 100, 50]) / 255
    cameras = Cameras(np.concatenate([axis_camera().c2w, orbit_cameras(3, 2.5, 35.0)]), axis_camera().intrinsics)
    light = np.array([0.3, -0.2, 1.0])
    images, depth = render_mesh(sphere, cameras, background=(0.2, 0.3, 0.4), light_direction=light, ambient=0.35)
    assert images.shape == (4, 65, 65, 3) and images.dtype == depth.dtype == np.float32

    # centre pixel of the axis camera: the ray along the optical axis meets the sphere at DISTANCE - RADIUS
    assert depth[0, 32, 32] == pytest.approx(DISTANCE - RADIUS, abs=1e-3)
    hit, points, expected_depth = sphere_hits(cameras, RADIUS)
    rendered_hit = np.isfinite(depth)
    assert np.mean(hit != rendered_hit) < 0.01  # only silhouette pixels may differ (facets vs. true sphere)
    np.testing.assert_array_equal(images[~rendered_hit], np.broadcast_to(np.float32([0.2, 0.3, 0.4]),
                                                                           images[~rendered_hit].shape))
    both = hit & rendered_hit
    np.testing.assert_allclose(depth[both], expected_depth[both], atol=3e-3)

    # Lambert with the analytic normal; facets tilt normals by at most about one edge angle
    normals = points / RADIUS
    shade = 0.35 + 0.65 * np.clip(normals @ (light / np.linalg.norm(light)), 0, None)
    expected = albedo * shade[..., None]
    error = np.abs(images[both] - expected[both])
    assert error.mean() < 0.01 and error.max() < 0.06


def test_centre_pixel_facing_the_light_and_in_shadow():
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=RADIUS)
    sphere.visual.face_colors = [255, 128, 0, 255]
    camera = axis_camera()
    lit, _ = render_mesh(sphere, camera, light_direction=(1.0, 0.0, 0.0), ambient=0.35)
    dark, _ = render_mesh(sphere, camera, light_direction=(-1.0, 0.0, 0.0), ambient=0.35)
    np.testing.assert_allclose(lit[0, 32, 32], [1.0, 128 / 255, 0.0], atol=2e-3)  # n.l = 1: the albedo itself
    np.testing.assert_allclose(dark[0, 32, 32], 0.35 * np.array([1.0, 128 / 255, 0.0]), atol=1e-6)


def test_vertex_colours_are_interpolated_and_albedo_fn_gets_world_points():
    triangle = trimesh.Trimesh(vertices=[[0, -1, -1], [0, 1, -1], [0, 0, 1]], faces=[[0, 1, 2]],
                               vertex_colors=[[255, 0, 0, 255], [0, 255, 0, 255], [0, 0, 255, 255]])
    camera = axis_camera(size=33)
    images, depth = render_mesh(triangle, camera, ambient=1.0)
    k = camera.intrinsics
    v, u = np.meshgrid(np.arange(33) + 0.5, np.arange(33) + 0.5, indexing="ij")
    # where each pixel ray meets the plane x = 0 (camera on +x, z up: image right is world +y)
    y, z = (u - k.cx) / k.fx * DISTANCE, -(v - k.cy) / k.fy * DISTANCE
    corners = np.array([[-1, 1, 0], [-1, -1, 1], [1, 1, 1.0]])  # columns: the vertices' (y, z, 1)
    barycentric = np.linalg.solve(corners, np.stack([y, z, np.ones_like(y)], axis=-1)[..., None])[..., 0]
    inside = (barycentric > 1e-3).all(axis=-1)
    assert inside.sum() > 100
    np.testing.assert_allclose(images[0][inside], barycentric[inside], atol=1e-5)
    np.testing.assert_allclose(depth[0][inside], DISTANCE, atol=1e-5)

    seen = []
    render_mesh(triangle, camera, albedo_fn=lambda p, f: (seen.append(p), np.full((len(p), 3), 0.5))[1])
    np.testing.assert_allclose(seen[0][:, 0], 0.0, atol=1e-9)  # every hit point lies on the plane x = 0


def test_texture_is_sampled_at_the_hit_uv():
    quad = trimesh.Trimesh(vertices=[[0, -1, -1], [0, 1, -1], [0, 1, 1], [0, -1, 1]], faces=[[0, 1, 2], [0, 2, 3]],
                           process=False)
    texture = Image.fromarray(np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 0]]], np.uint8))
    quad.visual = trimesh.visual.TextureVisuals(uv=[[0, 0], [1, 0], [1, 1], [0, 1]], image=texture)
    images, _ = render_mesh(quad, axis_camera(size=33), ambient=1.0)
    # uv (0, 0) is the texture's bottom-left texel; the camera on +x sees world +y on its right
    np.testing.assert_allclose(images[0, 24, 8], [0, 0, 1])  # bottom-left of the view: blue texel
    np.testing.assert_allclose(images[0, 8, 24], [0, 1, 0])  # top-right: green
    np.testing.assert_allclose(images[0, 8, 8], [1, 0, 0])
    np.testing.assert_allclose(images[0, 24, 24], [1, 1, 0])


def test_embree_matches_the_pure_numpy_intersector(monkeypatch):
    mesh = trimesh.creation.torus(0.6, 0.25)
    cameras = Cameras(orbit_cameras(2, 2.7, 30.0), intrinsics_from_fov(45, 16))
    fast, fast_depth = render_mesh(mesh, cameras)
    monkeypatch.setattr(render, "_intersector_class", lambda: trimesh.ray.ray_triangle.RayMeshIntersector)
    slow, slow_depth = render_mesh(mesh, cameras)
    assert np.mean(np.isfinite(fast_depth) != np.isfinite(slow_depth)) < 0.01
    same = np.isfinite(fast_depth) & np.isfinite(slow_depth)
    np.testing.assert_allclose(fast_depth[same], slow_depth[same], atol=1e-4)
    assert np.mean(np.abs(fast - slow).max(axis=-1) > 1e-4) < 0.01


@pytest.mark.skipif(platform.machine() != "x86_64", reason="embreex (the fast intersector) is x86_64-only")
def test_renders_go_through_embree_where_it_is_installed():
    """Speed is a benchmark's claim, not a test's: what a test can check is that the fast path is the one taken
    (embree, about 100x trimesh's numpy intersector)."""
    from trimesh.ray.ray_pyembree import RayMeshIntersector

    assert render._intersector_class() is RayMeshIntersector
    mesh = trimesh.creation.icosphere(subdivisions=2)
    images, _ = render_mesh(mesh, Cameras(orbit_cameras(3, 2.7, 25.0), intrinsics_from_fov(45, 16)))
    assert images.shape == (3, 16, 16, 3)


def test_load_mesh_normalises_and_turns_y_up(tmp_path):
    box = trimesh.creation.box(extents=[2.0, 4.0, 6.0])
    box.apply_translation([10, 20, 30])
    box.export(tmp_path / "box.ply")
    mesh = load_mesh(tmp_path / "box.ply")
    np.testing.assert_allclose(mesh.bounds.mean(axis=0), 0, atol=1e-12)
    assert np.linalg.norm(mesh.vertices, axis=1).max() == pytest.approx(1.0)
    np.testing.assert_allclose(mesh.extents / mesh.extents[0], [1, 2, 3])
    y_up = load_mesh(tmp_path / "box.ply", up_axis="y")
    np.testing.assert_allclose(y_up.extents / y_up.extents[0], [1, 3, 2])  # file's y (4) is now height z


def test_load_mesh_errors(tmp_path):
    with raises_naming(tmp_path / "a.obj", "not found"):
        load_mesh(tmp_path / "a.obj")
    (tmp_path / "a.stl").write_text("solid")
    with raises_naming(tmp_path / "a.stl", "unsupported mesh format"):
        load_mesh(tmp_path / "a.stl")
    (tmp_path / "bad.glb").write_bytes(b"glTF garbage")
    with raises_naming(tmp_path / "bad.glb", "cannot be read"):
        load_mesh(tmp_path / "bad.glb")
    trimesh.PointCloud(np.random.default_rng(0).normal(size=(20, 3))).export(tmp_path / "points.ply")
    with raises_naming(tmp_path / "points.ply", "no triangles"):
        load_mesh(tmp_path / "points.ply")
