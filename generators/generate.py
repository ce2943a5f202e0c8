"""One test scene's views under one method: the input view as given, every other camera from the method.

`prepare_generator` builds and checks the method's generator against the scene (so that a bad plug-in, a missing
checkpoint or a mismatched folder fails before anything is written); `generate_views` runs it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from generators.controls import CONTROLS, ControlInputs
from generators.denoiser import Denoiser, ViewGenerator
from generators.denoiser_generator import DenoiserViewGenerator, SamplingConfig
from generators.folder_generator import FolderViewGenerator
from generators.multiview_generator import JointViewGenerator
from generators.registry import JOINT_SAMPLERS, Method, call_factory
from scenes.errors import InvalidInputError
from scenes.scene import MultiViewScene


def split_views(truth: MultiViewScene, input_view: int) -> tuple[MultiViewScene, MultiViewScene]:
    """(the input view, the ground truth at every other camera) of a scene."""
    if not 0 <= input_view < len(truth):
        raise InvalidInputError("input_view", f"{input_view} is not a view index of a {len(truth)}-view scene",
                                f"use an index from 0 to {len(truth) - 1}")
    others = [i for i in range(len(truth)) if i != input_view]
    return truth.subset([input_view]), truth.subset(others)


def build_generator(method: Method, scene: str, sampling: SamplingConfig, checkpoint: Path | None = None,
                    device: str = "cpu", depth: np.ndarray | None = None) -> ViewGenerator | None:
    """The ViewGenerator of a method (None for controls); `sampling` applies to denoisers, with the method's own
    sampler and guidance weight. `depth` [1 + N, H, W] (input view, then the targets) is for the joint generator."""
    entry = method.generator
    if entry.kind == "trained" and entry.name in JOINT_SAMPLERS:
        if checkpoint is None:
            raise InvalidInputError("checkpoint", f"method '{method.text}' needs a trained checkpoint",
                                    "train one first (the TrainGenerator task) and pass its folder")
        weight = sampling.guidance_weight if method.guidance_weight is None else method.guidance_weight
        return JointViewGenerator.from_checkpoint(checkpoint, sampling.steps, weight, device, sampling.step_rule,
                                                  depth=depth)
    if method.sampler is not None:
        sampling = SamplingConfig(sampler=method.sampler, steps=sampling.steps, step_rule=sampling.step_rule,
                                  markovian_window=sampling.markovian_window,
                                  guidance_weight=sampling.guidance_weight if method.guidance_weight is None
                                  else method.guidance_weight)
    if entry.kind == "control":
        return None
    if entry.kind == "folder":
        return FolderViewGenerator(Path(entry.folder), scene)
    if entry.kind == "trained":
        from generators.xunet_generator import XUNetViewGenerator

        if checkpoint is None:
            raise InvalidInputError("checkpoint", f"method '{method.text}' needs a trained checkpoint",
                                    "train one first (the TrainGenerator task) and pass its folder")
        return XUNetViewGenerator(checkpoint, sampling.sampler, sampling.steps, sampling.guidance_weight, device,
                                  step_rule=sampling.step_rule, markovian_window=sampling.markovian_window)
    made = call_factory(entry, device)
    if isinstance(made, ViewGenerator):
        if method.sampler is not None or method.guidance_weight is not None:
            raise InvalidInputError("method", f"'{method.text}': generator '{entry.name}' ({entry.origin}) makes its "
                                    "views itself and takes no sampler and no guidance weight",
                                    f"write just '{entry.name}' and set its options in luigi.cfg")
        return made
    if isinstance(made, Denoiser):
        if method.sampler is None:
            raise InvalidInputError("method", f"'{method.text}': generator '{entry.name}' is a denoiser and needs a "
                                    "sampler", f"write e.g. '{entry.name}/stochastic'")
        return DenoiserViewGenerator(made, sampling)
    raise InvalidInputError(f"generator '{entry.name}'", f"its factory {entry.factory} returned a "
                            f"{type(made).__name__}, neither a ViewGenerator nor a Denoiser",
                            "return an object with generate(...) or a Denoiser (generators/denoiser.py)")


def control_inputs(truth: MultiViewScene, input_view: int, other: MultiViewScene | None = None) -> ControlInputs:
    """What a control reads: the ground truth at the target cameras, the input view, and `other` (another scene's
    ground truth at all of `truth`'s cameras) at the target cameras."""
    inputs, targets = split_views(truth, input_view)
    others = [i for i in range(len(truth)) if i != input_view]
    other_targets = other.subset(others) if other is not None and len(other) == len(truth) else other
    return ControlInputs(targets, inputs, other_targets)


def prepare_generator(method: Method, truth: MultiViewScene, input_view: int, scene: str,
                      sampling: SamplingConfig, checkpoint: Path | None = None, device: str = "cpu",
                      depth: np.ndarray | None = None, other: MultiViewScene | None = None) -> ViewGenerator | None:
    """`build_generator`, then the checks a generator can make before generating (a folder reads and matches its
    views, a denoiser checks image size and intrinsics). `depth` [N, H, W]: the depth of `truth`'s views, for
    generators that need it (the depth-conditioned joint generator). `other`: another test scene, for the control
    `other_scene`."""
    inputs, targets = split_views(truth, input_view)
    if depth is not None:  # the order of split_views: the input view, then the others
        depth = np.asarray(depth)[[input_view] + [i for i in range(len(truth)) if i != input_view]]
    generator = build_generator(method, scene, sampling, checkpoint, device, depth)
    if isinstance(generator, JointViewGenerator):
        generator.check(inputs, targets.cameras)
    elif isinstance(generator, FolderViewGenerator):
        generator.read_checked(inputs, targets.cameras)
    elif isinstance(generator, DenoiserViewGenerator):
        generator.check(inputs, targets.cameras)
    elif generator is None:  # a control: cheap, so running it once is its check
        CONTROLS[method.generator.name](control_inputs(truth, input_view, other), 0)
    return generator


def generate_views(method: Method, truth: MultiViewScene, input_view: int, generator: ViewGenerator | None,
                   seed: int = 0, other: MultiViewScene | None = None) -> MultiViewScene:
    """Views of `truth`'s scene at all its cameras: view `input_view` copied, the others produced by the method's
    control or by `generator` (from `prepare_generator`). `other`: another test scene, for `other_scene`."""
    inputs, targets = split_views(truth, input_view)
    if generator is None:
        produced = CONTROLS[method.generator.name](control_inputs(truth, input_view, other), seed)
    else:
        produced = np.asarray(generator.generate(inputs, targets.cameras, seed), dtype=np.float32)
        expected = targets.images.shape
        if produced.shape != expected:
            raise InvalidInputError(f"generator '{method.generator.name}'", f"returned images of shape "
                                    f"{list(produced.shape)} for {list(expected)}",
                                    "return one [H, W, 3] image per target camera, at the scene's size")
        if not (np.isfinite(produced).all() and produced.min() >= 0 and produced.max() <= 1):
            raise InvalidInputError(f"generator '{method.generator.name}'", "returned values outside [0, 1] (or NaN)",
                                    "return float images in [0, 1]")
    images = truth.images.copy()
    images[[i for i in range(len(truth)) if i != input_view]] = produced
    return MultiViewScene(images, truth.cameras, list(truth.names))
