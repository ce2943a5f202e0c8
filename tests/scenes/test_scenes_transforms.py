"""nerfstudio transforms.json: round trips, splits, nerfstudio's own parser opening our folders, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scenes.camera_paths import intrinsics_from_fov, orbit_cameras
from scenes.cameras import Cameras
from scenes.scene import MultiViewScene
from scenes.transforms_json import read_split_names, read_transforms, write_transforms
from tests.scenes.assertions import raises_naming


def make_scene(n: int = 4, size: int = 8, seed: int = 0) -> MultiViewScene:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, size, size, 3)) / 255.0
    c2w = orbit_cameras(n, 2.9 + rng.uniform(), 31.7)
    c2w[:, :3, 3] += rng.normal(size=3) * 0.1
    return MultiViewScene(images, Cameras(c2w, intrinsics_from_fov(41.0, size)), [f"view_{i}" for i in range(n)])



@pytest.fixture
def written(tmp_path) -> tuple[MultiViewScene, Path]:
    scene = make_scene()
    write_transforms(scene, tmp_path / "views", train_names=["view_0", "view_2"], test_names=["view_1", "view_3"])
    return scene, tmp_path / "views"


def edit_meta(folder: Path, change) -> Path:
    path = folder / "transforms.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))
    return path


def test_round_trip_is_exact(written):
    scene, folder = written
    back = read_transforms(folder)
    assert back.names == scene.names
    np.testing.assert_array_equal(back.images, scene.images)
    np.testing.assert_array_equal(back.cameras.c2w, scene.cameras.c2w)
    assert back.cameras.intrinsics == scene.cameras.intrinsics
    assert read_split_names(folder) == (["view_0", "view_2"], ["view_1", "view_3"])
    assert read_transforms(folder / "transforms.json").names == scene.names  # the json file itself works too


def test_file_layout(written):
    _, folder = written
    meta = json.loads((folder / "transforms.json").read_text())
    assert meta["camera_model"] == "OPENCV" and meta["w"] == meta["h"] == 8
    assert meta["frames"][1]["file_path"] == "images/view_1.png"
    assert meta["val_filenames"] == meta["test_filenames"] == ["images/view_1.png", "images/view_3.png"]
    assert sorted(p.name for p in (folder / "images").iterdir()) == [f"view_{i}.png" for i in range(4)]


def test_one_sided_split_and_no_split(tmp_path):
    scene = make_scene()
    write_transforms(scene, tmp_path / "a", train_names=["view_3"])
    assert read_split_names(tmp_path / "a") == (["view_3"], ["view_0", "view_1", "view_2"])
    write_transforms(scene, tmp_path / "b")
    assert read_split_names(tmp_path / "b") == (None, None)
    with raises_naming("test_names", "['nope']"):
        write_transforms(scene, tmp_path / "c", test_names=["nope"])
    assert not (tmp_path / "c").exists()


def test_nerfstudio_parser_reads_the_same_cameras(written):
    """nerfstudio's own dataparser, with its re-centring and re-scaling off, sees our poses, intrinsics and split."""
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    scene, folder = written
    parser = NerfstudioDataParserConfig(data=folder, orientation_method="none", center_method="none",
                                        auto_scale_poses=False).setup()
    for split, names in (("train", ["view_0", "view_2"]), ("val", ["view_1", "view_3"]), ("test", ["view_1", "view_3"])):
        outputs = parser.get_dataparser_outputs(split=split)
        assert [Path(f).stem for f in outputs.image_filenames] == names
        index = [scene.names.index(n) for n in names]
        np.testing.assert_allclose(outputs.cameras.camera_to_worlds.numpy(), scene.cameras.c2w[index, :3, :4], atol=1e-6)
        k = scene.cameras.intrinsics
        np.testing.assert_allclose(outputs.cameras.fx.numpy().ravel(), k.fx, rtol=1e-6)
        np.testing.assert_allclose(outputs.cameras.cx.numpy().ravel(), k.cx, rtol=1e-6)
        assert int(outputs.cameras.width[0]) == k.width


def test_per_frame_intrinsics(written):
    scene, folder = written

    def move_to_frames(meta, bump=0.0):
        for key in ("fl_x", "fl_y", "cx", "cy", "w", "h"):
            value = meta.pop(key)
            for i, frame in enumerate(meta["frames"]):
                frame[key] = value + (bump if key == "fl_x" and i == 2 else 0)

    edit_meta(folder, move_to_frames)
    assert read_transforms(folder).cameras.intrinsics == scene.cameras.intrinsics
    path = edit_meta(folder, lambda meta: meta["frames"][2].__setitem__("fl_x", 99.0))
    with raises_naming(path, "different 'fl_x'", "Fix:"):
        read_transforms(folder)
    path = edit_meta(folder, lambda meta: meta["frames"][2].pop("fl_x"))
    with raises_naming(path, "'fl_x'"):
        read_transforms(folder)


@pytest.mark.parametrize("change, fragment", [
    (lambda meta: meta.pop("frames"), "frames"),
    (lambda meta: meta.update(frames=[]), "frames"),
    (lambda meta: meta.update(camera_model="OPENCV_FISHEYE"), "not a pinhole"),
    (lambda meta: meta.update(k1=0.1), "distortion"),
    (lambda meta: meta.update(fl_x="wide"), "not a number"),
    (lambda meta: meta.update(w=8.5), "whole numbers"),
    (lambda meta: meta["frames"][1].pop("file_path"), "frames[1]"),
    (lambda meta: meta["frames"][1].update(transform_matrix=[[1, 0], [0, 1]]), "frames[1] (images/view_1.png) transform_matrix"),
    (lambda meta: meta["frames"][1].update(transform_matrix=(2 * np.eye(4)).tolist()), "not a rigid transform"),
    (lambda meta: meta["frames"][3].update(file_path="images/view_0.png"), "view_0"),
    (lambda meta: meta.update(train_filenames=["images/elsewhere.png"]), "train_filenames"),
])
def test_bad_transforms_name_the_file(written, change, fragment):
    _, folder = written
    path = edit_meta(folder, change)
    with raises_naming(path, fragment):
        read_transforms(folder)
        read_split_names(folder)


def test_bad_files(tmp_path, written):
    _, folder = written
    with raises_naming(tmp_path / "none" / "transforms.json", "not found"):
        read_transforms(tmp_path / "none")
    (folder / "images" / "view_2.png").unlink()
    with raises_naming(folder / "images" / "view_2.png", "not found"):
        read_transforms(folder)
    Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(folder / "images" / "view_2.png")
    with raises_naming(folder / "images" / "view_2.png", "9x8", "h=8"):
        read_transforms(folder)
    (folder / "transforms.json").write_text("{ not json")
    with raises_naming(folder / "transforms.json", "not valid JSON"):
        read_transforms(folder)


def test_writer_refuses_existing_output(written):
    scene, folder = written
    with raises_naming(folder / "transforms.json", "already exists"):
        write_transforms(scene, folder)


@pytest.mark.parametrize("escape", ["parent", "absolute", "symlink"])
def test_a_frame_path_outside_the_folder_is_refused(tmp_path, written, escape):
    """A view read from outside its folder would not be in the folder's fingerprint: a change to it would go
    unnoticed by the cache."""
    _, folder = written
    outside = tmp_path / "outside.png"
    Image.open(folder / "images" / "view_1.png").save(outside)
    if escape == "symlink":
        (folder / "images" / "link.png").symlink_to(outside)
        file_path = "images/link.png"
    else:
        file_path = "../outside.png" if escape == "parent" else str(outside)
    path = edit_meta(folder, lambda meta: meta["frames"][1].update(file_path=file_path))
    with raises_naming(path, "frames[1]", file_path, "outside", "Fix:"):
        read_transforms(folder)


def test_an_oversized_view_is_refused_before_it_is_decoded(written, monkeypatch):
    from tests.scenes.test_scenes_images import claimed_size_png, decode_only

    _, folder = written
    claimed_size_png(folder / "images" / "view_2.png", 12000, 12000)
    decode_only(monkeypatch, (8, 8))
    with raises_naming(folder / "images" / "view_2.png", "12000x12000", "h=8"):
        read_transforms(folder)
