"""Control methods: views made from the ground truth, no model, that bracket the consistency score.

A control turns the ground-truth views at the target cameras into the views it reports, deterministically from a
seed. Consistency should rank them `ground_truth` (the upper bound: real views agree in 3D by construction) >
`perturbed` (real views, each with its own small colour and position error) > `noise` (no shared structure at all).
`shuffled_cameras` keeps every image real but attaches it to another camera: per-image fidelity statistics that
ignore poses (FID) cannot tell it from the truth, while the NeRF score must drop towards noise. Learned consistency
scores are known to rate such controls as consistent (MEt3R, see ANCHORS.md), which is why nvsc reports them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from scenes.cameras import Cameras
from scenes.errors import InvalidInputError
from scenes.scene import MultiViewScene

#: Largest per-channel gain change, per-channel offset and image shift (fraction of the side) of `perturbed`.
PERTURB_GAIN, PERTURB_OFFSET, PERTURB_SHIFT = 0.15, 0.06, 0.06


def noise_views(target_cameras: Cameras, seed: int) -> np.ndarray:
    """Images [N, H, W, 3] float32 of independent uniform noise in [0, 1) per pixel, channel and view.

    Views that share no 3D structure at all: a NeRF fitted on some of them cannot predict the others, which marks
    the score of a generator whose views are not consistent.
    """
    intrinsics = target_cameras.intrinsics
    shape = (len(target_cameras), intrinsics.height, intrinsics.width, 3)
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def perturbed_views(targets: MultiViewScene, seed: int) -> np.ndarray:
    """Images [N, H, W, 3] float32 in [0, 1]: each ground-truth view with its own random colour change
    (gain 1 +- 15 % and offset +- 0.06 per channel) and its own random shift of up to 6 % of the side in x and y
    (edge pixels repeated).

    Each view alone still looks like the object, but no two views agree exactly: the kind of per-view drift a
    diffusion model that ignores the other views produces, of a known, moderate size.
    """
    rng = np.random.default_rng(seed)
    images = targets.images
    count, height, width = images.shape[:3]
    gain = 1.0 + rng.uniform(-PERTURB_GAIN, PERTURB_GAIN, (count, 1, 1, 3))
    offset = rng.uniform(-PERTURB_OFFSET, PERTURB_OFFSET, (count, 1, 1, 3))
    reach = max(1, round(PERTURB_SHIFT * min(height, width)))
    shifts = rng.integers(-reach, reach + 1, (count, 2))
    out = np.empty_like(images)
    for i, (dy, dx) in enumerate(shifts):
        # Shift by indexing with clipped coordinates: content moves by (dy, dx) and the border pixels repeat.
        rows = np.clip(np.arange(height) - dy, 0, height - 1)
        cols = np.clip(np.arange(width) - dx, 0, width - 1)
        out[i] = images[i][rows][:, cols]
    return np.clip(out * gain + offset, 0.0, 1.0).astype(np.float32)


def derangement(count: int, seed: int) -> np.ndarray:
    """A random permutation [count] of 0 .. count-1 that moves every element (count >= 2)."""
    rng = np.random.default_rng(seed)
    while True:  # a uniform permutation is a derangement with probability about 1/e: a few tries suffice
        order = rng.permutation(count)
        if not np.any(order == np.arange(count)):
            return order


def shuffled_camera_views(targets: MultiViewScene, seed: int) -> np.ndarray:
    """Images [N, H, W, 3]: the ground-truth images of the targets, each placed at another target's camera (a
    random derangement, so no image keeps its own camera)."""
    if len(targets) < 2:
        raise InvalidInputError("shuffled_cameras", f"needs at least 2 target views, the scene has {len(targets)}",
                                "use a scene with more views, or another control")
    return targets.images[derangement(len(targets), seed)]


#: Control name -> function(ground-truth views at the target cameras, seed) -> images [N, H, W, 3].
CONTROLS: dict[str, Callable[[MultiViewScene, int], np.ndarray]] = {
    "ground_truth": lambda targets, seed: targets.images.copy(),
    "noise": lambda targets, seed: noise_views(targets.cameras, seed),
    "perturbed": perturbed_views,
    "shuffled_cameras": shuffled_camera_views,
}
