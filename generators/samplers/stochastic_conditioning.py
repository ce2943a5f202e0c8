"""Stochastic conditioning (3DiM, Watson et al. 2023, Sec. 2.2).

Views are generated one after another. While view k is denoised, at EVERY denoising step the conditioning view is
drawn uniformly at random from the input view and the views 0 .. k-1 generated so far. Over the many steps of one
view the model is thereby conditioned on (a random subset of) all earlier views, which approximates sampling from
the joint distribution of the views with a model that only ever sees two frames, and makes the views agree in 3D.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from generators.denoiser import Denoiser
from generators.samplers.ancestral import check_sampler_inputs, logsnr_levels, sample_loop
from generators.schedule import CosineLogSNRSchedule


@torch.no_grad()
def sample_stochastic_conditioning(denoiser: Denoiser, input_image: torch.Tensor, input_c2w: torch.Tensor,
                                   target_c2w: torch.Tensor, intrinsics: torch.Tensor,
                                   schedule: CosineLogSNRSchedule, steps: int, guidance_weight: float,
                                   generator: torch.Generator) -> torch.Tensor:
    """Images [N, 3, H, W] in [-1, 1] at target_c2w [N, 4, 4], generated in order from input_image [3, H, W] taken
    from input_c2w [4, 4]; intrinsics [4]. Tensors live on the denoiser's device; random draws (initial noise,
    conditioning choices, ancestral noise) come from `generator` only."""
    check_sampler_inputs(input_image, input_c2w, target_c2w, intrinsics, steps, guidance_weight, denoiser)
    device, count = input_image.device, target_c2w.shape[0]
    target_c2w = target_c2w.to(device=device, dtype=torch.float32)
    intrinsics = intrinsics.to(device=device, dtype=torch.float32).reshape(1, 4)
    images = [input_image]  # the pool to condition on: input, then each finished view  [3, H, W]
    cameras = [input_c2w.to(device=device, dtype=torch.float32)]  # [4, 4]
    levels = logsnr_levels(schedule, steps)

    def choose_condition(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = int(torch.randint(len(images), (1,), generator=generator))
        return images[index][None], cameras[index][None]

    with tqdm(total=count * steps, desc="stochastic conditioning", disable=None, unit="step") as progress:
        for k in range(count):
            z = torch.randn((1, *input_image.shape), generator=generator).to(input_image)
            view = sample_loop(denoiser, z, target_c2w[k:k + 1], intrinsics, levels, choose_condition,
                               guidance_weight, generator, progress)
            images.append(view[0])
            cameras.append(target_c2w[k])
    return torch.stack(images[1:])
