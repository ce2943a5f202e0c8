"""The SRN ShapeNet layout (Sitzmann et al. 2019), used by 3DiM's SRN cars/chairs experiments.

One instance folder::

    <instance>/intrinsics.txt       "f cx cy 0." / "0. 0. 0." (origin) / "1." (near-plane scale) / "H W"
    <instance>/rgb/000000.png ...   the views
    <instance>/pose/000000.txt ...  camera-to-world 4x4, 16 numbers, OpenCV camera axes (x right, y down, z forward)
    <instance>/depth/000000.npy ... optional (nvsc's addition): float32 [H, W] depth of each view, in scene units
                                    along the camera's viewing axis (OpenCV +z, OpenGL -z; not the distance along
                                    the ray), +inf where the ray hits nothing

A dataset: `root/<category>_<split>/<instance>/`, e.g. `root/cars_train/1a2b.../` or `root/mug_test/mug_0009/`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scenes.cameras import Cameras, Intrinsics, check_rigid
from scenes.errors import InvalidInputError
from scenes.images import check_view_names, read_png, write_views
from scenes.scene import MultiViewScene

INTRINSICS_FILE = "intrinsics.txt"
RGB_DIR = "rgb"
POSE_DIR = "pose"
DEPTH_DIR = "depth"


def read_srn_instance(folder: Path, image_size: int | None = None) -> MultiViewScene:
    """All views of one SRN instance; cameras converted to OpenGL axes.

    `image_size`, when given, is the square size every view must have (a check, not a resize).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInputError(folder, "SRN instance folder not found",
                                "point at a folder holding intrinsics.txt, rgb/ and pose/ (render one with `nvsc run PrepareDataset`)")
    intrinsics = read_srn_intrinsics(folder / INTRINSICS_FILE)
    for sub in (RGB_DIR, POSE_DIR):
        if not (folder / sub).is_dir():
            raise InvalidInputError(folder / sub, "folder missing from the SRN instance",
                                    f"store the views as {sub}/000000.{'png' if sub == RGB_DIR else 'txt'}, ...")
    images = {p.stem: p for p in sorted((folder / RGB_DIR).glob("*.png"))}
    poses = {p.stem: p for p in sorted((folder / POSE_DIR).glob("*.txt"))}
    if not images:
        raise InvalidInputError(folder / RGB_DIR, "no views (*.png) found", "add the views, or regenerate the instance")
    if images.keys() != poses.keys():
        no_pose = sorted(images.keys() - poses.keys())
        no_image = sorted(poses.keys() - images.keys())
        raise InvalidInputError(folder, f"rgb/ and pose/ file names differ: images without a pose {no_pose[:5]}, "
                                        f"poses without an image {no_image[:5]}",
                                "give every rgb/<name>.png a pose/<name>.txt with the same name, and vice versa")
    names = sorted(images)
    expected = (intrinsics.height, intrinsics.width)
    if image_size is not None and expected != (image_size, image_size):
        raise InvalidInputError(folder / INTRINSICS_FILE, f"declares {expected[0]}x{expected[1]} views, but "
                                                          f"image_size is {image_size}",
                                "set image_size to the dataset's size, or regenerate the dataset at that size")
    views = [read_png(images[name], size=expected, declared_by=INTRINSICS_FILE) for name in names]
    c2w_opencv = np.stack([read_srn_pose(poses[name]) for name in names])
    return MultiViewScene(np.stack(views), Cameras.from_opencv(c2w_opencv, intrinsics), names)


def read_srn_intrinsics(path: Path) -> Intrinsics:
    """Parse SRN's 4-line intrinsics file (only the focal length, principal point and size matter here)."""
    if not path.is_file():
        raise InvalidInputError(path, "intrinsics file not found",
                                "write it in SRN's format: 'f cx cy 0.' / '0. 0. 0.' / '1.' / 'H W'")
    expected_counts = (4, 3, 1, 2)
    try:
        lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
        values = [[float(x) for x in line] for line in lines]
    except ValueError as error:
        raise InvalidInputError(path, f"holds a value that is not a number ({error})",
                                "write it in SRN's format: 'f cx cy 0.' / '0. 0. 0.' / '1.' / 'H W'") from error
    if tuple(len(line) for line in values) != expected_counts:
        raise InvalidInputError(path, f"expected 4 lines of {expected_counts} numbers, got "
                                      f"{[len(line) for line in values]}",
                                "write it in SRN's format: 'f cx cy 0.' / '0. 0. 0.' / '1.' / 'H W'")
    (focal, cx, cy, _), _, _, (height, width) = values
    if not (np.isfinite([focal, cx, cy]).all() and focal > 0 and height >= 1 and width >= 1
            and height == int(height) and width == int(width)):
        raise InvalidInputError(path, f"focal length {focal} must be positive and size {height} x {width} whole numbers",
                                "write the focal length in pixels on line 1 and the image height and width on line 4")
    return Intrinsics(focal, focal, cx, cy, int(width), int(height))


def read_srn_pose(path: Path) -> np.ndarray:
    """[4, 4] camera-to-world matrix (OpenCV axes) from 16 whitespace-separated numbers; checked to be rigid."""
    try:
        numbers = np.array(path.read_text().split(), dtype=np.float64)
    except ValueError as error:
        raise InvalidInputError(path, f"holds a value that is not a number ({error})",
                                "write the camera-to-world matrix as 16 numbers, row by row") from error
    if numbers.size != 16:
        raise InvalidInputError(path, f"expected 16 numbers (a 4x4 matrix), found {numbers.size}",
                                "write the camera-to-world matrix as 16 numbers, row by row")
    c2w = numbers.reshape(4, 4)
    check_rigid(c2w, str(path))
    return c2w


def write_srn_instance(scene: MultiViewScene, folder: Path) -> None:
    """Write `scene` as one SRN instance: 8-bit PNGs, OpenCV poses with round-trip-exact digits, intrinsics.txt.

    `folder` may exist but must not already hold SRN files (mixing two scenes' views would go unnoticed).
    """
    folder = Path(folder)
    k = scene.cameras.intrinsics
    if k.fx != k.fy:
        raise InvalidInputError(folder / INTRINSICS_FILE, f"SRN stores one focal length, the scene has fx={k.fx} "
                                                          f"and fy={k.fy}", "write the scene as transforms.json instead")
    taken = [folder / entry for entry in (INTRINSICS_FILE, RGB_DIR, POSE_DIR) if (folder / entry).exists()]
    if taken:
        raise InvalidInputError(taken[0], "already exists; refusing to mix two scenes in one instance folder",
                                "write to a new folder, or delete the old instance first")
    check_view_names(scene.names, str(folder))
    c2w_opencv = scene.cameras.to_opencv()
    for name, c2w in zip(scene.names, scene.cameras.c2w):
        check_rigid(c2w, f"camera of view {name!r}")
    write_views(folder / RGB_DIR, scene.images, scene.names)
    (folder / POSE_DIR).mkdir()
    for name, c2w in zip(scene.names, c2w_opencv):
        # repr() is the shortest text that parses back to the same float64, so the round trip is exact.
        rows = [" ".join(repr(float(x)) for x in row) for row in c2w]
        (folder / POSE_DIR / f"{name}.txt").write_text("\n".join(rows) + "\n")
    (folder / INTRINSICS_FILE).write_text(
        f"{float(k.fx)!r} {float(k.cx)!r} {float(k.cy)!r} 0.\n0. 0. 0.\n1.\n{k.height} {k.width}\n")


def list_srn_instances(root: Path, split: str) -> list[Path]:
    """Instance folders `root/<category>_<split>/<instance>/` (those holding an rgb/ folder), sorted."""
    root = Path(root)
    how_to_create = ("render one with `nvsc run PrepareDataset`, or point --PrepareDataset-source at a folder in the SRN layout "
                     "root/<category>_<split>/<instance>/{rgb,pose,intrinsics.txt}")
    if not root.is_dir():
        raise InvalidInputError(root, "dataset folder not found", how_to_create)
    instances = sorted(instance for category in root.glob(f"*_{split}") if category.is_dir()
                       for instance in category.iterdir() if (instance / RGB_DIR).is_dir())
    if not instances:
        splits = sorted({d.name.rsplit("_", 1)[-1] for d in root.iterdir() if d.is_dir() and "_" in d.name})
        raise InvalidInputError(root, f"no instance for split {split!r} (no folder <category>_{split}/<instance>/rgb; "
                                      f"splits found: {splits or 'none'})", how_to_create)
    return instances


def write_srn_depth(folder: Path, depth: np.ndarray, names: list[str]) -> None:
    """Write depth [N, H, W] (along each camera's viewing axis, +inf for no surface) as `<folder>/depth/<name>.npy`.

    Call it beside `write_srn_instance` with the same view names; float32, as `scenes.render.render_mesh` gives it.
    """
    folder = Path(folder)
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 3 or len(depth) != len(names):
        raise InvalidInputError(folder / DEPTH_DIR, f"depth of shape {list(depth.shape)} for {len(names)} views",
                                "pass one [H, W] depth map per view")
    if np.isnan(depth).any() or (depth <= 0).any():
        raise InvalidInputError(folder / DEPTH_DIR, "depth holds NaN or values <= 0",
                                "store positive depths along the viewing axis, +inf where nothing is hit")
    check_view_names(names, str(folder / DEPTH_DIR))
    if (folder / DEPTH_DIR).exists():
        raise InvalidInputError(folder / DEPTH_DIR, "already exists; refusing to mix the depth of two scenes",
                                "write to a new instance folder, or delete the old one first")
    (folder / DEPTH_DIR).mkdir(parents=True)
    for name, view_depth in zip(names, depth):
        np.save(folder / DEPTH_DIR / f"{name}.npy", view_depth, allow_pickle=False)


def has_srn_depth(folder: Path) -> bool:
    """Whether an SRN instance carries depth maps (a `depth/` folder)."""
    return (Path(folder) / DEPTH_DIR).is_dir()


def read_srn_depth(folder: Path) -> np.ndarray:
    """Depth [N, H, W] float32 of an SRN instance's views, in the order of `read_srn_instance`'s views.

    Depth is along the camera's viewing axis (as `Cameras.project` returns it), +inf where nothing is hit.
    """
    folder = Path(folder)
    depth_dir = folder / DEPTH_DIR
    if not depth_dir.is_dir():
        raise InvalidInputError(depth_dir, "the instance has no depth maps",
                                "regenerate the dataset with `nvsc run PrepareDataset` (procedural datasets write "
                                "depth/<view>.npy), or use a generator that does not need depth")
    intrinsics = read_srn_intrinsics(folder / INTRINSICS_FILE)
    views = sorted(p.stem for p in (folder / RGB_DIR).glob("*.png"))
    maps = {p.stem: p for p in depth_dir.glob("*.npy")}
    if sorted(maps) != views:
        raise InvalidInputError(depth_dir, f"depth maps {sorted(set(maps) - set(views))[:5]} have no view and views "
                                           f"{sorted(set(views) - set(maps))[:5]} have no depth",
                                "store one depth/<name>.npy per rgb/<name>.png")
    expected = (intrinsics.height, intrinsics.width)
    depths = []
    for name in views:
        try:
            view_depth = np.load(maps[name], allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise InvalidInputError(maps[name], f"cannot be read as a .npy array ({error})",
                                    "regenerate the dataset's depth maps") from error
        if view_depth.shape != expected or not np.issubdtype(view_depth.dtype, np.floating):
            raise InvalidInputError(maps[name], f"holds a {view_depth.dtype} array of shape {list(view_depth.shape)}, "
                                                f"expected float [{expected[0]}, {expected[1]}] as intrinsics.txt "
                                                "declares", "store float32 depth at the views' size")
        if np.isnan(view_depth).any() or (view_depth <= 0).any():
            raise InvalidInputError(maps[name], "holds NaN or depths <= 0",
                                    "store positive depths along the viewing axis, +inf where nothing is hit")
        depths.append(view_depth.astype(np.float32, copy=False))
    return np.stack(depths)
