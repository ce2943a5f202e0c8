"""The ancestral step (3DiM's default; Ho et al. 2020, written in logSNR as in Kingma et al. 2021, App. A).

From z_s at the noisier level logsnr_s to the cleaner level logsnr_t > logsnr_s, draw from the forward-process
posterior q(z_t | z_s, x = x0_hat):

    r = exp(logsnr_s - logsnr_t)                       (SNR_s / SNR_t < 1)
    mean = r (alpha_t / alpha_s) z_s + (1 - r) alpha_t x0_hat
    var  = (1 - r) sigma_t^2

1 - r is computed as -expm1(logsnr_s - logsnr_t), which stays accurate for the small steps near the clean end.
"""

from __future__ import annotations

import torch

from generators.schedule import CosineLogSNRSchedule


def ancestral_step(z_s: torch.Tensor, x0_hat: torch.Tensor, logsnr_s: float, logsnr_t: float,
                   generator: torch.Generator) -> torch.Tensor:
    """A sample z_t [B, 3, H, W] of q(z_t | z_s, x0_hat), from logsnr_s to the cleaner logsnr_t (module docstring).

    The noise is drawn from `generator` on its device (see `loop.device_generator`)."""
    if not logsnr_t > logsnr_s:
        raise ValueError(f"a denoising step must go towards less noise, got logsnr {logsnr_s} -> {logsnr_t}")
    delta = torch.tensor(logsnr_s - logsnr_t, dtype=torch.float64)
    r, one_minus_r = torch.exp(delta), -torch.expm1(delta)
    alpha_s, _ = CosineLogSNRSchedule.alpha_sigma(torch.tensor(logsnr_s, dtype=torch.float64))
    alpha_t, sigma_t = CosineLogSNRSchedule.alpha_sigma(torch.tensor(logsnr_t, dtype=torch.float64))
    mean = float(r * alpha_t / alpha_s) * z_s + float(one_minus_r * alpha_t) * x0_hat
    noise = torch.randn(z_s.shape, generator=generator, device=generator.device).to(z_s)
    return mean + float(torch.sqrt(one_minus_r) * sigma_t) * noise
