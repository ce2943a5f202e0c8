"""SRN layout: exact round trips, OpenCV pose convention, and one clear error per kind of bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scenes.camera_paths import intrinsics_from_fov, orbit_cameras
from scenes.cameras import Cameras, Intrinsics
from scenes.scene import MultiViewScene
from scenes.srn import list_srn_instances, read_srn_instance, write_srn_instance
from tests.scenes.assertions import raises_naming


def make_scene(n: int = 3, size: int = 8, seed: int = 0) -> MultiViewScene:
    """Random 8-bit-exact images on cameras with irregular (non-round) poses."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, size, size, 3)) / 255.0
    c2w = orbit_cameras(n, 2.7 + rng.uniform(), 23.456)
    c2w[:, :3, 3] += rng.normal(size=3) * 0.1
    return MultiViewScene(images, Cameras(c2w, intrinsics_from_fov(47.3, size)))



@pytest.fixture
def instance(tmp_path) -> tuple[MultiViewScene, Path]:
    scene = make_scene()
    folder = tmp_path / "mug_train" / "mug_0000"
    write_srn_instance(scene, folder)
    return scene, folder


def test_round_trip_is_exact(instance):
    scene, folder = instance
    back = read_srn_instance(folder, image_size=8)
    assert back.names == ["000000", "000001", "000002"]
    np.testing.assert_array_equal(back.images, scene.images)
    np.testing.assert_array_equal(back.cameras.c2w, scene.cameras.c2w)  # repr() digits: bit-exact
    assert back.cameras.intrinsics == scene.cameras.intrinsics


def test_files_follow_srn_conventions(instance):
    scene, folder = instance
    lines = (folder / "intrinsics.txt").read_text().splitlines()
    k = scene.cameras.intrinsics
    assert [float(x) for x in lines[0].split()] == [k.fx, k.cx, k.cy, 0.0]
    assert lines[1:] == ["0. 0. 0.", "1.", "8 8"]
    # OpenCV axes: column 2 (camera z) points from the camera towards the object at the origin.
    pose = np.loadtxt(folder / "pose" / "000001.txt")
    forward, centre = pose[:3, 2], pose[:3, 3]
    np.testing.assert_allclose(forward, -centre / np.linalg.norm(centre), atol=0.1)
    assert pose[:3, 1] @ [0, 0, 1] < 0  # y down: camera y points away from world up
    assert Image.open(folder / "rgb" / "000000.png").mode == "RGB"


def test_reads_one_line_poses_and_rgba_on_white(instance):
    scene, folder = instance
    pose = np.loadtxt(folder / "pose" / "000000.txt")
    (folder / "pose" / "000000.txt").write_text(" ".join(repr(float(x)) for x in pose.ravel()))
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 0
    rgba[0, 0] = [0, 0, 255, 255]
    rgba[0, 1] = [0, 0, 0, 128]
    Image.fromarray(rgba).save(folder / "rgb" / "000002.png")
    back = read_srn_instance(folder)
    np.testing.assert_array_equal(back.cameras.c2w[0], scene.cameras.c2w[0])
    np.testing.assert_allclose(back.images[2, 0, 0], [0, 0, 1])
    np.testing.assert_allclose(back.images[2, 0, 1], [1 - 128 / 255] * 3, atol=1e-6)
    np.testing.assert_array_equal(back.images[2, 5, 5], [1, 1, 1])  # fully transparent red -> white


def test_missing_folder_and_files(tmp_path, instance):
    _, folder = instance
    with raises_naming(tmp_path / "nope", "not found"):
        read_srn_instance(tmp_path / "nope")
    (folder / "intrinsics.txt").rename(folder / "kept.txt")
    with raises_naming(folder / "intrinsics.txt", "not found"):
        read_srn_instance(folder)
    (folder / "kept.txt").rename(folder / "intrinsics.txt")
    shutil.rmtree(folder / "pose")
    with raises_naming(folder / "pose", "missing"):
        read_srn_instance(folder)


def test_no_views(tmp_path, instance):
    _, folder = instance
    for path in (folder / "rgb").iterdir():
        path.unlink()
    with raises_naming(folder / "rgb", "no views"):
        read_srn_instance(folder)


@pytest.mark.parametrize("text", ["1 2 3 0.\n0. 0. 0.\n1.\n", "1 2 3 0.\n0. 0. 0.\n1.\n8 x\n", "-5 4 4 0.\n0 0 0\n1.\n8 8\n"])
def test_malformed_intrinsics(instance, text):
    _, folder = instance
    (folder / "intrinsics.txt").write_text(text)
    with raises_naming(folder / "intrinsics.txt", "Fix:"):
        read_srn_instance(folder)


@pytest.mark.parametrize("text", ["1 0 0 0 0 1 0 0 0 0 1 0 0 0 0", "1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1 7", "a b c"])
def test_malformed_pose(instance, text):
    _, folder = instance
    (folder / "pose" / "000001.txt").write_text(text)
    with raises_naming(folder / "pose" / "000001.txt", "Fix:"):
        read_srn_instance(folder)


def test_non_rigid_pose(instance):
    _, folder = instance
    pose = np.loadtxt(folder / "pose" / "000002.txt")
    pose[:3, :3] *= 1.1  # a scaled rotation
    np.savetxt(folder / "pose" / "000002.txt", pose)
    with raises_naming(folder / "pose" / "000002.txt", "not a rigid transform"):
        read_srn_instance(folder)


def test_mismatched_stems(instance):
    _, folder = instance
    (folder / "pose" / "000002.txt").rename(folder / "pose" / "000007.txt")
    with raises_naming(folder, "['000002']", "['000007']"):
        read_srn_instance(folder)


def test_unreadable_image(instance):
    _, folder = instance
    (folder / "rgb" / "000001.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with raises_naming(folder / "rgb" / "000001.png", "cannot be read"):
        read_srn_instance(folder)


def test_image_size_checks(instance):
    _, folder = instance
    with raises_naming(folder / "intrinsics.txt", "image_size is 16"):
        read_srn_instance(folder, image_size=16)
    Image.fromarray(np.zeros((8, 9, 3), np.uint8)).save(folder / "rgb" / "000000.png")
    with raises_naming(folder / "rgb" / "000000.png", "8x9"):
        read_srn_instance(folder)


def test_writer_refuses_bad_output(tmp_path, instance):
    scene, folder = instance
    with raises_naming(folder / "intrinsics.txt", "already exists"):
        write_srn_instance(scene, folder)
    k = scene.cameras.intrinsics
    skewed = MultiViewScene(scene.images, Cameras(scene.cameras.c2w, Intrinsics(k.fx, k.fx * 1.1, k.cx, k.cy, 8, 8)))
    with raises_naming(tmp_path / "other" / "intrinsics.txt", "one focal length"):
        write_srn_instance(skewed, tmp_path / "other")
    assert not (tmp_path / "other").exists()


def test_list_instances(tmp_path):
    root = tmp_path / "data"
    for folder in ("mug_train/mug_0001", "mug_train/mug_0000", "chair_train/chair_0000", "mug_test/mug_0002"):
        write_srn_instance(make_scene(n=1, size=4), root / folder)
    (root / "mug_train" / "notes").mkdir()  # not an instance: no rgb/
    assert list_srn_instances(root, "train") == [root / "chair_train/chair_0000", root / "mug_train/mug_0000",
                                                 root / "mug_train/mug_0001"]
    assert list_srn_instances(root, "test") == [root / "mug_test/mug_0002"]
    with raises_naming(root, "'val'", "train", "nvsc run PrepareDataset", "--PrepareDataset-source"):
        list_srn_instances(root, "val")
    with raises_naming(tmp_path / "missing", "not found", "nvsc run PrepareDataset"):
        list_srn_instances(tmp_path / "missing", "train")


def test_an_oversized_view_is_refused_before_it_is_decoded(instance, monkeypatch):
    from tests.scenes.test_scenes_images import claimed_size_png, decode_only

    _, folder = instance
    claimed_size_png(folder / "rgb" / "000001.png", 12000, 12000)
    decode_only(monkeypatch, (8, 8))
    with raises_naming(folder / "rgb" / "000001.png", "12000x12000", "intrinsics.txt declares 8x8"):
        read_srn_instance(folder)
