"""Control generators that bound the consistency score from below."""

from __future__ import annotations

import numpy as np

from scenes.cameras import Cameras


def noise_views(target_cameras: Cameras, seed: int) -> np.ndarray:
    """Images [N, H, W, 3] float32 of independent uniform noise in [0, 1) per pixel, channel and view.

    Views that share no 3D structure at all: a NeRF fitted on some of them cannot predict the others, which marks
    the score of a generator whose views are not consistent.
    """
    intrinsics = target_cameras.intrinsics
    shape = (len(target_cameras), intrinsics.height, intrinsics.width, 3)
    return np.random.default_rng(seed).random(shape, dtype=np.float32)
