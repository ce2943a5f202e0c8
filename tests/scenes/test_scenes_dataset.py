"""Procedural objects, camera placement and the dataset writer: layout, determinism, atomicity, user meshes."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import trimesh

import scenes.dataset as dataset
from scenes.camera_paths import intrinsics_from_fov, orbit_cameras, sphere_cameras
from scenes.cameras import Cameras, check_rigid
from scenes.dataset import ProceduralDatasetConfig, generate_dataset, render_mesh_dataset
from scenes.errors import InvalidInputError
from scenes.render import render_mesh
from scenes.shapes import CATEGORIES, make_object
from scenes.srn import list_srn_instances, read_srn_instance

TINY = ProceduralDatasetConfig(categories=("mug", "lamp"), train_instances=2, val_instances=1, test_instances=1,
                               train_views=3, test_views=4, image_size=16, seed=7)


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "tiny"
    generate_dataset(TINY, root)
    return root


# ---- shapes ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("category", sorted(CATEGORIES))
def test_objects_fit_the_unit_sphere_and_are_deterministic(category):
    for seed in range(4):
        obj = make_object(category, np.random.default_rng(seed))
        assert np.linalg.norm(obj.mesh.vertices, axis=1).max() <= 1.0
        np.testing.assert_allclose(obj.mesh.bounds.mean(axis=0), 0, atol=1e-9)
        again = make_object(category, np.random.default_rng(seed))
        np.testing.assert_array_equal(obj.mesh.vertices, again.mesh.vertices)
        faces = np.arange(len(obj.mesh.faces))
        centres = obj.mesh.triangles_center
        np.testing.assert_array_equal(obj.albedo_fn(centres, faces), again.albedo_fn(centres, faces))
        colours = obj.albedo_fn(centres, faces)
        assert colours.min() >= 0 and colours.max() <= 1
        assert len(np.unique(np.round(colours, 3), axis=0)) >= 3  # several parts and a pattern
    other = make_object(category, np.random.default_rng(99))
    assert other.mesh.vertices.shape != obj.mesh.vertices.shape or not np.allclose(other.mesh.vertices, obj.mesh.vertices)


@pytest.mark.parametrize("category", sorted(CATEGORIES))
def test_objects_look_different_from_different_sides(category):
    """Silhouettes from opposite azimuths differ (a handle, a back, an arm): no object is rotationally symmetric."""
    cameras = Cameras(orbit_cameras(8, 2.7, 20.0), intrinsics_from_fov(45, 32))
    for seed in range(3):
        obj = make_object(category, np.random.default_rng(seed))
        _, depth = render_mesh(obj.mesh, cameras, albedo_fn=obj.albedo_fn)
        masks = np.isfinite(depth)
        iou = [(masks[i] & masks[i + 4]).sum() / (masks[i] | masks[i + 4]).sum() for i in range(4)]
        assert min(iou) < 0.85, (category, seed, iou)
        assert masks.mean(axis=(1, 2)).min() > 0.05  # the object is in view and not tiny


def test_unknown_category_lists_the_known_ones():
    with pytest.raises(InvalidInputError, match="category.*'vase'.*chair.*lamp.*mug"):
        make_object("vase", np.random.default_rng(0))


# ---- cameras --------------------------------------------------------------------------------------------------

def test_sphere_and_orbit_cameras_look_at_the_origin():
    k = intrinsics_from_fov(45.0, 32)
    rng = np.random.default_rng(0)
    for c2w in (sphere_cameras(50, 2.5, rng, (-10, 80)), orbit_cameras(6, 2.5, 30.0)):
        for pose in c2w:
            check_rigid(pose, "pose")
        np.testing.assert_allclose(np.linalg.norm(c2w[:, :3, 3], axis=1), 2.5)
        pixels, depth = Cameras(c2w, k).project(np.zeros((1, 3)))
        np.testing.assert_allclose(pixels[:, 0], 16.0, atol=1e-9)
        np.testing.assert_allclose(depth, 2.5)
    elevation = np.degrees(np.arcsin(sphere_cameras(500, 1.0, np.random.default_rng(1), (-10, 80))[:, 2, 3]))
    assert elevation.min() >= -10 and elevation.max() <= 80 and elevation.max() - elevation.min() > 80
    orbit = orbit_cameras(8, 3.0, 30.0)
    np.testing.assert_allclose(orbit[:, 2, 3], 3.0 * np.sin(np.radians(30)))
    np.testing.assert_allclose(np.degrees(np.arctan2(orbit[:, 1, 3], orbit[:, 0, 3])) % 360, np.arange(8) * 45)
    np.testing.assert_array_equal(sphere_cameras(5, 2, np.random.default_rng(4)), sphere_cameras(5, 2, np.random.default_rng(4)))


def test_field_of_view_reaches_the_image_border():
    camera = Cameras(orbit_cameras(1, 3.0, 0.0), intrinsics_from_fov(50.0, 40))  # on +x, looking at the origin
    edge = np.array([[0.0, 3.0 * np.tan(np.radians(25)), 0.0]])  # half the field of view off the axis, 3 units away
    pixels, _ = camera.project(edge)
    np.testing.assert_allclose(pixels[0, 0], [40.0, 20.0])  # world +y is the image's right edge


# ---- dataset --------------------------------------------------------------------------------------------------

def test_layout_splits_and_manifest(tiny):
    train = list_srn_instances(tiny, "train")
    assert [p.relative_to(tiny).as_posix() for p in train] == ["lamp_train/lamp_0000", "lamp_train/lamp_0001",
                                                               "mug_train/mug_0000", "mug_train/mug_0001"]
    assert [p.name for p in list_srn_instances(tiny, "val")] == ["lamp_0002", "mug_0002"]
    test = list_srn_instances(tiny, "test")
    assert [p.name for p in test] == ["lamp_0003", "mug_0003"]
    scenes = [read_srn_instance(p, image_size=16) for p in train]
    assert all(len(s) == 3 for s in scenes)
    assert not np.allclose(scenes[0].cameras.c2w, scenes[1].cameras.c2w)  # random directions per instance
    assert not np.allclose(scenes[0].images, scenes[1].images)
    orbits = [read_srn_instance(p) for p in test]
    assert len(orbits[0]) == 4
    np.testing.assert_array_equal(orbits[0].cameras.c2w, orbits[1].cameras.c2w)  # one orbit for every test instance
    np.testing.assert_allclose(orbits[0].cameras.c2w, orbit_cameras(4, 2.7, 25.0), atol=1e-12)
    manifest = json.loads((tiny / "dataset.json").read_text())
    assert manifest["config"]["seed"] == 7 and manifest["config"]["categories"] == ["mug", "lamp"]
    assert {i["path"] for i in manifest["instances"]} == {p.relative_to(tiny).as_posix()
                                                          for s in ("train", "val", "test")
                                                          for p in list_srn_instances(tiny, s)}
    assert not [p for p in tiny.parent.iterdir() if "partial" in p.name]


def test_same_seed_same_bytes(tiny, tmp_path):
    generate_dataset(TINY, tmp_path / "again")
    assert tree_bytes(tmp_path / "again") == tree_bytes(tiny)
    generate_dataset(replace(TINY, seed=8), tmp_path / "other")
    other = tree_bytes(tmp_path / "other")
    assert other.keys() == tree_bytes(tiny).keys()
    assert other["mug_train/mug_0000/rgb/000000.png"] != tree_bytes(tiny)["mug_train/mug_0000/rgb/000000.png"]


def test_instances_do_not_depend_on_other_categories(tiny, tmp_path):
    generate_dataset(replace(TINY, categories=("mug",), train_instances=1, val_instances=0), tmp_path / "mugs")
    assert (tmp_path / "mugs/mug_train/mug_0000/rgb/000000.png").read_bytes() == \
        (tiny / "mug_train/mug_0000/rgb/000000.png").read_bytes()


def test_a_crash_leaves_no_half_dataset(tmp_path, monkeypatch):
    calls = []

    def failing_render(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("simulated crash")
        return render_mesh(*args, **kwargs)

    monkeypatch.setattr(dataset, "render_mesh", failing_render)
    with pytest.raises(RuntimeError, match="simulated crash"):
        generate_dataset(TINY, tmp_path / "data")
    assert list(tmp_path.iterdir()) == []


def test_bad_config_and_existing_root(tmp_path, tiny):
    with pytest.raises(InvalidInputError, match=re.escape(str(tiny)) + ".*already exists"):
        generate_dataset(TINY, tiny)
    for change, name in ((dict(categories=("mug", "vase")), "categories"), (dict(train_views=0), "train_views"),
                         (dict(camera_radius=0.8), "camera_radius"), (dict(fov_deg=190.0), "fov_deg"),
                         (dict(test_instances=-1), "test_instances"), (dict(image_size=0), "image_size")):
        with pytest.raises(InvalidInputError, match=f"^{name}"):
            generate_dataset(replace(TINY, **change), tmp_path / "never")
    assert not (tmp_path / "never").exists()


# ---- the user's meshes ----------------------------------------------------------------------------------------

RED, BLUE = np.array([230, 20, 20]), np.array([20, 40, 220])


@pytest.fixture
def user_meshes(tmp_path) -> list[Path]:
    """Two uniformly coloured boxes side by side, written as PLY, OBJ and GLB."""
    left = trimesh.creation.box(extents=[0.6, 0.6, 0.8])
    left.apply_translation([0, -0.4, 0])
    left.visual.face_colors = [*RED, 255]
    right = trimesh.creation.box(extents=[0.5, 0.5, 0.5])
    right.apply_translation([0, 0.4, 0])
    right.visual.face_colors = [*BLUE, 255]
    both = trimesh.util.concatenate([left, right])
    folder = tmp_path / "meshes" / "boxes"
    folder.mkdir(parents=True)
    paths = [folder / f"boxes.{ext}" for ext in ("ply", "obj", "glb")]
    for path in paths:
        both.export(path)
    return paths


def test_user_meshes_render_with_their_colours(tmp_path, user_meshes):
    config = replace(TINY, train_instances=1, val_instances=0, test_instances=2, test_views=3, image_size=24)
    paths = render_mesh_dataset(user_meshes, tmp_path / "data", config)
    assert [p.relative_to(tmp_path / "data").as_posix() for p in paths] == [
        "custom_train/custom_0000", "custom_test/custom_0001", "custom_test/custom_0002"]
    manifest = json.loads((tmp_path / "data" / "dataset.json").read_text())
    assert [Path(i["source"]).suffix for i in manifest["instances"]] == [".ply", ".obj", ".glb"]
    test_views = []
    for path in paths:
        scene = read_srn_instance(path)
        pixels = scene.images.reshape(-1, 3)
        object_pixels = pixels[np.abs(pixels - 1).max(axis=1) > 0.05]
        for colour in (RED, BLUE):  # Lambert scales the albedo: compare chromaticity
            chroma = object_pixels / object_pixels.sum(axis=1, keepdims=True)
            assert (np.abs(chroma - colour / colour.sum()).max(axis=1) < 0.02).mean() > 0.05, (path, colour)
        if "test" in path.parent.name:
            test_views.append(scene.images)
    np.testing.assert_allclose(test_views[0], test_views[1], atol=2 / 255)  # same mesh through OBJ and GLB


def test_user_meshes_by_folder_and_counts(tmp_path, user_meshes):
    config = replace(TINY, train_instances=2, val_instances=0, test_instances=1, image_size=8)
    paths = render_mesh_dataset(user_meshes, tmp_path / "data", config, category=None)
    assert [p.parent.name for p in paths] == ["boxes_train", "boxes_train", "boxes_test"]
    with pytest.raises(InvalidInputError, match="mesh_paths.*'boxes' has 3 meshes"):
        render_mesh_dataset(user_meshes, tmp_path / "other", replace(config, test_instances=2), category=None)
    with pytest.raises(InvalidInputError, match=re.escape(str(tmp_path / "missing.obj"))):
        render_mesh_dataset([tmp_path / "missing.obj"], tmp_path / "other", config)
    assert not (tmp_path / "other").exists()


def test_mesh_splits_default_to_the_procedural_proportions_and_given_counts_must_add_up():
    from scenes.dataset import mesh_split_counts

    assert mesh_split_counts(1) == {"train": 0, "val": 0, "test": 1}
    assert mesh_split_counts(2) == {"train": 1, "val": 0, "test": 1}
    assert mesh_split_counts(6) == {"train": 4, "val": 1, "test": 1}
    assert mesh_split_counts(11) == {"train": 8, "val": 1, "test": 2}  # ProceduralDatasetConfig's defaults
    assert mesh_split_counts(3, test=3) == {"train": 0, "val": 0, "test": 3}
    with pytest.raises(InvalidInputError, match="do not split the 2 meshes given"):
        mesh_split_counts(2, train=1, test=2)
    with pytest.raises(InvalidInputError, match="do not split"):
        mesh_split_counts(2, train=3, test=-1)


def test_render_meshes_command_splits_the_meshes_and_prints_a_command_that_fits(tmp_path, user_meshes, capsys):
    from pipeline.cli import main

    out = tmp_path / "mine"
    assert main(["render-meshes", *map(str, user_meshes), "--out", str(out), "--image-size", "24",
                 "--test-views", "3"]) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["custom_test", "custom_train"]
    assert f"--PrepareDataset-source {out} --PrepareDataset-image-size 24" in capsys.readouterr().out


def test_a_bad_pose_matrix_says_what_is_wrong_with_it():
    with pytest.raises(InvalidInputError, match=r"pose.txt: expected a 4x4 matrix, got shape \[2, 3\]"):
        check_rigid(np.zeros((2, 3)), "pose.txt")
    pose = np.eye(4)
    pose[1, 3] = np.nan
    with pytest.raises(InvalidInputError, match="pose.txt: the 4x4 matrix holds NaN or infinite entries"):
        check_rigid(pose, "pose.txt")
