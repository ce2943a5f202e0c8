"""One scene in memory: images, their cameras and their file names."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scenes.cameras import Cameras
from scenes.errors import InvalidInputError


@dataclass
class MultiViewScene:
    """Views of one object: images [N, H, W, 3] float32 in [0, 1] (composited on the background), their cameras,
    and a name per view (the file stem it is stored under)."""

    images: np.ndarray
    cameras: Cameras
    names: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.images = np.asarray(self.images, dtype=np.float32)
        if not self.names:
            self.names = [f"{i:06d}" for i in range(len(self.images))]
        k = self.cameras.intrinsics
        if self.images.ndim != 4 or self.images.shape[1:] != (k.height, k.width, 3):
            raise InvalidInputError("scene images", f"shape {list(self.images.shape)} does not match the cameras' "
                                                    f"[N, {k.height}, {k.width}, 3]",
                                    "give every view the size the intrinsics declare")
        if not len(self.images) == len(self.cameras) == len(self.names):
            raise InvalidInputError("scene", f"{len(self.images)} images, {len(self.cameras)} cameras and "
                                             f"{len(self.names)} names", "give one camera and one name per image")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices) -> MultiViewScene:
        """The views at `indices` (ints, in the order given)."""
        indices = np.asarray(indices, dtype=int)
        return MultiViewScene(self.images[indices], self.cameras[indices], [self.names[i] for i in indices])
