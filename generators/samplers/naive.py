"""Naive sampling: every target view conditioned on the input view only (3DiM Sec. 2.2's baseline).

Each target is an independent sample of p(x_target | x_input), so the views need not agree with one another;
3DiM shows this gives less 3D-consistent views than stochastic conditioning. All N views denoise as one batch.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from generators.denoiser import Denoiser
from generators.samplers.ancestral import check_sampler_inputs, logsnr_levels, sample_loop
from generators.schedule import CosineLogSNRSchedule


@torch.no_grad()
def sample_naive(denoiser: Denoiser, input_image: torch.Tensor, input_c2w: torch.Tensor, target_c2w: torch.Tensor,
                 intrinsics: torch.Tensor, schedule: CosineLogSNRSchedule, steps: int, guidance_weight: float,
                 generator: torch.Generator) -> torch.Tensor:
    """Images [N, 3, H, W] in [-1, 1] at target_c2w [N, 4, 4], each conditioned on input_image [3, H, W] taken from
    input_c2w [4, 4]; intrinsics [4]. Tensors live on the denoiser's device; random draws come from `generator`."""
    check_sampler_inputs(input_image, input_c2w, target_c2w, intrinsics, steps, guidance_weight, denoiser)
    device, count = input_image.device, target_c2w.shape[0]
    target_c2w = target_c2w.to(device=device, dtype=torch.float32)
    intrinsics = intrinsics.to(device=device, dtype=torch.float32).reshape(1, 4).expand(count, 4)
    cond_image = input_image.expand(count, *input_image.shape)
    cond_c2w = input_c2w.to(device=device, dtype=torch.float32).expand(count, 4, 4)
    z = torch.randn((count, *input_image.shape), generator=generator).to(input_image)
    with tqdm(total=steps, desc="naive sampling", disable=None, unit="step") as progress:
        return sample_loop(denoiser, z, target_c2w, intrinsics, logsnr_levels(schedule, steps),
                           lambda step: (cond_image, cond_c2w), guidance_weight, generator, progress)
