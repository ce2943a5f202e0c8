"""Procedural panorama rooms: a textured box with a few procedural objects, seen from its centre by a ring of
perspective cameras that only rotate (MVDiffusion's panorama task, Tang et al. 2023, Sec. 4.1).

Each room is a box (walls, floor and ceiling with room-scale solid textures) holding a few objects of
`scenes.shapes` standing on the floor along the walls. All `views` cameras stand at one point (the room's centre,
at eye height) and look horizontally, yaw 0, 360/views, ... degrees (counter-clockwise seen from above), with a
`fov_deg` field of view: with the defaults (8 views, 90 deg) each view shares half of its width with each
neighbour. Test rooms start at yaw 0, train and val rooms at a random yaw, so a generator sees every heading.

Written in the SRN layout of `scenes.dataset` (`root/room_<split>/room_<NNNN>/{rgb,pose,depth,intrinsics.txt}`),
so the same readers, validators and pipeline stages work on it; the manifest records this config.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from scenes.camera_paths import intrinsics_from_fov
from scenes.cameras import Cameras, look_at
from scenes.dataset import SPLITS, ProceduralDatasetConfig, RenderJob, check_config, write_dataset
from scenes.errors import InvalidInputError
from scenes.render import AlbedoFn
from scenes.shapes import CATEGORIES, make_object

#: The folder category of every room (`room_train/room_0000`, ...).
ROOM_CATEGORY = "room"


@dataclass
class PanoramaDatasetConfig:
    """What to render: rooms per split, the ring of cameras, image size, and the objects that furnish the rooms."""

    categories: tuple[str, ...] = ("mug", "chair", "lamp")
    """Object categories placed in the rooms (see `scenes.shapes.CATEGORIES`); empty for bare rooms."""
    train_instances: int = 8
    """Rooms in the train split (ring of cameras at a random starting yaw)."""
    val_instances: int = 1
    """Rooms in the val split (random starting yaw)."""
    test_instances: int = 2
    """Rooms in the test split (ring starting at yaw 0)."""
    views: int = 8
    """Cameras of the ring, evenly spaced in yaw (8: 45 degrees apart)."""
    fov_deg: float = 90.0
    """Full field of view of each square pinhole camera, in degrees (90 with 8 views: neighbours overlap by half)."""
    image_size: int = 64
    """Width and height of the square views in pixels."""
    objects_per_room: tuple[int, int] = (2, 4)
    """Smallest and largest number of objects in a room (ignored without categories)."""
    eye_height: float = 1.4
    """Height of the cameras above the floor, in metres."""
    seed: int = 0
    """Seed of every random choice (room size, textures, objects, starting yaw)."""
    supersampling: int = 1
    """Rays per pixel side (odd): each pixel's colour averages supersampling^2 rays, its depth is the centre ray's.
    At 32 px one ray per pixel aliases the room's textures differently in every view, and SIFT (TSED) then finds
    too few matches even between ground-truth neighbours; 3 gives them TSED ~0.7 there."""


def panorama_cameras(views: int, fov_deg: float, image_size: int, yaw_offset_deg: float = 0.0,
                     centre: np.ndarray = np.zeros(3)) -> Cameras:
    """`views` cameras at `centre` looking horizontally at yaws offset + 360 k / views degrees (z up)."""
    yaws = np.radians(yaw_offset_deg + 360.0 * np.arange(views) / max(views, 1))
    centre = np.asarray(centre, dtype=np.float64)
    c2w = np.stack([look_at(centre, centre + np.array([np.cos(a), np.sin(a), 0.0])) for a in yaws]) \
        if views else np.zeros((0, 4, 4))
    return Cameras(c2w, intrinsics_from_fov(fov_deg, image_size))


def generate_panorama_dataset(config: PanoramaDatasetConfig, root: Path) -> list[Path]:
    """Render the rooms of `config` into `root` (SRN layout, with depth); returns the instance folders."""
    _check_panorama_config(config)
    eye = np.array([0.0, 0.0, config.eye_height])

    def make(job: RenderJob, rng: np.random.Generator) -> tuple[trimesh.Trimesh, AlbedoFn]:
        return make_room(rng, config.categories, config.objects_per_room, config.eye_height)

    def place_cameras(job: RenderJob, rng: np.random.Generator) -> Cameras:
        offset = 0.0 if job.split == "test" else rng.uniform(0.0, 360.0)
        return panorama_cameras(config.views, config.fov_deg, config.image_size, offset, eye)

    return write_dataset(_room_jobs(config), make, place_cameras, config, Path(root))


def panorama_instance_names(config: PanoramaDatasetConfig, split: str) -> list[str]:
    """Names of the rooms `generate_panorama_dataset(config, ...)` writes into `split`, known without rendering."""
    return [job.name for job in _room_jobs(config) if job.split == split]


def _room_jobs(config: PanoramaDatasetConfig) -> list[RenderJob]:
    counts = {"train": config.train_instances, "val": config.val_instances, "test": config.test_instances}
    numbered = [(split, index) for split in SPLITS for index in range(counts[split])]
    return [RenderJob(ROOM_CATEGORY, split, index, f"{ROOM_CATEGORY}_{number:04d}")
            for number, (split, index) in enumerate(numbered)]


def _check_panorama_config(config: PanoramaDatasetConfig) -> None:
    # The object dataset's checks cover the counts, the seed, the image size and the field of view.
    check_config(ProceduralDatasetConfig(
        categories=tuple(config.categories), train_instances=config.train_instances,
        val_instances=config.val_instances, test_instances=config.test_instances, train_views=config.views,
        test_views=config.views, image_size=config.image_size, fov_deg=config.fov_deg, seed=config.seed,
        supersampling=config.supersampling))
    unknown = [c for c in config.categories if c not in CATEGORIES]
    if unknown:
        raise InvalidInputError("categories", f"{list(config.categories)} holds unknown object categories {unknown}",
                                f"choose among {sorted(CATEGORIES)}, or none for bare rooms")
    if not isinstance(config.views, (int, np.integer)) or config.views < 2:
        raise InvalidInputError("views", f"{config.views!r} cameras cannot form a panorama", "set views >= 2, e.g. 8")
    low, high = config.objects_per_room
    if not 0 <= low <= high:
        raise InvalidInputError("objects_per_room", f"{config.objects_per_room} is not a range (low <= high, >= 0)",
                                "pass e.g. (2, 4)")
    if not 0.3 <= config.eye_height <= 2.4:
        raise InvalidInputError("eye_height", f"{config.eye_height} m is outside the room (floor 0, ceiling >= 2.6)",
                                "pass a height between 0.3 and 2.4 m, e.g. 1.4")


# ---- rooms ----------------------------------------------------------------------------------------------------

def make_room(rng: np.random.Generator, categories: tuple[str, ...] = ("mug", "chair", "lamp"),
              objects_per_room: tuple[int, int] = (2, 4), eye_height: float = 1.4
              ) -> tuple[trimesh.Trimesh, AlbedoFn]:
    """One random room: the mesh (z up, floor at z = 0, centred on the z axis) and its albedo procedure."""
    width, depth, height = rng.uniform(4.0, 6.0), rng.uniform(4.0, 6.0), rng.uniform(2.6, 3.2)
    surfaces = _room_surfaces(width, depth, height)
    colours = _room_palette(rng, len(surfaces))
    textures = [_room_texture(rng) for _ in surfaces]
    meshes = list(surfaces)
    # albedo of each part: points [P, 3] in world coordinates, face ids local to the part -> rgb [P, 3]
    albedos = [_texture_albedo(colour, texture) for colour, texture in zip(colours, textures)]
    count = int(rng.integers(objects_per_room[0], objects_per_room[1] + 1)) if categories else 0
    for k, angle in enumerate(_object_angles(rng, count)):
        obj = make_object(categories[int(rng.integers(len(categories)))], rng)
        scale = rng.uniform(0.45, 0.75)
        # Along a wall, at least 1.3 m from the cameras so no object fills a view.
        reach = min(width, depth) / 2 - scale - 0.1
        distance = rng.uniform(min(1.3, reach), reach)
        offset = np.array([distance * np.cos(angle), distance * np.sin(angle), -scale * obj.mesh.bounds[0, 2]])
        placed = obj.mesh.copy()
        placed.apply_scale(scale)
        placed.apply_translation(offset)
        meshes.append(placed)
        # Object textures are solid textures of the object's own coordinates: map world points back.
        albedos.append(lambda points, faces, fn=obj.albedo_fn, s=scale, t=offset: fn((points - t) / s, faces))
    mesh = trimesh.util.concatenate(meshes)
    starts = np.cumsum([0] + [len(m.faces) for m in meshes])
    part_of_face = np.repeat(np.arange(len(meshes)), np.diff(starts))

    def albedo_fn(points: np.ndarray, face_ids: np.ndarray) -> np.ndarray:
        rgb = np.empty((len(face_ids), 3))
        part = part_of_face[face_ids]
        for j in np.unique(part):
            mask = part == j
            rgb[mask] = albedos[j](points[mask], face_ids[mask] - starts[j])
        return rgb

    return mesh, albedo_fn


def _room_surfaces(width: float, depth: float, height: float) -> list[trimesh.Trimesh]:
    """Floor, ceiling and four walls of the box [-w/2, w/2] x [-d/2, d/2] x [0, h], two triangles each."""
    x, y = width / 2, depth / 2
    corners = {
        "floor": [(-x, -y, 0), (x, -y, 0), (x, y, 0), (-x, y, 0)],
        "ceiling": [(-x, -y, height), (x, -y, height), (x, y, height), (-x, y, height)],
        "south": [(-x, -y, 0), (x, -y, 0), (x, -y, height), (-x, -y, height)],
        "north": [(-x, y, 0), (x, y, 0), (x, y, height), (-x, y, height)],
        "west": [(-x, -y, 0), (-x, y, 0), (-x, y, height), (-x, -y, height)],
        "east": [(x, -y, 0), (x, y, 0), (x, y, height), (x, -y, height)],
    }
    return [trimesh.Trimesh(np.array(quad, dtype=np.float64), [[0, 1, 2], [0, 2, 3]], process=False)
            for quad in corners.values()]


def _room_palette(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Muted, clearly different colours per surface: hues spread by the golden ratio from a random start."""
    start = rng.uniform()
    return [np.array(colorsys.hsv_to_rgb((start + 0.618034 * i) % 1.0, rng.uniform(0.3, 0.7), rng.uniform(0.55, 0.9)))
            for i in range(n)]


def _room_texture(rng: np.random.Generator):
    """A room-scale solid texture (points [P, 3] -> weight [P] in [0, 1]): the sign of a sum of plane waves of random
    directions, periods (0.3-1.0 m) and phases, which draws irregular blobs in four shades.

    Not periodic, so that SIFT matches are unambiguous (a checker board or stripes match at the wrong period), and
    coarse enough that the blobs span a few pixels at the rooms' distances even in 32 px views.
    """
    waves = 6
    directions = rng.normal(size=(waves, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    frequencies = 2 * np.pi / rng.uniform(0.3, 1.0, size=waves)
    phases = rng.uniform(0, 2 * np.pi, size=waves)
    threshold = rng.uniform(-0.5, 0.5)

    def texture(points: np.ndarray) -> np.ndarray:
        field = np.cos(points @ (directions * frequencies[:, None]).T + phases).sum(axis=1)
        # Four grey levels rather than two: SIFT sees luminance only, and more levels make blobs less alike.
        return np.clip(np.floor((field - threshold) / 1.2) / 3.0 + 0.5, 0.0, 1.0)

    return texture


def _texture_albedo(colour: np.ndarray, texture) -> AlbedoFn:
    """Albedo from the texture's weight: 0 a dark shade of `colour`, 1/3 the colour, 2/3 and 1 lighter tints."""
    shades = np.stack([0.25 * colour, colour, 0.6 + 0.4 * colour, 0.9 + 0.1 * colour])

    def albedo(points: np.ndarray, faces: np.ndarray) -> np.ndarray:
        return shades[np.clip(np.round(texture(points) * 3).astype(int), 0, 3)]

    return albedo


def _object_angles(rng: np.random.Generator, count: int) -> np.ndarray:
    """Directions (radians) of `count` objects seen from the centre, spread so that they do not overlap."""
    if count == 0:
        return np.zeros(0)
    base = rng.uniform(0, 2 * np.pi)
    slots = rng.permutation(8)[:count]  # 8 sectors of 45 degrees, one object each
    return base + slots * (np.pi / 4) + rng.uniform(-0.2, 0.2, size=count)
