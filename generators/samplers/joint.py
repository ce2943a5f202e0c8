"""Joint sampling (MVDiffusion, Tang et al. 2023, Sec. 3): all N - 1 target views are denoised together, in one
network call per step, instead of one after another as 3DiM's stochastic conditioning does.

The views start as pure noise and descend the same cosine logSNR levels as every other sampler (`loop.logsnr_levels`),
with ancestral (Ho et al. 2020) or DDIM (Song et al. 2021, Eq. 12) steps. The conditioning view 0 is known: at each
level its slot holds the clean image diffused to that level, z_0 = alpha x_0 + sigma eps (a fresh eps every step),
exactly as the multi-branch UNet saw it in training, while its clean image also enters the conditioning channels.
Classifier-free guidance (Ho & Salimans 2022): eps = (1 + w) eps(z, view 0) - w eps(z, no view 0), both halves in one
batch of 2S scenes. Every random draw comes from `generator`, so a seed fixes the result.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from generators.denoiser import MultiViewDenoiser
from generators.samplers.loop import device_generator, get_step_rule, initial_noise, logsnr_levels, predict_x0
from generators.schedule import CosineLogSNRSchedule
from scenes.errors import InvalidInputError


def guided_joint_eps(denoiser: MultiViewDenoiser, z: torch.Tensor, logsnr: torch.Tensor, cond_image: torch.Tensor,
                     c2w: torch.Tensor, intrinsics: torch.Tensor, depth: torch.Tensor | None,
                     guidance_weight: float) -> torch.Tensor:
    """Guided eps [S, N, 3, H, W] of z [S, N, 3, H, W]; w = 0 runs one conditional pass only."""
    scenes = z.shape[0]
    ones = torch.ones(scenes, device=z.device)
    if guidance_weight == 0:
        return denoiser(z, logsnr, cond_image, c2w, intrinsics, depth, ones)
    twice = [torch.cat([t, t]) for t in (z, logsnr, cond_image, c2w, intrinsics)]
    eps = denoiser(*twice, torch.cat([depth, depth]) if depth is not None else None,
                   torch.cat([ones, torch.zeros_like(ones)]))
    eps_cond, eps_uncond = eps.chunk(2)
    return (1.0 + guidance_weight) * eps_cond - guidance_weight * eps_uncond


@torch.no_grad()
def sample_joint(denoiser: MultiViewDenoiser, input_image: torch.Tensor, input_c2w: torch.Tensor,
                 target_c2w: torch.Tensor, intrinsics: torch.Tensor, schedule: CosineLogSNRSchedule, steps: int,
                 guidance_weight: float, generator: torch.Generator, step_rule: str = "ancestral",
                 depth: torch.Tensor | None = None, progress: bool = True) -> torch.Tensor:
    """Images [S, N - 1, 3, H, W] in [-1, 1] at the target cameras of S scenes, denoised jointly.

    input_image [S, 3, H, W] in [-1, 1], input_c2w [S, 4, 4], target_c2w [S, N - 1, 4, 4], intrinsics [S, 4];
    depth [S, N, H, W] of the input view then every target view, for depth-conditioned denoisers.
    """
    step = get_step_rule(step_rule)
    if input_image.ndim != 4 or target_c2w.ndim != 4 or target_c2w.shape[0] != input_image.shape[0]:
        raise InvalidInputError("target_c2w", f"shape {list(target_c2w.shape)} for input images "
                                f"{list(input_image.shape)}",
                                "pass input_image [S, 3, H, W] and target_c2w [S, N, 4, 4]")
    if steps < 1:
        raise InvalidInputError("steps", f"is {steps}", "use at least one denoising step")
    if guidance_weight != 0 and not denoiser.supports_guidance:
        raise InvalidInputError("guidance_weight", f"{guidance_weight} with a denoiser without an unconditional mode",
                                "use 0")
    device = input_image.device
    c2w = torch.cat([input_c2w[:, None], target_c2w], dim=1).to(device)  # [S, N, 4, 4]
    scenes, views = c2w.shape[:2]
    shape = (scenes, views, *input_image.shape[1:])
    generator = device_generator(generator, device)
    levels = logsnr_levels(schedule, steps)
    z = initial_noise(shape, input_image, generator)
    with tqdm(total=steps, desc=f"joint {views - 1} views", unit="step", disable=not progress or None) as bar:
        for i in range(steps):
            logsnr = torch.full((scenes,), levels[i], device=device)
            alpha, sigma = CosineLogSNRSchedule.alpha_sigma(torch.tensor(levels[i], dtype=torch.float64))
            z[:, 0] = float(alpha) * input_image + float(sigma) * initial_noise(input_image.shape, input_image,
                                                                                generator)
            eps = guided_joint_eps(denoiser, z, logsnr, input_image, c2w, intrinsics, depth, guidance_weight)
            x0_hat = predict_x0(z.flatten(0, 1), eps.flatten(0, 1).to(z), logsnr.repeat_interleave(views))
            bar.update(1)
            if i == steps - 1:
                return x0_hat.unflatten(0, (scenes, views))[:, 1:]
            z = step(z.flatten(0, 1), x0_hat, levels[i], levels[i + 1], generator).unflatten(0, (scenes, views))
    raise AssertionError("unreachable: steps >= 1")
