"""Stochastic conditioning (3DiM, Watson et al. 2023, Sec. 2.2).

Views are generated one after another. While view k is denoised, at EVERY denoising step the conditioning view is
drawn uniformly at random from the input view and the views 0 .. k-1 generated so far. Over the many steps of one
view the model is thereby conditioned on (a random subset of) all earlier views, which approximates sampling from
the joint distribution of the views with a model that only ever sees two frames, and makes the views agree in 3D.
"""

from __future__ import annotations

import torch

from generators.denoiser import Denoiser
from generators.samplers.sequential import sample_in_sequence
from generators.schedule import CosineLogSNRSchedule


def sample_stochastic_conditioning(denoiser: Denoiser, input_image: torch.Tensor, input_c2w: torch.Tensor,
                                   target_c2w: torch.Tensor, intrinsics: torch.Tensor,
                                   schedule: CosineLogSNRSchedule, steps: int, guidance_weight: float,
                                   generator: torch.Generator, step_rule: str = "ancestral") -> torch.Tensor:
    """Images [S, N, 3, H, W] in [-1, 1] at target_c2w [S, N, 4, 4], generated in order from input_image
    [S, 3, H, W] taken from input_c2w [S, 4, 4]; intrinsics [S, 4]. Tensors live on the denoiser's device; random
    draws come from `generator` only."""
    return sample_in_sequence(denoiser, input_image, input_c2w, target_c2w, intrinsics, schedule, steps,
                              guidance_weight, generator, step_rule, window=None, desc="stochastic conditioning")
