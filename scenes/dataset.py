"""Multi-view datasets in the SRN layout, rendered from procedural objects or from the user's own meshes.

Layout (what `scenes.srn.list_srn_instances` reads)::

    root/<category>_<split>/<category>_<NNNN>/{rgb,pose,depth,intrinsics.txt}
    root/dataset.json        the config and the list of instances

Splits are by instance: train and val instances get views from random directions (`sphere_cameras`), test
instances get the same fixed orbit (`orbit_cameras`), as SRN's ShapeNet renderings do. Each view's depth along the
camera's viewing axis (+inf on the background) is stored as `depth/<view>.npy` (`scenes.srn.read_srn_depth`). Everything derives from
`seed`: each instance's shape and cameras come from its own seed sequence `(seed, category, split, index)`, so
instances do not change when other categories or splits are added, and the same seed writes byte-identical PNGs.
The dataset is written into a hidden sibling folder and renamed into place at the end: a crash leaves no half
dataset at `root`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import trimesh
from tqdm import tqdm

from scenes.camera_paths import intrinsics_from_fov, orbit_cameras, sphere_cameras
from scenes.cameras import Cameras
from scenes.errors import InvalidInputError
from scenes.render import AlbedoFn, load_mesh, render_mesh
from scenes.scene import MultiViewScene
from scenes.shapes import CATEGORIES, make_object
from scenes.srn import has_srn_depth, list_srn_instances, read_srn_depth, read_srn_instance, write_srn_depth, write_srn_instance

logger = logging.getLogger(__name__)

MANIFEST_FILE = "dataset.json"
SPLITS = ("train", "val", "test")


@dataclass
class ProceduralDatasetConfig:
    """What to render: categories, instances per split, views per instance, image size and camera placement."""

    categories: tuple[str, ...] = ("mug", "chair", "lamp")
    """Object categories (see `scenes.shapes.CATEGORIES`); for user meshes, ignored."""
    train_instances: int = 8
    """Instances per category in the train split (views from random directions)."""
    val_instances: int = 1
    """Instances per category in the val split (views from random directions)."""
    test_instances: int = 2
    """Instances per category in the test split (views on the fixed orbit)."""
    train_views: int = 24
    """Views per train and val instance."""
    test_views: int = 16
    """Views per test instance, evenly spaced in azimuth on the orbit."""
    image_size: int = 64
    """Width and height of the square views in pixels."""
    camera_radius: float = 2.7
    """Distance of every camera from the origin; with fov 45 deg, the unit sphere just fits in the frame at 2.62."""
    fov_deg: float = 45.0
    """Full field of view of the pinhole cameras, in degrees."""
    orbit_elevation_deg: float = 25.0
    """Elevation of the test orbit above the ground plane, in degrees."""
    elevation_range_deg: tuple[float, float] = (-10.0, 80.0)
    """Range of elevations of the random train/val view directions, in degrees."""
    seed: int = 0
    """Seed of every random choice (shapes, colours, textures, camera directions)."""
    supersampling: int = 1
    """Rays per pixel side (odd): each pixel's colour averages supersampling^2 rays, its depth is the centre ray's.
    One ray per pixel aliases small views, and the aliasing differs from view to view."""
    mesh_up_axis: str = "z"
    """Up axis of user meshes ("z", or "y" for glTF and ShapeNet files); procedural objects are z-up."""


def generate_dataset(config: ProceduralDatasetConfig, root: Path) -> list[Path]:
    """Render procedural objects of `config.categories` into `root` (SRN layout); returns the instance folders."""
    check_config(config)
    unknown = [c for c in config.categories if c not in CATEGORIES]
    if unknown or not config.categories or len(set(config.categories)) != len(config.categories):
        raise InvalidInputError("categories", f"{list(config.categories)} must be distinct known categories",
                                f"choose among {sorted(CATEGORIES)}")
    jobs = _procedural_jobs(config)

    def make(job: RenderJob, rng: np.random.Generator) -> tuple[trimesh.Trimesh, AlbedoFn | None]:
        obj = make_object(job.category, rng)
        return obj.mesh, obj.albedo_fn

    return write_dataset(jobs, make, partial(_object_cameras, config), config, Path(root))


def instance_names(config: ProceduralDatasetConfig, split: str) -> list[str]:
    """Names of the instances `generate_dataset(config, ...)` writes into `split`, known without rendering."""
    return [job.name for job in _procedural_jobs(config) if job.split == split]


def validate_dataset(root: Path, image_size: int | None = None,
                     check_test_scene: Callable[[Path, MultiViewScene], None] | None = None) -> list[Path]:
    """Read every instance of an SRN-layout dataset once, so a bad file stops a run before it writes anything.

    Returns the instance folders of every split; raises `InvalidInputError` naming the first bad file. Depth maps are
    optional; an instance that has them must have a valid one per view. `check_test_scene(folder, scene)` checks
    each test instance further (e.g. that its cameras suit the scoring), while it is read anyway.
    """

    instances = []
    for split in SPLITS:
        try:
            instances += list_srn_instances(Path(root), split)
        except InvalidInputError:
            if split != "val":  # a dataset needs train and test instances; val is optional
                raise
    test_instances = set(list_srn_instances(Path(root), "test"))
    for folder in tqdm(instances, desc="checking dataset", unit="instance", disable=None):
        scene = read_srn_instance(folder, image_size=image_size)
        if check_test_scene is not None and folder in test_instances:
            check_test_scene(folder, scene)
        if has_srn_depth(folder):
            read_srn_depth(folder)
    return instances


def _procedural_jobs(config: ProceduralDatasetConfig) -> list[RenderJob]:
    """Every procedural instance, numbered per category across the splits (train, then val, then test)."""
    counts = {"train": config.train_instances, "val": config.val_instances, "test": config.test_instances}
    jobs = []
    for category in config.categories:
        numbered = [(split, index) for split in SPLITS for index in range(counts[split])]
        jobs += [RenderJob(category, split, index, f"{category}_{number:04d}", None)
                 for number, (split, index) in enumerate(numbered)]
    return jobs


def mesh_split_counts(meshes: int, train: int | None = None, val: int | None = None,
                      test: int | None = None) -> dict[str, int]:
    """Instances per split for `meshes` meshes: the counts given (those left out are 0), which must add up to
    `meshes`; with none given, about a fifth (at least one) to test, one to val from 6 meshes on, the rest to train
    (11 meshes: 8, 1, 2, the procedural dataset's default)."""
    if train is None and val is None and test is None:
        test = max(1, meshes // 5)
        val = 1 if meshes - test >= 5 else 0
        train = meshes - test - val
    counts = {"train": train or 0, "val": val or 0, "test": test or 0}
    if any(count < 0 for count in counts.values()) or sum(counts.values()) != meshes:
        raise InvalidInputError("train/val/test instances", f"{counts} do not split the {meshes} meshes given",
                                f"give counts that add up to {meshes}, or none for an automatic split")
    return counts


def render_mesh_dataset(mesh_paths: list[Path], root: Path, config: ProceduralDatasetConfig,
                        category: str | None = "custom") -> list[Path]:
    """Render the user's meshes (OBJ/GLB/PLY, colours from the files) into `root` with the procedural dataset's code.

    `category` names every mesh's category; None takes each mesh's parent folder name. Within a category, meshes
    are assigned in the order given: the first `train_instances` to train, the next `val_instances` to val, the
    next `test_instances` to test; their number must match exactly.
    """
    check_config(config)
    if not mesh_paths:
        raise InvalidInputError("mesh_paths", "no mesh given", "pass at least one OBJ, GLB or PLY file")
    meshes = [load_mesh(Path(p), config.mesh_up_axis) for p in mesh_paths]  # validates all before writing
    groups: dict[str, list[int]] = {}
    for i, path in enumerate(map(Path, mesh_paths)):
        name = category if category is not None else path.resolve().parent.name
        if not name or "/" in name or name.startswith("."):
            raise InvalidInputError(path, f"category name {name!r} cannot be used as a folder name",
                                    "pass category='custom' (or another plain name)")
        groups.setdefault(name, []).append(i)
    counts = {"train": config.train_instances, "val": config.val_instances, "test": config.test_instances}
    jobs = []
    for name, members in groups.items():
        if len(members) != sum(counts.values()):
            raise InvalidInputError("mesh_paths", f"category {name!r} has {len(members)} meshes but the config asks "
                                                  f"for {counts} instances", "set train_instances, val_instances and "
                                                                             f"test_instances to add up to {len(members)}")
        splits = [split for split in SPLITS for _ in range(counts[split])]
        indices = [i for split in SPLITS for i in range(counts[split])]
        jobs += [RenderJob(name, split, index, f"{name}_{number:04d}", str(mesh_paths[member]), member)
                 for number, (member, split, index) in enumerate(zip(members, splits, indices))]

    def make(job: RenderJob, rng: np.random.Generator) -> tuple[trimesh.Trimesh, AlbedoFn | None]:
        return meshes[job.mesh_index], None

    return write_dataset(jobs, make, partial(_object_cameras, config), config, Path(root))


@dataclass
class RenderJob:
    """One instance to render: where it goes and where its seed comes from."""

    category: str
    split: str
    index: int  # within its category and split: keys its random seed
    name: str
    source: str | None = None  # the user's mesh file, None for procedural objects
    mesh_index: int = -1  # position of that file in the list given

    @property
    def folder(self) -> str:
        return f"{self.category}_{self.split}/{self.name}"


def check_config(config: ProceduralDatasetConfig) -> None:
    """Raise `InvalidInputError` naming the first bad field of `config` (counts, seed, camera placement, size)."""
    for field in ("train_instances", "val_instances", "test_instances", "train_views", "test_views", "seed"):
        value = getattr(config, field)
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise InvalidInputError(field, f"{value!r} is not a non-negative whole number", f"set {field} to e.g. 8")
    if config.train_instances + config.val_instances + config.test_instances == 0:
        raise InvalidInputError("train_instances", "every split is empty", "ask for at least one instance")
    if config.train_instances + config.val_instances > 0 and config.train_views == 0:
        raise InvalidInputError("train_views", "is 0 but train/val instances are requested", "set train_views >= 1")
    if config.test_instances > 0 and config.test_views == 0:
        raise InvalidInputError("test_views", "is 0 but test instances are requested", "set test_views >= 1")
    if not config.camera_radius > 1.0:
        raise InvalidInputError("camera_radius", f"{config.camera_radius} puts the cameras inside the unit sphere "
                                                 "that holds the object", "set camera_radius > 1, e.g. 2.7")
    intrinsics_from_fov(config.fov_deg, config.image_size)  # validates fov_deg and image_size
    supersampling = getattr(config, "supersampling", 1)
    if not isinstance(supersampling, (int, np.integer)) or supersampling < 1 or supersampling % 2 == 0:
        raise InvalidInputError("supersampling", f"{supersampling!r} is not a positive odd whole number",
                                "set supersampling to 1 (one ray per pixel) or e.g. 3 (the centre ray gives depth)")
    orbit_cameras(0, config.camera_radius, config.orbit_elevation_deg)  # validates orbit_elevation_deg
    sphere_cameras(0, config.camera_radius, np.random.default_rng(0), config.elevation_range_deg)
    if config.camera_radius * np.sin(np.radians(config.fov_deg) / 2) < 1.0:
        logger.warning("camera_radius %.2f with fov %.1f deg does not frame the whole unit sphere: objects may be "
                       "cropped at the image border", config.camera_radius, config.fov_deg)


def _object_cameras(config: ProceduralDatasetConfig, job: RenderJob, rng: np.random.Generator) -> Cameras:
    """The fixed orbit for test instances, random directions for the others."""
    if job.split == "test":
        c2w = orbit_cameras(config.test_views, config.camera_radius, config.orbit_elevation_deg)
    else:
        c2w = sphere_cameras(config.train_views, config.camera_radius, rng, config.elevation_range_deg)
    return Cameras(c2w, intrinsics_from_fov(config.fov_deg, config.image_size))


#: Builds one job's mesh and albedo from the job's shape generator.
MakeMesh = Callable[[RenderJob, np.random.Generator], tuple[trimesh.Trimesh, AlbedoFn | None]]
#: Places one job's cameras from the job's camera generator.
PlaceCameras = Callable[[RenderJob, np.random.Generator], Cameras]


def render_supersampled(mesh: trimesh.Trimesh, cameras: Cameras, albedo_fn: AlbedoFn | None, factor: int
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Images [N, H, W, 3] averaged over factor x factor rays per pixel, and depth [N, H, W] of each pixel's centre
    ray (`factor` odd: ray (factor // 2, factor // 2) of a block passes through the pixel's centre)."""
    if factor == 1:
        return render_mesh(mesh, cameras, albedo_fn=albedo_fn)
    k = cameras.intrinsics
    fine = Cameras(cameras.c2w, k.resized(k.width * factor, k.height * factor))
    images, depth = render_mesh(mesh, fine, albedo_fn=albedo_fn)
    blocks = (len(cameras), k.height, factor, k.width, factor)
    images = images.reshape(*blocks, 3).mean(axis=(2, 4), dtype=np.float64).astype(np.float32)
    return images, depth.reshape(blocks)[:, :, factor // 2, :, factor // 2]


def write_dataset(jobs: list[RenderJob], make: MakeMesh, place_cameras: PlaceCameras, config, root: Path) -> list[Path]:
    """Render every job (views and depth) into a temporary sibling of `root`, write the manifest (with `config`, a
    dataclass), then rename it to `root`."""
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise InvalidInputError(root, "already exists and is not an empty folder",
                                "choose a new dataset folder, or delete the old one first")
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.partial-"))
    start = time.perf_counter()
    try:
        manifest = []
        for job in tqdm(jobs, desc="rendering instances", unit="instance", disable=None):
            shape_seed, camera_seed = np.random.SeedSequence(
                [config.seed, zlib.crc32(job.category.encode()), SPLITS.index(job.split), job.index]).spawn(2)
            mesh, albedo_fn = make(job, np.random.default_rng(shape_seed))
            cameras = place_cameras(job, np.random.default_rng(camera_seed))
            images, depth = render_supersampled(mesh, cameras, albedo_fn, getattr(config, "supersampling", 1))
            scene = MultiViewScene(images, cameras)
            write_srn_instance(scene, staging / job.folder)
            write_srn_depth(staging / job.folder, depth, scene.names)
            manifest.append({"path": job.folder, "category": job.category, "split": job.split,
                             "views": len(cameras), "source": job.source})
        (staging / MANIFEST_FILE).write_text(json.dumps(
            {"format": "nvsc-srn-dataset", "version": 1, "config": asdict(config), "instances": manifest},
            indent=2) + "\n")
        if root.exists():
            root.rmdir()  # empty (checked above); os.replace cannot replace a directory on every platform
        os.replace(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("wrote %d instances to %s in %.1f s", len(jobs), root, time.perf_counter() - start)
    return [root / job.folder for job in jobs]
