"""The denoising loop every sampler shares: logSNR levels, input checks, x0 prediction and the step rules.

A sampler (stochastic conditioning, naive, Markovian) only decides which view conditions each denoising step;
`denoise` runs the steps from pure noise down the cosine logSNR schedule, with either step rule:
`ancestral` (3DiM's default, `ancestral.py`) or `ddim` (deterministic, `ddim.py`). Both return the final x0_hat
instead of a sample at logsnr_max.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from generators.denoiser import Denoiser
from generators.samplers.ancestral import ancestral_step
from generators.samplers.ddim import ddim_step
from generators.samplers.guidance import guided_eps
from generators.schedule import CosineLogSNRSchedule
from scenes.errors import InvalidInputError

#: (z_s [B, 3, H, W], x0_hat [B, 3, H, W], logsnr_s, logsnr_t, generator) -> z_t [B, 3, H, W].
StepRule = Callable[[torch.Tensor, torch.Tensor, float, float, torch.Generator], torch.Tensor]
STEP_RULES: dict[str, StepRule] = {"ancestral": ancestral_step, "ddim": ddim_step}

#: Step index -> (conditioning images [B, 3, H, W], conditioning cameras [B, 4, 4]) used at that denoising step.
ConditionChooser = Callable[[int], tuple[torch.Tensor, torch.Tensor]]


def logsnr_levels(schedule: CosineLogSNRSchedule, steps: int) -> list[float]:
    """steps + 1 logSNR levels at t = 1, (steps - 1) / steps, ..., 0: from pure noise to clean."""
    t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    return schedule.logsnr(t).tolist()


def predict_x0(z_s: torch.Tensor, eps: torch.Tensor, logsnr_s: torch.Tensor) -> torch.Tensor:
    """x0_hat = clip((z_s - sigma_s eps) / alpha_s, -1, 1), [B, 3, H, W]; logsnr_s is [B] or a scalar."""
    alpha, sigma = (s.reshape(-1, 1, 1, 1) for s in CosineLogSNRSchedule.alpha_sigma(torch.as_tensor(logsnr_s)))
    return ((z_s - sigma.to(z_s) * eps) / alpha.to(z_s)).clamp(-1.0, 1.0)


def get_step_rule(name: str) -> StepRule:
    """The step rule registered under `name`."""
    if name not in STEP_RULES:
        raise InvalidInputError("step_rule", f"unknown step rule '{name}'", f"use one of: {', '.join(STEP_RULES)}")
    return STEP_RULES[name]


def check_sampler_inputs(denoiser: Denoiser, input_image: torch.Tensor, input_c2w: torch.Tensor,
                         target_c2w: torch.Tensor, intrinsics: torch.Tensor, steps: int, guidance_weight: float,
                         step_rule: str) -> StepRule:
    """Raise `InvalidInputError` for arguments no sampler can use; returns the step rule's function.

    input_image [S, 3, H, W], input_c2w [S, 4, 4], target_c2w [S, N, 4, 4], intrinsics [S, 4] for S scenes.
    """
    rule = get_step_rule(step_rule)
    size = denoiser.image_size
    if input_image.ndim != 4 or tuple(input_image.shape[1:]) != (3, size, size):
        raise InvalidInputError("input_image", f"shape {list(input_image.shape)}",
                                f"pass one {size}x{size} image per scene, [S, 3, {size}, {size}]")
    scenes = input_image.shape[0]
    if (tuple(input_c2w.shape) != (scenes, 4, 4) or target_c2w.ndim != 4 or target_c2w.shape[0] != scenes
            or tuple(target_c2w.shape[2:]) != (4, 4) or target_c2w.shape[1] < 1):
        raise InvalidInputError("cameras", f"input_c2w {list(input_c2w.shape)}, target_c2w {list(target_c2w.shape)} "
                                f"for {scenes} scene(s)", "pass input_c2w [S, 4, 4] and target_c2w [S, N, 4, 4]")
    if tuple(intrinsics.shape) != (scenes, 4):
        raise InvalidInputError("intrinsics", f"shape {list(intrinsics.shape)}",
                                "pass (fx, fy, cx, cy) per scene, [S, 4]")
    if steps < 1:
        raise InvalidInputError("steps", f"is {steps}", "use at least one denoising step")
    if not math.isfinite(guidance_weight) or (guidance_weight != 0 and not denoiser.supports_guidance):
        raise InvalidInputError("guidance_weight", f"{guidance_weight} with a denoiser that "
                                f"{'supports' if denoiser.supports_guidance else 'does not support'} guidance",
                                "use a finite weight, and 0 for denoisers without an unconditional mode")
    return rule


def denoise(denoiser: Denoiser, z: torch.Tensor, target_c2w: torch.Tensor, intrinsics: torch.Tensor,
            levels: list[float], choose_condition: ConditionChooser, guidance_weight: float, step: StepRule,
            generator: torch.Generator, progress: tqdm | None = None) -> torch.Tensor:
    """Denoise z [B, 3, H, W] (pure noise at levels[0]) down the given logSNR levels; returns x0_hat [B, 3, H, W].

    target_c2w [B, 4, 4], intrinsics [B, 4]. The conditioning view may change at every step:
    `choose_condition(i)` gives it for step i.
    """
    batch = z.shape[0]
    for i in range(len(levels) - 1):
        cond_image, cond_c2w = choose_condition(i)
        logsnr = torch.full((batch,), levels[i], device=z.device)
        eps = guided_eps(denoiser, z, logsnr, cond_image, cond_c2w, target_c2w, intrinsics, guidance_weight)
        x0_hat = predict_x0(z, eps, logsnr)
        if progress is not None:
            progress.update(1)
        if i == len(levels) - 2:
            return x0_hat
        z = step(z, x0_hat, levels[i], levels[i + 1], generator)
    raise ValueError("denoise needs at least two logSNR levels")


def device_generator(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """The generator for random draws on `device`: `generator` itself on the CPU; elsewhere a generator on the device,
    seeded from `generator`, so that noise and conditioning choices are drawn where they are used (no host copy and
    no synchronisation inside the denoising loop) and a seed still fixes every draw."""
    if torch.device(device).type == "cpu":
        return generator
    seed = int(torch.randint(2**62, (1,), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)


def initial_noise(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Pure noise of `shape`, drawn on the generator's device, in like's dtype and device."""
    return torch.randn(shape, generator=generator, device=generator.device).to(like)
