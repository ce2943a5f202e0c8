"""A trained multi-branch UNet (`mvdiffusion`) behind the `ViewGenerator` contract: every target view of a scene is
generated jointly from the input view by `samplers.joint.sample_joint`.

The depth-conditioned model also needs the depth of the input view and of every target view; the caller (the
pipeline reads it from the dataset's `depth/<view>.npy`) gives it as `depth`, input view first, then the targets in
the order of `target_cameras`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from generators.checkpoint import load_checkpoint
from generators.denoiser_generator import denoiser_device
from generators.multiview_unet import MultiViewUNet
from generators.samplers.joint import sample_joint
from generators.samplers.loop import get_step_rule
from generators.schedule import CosineLogSNRSchedule
from generators.training import resolve_device
from scenes.cameras import Cameras
from scenes.errors import InvalidInputError
from scenes.scene import MultiViewScene

logger = logging.getLogger(__name__)


class JointViewGenerator:
    """Generates all target views at once from view 0 of the input scene with a multi-branch UNet."""

    def __init__(self, model: MultiViewUNet, steps: int, guidance_weight: float = 0.0, step_rule: str = "ancestral",
                 depth: np.ndarray | None = None):
        get_step_rule(step_rule)
        if steps < 1:
            raise InvalidInputError("steps", f"is {steps}", "use at least one denoising step")
        self.model, self.steps, self.step_rule = model, int(steps), step_rule
        self.guidance_weight = float(guidance_weight)
        self.config = model.config
        self.schedule = CosineLogSNRSchedule(self.config.logsnr_min, self.config.logsnr_max)
        self.device = denoiser_device(model)
        self.depth = None if depth is None else np.asarray(depth, dtype=np.float32)

    @classmethod
    def from_checkpoint(cls, checkpoint: Path, steps: int, guidance_weight: float = 0.0, device: str = "cpu",
                        step_rule: str = "ancestral", depth: np.ndarray | None = None) -> JointViewGenerator:
        get_step_rule(step_rule)  # names are checked before the checkpoint is read
        model, _ = load_checkpoint(Path(checkpoint), resolve_device(device), use_ema=True, architecture="mvdiffusion")
        return cls(model, steps, guidance_weight, step_rule, depth)

    def check(self, input_views: MultiViewScene, target_cameras: Cameras) -> None:
        """Raise `InvalidInputError` if the model cannot generate these views (sizes, intrinsics, depth)."""
        size = self.config.image_size
        if len(input_views) < 1:
            raise InvalidInputError("input_views", "has no views", "pass a scene with at least one input view")
        for what, k in (("input_views", input_views.cameras.intrinsics), ("target_cameras", target_cameras.intrinsics)):
            if (k.width, k.height) != (size, size):
                raise InvalidInputError(what, f"are {k.width}x{k.height} images but the model works at {size}x{size}",
                                        f"resize the dataset to {size}x{size} or train at that size")
        a, b = input_views.cameras.intrinsics, target_cameras.intrinsics
        if np.abs(np.subtract([a.fx, a.fy, a.cx, a.cy], [b.fx, b.fy, b.cx, b.cy])).max() > 1e-3 * size:
            raise InvalidInputError("target_cameras", f"intrinsics {b} differ from the input view's {a}",
                                    "the model takes one set of intrinsics for all views")
        if self.config.uses_depth:
            expected = (1 + len(target_cameras), size, size)
            if self.depth is None or self.depth.shape != expected:
                raise InvalidInputError("depth", f"{'missing' if self.depth is None else list(self.depth.shape)}; "
                                        f"the depth-conditioned model needs {list(expected)} (input view, then "
                                        "every target view)", "give the dataset's depth maps (depth/<view>.npy)")

    @torch.no_grad()
    def generate(self, input_views: MultiViewScene, target_cameras: Cameras, seed: int) -> np.ndarray:
        """Images [N, H, W, 3] float32 in [0, 1], one per target camera, generated jointly from input view 0."""
        self.check(input_views, target_cameras)
        device = self.device
        image = torch.from_numpy(input_views.images[:1]).permute(0, 3, 1, 2).to(device) * 2 - 1  # [1, 3, H, W]
        input_c2w = input_views.cameras.c2w_tensor(device)[:1]
        target_c2w = target_cameras.c2w_tensor(device)[None]
        intrinsics = input_views.cameras.intrinsics.as_tensor(device)[None]
        depth = torch.from_numpy(self.depth)[None].to(device) if self.config.uses_depth else None
        logger.info("generating %d views jointly, %s steps, %d steps, guidance %g", len(target_cameras),
                    self.step_rule, self.steps, self.guidance_weight)
        images = sample_joint(self.model, image, input_c2w, target_c2w, intrinsics, self.schedule, self.steps,
                              self.guidance_weight, torch.Generator().manual_seed(int(seed)), self.step_rule,
                              depth=depth)
        return ((images[0].float() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy().astype(np.float32)
