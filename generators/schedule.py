"""The cosine noise schedule written in log signal-to-noise ratio (logSNR).

Nichol & Dhariwal (2021) introduced the cosine schedule alpha_t = cos(pi t / 2); Kingma et al. (2021, "Variational
Diffusion Models") write diffusion in terms of logSNR(t) = log(alpha_t^2 / sigma_t^2). In logSNR form the cosine
schedule is logSNR(t) = -2 log tan(pi t / 2); 3DiM (Watson et al. 2023) uses it clipped to [logsnr_min, logsnr_max]
by shifting and scaling t inside the tangent, so that t = 0 maps exactly to logsnr_max and t = 1 to logsnr_min:

    logSNR(t) = -2 log tan(a t + b),  b = atan(exp(-logsnr_max / 2)),  a = atan(exp(-logsnr_min / 2)) - b.

With a variance-preserving process, alpha^2 = sigmoid(logSNR) and sigma^2 = sigmoid(-logSNR).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CosineLogSNRSchedule:
    """Cosine schedule in logSNR, clipped to [logsnr_min, logsnr_max] (t = 0 is clean, t = 1 is pure noise)."""

    logsnr_min: float = -20.0
    """logSNR at t = 1 (the noisiest level the sampler starts from)."""
    logsnr_max: float = 20.0
    """logSNR at t = 0 (the cleanest level); also the level the X-UNet is told its clean conditioning frame has."""

    @property
    def _b(self) -> float:
        return math.atan(math.exp(-0.5 * self.logsnr_max))

    @property
    def _a(self) -> float:
        return math.atan(math.exp(-0.5 * self.logsnr_min)) - self._b

    def logsnr(self, t: torch.Tensor) -> torch.Tensor:
        """logSNR [...] at times t [...] in [0, 1], in t's dtype."""
        return -2.0 * torch.log(torch.tan(self._a * t + self._b))

    @staticmethod
    def alpha_sigma(logsnr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Signal and noise scales (alpha, sigma) [...] of z = alpha x + sigma eps at the given logSNR [...]."""
        # sqrt(sigmoid(.)) keeps full precision at both ends, where 1 - alpha^2 would cancel.
        return torch.sigmoid(logsnr).sqrt(), torch.sigmoid(-logsnr).sqrt()

    def to_dict(self) -> dict:
        """The fields a checkpoint's config.json stores to rebuild this schedule."""
        return {"name": "cosine_logsnr", "logsnr_min": self.logsnr_min, "logsnr_max": self.logsnr_max}
