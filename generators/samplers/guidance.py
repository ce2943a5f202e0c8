"""Classifier-free guidance (Ho & Salimans 2022; 3DiM Sec. 2.1, Eq. 3): eps = (1 + w) eps(z, cond) - w eps(z, none).

The conditional and the unconditional request go to the denoiser as one batch of 2B, so guidance costs one call.
"""

from __future__ import annotations

import torch

from generators.denoiser import Denoiser


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
    eps = denoiser(*(torch.cat([t, t]) for t in (z, logsnr, cond_image, cond_c2w, target_c2w, intrinsics)),
                   torch.cat([ones, torch.zeros_like(ones)]))
    eps_cond, eps_uncond = eps.chunk(2)
    return (1.0 + guidance_weight) * eps_cond - guidance_weight * eps_uncond
