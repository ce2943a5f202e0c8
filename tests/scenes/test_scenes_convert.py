"""Conversions keep poses and pixels, and both file formats put known 3D points where the renderer drew them."""

from __future__ import annotations

import numpy as np
import trimesh

from scenes.camera_paths import intrinsics_from_fov, orbit_cameras, sphere_cameras
from scenes.cameras import Cameras
from scenes.convert import srn_to_transforms, transforms_to_srn
from scenes.render import render_mesh
from scenes.scene import MultiViewScene
from scenes.srn import read_srn_instance, write_srn_instance
from scenes.transforms_json import read_transforms

#: Small spheres at asymmetric known positions, each in its own pure colour.
CENTRES = np.array([[0.7, 0.1, 0.0], [-0.2, 0.6, 0.3], [0.1, -0.3, 0.75], [-0.5, -0.45, -0.3]])
COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]])
BALL = 0.07


def marker_scene(size: int = 64) -> MultiViewScene:
    balls = []
    for centre, colour in zip(CENTRES, COLOURS):
        ball = trimesh.creation.icosphere(subdivisions=3, radius=BALL)
        ball.apply_translation(centre)
        ball.visual.face_colors = [*colour, 255]
        balls.append(ball)
    c2w = np.concatenate([orbit_cameras(4, 2.7, 25.0), sphere_cameras(4, 2.7, np.random.default_rng(3))])
    cameras = Cameras(c2w, intrinsics_from_fov(45.0, size))
    images, _ = render_mesh(trimesh.util.concatenate(balls), cameras, ambient=1.0)  # flat colours
    return MultiViewScene(images, cameras)


def test_srn_transforms_srn_round_trip(tmp_path):
    scene = marker_scene(size=32)
    write_srn_instance(scene, tmp_path / "a")
    srn_to_transforms(tmp_path / "a", tmp_path / "ns")
    transforms_to_srn(tmp_path / "ns", tmp_path / "b")
    first, back = read_srn_instance(tmp_path / "a"), read_srn_instance(tmp_path / "b")
    assert back.names == first.names
    np.testing.assert_array_equal(back.images, first.images)
    np.testing.assert_allclose(back.cameras.c2w, first.cameras.c2w, atol=1e-6)
    np.testing.assert_allclose(read_transforms(tmp_path / "ns").cameras.c2w, first.cameras.c2w, atol=1e-6)
    for folder in ("a", "b"):
        assert sorted(p.name for p in (tmp_path / folder / "rgb").iterdir()) == [f"{i:06d}.png" for i in range(8)]
    assert [(tmp_path / "a" / "rgb" / f"{i:06d}.png").read_bytes() == (tmp_path / "b" / "rgb" / f"{i:06d}.png").read_bytes()
            for i in range(8)] == [True] * 8


def test_projection_lands_where_the_renderer_drew(tmp_path):
    """Read back from each format, `Cameras.project` of each sphere's centre falls on that sphere's pixels."""
    scene = marker_scene()
    write_srn_instance(scene, tmp_path / "srn")
    srn_to_transforms(tmp_path / "srn", tmp_path / "ns")
    true_pixels, _ = scene.cameras.project(CENTRES)
    # markers whose discs come close to each other in a view may occlude one another: judged on the true cameras
    spacing = np.linalg.norm(true_pixels[:, :, None] - true_pixels[:, None], axis=-1) + 1e3 * np.eye(len(CENTRES))
    clear = spacing.min(axis=-1) > 8.0
    assert clear.mean() > 0.75
    for reader, folder in ((read_srn_instance, "srn"), (read_transforms, "ns")):
        loaded = reader(tmp_path / folder)
        pixels, depth = loaded.cameras.project(CENTRES)
        assert (depth > 0).all()
        checked = 0
        for view, ball in zip(*np.nonzero(clear)):
            colour = COLOURS[ball] / 255
            mask = np.abs(loaded.images[view] - colour).max(axis=-1) < 0.02
            assert mask.any(), f"{folder}: marker {ball} not drawn in view {view}"
            rows, cols = np.nonzero(mask)
            centroid = np.array([cols.mean() + 0.5, rows.mean() + 0.5])  # pixel centres at +0.5, as in camera_rays
            assert np.linalg.norm(centroid - pixels[view, ball]) < 1.0, (folder, view, ball, centroid, pixels[view, ball])
            u, v = np.floor(pixels[view, ball]).astype(int)
            assert mask[v, u], f"{folder}: view {view} pixel ({u}, {v}) is not marker {ball}'s colour"
            checked += 1
        assert checked >= 24
