"""Samplers over the `Denoiser` contract, one algorithm per file, looked up by name."""

from __future__ import annotations

from collections.abc import Callable

from generators.samplers.naive import sample_naive
from generators.samplers.stochastic_conditioning import sample_stochastic_conditioning
from scenes.errors import InvalidInputError

#: Sampler name -> function(denoiser, input_image, input_c2w, target_c2w, intrinsics, schedule, steps,
#: guidance_weight, generator) -> images [N, 3, H, W] in [-1, 1].
SAMPLERS: dict[str, Callable] = {
    "stochastic": sample_stochastic_conditioning,
    "naive": sample_naive,
}


def get_sampler(name: str) -> Callable:
    """The sampler registered under `name`."""
    if name not in SAMPLERS:
        raise InvalidInputError("sampler", f"unknown sampler '{name}'", f"use one of: {', '.join(SAMPLERS)}")
    return SAMPLERS[name]
