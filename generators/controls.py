"""Control methods: views made from the ground truth, no model, that pin what each score can and cannot show.

A control turns the ground-truth views at the target cameras into the views it reports, deterministically from a
seed. Two families:

- **Range controls** bracket the consistency score: `ground_truth` (real views agree in 3D by construction) >
  `perturbed` (real views, each with its own small colour and position error) > `noise` (no shared structure).
  `shuffled_cameras` keeps every image real but attaches it to another camera: per-image statistics that ignore
  poses (FID) cannot tell it from the truth, while the NeRF score must drop towards noise.
- **Degenerate controls** are what a bad generator could output to game a score: blurred truth, blank views, the
  input view pasted at every camera, another object's real views at the same cameras ("consistent but wrong"), one
  real view repeated. 3DiM's NeRF score rates several of them *above* the truth (blur and blank views are easy to
  fit), so a method's consistency score means something only where it beats them, or where the scores that they
  cannot win (fidelity, the distilled NeRF's fidelity to the real views, sharpness) show what they lack. The
  report checks every method against them (`reports.degeneracy`).

Learned consistency scores are known to rate such controls as consistent (MEt3R, see
reports/benchmarks/peers.md), which is why nvsc reports them beside every method. Each control states what it is
expected to do (`Control.expectation`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

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


def blurred_views(targets: MultiViewScene, sigma: float) -> np.ndarray:
    """Images [N, H, W, 3]: each ground-truth view blurred by a Gaussian of `sigma` pixels (edges reflected).

    What a generator that regresses to the mean produces: smooth views that a NeRF fits easily, so 3DiM's score
    rises with the blur while detail (fidelity, sharpness) is lost."""
    return np.clip(gaussian_filter(targets.images, sigma=(0.0, sigma, sigma, 0.0), mode="reflect"), 0.0, 1.0
                   ).astype(np.float32)


def blank_views(targets: MultiViewScene, background: float = 1.0) -> np.ndarray:
    """Images [N, H, W, 3] all of the background colour (white for nvsc's datasets): perfectly consistent, empty."""
    return np.full_like(targets.images, background)


def input_copied_views(targets: MultiViewScene, inputs: MultiViewScene) -> np.ndarray:
    """Images [N, H, W, 3]: the input view pasted at every target camera (a model that copies its conditioning)."""
    return np.repeat(inputs.images[:1], len(targets), axis=0)


def repeated_view(targets: MultiViewScene, seed: int) -> np.ndarray:
    """Images [N, H, W, 3]: one real target view, drawn from `seed`, at every target camera (a model that draws
    the object once and ignores the pose)."""
    return np.repeat(targets.images[[np.random.default_rng(seed).integers(len(targets))]], len(targets), axis=0)


def other_scene_views(targets: MultiViewScene, other: MultiViewScene | None) -> np.ndarray:
    """Images [N, H, W, 3]: another scene's real views at the same cameras: consistent in 3D, but of the wrong
    object (a model that ignores its input view and draws some plausible object)."""
    if other is None:
        raise InvalidInputError("other_scene", "needs another test scene seen from the same cameras",
                                "use a dataset with at least two test scenes, or leave this control out")
    if len(other) != len(targets) or not np.allclose(other.cameras.c2w, targets.cameras.c2w, atol=1e-4) or \
            other.images.shape != targets.images.shape:
        raise InvalidInputError("other_scene", "the other test scene is not seen from the same cameras at the same "
                                "size", "use a dataset whose test scenes share their cameras (an orbit, as SRN's "
                                "and nvsc's procedural test splits do), or leave this control out")
    return other.images.copy()


@dataclass(frozen=True)
class ControlInputs:
    """What a control may read: the ground truth at the target cameras, the input view and, for `other_scene`,
    another test scene's ground truth at the same cameras."""

    targets: MultiViewScene
    inputs: MultiViewScene
    other: MultiViewScene | None = None


@dataclass(frozen=True)
class Control:
    """One control: how its views are made and what the scores must show for it."""

    make: Callable[[ControlInputs, int], np.ndarray]
    #: What the scores are expected to show for it (written into the report).
    expectation: str
    #: A degenerate control: an output a bad generator could produce to game a score.
    degenerate: bool = False
    #: It reads another test scene (`ControlInputs.other`).
    needs_other_scene: bool = False

    def __call__(self, inputs: ControlInputs, seed: int) -> np.ndarray:
        return self.make(inputs, seed)


#: Sigmas (pixels) of the blurred-truth controls, `blur_<sigma>`: from barely visible to a few pixels.
BLUR_SIGMAS = (0.5, 1, 2)

#: Control name -> its views and expectation. The names are methods of the pipeline (`GenerateViews`).
CONTROLS: dict[str, Control] = {
    "ground_truth": Control(lambda c, seed: c.targets.images.copy(),
                            "real views: the best fidelity and distilled fidelity; on consistency alone blurred or "
                            "blank views can exceed it"),
    "perturbed": Control(lambda c, seed: perturbed_views(c.targets, seed),
                         "consistency below ground_truth and above noise"),
    "shuffled_cameras": Control(lambda c, seed: shuffled_camera_views(c.targets, seed),
                                "consistency below ground_truth (real images at the wrong cameras)"),
    "noise": Control(lambda c, seed: noise_views(c.targets.cameras, seed), "the floor of every score"),
    **{f"blur_{sigma:g}": Control(lambda c, seed, sigma=sigma: blurred_views(c.targets, sigma),
                                  f"Gaussian blur of {sigma:g} px: consistency at or above ground_truth; fidelity, "
                                  "distilled fidelity and sharpness below it", degenerate=True)
       for sigma in BLUR_SIGMAS},
    "blank": Control(lambda c, seed: blank_views(c.targets),
                     "every view white: consistency at the PSNR cap; fidelity, distilled fidelity and sharpness at "
                     "the floor", degenerate=True),
    "input_copied": Control(lambda c, seed: input_copied_views(c.targets, c.inputs),
                            "the input view at every camera: consistency and fidelity far below ground_truth",
                            degenerate=True),
    "repeated_view": Control(lambda c, seed: repeated_view(c.targets, seed),
                             "one real view at every camera: consistency and fidelity far below ground_truth",
                             degenerate=True),
    "other_scene": Control(lambda c, seed: other_scene_views(c.targets, c.other),
                           "another object's real views at the same cameras: consistency near ground_truth, "
                           "fidelity and distilled fidelity near noise", degenerate=True, needs_other_scene=True),
}


def degenerate_controls() -> list[str]:
    """Names of the degenerate controls, in the order of `CONTROLS`."""
    return [name for name, control in CONTROLS.items() if control.degenerate]
