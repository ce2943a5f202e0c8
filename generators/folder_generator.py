"""Bring your own views: a generator whose output was made elsewhere and stored as a folder.

Layout (nerfstudio's `transforms.json` per scene, the format nvsc writes between its own stages)::

    <root>/<scene name>/transforms.json     one frame per target camera (and optionally one at the input camera)
    <root>/<scene name>/images/*.png

Frames are matched to the requested target cameras by pose, so their order does not matter. The folder must hold
exactly one view per target camera, plus at most one at the input camera (ignored: nvsc keeps the real input view),
at the image size and intrinsics of the test scene. Every mismatch is reported with the file at fault, before
anything is written.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from scenes.cameras import Cameras
from scenes.errors import InvalidInputError
from scenes.scene import MultiViewScene
from scenes.transforms_json import TRANSFORMS_FILE, read_transforms

#: Largest difference of a pose entry (rotation, and translation relative to the camera distance) that still counts
#: as the same camera; poses written with json's float repr match to machine precision.
POSE_TOLERANCE = 1e-4


def pose_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Largest entry-wise difference of camera-to-world matrices a [..., 4, 4] and b [..., 4, 4], the translation
    part relative to the camera's distance from the origin (at least 1)."""
    scale = np.maximum(1.0, np.linalg.norm(b[..., :3, 3], axis=-1))[..., None, None]
    difference = np.abs(a - b)
    difference[..., :3, 3] /= scale[..., 0]
    return difference.max(axis=(-2, -1))


class FolderViewGenerator:
    """The views of one scene, read from `<root>/<scene>` and checked against the requested cameras."""

    def __init__(self, root: Path, scene: str):
        self.root, self.scene = Path(root), scene
        self.folder = self.root / scene
        if not self.root.is_dir():
            raise InvalidInputError(self.root, "folder of generated views does not exist",
                                    "point the generator's `folder` option at a folder with one sub-folder per scene")
        if not (self.folder / TRANSFORMS_FILE).is_file():
            raise InvalidInputError(self.folder / TRANSFORMS_FILE, f"missing: the folder holds no views of scene "
                                    f"'{scene}'", f"write the generated views of '{scene}' to {self.folder} in "
                                    "transforms.json layout (scenes.transforms_json.write_transforms)")

    def read_checked(self, input_views: MultiViewScene, target_cameras: Cameras) -> np.ndarray:
        """Images [N, H, W, 3] of the folder in the order of `target_cameras`; `InvalidInputError` on any mismatch."""
        views = read_transforms(self.folder)
        source = self.folder / TRANSFORMS_FILE
        want, have = target_cameras.intrinsics, views.cameras.intrinsics
        if (have.width, have.height) != (want.width, want.height):
            raise InvalidInputError(source, f"views are {have.width}x{have.height} but scene '{self.scene}' is "
                                    f"{want.width}x{want.height}", f"generate the views at {want.width}x{want.height}")
        focal = np.abs(np.subtract([have.fx, have.fy, have.cx, have.cy], [want.fx, want.fy, want.cx, want.cy])).max()
        if focal > 1e-3 * max(want.width, want.height):
            raise InvalidInputError(source, f"intrinsics {have} differ from the scene's {want}",
                                    "generate the views with the test scene's intrinsics")
        if len(views) not in (len(target_cameras), len(target_cameras) + 1):
            raise InvalidInputError(source, f"holds {len(views)} views but {len(target_cameras)} target cameras were "
                                    f"requested (plus optionally the input camera)",
                                    "write exactly one view per target camera of the scene")
        # distance [frames, targets]: which requested camera each frame was generated at.
        distance = pose_difference(views.cameras.c2w[:, None], target_cameras.c2w[None])
        input_distance = pose_difference(views.cameras.c2w, input_views.cameras.c2w[0][None])
        file_paths = [frame["file_path"] for frame in json.loads(source.read_text())["frames"]]
        order = np.full(len(target_cameras), -1)
        for i, file_path in enumerate(file_paths):
            j = int(distance[i].argmin())
            if distance[i, j] <= POSE_TOLERANCE and order[j] < 0:
                order[j] = i
            elif input_distance[i] > POSE_TOLERANCE:  # a view at the input camera may come along; others not
                reason = ("a second view at the same camera" if distance[i, j] <= POSE_TOLERANCE else
                          f"a pose that matches no requested camera (nearest differs by {distance[i, j]:.3g})")
                raise InvalidInputError(f"{source}, frame {i} ({file_path})", f"has {reason}",
                                        "write each view with the transform_matrix of the camera it was generated "
                                        "at (the test scene's cameras)")
        if (order < 0).any():
            missing = int(np.flatnonzero(order < 0)[0])
            raise InvalidInputError(source, f"has no view at target camera {missing} (position "
                                    f"{np.round(target_cameras.c2w[missing, :3, 3], 4).tolist()})",
                                    "write one view per target camera of the scene")
        return views.images[order]

    def generate(self, input_views: MultiViewScene, target_cameras: Cameras, seed: int) -> np.ndarray:
        """Images [N, H, W, 3] float32 in [0, 1], one per target camera; `seed` is not used (the views are fixed)."""
        return self.read_checked(input_views, target_cameras)
