"""The deterministic DDIM step (Song et al. 2021, "Denoising Diffusion Implicit Models", Eq. 12 with sigma = 0).

DDIM keeps the predicted clean image and the predicted noise and re-mixes them at the next, cleaner level:

    z_t = alpha_t x0_hat + sigma_t eps_hat,   eps_hat = (z_s - alpha_s x0_hat) / sigma_s

eps_hat is recomputed from the clipped x0_hat, so the pair (x0_hat, eps_hat) explains z_s exactly and the step
stays on the same logSNR schedule as the ancestral one. No noise is drawn: the output depends on the seed only
through the initial noise (and the conditioning choices of stochastic samplers).
"""

from __future__ import annotations

import torch

from generators.schedule import CosineLogSNRSchedule


def ddim_step(z_s: torch.Tensor, x0_hat: torch.Tensor, logsnr_s: float, logsnr_t: float,
              generator: torch.Generator) -> torch.Tensor:
    """z_t [B, 3, H, W] at the cleaner logsnr_t from z_s [B, 3, H, W] at logsnr_s; `generator` is not used."""
    if not logsnr_t > logsnr_s:
        raise ValueError(f"a denoising step must go towards less noise, got logsnr {logsnr_s} -> {logsnr_t}")
    alpha_s, sigma_s = CosineLogSNRSchedule.alpha_sigma(torch.tensor(logsnr_s, dtype=torch.float64))
    alpha_t, sigma_t = CosineLogSNRSchedule.alpha_sigma(torch.tensor(logsnr_t, dtype=torch.float64))
    # z_t = (sigma_t / sigma_s) z_s + (alpha_t - alpha_s sigma_t / sigma_s) x0_hat, the same formula expanded.
    ratio = sigma_t / sigma_s
    return float(ratio) * z_s + float(alpha_t - alpha_s * ratio) * x0_hat
