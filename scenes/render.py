"""A small ray-casting mesh renderer: Lambert shading under one fixed world light, on a flat background.

Shading depends on the surface point only (albedo times a world-fixed Lambert term), never on the viewing
direction, so the rendered views are exactly 3D-consistent: the reference that a NeRF without view dependence
can reproduce and that a generator's views are scored against.

All rays of all views go to the intersector in one call (Embree through trimesh when `embreex` imports); hit
points are then recomputed in float64 from the hit triangle's plane, since Embree works in float32.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import trimesh

from scenes.cameras import Cameras, camera_rays
from scenes.errors import InvalidInputError

logger = logging.getLogger(__name__)

#: Albedo procedure: hit points [P, 3] and hit face indices [P] -> RGB [P, 3] in [0, 1].
AlbedoFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
#: Direction towards the light, in world coordinates (z up): from above, front-left.
DEFAULT_LIGHT = (0.4, -0.5, 1.0)
#: Albedo of meshes that carry no colours.
DEFAULT_ALBEDO = (0.7, 0.7, 0.7)
MESH_SUFFIXES = (".obj", ".glb", ".gltf", ".ply")
#: Rays per intersector call; above this, views are cast in chunks to bound memory (~100 views of 200x200).
MAX_RAYS_PER_CALL = 4_000_000


def render_mesh(mesh: trimesh.Trimesh, cameras: Cameras, background: tuple[float, float, float] = (1.0, 1.0, 1.0),
                light_direction: tuple[float, float, float] = DEFAULT_LIGHT, albedo_fn: AlbedoFn | None = None,
                ambient: float = 0.35) -> tuple[np.ndarray, np.ndarray]:
    """Images [N, H, W, 3] float32 in [0, 1] and depth [N, H, W] float32 (distance along the viewing axis, inf on
    the background) of `mesh` seen by `cameras`.

    colour = albedo * (ambient + (1 - ambient) * max(0, n . l)), n the face normal turned towards the camera.
    Albedo comes from `albedo_fn` when given, else from the mesh's face/vertex colours or texture.
    """
    if len(mesh.faces) == 0:
        raise InvalidInputError("mesh", "has no triangles", "pass a triangle mesh (point clouds cannot be rendered)")
    light = np.asarray(light_direction, dtype=np.float64)
    if light.shape != (3,) or not np.linalg.norm(light) > 0:
        raise InvalidInputError("light_direction", f"{light_direction} is not a non-zero 3-vector", "pass e.g. (0, 0, 1)")
    light = light / np.linalg.norm(light)
    k = cameras.intrinsics
    n, h, w = len(cameras), k.height, k.width
    # float64 rays: pixel-exact geometry for the projection tests, and Embree casts in float32 anyway.
    origins, directions = camera_rays(torch.as_tensor(cameras.c2w, dtype=torch.float64),
                                      torch.tensor([k.fx, k.fy, k.cx, k.cy], dtype=torch.float64), h, w)
    origins, directions = origins.reshape(-1, 3).numpy(), directions.reshape(-1, 3).numpy()
    forward = np.repeat(-cameras.c2w[:, :3, 2], h * w, axis=0)  # OpenGL cameras look along -z

    face_ids = _cast(mesh, origins, directions, views_per_call=max(1, MAX_RAYS_PER_CALL // (h * w)), pixels=h * w)
    hit = face_ids >= 0
    tri, o, d = face_ids[hit], origins[hit], directions[hit]
    normals = mesh.face_normals[tri]
    facing = np.einsum("pi,pi->p", d, normals)
    # Distance to the hit triangle's plane along the ray, in float64.
    safe = np.where(np.abs(facing) > 1e-12, facing, 1e-12)
    t = np.einsum("pi,pi->p", mesh.triangles[tri, 0] - o, normals) / safe
    points = o + t[:, None] * d

    normals = np.where(facing[:, None] > 0, -normals, normals)  # two-sided: the side the camera sees
    shade = ambient + (1.0 - ambient) * np.clip(normals @ light, 0.0, None)
    albedo = albedo_fn(points, tri) if albedo_fn is not None else mesh_albedo(mesh, tri, points)

    images = np.empty((n * h * w, 3), dtype=np.float32)
    images[:] = np.asarray(background, dtype=np.float32)
    images[hit] = np.clip(np.asarray(albedo, dtype=np.float64) * shade[:, None], 0.0, 1.0)
    depth = np.full(n * h * w, np.inf, dtype=np.float32)
    depth[hit] = t * np.einsum("pi,pi->p", d, forward[hit])
    return images.reshape(n, h, w, 3), depth.reshape(n, h, w)


def _cast(mesh: trimesh.Trimesh, origins: np.ndarray, directions: np.ndarray, views_per_call: int, pixels: int
          ) -> np.ndarray:
    """First face hit by each ray [R] (-1 for a miss), in as few intersector calls as memory allows."""
    intersector = _intersector_class()(mesh)
    step = views_per_call * pixels
    return np.concatenate([intersector.intersects_first(origins[i:i + step], directions[i:i + step])
                           for i in range(0, len(origins), step)]).astype(np.int64)


@functools.lru_cache(maxsize=1)
def _intersector_class():
    try:
        from trimesh.ray.ray_pyembree import RayMeshIntersector
    except ImportError:
        logger.warning("embreex is not installed: falling back to trimesh's pure-numpy ray intersector, which is "
                       "about 100x slower (install it with `pip install embreex`)")
        from trimesh.ray.ray_triangle import RayMeshIntersector
    return RayMeshIntersector


def mesh_albedo(mesh: trimesh.Trimesh, face_ids: np.ndarray, points: np.ndarray) -> np.ndarray:
    """RGB [P, 3] in [0, 1] at surface `points` [P, 3] on faces `face_ids` [P], from the mesh's own colours."""
    visual = mesh.visual
    if visual.kind == "texture":
        image = getattr(visual.material, "image", None)
        if image is None:
            image = getattr(visual.material, "baseColorTexture", None)
        if visual.uv is not None and image is not None:
            uv = _interpolate(mesh, visual.uv, face_ids, points)
            rgb = trimesh.visual.color.uv_to_color(uv, image)[:, :3] / 255.0
            factor = getattr(visual.material, "baseColorFactor", None)
            return rgb * (np.asarray(factor[:3]) / 255.0 if factor is not None else 1.0)
        visual = visual.to_color()
    if visual.kind == "vertex":
        return _interpolate(mesh, visual.vertex_colors[:, :3] / 255.0, face_ids, points)
    if visual.kind == "face":
        return visual.face_colors[face_ids, :3] / 255.0
    return np.broadcast_to(np.asarray(DEFAULT_ALBEDO), (len(face_ids), 3))


def _interpolate(mesh: trimesh.Trimesh, per_vertex: np.ndarray, face_ids: np.ndarray, points: np.ndarray
                 ) -> np.ndarray:
    """Barycentric interpolation of a per-vertex attribute [V, C] at points [P, 3] on faces [P] -> [P, C]."""
    barycentric = trimesh.triangles.points_to_barycentric(mesh.triangles[face_ids], points)
    return np.einsum("pk,pkc->pc", barycentric, np.asarray(per_vertex, dtype=np.float64)[mesh.faces[face_ids]])


def load_mesh(path: Path, up_axis: str = "z") -> trimesh.Trimesh:
    """An OBJ/GLB/glTF/PLY mesh (scenes concatenated) centred on its bounding box and scaled into the unit sphere.

    `up_axis="y"` turns y-up files (glTF's convention, ShapeNet's OBJs) so that their up is nvsc's +z.
    """
    path = Path(path)
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise InvalidInputError(path, f"unsupported mesh format {path.suffix!r}",
                                f"convert it to one of {', '.join(MESH_SUFFIXES)} (e.g. with Blender or trimesh)")
    if not path.is_file():
        raise InvalidInputError(path, "mesh file not found", "check the path")
    if up_axis not in ("y", "z"):
        raise InvalidInputError("up_axis", f"{up_axis!r} is not 'y' or 'z'", "pass the axis the file treats as up")
    try:
        loaded = trimesh.load(path)
        mesh = loaded.to_mesh() if isinstance(loaded, trimesh.Scene) else loaded
    except Exception as error:  # trimesh raises many types (ValueError, KeyError, struct.error...) on bad files
        raise InvalidInputError(path, f"cannot be read as a mesh ({type(error).__name__}: {error})",
                                "re-export it as OBJ, GLB or PLY") from error
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise InvalidInputError(path, "holds no triangles (a point cloud or an empty scene?)",
                                "export the surface as a triangle mesh")
    if up_axis == "y":
        mesh.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1.0, 0.0, 0.0]))
    centre = mesh.bounds.mean(axis=0)
    mesh.apply_translation(-centre)
    radius = np.linalg.norm(mesh.vertices, axis=1).max()
    if not radius > 0:
        raise InvalidInputError(path, "all vertices coincide", "export a mesh with a non-zero extent")
    mesh.apply_scale(1.0 / radius)
    return mesh
