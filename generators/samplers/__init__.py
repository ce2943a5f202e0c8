"""Samplers over the `Denoiser` contract, one algorithm per file, looked up by name.

Every sampler has the signature of `Sampler`: it takes S scenes at once and returns images [S, N, 3, H, W] in
[-1, 1]; `step_rule` picks ancestral (3DiM's default) or deterministic DDIM steps on the same logSNR schedule.
"""

from __future__ import annotations

from functools import partial
from typing import Protocol

import torch

from generators.denoiser import Denoiser
from generators.samplers.loop import STEP_RULES
from generators.samplers.markovian import sample_markovian
from generators.samplers.naive import sample_naive
from generators.samplers.stochastic_conditioning import sample_stochastic_conditioning
from generators.schedule import CosineLogSNRSchedule
from scenes.errors import InvalidInputError


class Sampler(Protocol):
    def __call__(self, denoiser: Denoiser, input_image: torch.Tensor, input_c2w: torch.Tensor,
                 target_c2w: torch.Tensor, intrinsics: torch.Tensor, schedule: CosineLogSNRSchedule, steps: int,
                 guidance_weight: float, generator: torch.Generator, step_rule: str = "ancestral") -> torch.Tensor:
        """input_image [S, 3, H, W], input_c2w [S, 4, 4], target_c2w [S, N, 4, 4], intrinsics [S, 4]
        -> images [S, N, 3, H, W] in [-1, 1]."""
        ...


SAMPLERS: dict[str, Sampler] = {
    "stochastic": sample_stochastic_conditioning,
    "naive": sample_naive,
    "markovian": sample_markovian,
}

__all__ = ["SAMPLERS", "STEP_RULES", "Sampler", "get_sampler"]


def get_sampler(name: str, markovian_window: int = 1) -> Sampler:
    """The sampler registered under `name`; `markovian_window` is the k of the Markovian sampler."""
    if name not in SAMPLERS:
        raise InvalidInputError("sampler", f"unknown sampler '{name}'", f"use one of: {', '.join(SAMPLERS)}")
    if name == "markovian":
        if markovian_window < 1:
            raise InvalidInputError("markovian_window", f"is {markovian_window}",
                                    "condition on at least the last view (markovian_window >= 1)")
        return partial(sample_markovian, window=int(markovian_window))
    return SAMPLERS[name]
