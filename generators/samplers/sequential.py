"""Views generated one after another, each step conditioned on a view drawn from a window of the views so far.

The shared machinery of stochastic conditioning (the window holds the input and every view generated so far) and
Markovian sampling (the window holds the last k of them). Target view k of every scene is denoised as one batch over
the S scenes; at every denoising step each scene draws its own conditioning view, uniformly from its window.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from generators.denoiser import Denoiser
from generators.samplers.loop import check_sampler_inputs, denoise, device_generator, initial_noise, logsnr_levels
from generators.schedule import CosineLogSNRSchedule
from scenes.errors import InvalidInputError


@torch.no_grad()
def sample_in_sequence(denoiser: Denoiser, input_image: torch.Tensor, input_c2w: torch.Tensor,
                       target_c2w: torch.Tensor, intrinsics: torch.Tensor, schedule: CosineLogSNRSchedule,
                       steps: int, guidance_weight: float, generator: torch.Generator, step_rule: str,
                       window: int | None, desc: str) -> torch.Tensor:
    """Images [S, N, 3, H, W] in [-1, 1] at target_c2w [S, N, 4, 4], generated in order from input_image
    [S, 3, H, W] taken from input_c2w [S, 4, 4]; intrinsics [S, 4].

    The pool of a scene is [input, view 0, ..., view N-1]. While view k is denoised, every step conditions on a pool
    entry drawn uniformly from entries max(0, k + 1 - window) .. k (`window` None: from all of 0 .. k). Random
    draws (initial noise, conditioning choices, ancestral noise) come from `generator` only.
    """
    step = check_sampler_inputs(denoiser, input_image, input_c2w, target_c2w, intrinsics, steps, guidance_weight,
                                step_rule)
    if window is not None and window < 1:
        raise InvalidInputError("window", f"is {window}", "condition on at least the last view (window >= 1)")
    device = input_image.device
    generator = device_generator(generator, device)
    scenes, count = target_c2w.shape[:2]
    target_c2w = target_c2w.to(device=device, dtype=torch.float32)
    intrinsics = intrinsics.to(device=device, dtype=torch.float32)
    pool_images = input_image.new_zeros((scenes, count + 1, *input_image.shape[1:]))  # [S, N + 1, 3, H, W]
    pool_images[:, 0] = input_image
    pool_c2w = torch.cat([input_c2w.to(target_c2w)[:, None], target_c2w], dim=1)  # [S, N + 1, 4, 4]
    levels = logsnr_levels(schedule, steps)
    rows = torch.arange(scenes, device=device)

    with tqdm(total=count * steps, desc=desc, disable=None, unit="step") as progress:
        for k in range(count):
            low = 0 if window is None else max(0, k + 1 - window)

            def choose_condition(i: int) -> tuple[torch.Tensor, torch.Tensor]:
                index = low + torch.randint(k + 1 - low, (scenes,), generator=generator, device=device)
                return pool_images[rows, index], pool_c2w[rows, index]

            z = initial_noise((scenes, *input_image.shape[1:]), input_image, generator)
            pool_images[:, k + 1] = denoise(denoiser, z, target_c2w[:, k], intrinsics, levels, choose_condition,
                                            guidance_weight, step, generator, progress)
    return pool_images[:, 1:].clone()
