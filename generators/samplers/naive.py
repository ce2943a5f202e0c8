"""Naive sampling: every target view conditioned on the input view only (3DiM Sec. 2.2's baseline).

Each target is an independent sample of p(x_target | x_input), so the views need not agree with one another;
3DiM shows this gives less 3D-consistent views than stochastic conditioning. All S x N target views of all scenes
denoise as one batch.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from generators.denoiser import Denoiser
from generators.samplers.loop import check_sampler_inputs, denoise, device_generator, initial_noise, logsnr_levels
from generators.schedule import CosineLogSNRSchedule


@torch.no_grad()
def sample_naive(denoiser: Denoiser, input_image: torch.Tensor, input_c2w: torch.Tensor, target_c2w: torch.Tensor,
                 intrinsics: torch.Tensor, schedule: CosineLogSNRSchedule, steps: int, guidance_weight: float,
                 generator: torch.Generator, step_rule: str = "ancestral") -> torch.Tensor:
    """Images [S, N, 3, H, W] in [-1, 1] at target_c2w [S, N, 4, 4], each conditioned on its scene's
    input_image [S, 3, H, W] taken from input_c2w [S, 4, 4]; intrinsics [S, 4]. Tensors live on the denoiser's
    device; random draws come from `generator` only."""
    step = check_sampler_inputs(denoiser, input_image, input_c2w, target_c2w, intrinsics, steps, guidance_weight,
                                step_rule)
    device = input_image.device
    generator = device_generator(generator, device)
    scenes, count = target_c2w.shape[:2]

    # Scene-major [S * N, ...], the order of target_c2w.reshape(S * N, 4, 4).
    cond_image = input_image.repeat_interleave(count, dim=0)
    cond_c2w = input_c2w.to(device=device, dtype=torch.float32).repeat_interleave(count, dim=0)
    flat_intrinsics = intrinsics.to(device=device, dtype=torch.float32).repeat_interleave(count, dim=0)
    flat_targets = target_c2w.to(device=device, dtype=torch.float32).reshape(scenes * count, 4, 4)
    z = initial_noise((scenes * count, *input_image.shape[1:]), input_image, generator)
    with tqdm(total=steps, desc="naive sampling", disable=None, unit="step") as progress:
        views = denoise(denoiser, z, flat_targets, flat_intrinsics, logsnr_levels(schedule, steps),
                        lambda i: (cond_image, cond_c2w), guidance_weight, step, generator, progress)
    return views.reshape(scenes, count, *views.shape[1:])
