"""Ancestral sampling in logSNR with classifier-free guidance: the step every 3DiM sampler shares.

Guidance (Ho & Salimans 2022; 3DiM Sec. 2.1, Eq. 3): eps = (1 + w) eps(z, cond) - w eps(z, no cond).

Ancestral step (Ho et al. 2020, written in logSNR as in Kingma et al. 2021, App. A, and 3DiM): from z_s at the
noisier level logsnr_s to the cleaner level logsnr_t > logsnr_s, draw from the forward-process posterior
q(z_t | z_s, x = x0_hat) with x0_hat = clip((z_s - sigma_s eps) / alpha_s, -1, 1):

    r = exp(logsnr_s - logsnr_t)                       (SNR_s / SNR_t < 1)
    mean = r (alpha_t / alpha_s) z_s + (1 - r) alpha_t x0_hat
    var  = (1 - r) sigma_t^2

1 - r is computed as -expm1(logsnr_s - logsnr_t), which stays accurate for the small steps near the clean end.
The last step returns x0_hat itself instead of a sample at logsnr_max.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from generators.denoiser import Denoiser
from generators.schedule import CosineLogSNRSchedule
from scenes.errors import InvalidInputError

#: Step index -> (conditioning images [B, 3, H, W], conditioning cameras [B, 4, 4]) used at that denoising step.
ConditionChooser = Callable[[int], tuple[torch.Tensor, torch.Tensor]]


def guided_eps(denoiser: Denoiser, z: torch.Tensor, logsnr: torch.Tensor, cond_image: torch.Tensor,
               cond_c2w: torch.Tensor, target_c2w: torch.Tensor, intrinsics: torch.Tensor,
               guidance_weight: float) -> torch.Tensor:
    """Classifier-free guided eps [B, 3, H, W]; w = 0 runs one conditional pass only.

    z [B, 3, H, W], logsnr [B], cond_image [B, 3, H, W], cond_c2w and target_c2w [B, 4, 4], intrinsics [B, 4].
    """
    batch = z.shape[0]
    ones = torch.ones(batch, device=z.device)
    if guidance_weight == 0:
        return denoiser(z, logsnr, cond_image, cond_c2w, target_c2w, intrinsics, ones)
    # One batch of 2B holds the conditional and the unconditional request (cond_mask 1 then 0).
    eps = denoiser(*(torch.cat([t, t]) for t in (z, logsnr, cond_image, cond_c2w, target_c2w, intrinsics)),
                   torch.cat([ones, torch.zeros_like(ones)]))
    eps_cond, eps_uncond = eps.chunk(2)
    return (1.0 + guidance_weight) * eps_cond - guidance_weight * eps_uncond


def predict_x0(z_s: torch.Tensor, eps: torch.Tensor, logsnr_s: torch.Tensor) -> torch.Tensor:
    """x0_hat = clip((z_s - sigma_s eps) / alpha_s, -1, 1), [B, 3, H, W]; logsnr_s is [B] or a scalar."""
    alpha, sigma = (s.reshape(-1, 1, 1, 1) for s in CosineLogSNRSchedule.alpha_sigma(torch.as_tensor(logsnr_s)))
    return ((z_s - sigma.to(z_s) * eps) / alpha.to(z_s)).clamp(-1.0, 1.0)


def posterior_step(z_s: torch.Tensor, x0_hat: torch.Tensor, logsnr_s: float, logsnr_t: float,
                   generator: torch.Generator) -> torch.Tensor:
    """A sample z_t [B, 3, H, W] of q(z_t | z_s, x0_hat), from logsnr_s to the cleaner logsnr_t (module docstring)."""
    if not logsnr_t > logsnr_s:
        raise ValueError(f"an ancestral step must go towards less noise, got logsnr {logsnr_s} -> {logsnr_t}")
    delta = torch.tensor(logsnr_s - logsnr_t, dtype=torch.float64)
    r, one_minus_r = torch.exp(delta), -torch.expm1(delta)
    alpha_s, _ = CosineLogSNRSchedule.alpha_sigma(torch.tensor(logsnr_s, dtype=torch.float64))
    alpha_t, sigma_t = CosineLogSNRSchedule.alpha_sigma(torch.tensor(logsnr_t, dtype=torch.float64))
    mean = float(r * alpha_t / alpha_s) * z_s + float(one_minus_r * alpha_t) * x0_hat
    noise = torch.randn(z_s.shape, generator=generator).to(z_s)
    return mean + float(torch.sqrt(one_minus_r) * sigma_t) * noise


def logsnr_levels(schedule: CosineLogSNRSchedule, steps: int) -> list[float]:
    """steps + 1 logSNR levels at t = 1, (steps - 1) / steps, ..., 0: from pure noise to clean."""
    t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    return schedule.logsnr(t).tolist()


def check_sampler_inputs(input_image: torch.Tensor, input_c2w: torch.Tensor, target_c2w: torch.Tensor,
                         intrinsics: torch.Tensor, steps: int, guidance_weight: float, denoiser: Denoiser) -> None:
    """Raise `InvalidInputError` for arguments no sampler can use."""
    if input_image.ndim != 3 or input_image.shape[0] != 3:
        raise InvalidInputError("input_image", f"shape {list(input_image.shape)}", "pass one image [3, H, W]")
    if tuple(input_c2w.shape) != (4, 4) or target_c2w.ndim != 3 or tuple(target_c2w.shape[1:]) != (4, 4):
        raise InvalidInputError("cameras", f"input_c2w {list(input_c2w.shape)}, target_c2w {list(target_c2w.shape)}",
                                "pass input_c2w [4, 4] and target_c2w [N, 4, 4]")
    if intrinsics.numel() != 4:
        raise InvalidInputError("intrinsics", f"shape {list(intrinsics.shape)}", "pass (fx, fy, cx, cy) [4]")
    if steps < 1:
        raise InvalidInputError("steps", f"is {steps}", "use at least one denoising step")
    if not math.isfinite(guidance_weight) or (guidance_weight != 0 and not denoiser.supports_guidance):
        raise InvalidInputError("guidance_weight", f"{guidance_weight} with a denoiser that "
                                f"{'supports' if denoiser.supports_guidance else 'does not support'} guidance",
                                "use a finite weight, and 0 for denoisers without an unconditional mode")


def sample_loop(denoiser: Denoiser, z: torch.Tensor, target_c2w: torch.Tensor, intrinsics: torch.Tensor,
                levels: list[float], choose_condition: ConditionChooser, guidance_weight: float,
                generator: torch.Generator, progress: tqdm | None = None) -> torch.Tensor:
    """Denoise z [B, 3, H, W] (pure noise at levels[0]) down the given logSNR levels; returns x0_hat [B, 3, H, W].

    The conditioning view may change at every step: `choose_condition(i)` gives it for step i.
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
        z = posterior_step(z, x0_hat, levels[i], levels[i + 1], generator)
    raise ValueError("sample_loop needs at least two logSNR levels")
