"""nerfstudio's `transforms.json` layout: the hand-over format between nvsc's stages.

Written the way nerfstudio's `nerfstudio_dataparser.py` reads it, so `ns-train nerfacto --data <folder>` opens any
folder nvsc writes::

    <folder>/transforms.json   {"camera_model": "OPENCV", "fl_x", "fl_y", "cx", "cy", "w", "h",
                                "frames": [{"file_path": "images/<name>.png", "transform_matrix": 4x4 c2w}],
                                "train_filenames": [...], "val_filenames": [...], "test_filenames": [...]}
    <folder>/images/<name>.png

`transform_matrix` is camera-to-world with OpenGL camera axes (nerfstudio's convention, and nvsc's). nerfstudio
allows intrinsics per frame; nvsc's scenes share one set, so per-frame values must agree. A view's name is the stem
of its `file_path`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from scenes.cameras import Cameras, Intrinsics, check_rigid
from scenes.errors import InvalidInputError
from scenes.images import check_view_names, read_png, write_views
from scenes.scene import MultiViewScene

TRANSFORMS_FILE = "transforms.json"
IMAGES_DIR = "images"
#: COLMAP camera models that are pinhole cameras once their distortion parameters are zero.
PINHOLE_MODELS = ("PINHOLE", "SIMPLE_PINHOLE", "OPENCV", "SIMPLE_RADIAL", "RADIAL")
DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h")


def write_transforms(scene: MultiViewScene, folder: Path, train_names: list[str] | None = None,
                     test_names: list[str] | None = None) -> None:
    """Write `scene` as `folder/transforms.json` + `folder/images/<name>.png`.

    With a split given, the names not listed in one side go to the other. The test list is also written as
    `val_filenames`, because nerfstudio evaluates on its "val" split and refuses a file that lists some splits only.
    """
    folder = Path(folder)
    taken = [folder / entry for entry in (TRANSFORMS_FILE, IMAGES_DIR) if (folder / entry).exists()]
    if taken:
        raise InvalidInputError(taken[0], "already exists; refusing to mix two scenes in one folder",
                                "write to a new folder, or delete the old one first")
    check_view_names(scene.names, str(folder))
    for name, c2w in zip(scene.names, scene.cameras.c2w):
        check_rigid(c2w, f"camera of view {name!r}")
    split = _complete_split(scene.names, train_names, test_names, folder)
    k = scene.cameras.intrinsics
    meta: dict = {"camera_model": "OPENCV", "fl_x": float(k.fx), "fl_y": float(k.fy), "cx": float(k.cx),
                  "cy": float(k.cy), "w": int(k.width), "h": int(k.height),
                  "frames": [{"file_path": _file_path(name), "transform_matrix": c2w.tolist()}
                             for name, c2w in zip(scene.names, scene.cameras.c2w)]}
    if split is not None:
        train, test = split
        meta["train_filenames"] = [_file_path(name) for name in train]
        meta["val_filenames"] = [_file_path(name) for name in test]
        meta["test_filenames"] = [_file_path(name) for name in test]
    write_views(folder / IMAGES_DIR, scene.images, scene.names)
    # json writes floats with repr(), which parses back to the same float64: poses round-trip exactly.
    (folder / TRANSFORMS_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def _file_path(name: str) -> str:
    return f"{IMAGES_DIR}/{name}.png"


def _complete_split(names: list[str], train: list[str] | None, test: list[str] | None, folder: Path
                    ) -> tuple[list[str], list[str]] | None:
    """(train, test) names with a missing side filled by the remaining views, or None without a split."""
    if train is None and test is None:
        return None
    for given, which in ((train, "train_names"), (test, "test_names")):
        unknown = sorted(set(given or []) - set(names))
        if unknown:
            raise InvalidInputError(which, f"names {unknown[:5]} are not views of the scene written to {folder}",
                                    f"choose among the scene's view names {names[:5]}...")
    if train is None:
        train = [name for name in names if name not in set(test)]
    if test is None:
        test = [name for name in names if name not in set(train)]
    return list(train), list(test)


def read_transforms(folder: Path) -> MultiViewScene:
    """All frames of `folder/transforms.json` (or of the `.json` file given), in file order."""
    meta, data_dir, source = _load_meta(folder)
    frames = meta["frames"]
    intrinsics = _read_intrinsics(meta, frames, source)
    names, images, c2w = [], [], []
    for i, frame in enumerate(frames):
        where = f"{source} frames[{i}]"
        if not isinstance(frame, dict) or not isinstance(frame.get("file_path"), str):
            raise InvalidInputError(where, "has no file_path string", 'give every frame "file_path": "images/<name>.png"')
        path = frame_file(data_dir, frame["file_path"], where)
        names.append(path.stem)
        c2w.append(_read_matrix(frame.get("transform_matrix"), f"{where} ({frame['file_path']}) transform_matrix"))
        images.append(read_png(path, size=(intrinsics.height, intrinsics.width), declared_by=str(source)))
    if len(set(names)) != len(names):
        duplicates = sorted({name for name in names if names.count(name) > 1})
        raise InvalidInputError(source, f"several frames share the file name stem(s) {duplicates[:5]}",
                                "give every frame an image file with its own name")
    return MultiViewScene(np.stack(images), Cameras(np.stack(c2w), intrinsics), names)


def frame_file(data_dir: Path, file_path: str, where: str) -> Path:
    """The image file of a frame: `file_path` relative to the folder of transforms.json, refused where it resolves
    outside that folder (`..`, an absolute path, a symlink out). Whatever reads a folder of views then reads only
    files the folder's fingerprint covers, so a changed view always gives new outputs."""
    path = data_dir / file_path
    if not path.resolve().is_relative_to(data_dir.resolve()):
        raise InvalidInputError(where, f"file_path {file_path!r} resolves outside the folder {data_dir}",
                                "keep every view inside the folder of transforms.json and give its path relative "
                                "to it, e.g. images/<name>.png (copy the image in, not a symlink out)")
    return path


def read_split_names(folder: Path) -> tuple[list[str] | None, list[str] | None]:
    """View names (file stems) listed in `train_filenames` and `test_filenames` (else `val_filenames`); None if absent."""
    meta, data_dir, source = _load_meta(folder)
    frame_paths = {data_dir / frame.get("file_path", "") for frame in meta["frames"] if isinstance(frame, dict)}
    splits = []
    for keys in (("train_filenames",), ("test_filenames", "val_filenames")):
        key = next((key for key in keys if key in meta), None)
        if key is None:
            splits.append(None)
            continue
        listed = meta[key]
        if not isinstance(listed, list) or not all(isinstance(x, str) for x in listed):
            raise InvalidInputError(f"{source} {key}", "is not a list of file paths",
                                    'list the frames\' file_path strings, e.g. ["images/000000.png"]')
        unknown = [x for x in listed if data_dir / x not in frame_paths]
        if unknown:
            raise InvalidInputError(f"{source} {key}", f"lists {unknown[:5]}, which no frame's file_path names",
                                    "list only file_path values that appear in frames")
        splits.append([Path(x).stem for x in listed])
    return splits[0], splits[1]


def _load_meta(folder: Path) -> tuple[dict, Path, Path]:
    """(parsed transforms.json, folder its paths are relative to, the json file) with the top level checked."""
    folder = Path(folder)
    source = folder if folder.suffix == ".json" else folder / TRANSFORMS_FILE
    if not source.is_file():
        raise InvalidInputError(source, "transforms file not found",
                                "point at a folder holding transforms.json and images/ (nerfstudio's layout)")
    try:
        meta = json.loads(source.read_text())
    except (ValueError, OSError) as error:
        raise InvalidInputError(source, f"is not valid JSON ({error})", "fix or regenerate the file") from error
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list) or not meta["frames"]:
        raise InvalidInputError(source, 'has no "frames" list with at least one frame',
                                'add "frames": [{"file_path": ..., "transform_matrix": ...}, ...]')
    return meta, source.parent, source


def _read_intrinsics(meta: dict, frames: list, source: Path) -> Intrinsics:
    """One pinhole `Intrinsics`: each key from the top level if there (as nerfstudio does), else equal in every frame."""
    model = meta.get("camera_model", "OPENCV")
    if model not in PINHOLE_MODELS:
        raise InvalidInputError(source, f"camera_model {model!r} is not a pinhole camera",
                                f"use one of {PINHOLE_MODELS} (undistort fisheye or panoramic images first)")
    values = {}
    for key in INTRINSIC_KEYS + DISTORTION_KEYS:
        if key in meta:
            values[key] = meta[key]
            continue
        per_frame = [frame.get(key) for frame in frames if isinstance(frame, dict)]
        if key in DISTORTION_KEYS and all(v is None for v in per_frame):
            continue
        if any(v is None for v in per_frame):
            raise InvalidInputError(source, f"intrinsic {key!r} is neither at the top level nor in every frame",
                                    f'add "{key}" at the top level of the file')
        if len({json.dumps(v) for v in per_frame}) > 1:
            raise InvalidInputError(source, f"frames have different {key!r} values ({sorted(set(map(str, per_frame)))[:4]})",
                                    "nvsc needs one camera model for all views: resize/crop the views to share "
                                    "intrinsics and write them at the top level")
        values[key] = per_frame[0]
    try:
        numbers = {key: float(value) for key, value in values.items()}
    except (TypeError, ValueError) as error:
        raise InvalidInputError(source, f"an intrinsic is not a number ({error})", "write numbers for fl_x ... h") from error
    distortion = {key: numbers[key] for key in DISTORTION_KEYS if numbers.get(key, 0.0) != 0.0}
    if distortion or any(meta.get("distortion_params", []) or []):
        raise InvalidInputError(source, f"lens distortion is set ({distortion or meta.get('distortion_params')})",
                                "undistort the images first (nerfstudio's ns-process-data does) and drop k1..p2")
    fx, fy, cx, cy, w, h = (numbers[key] for key in INTRINSIC_KEYS)
    if not (fx > 0 and fy > 0 and w >= 1 and h >= 1 and w == int(w) and h == int(h)):
        raise InvalidInputError(source, f"fl_x={fx}, fl_y={fy} must be positive and w={w}, h={h} whole numbers",
                                "write focal lengths and image size in pixels")
    return Intrinsics(fx, fy, cx, cy, int(w), int(h))


def _read_matrix(value, where: str) -> np.ndarray:
    """[4, 4] rigid camera-to-world matrix from nested lists (a 3x4 gets the row 0 0 0 1)."""
    try:
        matrix = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InvalidInputError(where, f"is not a matrix of numbers ({error})", "write 4 rows of 4 numbers") from error
    if matrix.shape == (3, 4):
        matrix = np.vstack([matrix, [0.0, 0.0, 0.0, 1.0]])
    if matrix.shape != (4, 4):
        raise InvalidInputError(where, f"has shape {list(matrix.shape)}, expected 4x4", "write 4 rows of 4 numbers")
    check_rigid(matrix, where)
    return matrix
