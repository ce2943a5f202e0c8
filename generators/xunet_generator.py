"""A trained X-UNet checkpoint behind the `ViewGenerator` contract (and its `Denoiser` as `.denoiser`)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from generators.checkpoint import load_checkpoint
from generators.samplers import get_sampler
from generators.schedule import CosineLogSNRSchedule
from generators.training import resolve_device
from scenes.cameras import Cameras
from scenes.errors import InvalidInputError
from scenes.scene import MultiViewScene

logger = logging.getLogger(__name__)


class XUNetViewGenerator:
    """Generates target views from view 0 of the input scene with a named sampler (see `generators.samplers`)."""

    def __init__(self, checkpoint: Path, sampler: str, steps: int, guidance_weight: float, device: str = "cpu"):
        self.sample = get_sampler(sampler)  # a wrong name fails before the checkpoint is read
        if steps < 1:
            raise InvalidInputError("steps", f"is {steps}", "use at least one denoising step")
        self.sampler_name, self.steps, self.guidance_weight = sampler, int(steps), float(guidance_weight)
        self.device = resolve_device(device)
        self.denoiser, self.config = load_checkpoint(Path(checkpoint), self.device, use_ema=True)
        self.image_size = self.config.image_size
        self.schedule = CosineLogSNRSchedule(self.config.logsnr_min, self.config.logsnr_max)

    def _check(self, input_views: MultiViewScene, target_cameras: Cameras) -> None:
        if len(input_views) < 1:
            raise InvalidInputError("input_views", "has no views", "pass a scene with at least one input view")
        size = self.image_size
        height, width = input_views.images.shape[1:3]
        if (height, width) != (size, size):
            raise InvalidInputError("input_views", f"images are {width}x{height} but the checkpoint was trained at "
                                    f"{size}x{size}", f"resize the input views to {size}x{size}")
        target, source = target_cameras.intrinsics, input_views.cameras.intrinsics
        if (target.width, target.height) != (size, size):
            raise InvalidInputError("target_cameras", f"intrinsics are for {target.width}x{target.height} images "
                                    f"but the checkpoint generates {size}x{size}",
                                    f"resize the target intrinsics to {size}x{size}")
        mismatch = np.abs(np.subtract([target.fx, target.fy, target.cx, target.cy],
                                      [source.fx, source.fy, source.cx, source.cy])).max()
        if mismatch > 1e-3 * size:
            raise InvalidInputError("target_cameras", f"intrinsics {target} differ from the input view's {source}",
                                    "the X-UNet takes one set of intrinsics for both frames: use the input's")

    def generate(self, input_views: MultiViewScene, target_cameras: Cameras, seed: int) -> np.ndarray:
        """Images [N, H, W, 3] float32 in [0, 1], one per target camera, conditioned on input view 0."""
        self._check(input_views, target_cameras)
        input_image = torch.from_numpy(np.ascontiguousarray(input_views.images[0])).permute(2, 0, 1) * 2 - 1
        generator = torch.Generator().manual_seed(int(seed))
        logger.info("generating %d views with the %s sampler, %d steps, guidance %g", len(target_cameras),
                    self.sampler_name, self.steps, self.guidance_weight)
        device = self.device
        images = self.sample(self.denoiser, input_image.to(device), input_views.cameras.c2w_tensor(device)[0],
                             target_cameras.c2w_tensor(device), input_views.cameras.intrinsics.as_tensor(device),
                             self.schedule, self.steps, self.guidance_weight, generator)
        return ((images + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy().astype(np.float32)
