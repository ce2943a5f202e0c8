"""Bring your own views: a folder of pre-generated views, matched to the requested cameras, every mismatch named."""

import json

import numpy as np
import pytest

from generators.folder_generator import FolderViewGenerator
from generators.generate import split_views
from scenes.cameras import Cameras, Intrinsics, look_at
from scenes.errors import InvalidInputError
from scenes.scene import MultiViewScene
from scenes.transforms_json import write_transforms

SIZE = 8


def truth(count: int = 5, size: int = SIZE) -> MultiViewScene:
    angles = np.linspace(0, 2 * np.pi, count, endpoint=False)
    c2w = np.stack([look_at(np.array([2 * np.cos(a), 2 * np.sin(a), 0.8])) for a in angles])
    # 8-bit levels, as views stored in PNG files are: reading them back is exact.
    images = np.round(np.random.default_rng(0).random((count, size, size, 3)) * 255) / 255
    return MultiViewScene(images, Cameras(c2w, Intrinsics(9.0, 9.0, size / 2, size / 2, size, size)))


@pytest.fixture
def scene():
    inputs, targets = split_views(truth(), input_view=1)
    return inputs, targets


def write(root, views, name="car_0001"):
    write_transforms(views, root / name)
    return FolderViewGenerator(root, name)


@pytest.mark.parametrize("layout", ["targets", "all views", "reversed"])
def test_views_are_read_in_the_order_of_the_requested_cameras(tmp_path, scene, layout):
    inputs, targets = scene
    written = {"targets": targets, "all views": truth(),
               "reversed": targets.subset(list(reversed(range(len(targets)))))}[layout]
    views = write(tmp_path, written).generate(inputs, targets.cameras, seed=0)
    np.testing.assert_array_equal(views, targets.images)


def test_missing_scene_names_the_file_to_write(tmp_path, scene):
    write(tmp_path, scene[1])
    with pytest.raises(InvalidInputError, match=r"chair_0002/transforms.json: missing.*'chair_0002'"):
        FolderViewGenerator(tmp_path, "chair_0002")
    with pytest.raises(InvalidInputError, match="does not exist"):
        FolderViewGenerator(tmp_path / "nowhere", "car_0001")


def test_a_wrong_pose_names_the_frame_and_its_file(tmp_path, scene):
    inputs, targets = scene
    generator = write(tmp_path, targets)
    path = tmp_path / "car_0001" / "transforms.json"
    meta = json.loads(path.read_text())
    meta["frames"][2]["transform_matrix"][0][3] += 0.05
    path.write_text(json.dumps(meta))
    with pytest.raises(InvalidInputError, match=r"frame 2 \(images/000003.png\).*matches no requested camera"):
        generator.generate(inputs, targets.cameras, seed=0)


@pytest.mark.parametrize("problem,message", [
    ("missing view", "holds 3 views but 4 target cameras"),
    ("input view and a missing view", r"has no view at target camera 3 \(position"),
    ("duplicate view", "a second view at the same camera"),
    ("image size", "views are 16x16 but scene 'car_0001' is 8x8"),
    ("focal length", "intrinsics .* differ from the scene's"),
])
def test_mismatches_are_named(tmp_path, scene, problem, message):
    inputs, targets = scene
    if problem == "missing view":
        written = targets.subset([0, 1, 2])
    elif problem == "input view and a missing view":  # as many views as targets, one of them the input view
        written = truth().subset([0, 1, 2, 3])
    elif problem == "duplicate view":
        written = targets.subset([0, 1, 2, 2])
        written.names = ["a", "b", "c", "d"]
    elif problem == "image size":
        written = split_views(truth(size=16), 1)[1]
    else:
        k = targets.cameras.intrinsics
        written = MultiViewScene(targets.images, Cameras(targets.cameras.c2w, Intrinsics(
            2 * k.fx, 2 * k.fy, k.cx, k.cy, k.width, k.height)))
    with pytest.raises(InvalidInputError, match=message) as error:
        write(tmp_path, written).generate(inputs, targets.cameras, seed=0)
    assert "transforms.json" in str(error.value)


def test_a_view_outside_the_scene_folder_is_refused(tmp_path, scene):
    inputs, targets = scene
    generator = write(tmp_path, targets)
    path = tmp_path / "car_0001" / "transforms.json"
    meta = json.loads(path.read_text())
    (tmp_path / "car_0001" / meta["frames"][2]["file_path"]).rename(tmp_path / "elsewhere.png")
    meta["frames"][2]["file_path"] = "../elsewhere.png"
    path.write_text(json.dumps(meta))
    with pytest.raises(InvalidInputError, match=r"car_0001/transforms.json frames\[2\].*'../elsewhere.png'.*outside"):
        generator.generate(inputs, targets.cameras, seed=0)
