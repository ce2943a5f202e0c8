"""Markovian (autoregressive) sampling: each view conditioned on one of the last k views generated before it.

The ablation between naive sampling and 3DiM's stochastic conditioning (3DiM Sec. 2.2 and Sec. 5 discuss
autoregressive sampling that conditions on the previous frame): views are generated in order; while view j is
denoised, every step conditions on a view drawn uniformly from the last k entries of (input, view 0, ..., view
j-1). With k = 1 each view is conditioned on the one before it (view 0 on the input), a Markov chain along the
camera path; errors can then drift, because no view ever sees the input again.
"""

from __future__ import annotations

import torch

from generators.denoiser import Denoiser
from generators.samplers.sequential import sample_in_sequence
from generators.schedule import CosineLogSNRSchedule


def sample_markovian(denoiser: Denoiser, input_image: torch.Tensor, input_c2w: torch.Tensor,
                     target_c2w: torch.Tensor, intrinsics: torch.Tensor, schedule: CosineLogSNRSchedule,
                     steps: int, guidance_weight: float, generator: torch.Generator, step_rule: str = "ancestral",
                     window: int = 1) -> torch.Tensor:
    """Images [S, N, 3, H, W] in [-1, 1] at target_c2w [S, N, 4, 4], generated in order from input_image
    [S, 3, H, W] taken from input_c2w [S, 4, 4], each conditioned on one of the last `window` views; intrinsics
    [S, 4]. Tensors live on the denoiser's device; random draws come from `generator` only."""
    return sample_in_sequence(denoiser, input_image, input_c2w, target_c2w, intrinsics, schedule, steps,
                              guidance_weight, generator, step_rule, window=window,
                              desc=f"markovian sampling (k={window})")
