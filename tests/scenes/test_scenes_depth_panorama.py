"""Depth maps in the SRN layout (consistent with `scenes.cameras`) and the procedural panorama rooms."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import trimesh

from scenes.camera_paths import intrinsics_from_fov, orbit_cameras
from scenes.cameras import Cameras
from scenes.dataset import ProceduralDatasetConfig, generate_dataset, validate_dataset
from scenes.errors import InvalidInputError
from scenes.panorama import PanoramaDatasetConfig, generate_panorama_dataset, panorama_instance_names
from scenes.render import render_mesh
from scenes.scene import MultiViewScene
from scenes.srn import list_srn_instances, read_srn_depth, read_srn_instance, write_srn_depth, write_srn_instance
from tests.scenes.assertions import raises_naming

OBJECTS = ProceduralDatasetConfig(categories=("mug",), train_instances=1, val_instances=0, test_instances=1,
                                  train_views=2, test_views=3, image_size=16, seed=3)
ROOMS = PanoramaDatasetConfig(categories=("chair", "lamp"), train_instances=1, val_instances=0, test_instances=1,
                              image_size=24, seed=5)


@pytest.fixture(scope="module")
def objects(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("objects") / "data"
    generate_dataset(OBJECTS, root)
    return root


@pytest.fixture(scope="module")
def rooms(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rooms") / "data"
    generate_panorama_dataset(ROOMS, root)
    return root


def unproject(depth: np.ndarray, cameras: Cameras) -> np.ndarray:
    """World points [N, H, W, 3] of every pixel centre at its depth along the viewing axis (float64 reference)."""
    k = cameras.intrinsics
    v, u = np.meshgrid(np.arange(k.height) + 0.5, np.arange(k.width) + 0.5, indexing="ij")
    local = np.stack([(u - k.cx) / k.fx, (v - k.cy) / k.fy, np.ones_like(u)], axis=-1)  # OpenCV camera axes
    in_camera = local[None] * depth[..., None].astype(np.float64)
    c2w = cameras.to_opencv()
    return np.einsum("nij,nhwj->nhwi", c2w[:, :3, :3], in_camera) + c2w[:, None, None, :3, 3]


def test_depth_round_trip_lies_on_the_surface(tmp_path):
    """Depth written beside the views, read back, unprojected: every pixel lands on the cube's surface, and
    `Cameras.project` returns the same pixel and the same depth (the convention of scenes.cameras)."""
    cube = trimesh.creation.box(extents=[1.0, 1.0, 1.0])
    cameras = Cameras(orbit_cameras(3, 2.5, 30.0), intrinsics_from_fov(40.0, 12))
    images, depth = render_mesh(cube, cameras)
    scene = MultiViewScene(images, cameras)
    write_srn_instance(scene, tmp_path / "cube")
    write_srn_depth(tmp_path / "cube", depth, scene.names)
    read = read_srn_depth(tmp_path / "cube")
    np.testing.assert_array_equal(read, depth)
    assert read.dtype == np.float32 and np.isinf(read).any() and np.isfinite(read).any()
    hit = np.isfinite(read)
    points = unproject(np.where(hit, read, 1.0), cameras)[hit]
    np.testing.assert_allclose(np.abs(points).max(axis=-1), 0.5, atol=1e-5)
    pixels, depths = cameras[0].project(points[: hit[0].sum()])
    np.testing.assert_allclose(depths[0], read[0][hit[0]], rtol=1e-6)
    v, u = np.nonzero(hit[0])
    np.testing.assert_allclose(pixels[0], np.stack([u + 0.5, v + 0.5], axis=-1), atol=1e-4)


def test_dataset_writes_depth_and_validates_without_it(objects, tmp_path):
    for folder in list_srn_instances(objects, "test") + list_srn_instances(objects, "train"):
        scene, depth = read_srn_instance(folder), read_srn_depth(folder)
        assert depth.shape == scene.images.shape[:3]
        background = np.all(scene.images == 1.0, axis=-1)  # white background where no surface is hit
        assert np.isinf(depth).any() and np.isfinite(depth).any()
        np.testing.assert_array_equal(np.isinf(depth) & ~background, np.zeros_like(background))  # no depth: background
    copy = tmp_path / "copy"
    shutil.copytree(objects, copy)
    assert len(validate_dataset(copy)) == 2
    instance = list_srn_instances(copy, "test")[0]
    shutil.rmtree(instance / "depth")
    assert len(validate_dataset(copy)) == 2  # depth is optional
    with raises_naming(instance / "depth", "no depth maps", "PrepareDataset"):
        read_srn_depth(instance)


def test_bad_depth_files_are_named(objects, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(objects, copy)
    instance = list_srn_instances(copy, "test")[0]
    target = instance / "depth" / "000001.npy"
    target.write_bytes(target.read_bytes()[:40])  # truncated
    with raises_naming(target, "cannot be read"):
        validate_dataset(copy)
    np.save(target, np.ones((4, 4), dtype=np.float32))
    with raises_naming(target, "shape [4, 4]", "[16, 16]"):
        read_srn_depth(instance)
    target.unlink()
    with raises_naming(instance / "depth", "['000001'] have no depth"):
        read_srn_depth(instance)


def test_panorama_rooms_layout_and_cameras(rooms):
    assert [p.relative_to(rooms).as_posix() for p in list_srn_instances(rooms, "train")] == ["room_train/room_0000"]
    test = list_srn_instances(rooms, "test")
    assert [p.name for p in test] == panorama_instance_names(ROOMS, "test") == ["room_0001"]
    scene = read_srn_instance(test[0], image_size=24)
    assert len(scene) == 8
    np.testing.assert_allclose(scene.cameras.centers, [[0.0, 0.0, ROOMS.eye_height]] * 8, atol=1e-12)
    forward = -scene.cameras.c2w[:, :3, 2]
    np.testing.assert_allclose(forward[:, 2], 0.0, atol=1e-12)  # horizontal
    yaw = np.degrees(np.arctan2(forward[:, 1], forward[:, 0])) % 360
    np.testing.assert_allclose(yaw, np.arange(8) * 45.0, atol=1e-9)  # test rooms start at yaw 0
    k = scene.cameras.intrinsics
    np.testing.assert_allclose(2 * np.degrees(np.arctan(k.width / 2 / k.fx)), 90.0)
    depth = read_srn_depth(test[0])
    assert np.isfinite(depth).all() and depth.min() > 0.2  # a closed room: every ray hits a wall
    assert scene.images.std(axis=(1, 2)).min() > 0.05  # textured, not flat
    train = read_srn_instance(list_srn_instances(rooms, "train")[0])
    train_yaw = np.degrees(np.arctan2(-train.cameras.c2w[:, 1, 2], -train.cameras.c2w[:, 0, 2])) % 360
    assert np.abs(np.diff(np.unwrap(np.radians(train_yaw)))).max() == pytest.approx(np.pi / 4)
    assert not np.isclose(train_yaw[0], 0.0)  # train rooms start at a random yaw


def test_panorama_is_deterministic_and_checked(rooms, tmp_path):
    generate_panorama_dataset(ROOMS, tmp_path / "again")
    files = sorted(p.relative_to(rooms) for p in rooms.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*") if p.is_file())
    assert all((rooms / f).read_bytes() == (tmp_path / "again" / f).read_bytes() for f in files)
    with pytest.raises(InvalidInputError, match="categories.*'sofa'"):
        generate_panorama_dataset(replace(ROOMS, categories=("sofa",)), tmp_path / "bad")
    with pytest.raises(InvalidInputError, match="views.*1 cameras"):
        generate_panorama_dataset(replace(ROOMS, views=1), tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
