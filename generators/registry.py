"""Methods by name: the controls `ground_truth` and `noise`, and trained generators paired with a sampler.

A method string is `generator` or `generator/sampler` (`xunet/stochastic`). Every method turns one test scene
into a set of views at the scene's cameras: the input view as given, a produced view at every other camera.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from generators.controls import noise_views
from generators.samplers import SAMPLERS
from scenes.errors import InvalidInputError
from scenes.scene import MultiViewScene

CONTROLS = ("ground_truth", "noise")
TRAINED = ("xunet",)


def parse_method(method: str) -> tuple[str, str | None]:
    """(generator, sampler) of a method string; raises `InvalidInputError` for unknown names."""
    generator, _, sampler = method.partition("/")
    known = ", ".join([*CONTROLS, *(f"{g}/<sampler>" for g in TRAINED)])
    if generator in CONTROLS:
        if sampler:
            raise InvalidInputError("method", f"'{method}': the control '{generator}' takes no sampler",
                                    f"write just '{generator}'")
        return generator, None
    if generator not in TRAINED:
        raise InvalidInputError("method", f"unknown generator '{generator}' in '{method}'", f"use one of: {known}")
    if sampler not in SAMPLERS:
        raise InvalidInputError("method", f"unknown sampler '{sampler}' in '{method}'",
                                f"use one of: {', '.join(f'{generator}/{s}' for s in SAMPLERS)}")
    return generator, sampler


def generate_views(method: str, truth: MultiViewScene, input_view: int, *, checkpoint: Path | None = None,
                   steps: int = 64, guidance_weight: float = 1.0, seed: int = 0, device: str = "auto"
                   ) -> MultiViewScene:
    """Views of `truth`'s scene at all its cameras: view `input_view` copied, the others produced by `method`."""
    generator, sampler = parse_method(method)
    if not 0 <= input_view < len(truth):
        raise InvalidInputError("input_view", f"{input_view} is not a view index of a {len(truth)}-view scene",
                                f"use an index from 0 to {len(truth) - 1}")
    others = np.array([i for i in range(len(truth)) if i != input_view])
    if generator == "ground_truth":
        produced = truth.images[others]
    elif generator == "noise":
        produced = noise_views(truth.cameras[others], seed)
    else:
        from generators.xunet_generator import XUNetViewGenerator

        if checkpoint is None:
            raise InvalidInputError("checkpoint", f"method '{method}' needs a trained checkpoint",
                                    "train one first (the TrainGenerator task) and pass its folder")
        model = XUNetViewGenerator(checkpoint, sampler, steps=steps, guidance_weight=guidance_weight, device=device)
        produced = model.generate(truth.subset([input_view]), truth.cameras[others], seed)
    images = truth.images.copy()
    images[others] = produced
    return MultiViewScene(images, truth.cameras, list(truth.names))
