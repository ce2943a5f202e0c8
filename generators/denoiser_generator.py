"""Any `Denoiser` behind the `ViewGenerator` contract: nvsc's samplers turn the network into views.

The X-UNet (`xunet_generator.py`) and every plug-in that hands nvsc a denoiser (`registry.py`) go through here,
so they share the checks, the seeding and the batching over scenes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from generators.denoiser import Denoiser
from generators.samplers import STEP_RULES, get_sampler
from generators.schedule import CosineLogSNRSchedule
from scenes.cameras import Cameras
from scenes.errors import InvalidInputError
from scenes.scene import MultiViewScene

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplingConfig:
    """How a denoiser is sampled (see `generators.samplers`)."""

    sampler: str = "stochastic"
    """`stochastic` (3DiM's stochastic conditioning), `naive` (input view only) or `markovian` (last k views)."""
    steps: int = 256
    """Denoising steps per view (3DiM: 256)."""
    guidance_weight: float = 0.0
    """Classifier-free guidance weight w (0 = off, one network evaluation per step)."""
    step_rule: str = "ancestral"
    """`ancestral` (3DiM's stochastic steps) or `ddim` (deterministic steps, Song et al. 2021)."""
    markovian_window: int = 1
    """k of the `markovian` sampler: condition on one of the last k views (1 = the previous view)."""

    def __post_init__(self):
        get_sampler(self.sampler)  # an unknown name fails here
        if self.markovian_window < 1:
            raise InvalidInputError("markovian_window", f"is {self.markovian_window}",
                                    "condition on at least the last view (markovian_window >= 1)")
        if self.step_rule not in STEP_RULES:
            raise InvalidInputError("step_rule", f"unknown step rule '{self.step_rule}'",
                                    f"use one of: {', '.join(STEP_RULES)}")
        if self.steps < 1:
            raise InvalidInputError("steps", f"is {self.steps}", "use at least one denoising step")


def denoiser_device(denoiser: Denoiser) -> torch.device:
    """Where the denoiser wants its tensors: its parameters' device, else its `device` attribute, else the CPU."""
    if isinstance(denoiser, torch.nn.Module):
        parameter = next(denoiser.parameters(), None)
        if parameter is not None:
            return parameter.device
    return torch.device(getattr(denoiser, "device", "cpu"))


class DenoiserViewGenerator:
    """Generates target views from view 0 of the input scene by sampling `denoiser` as `sampling` says.

    The schedule is the denoiser's `schedule` attribute where it has one, else 3DiM's cosine schedule in
    [-20, 20]."""

    def __init__(self, denoiser: Denoiser, sampling: SamplingConfig, schedule: CosineLogSNRSchedule | None = None):
        if not isinstance(denoiser, Denoiser):
            raise InvalidInputError("denoiser", f"{type(denoiser).__name__} does not follow the Denoiser contract",
                                    "give it image_size, parameterization, supports_guidance and __call__ "
                                    "(generators/denoiser.py)")
        if denoiser.parameterization != "eps":
            raise InvalidInputError("denoiser", f"parameterization {denoiser.parameterization!r}",
                                    "wrap the network so that it predicts eps, as nvsc's samplers expect")
        self.denoiser, self.sampling = denoiser, sampling
        self.sample = get_sampler(sampling.sampler, sampling.markovian_window)
        self.schedule = schedule or getattr(denoiser, "schedule", None) or CosineLogSNRSchedule()
        self.image_size = int(denoiser.image_size)
        self.device = denoiser_device(denoiser)

    def check(self, input_views: MultiViewScene, target_cameras: Cameras) -> None:
        """Raise `InvalidInputError` if the denoiser cannot generate these views."""
        if len(input_views) < 1:
            raise InvalidInputError("input_views", "has no views", "pass a scene with at least one input view")
        size = self.image_size
        height, width = input_views.images.shape[1:3]
        if (height, width) != (size, size):
            raise InvalidInputError("input_views", f"images are {width}x{height} but the denoiser works at "
                                    f"{size}x{size}", f"resize the input views to {size}x{size}")
        target, source = target_cameras.intrinsics, input_views.cameras.intrinsics
        if (target.width, target.height) != (size, size):
            raise InvalidInputError("target_cameras", f"intrinsics are for {target.width}x{target.height} images "
                                    f"but the denoiser generates {size}x{size}",
                                    f"resize the target intrinsics to {size}x{size}")
        mismatch = np.abs(np.subtract([target.fx, target.fy, target.cx, target.cy],
                                      [source.fx, source.fy, source.cx, source.cy])).max()
        if mismatch > 1e-3 * size:
            raise InvalidInputError("target_cameras", f"intrinsics {target} differ from the input view's {source}",
                                    "the denoiser takes one set of intrinsics for both frames: use the input's")

    def generate(self, input_views: MultiViewScene, target_cameras: Cameras, seed: int) -> np.ndarray:
        """Images [N, H, W, 3] float32 in [0, 1], one per target camera, conditioned on input view 0."""
        return self.generate_scenes([input_views], [target_cameras], seed)[0]

    def generate_scenes(self, input_views: list[MultiViewScene], target_cameras: list[Cameras], seed: int
                        ) -> np.ndarray:
        """Images [S, N, H, W, 3] float32 in [0, 1] for S scenes with N target cameras each, sampled as one batch."""
        if len(input_views) != len(target_cameras) or len({len(c) for c in target_cameras}) > 1:
            raise InvalidInputError("target_cameras", "scenes of one batch need the same number of target cameras",
                                    "group scenes by their number of target views")
        for views, cameras in zip(input_views, target_cameras):
            self.check(views, cameras)
        device = self.device
        input_image = torch.from_numpy(np.stack([v.images[0] for v in input_views])).permute(0, 3, 1, 2) * 2 - 1
        input_c2w = torch.stack([v.cameras.c2w_tensor(device)[0] for v in input_views])
        target_c2w = torch.stack([c.c2w_tensor(device) for c in target_cameras])
        intrinsics = torch.stack([v.cameras.intrinsics.as_tensor(device) for v in input_views])
        s = self.sampling
        logger.info("generating %d x %d views with the %s sampler, %s steps, %d steps, guidance %g",
                    len(input_views), target_c2w.shape[1], s.sampler, s.step_rule, s.steps, s.guidance_weight)
        images = self.sample(self.denoiser, input_image.to(device), input_c2w, target_c2w, intrinsics, self.schedule,
                             s.steps, s.guidance_weight, torch.Generator().manual_seed(int(seed)),
                             step_rule=s.step_rule)
        return ((images.float() + 1) / 2).clamp(0, 1).permute(0, 1, 3, 4, 2).cpu().numpy().astype(np.float32)
