"""The X-UNet behind the ViewGenerator contract, and the noise control generator."""

import json

import numpy as np
import pytest
import torch

from generators.checkpoint import save_checkpoint
from generators.controls import noise_views
from generators.denoiser import ViewGenerator
from tests.generators.micro_model import MICRO
from generators.xunet import XUNet
from generators.xunet_generator import XUNetViewGenerator
from scenes.cameras import Cameras, Intrinsics, look_at
from scenes.errors import InvalidInputError
from scenes.scene import MultiViewScene


def cameras(count: int, size: int, start: float = 0.0) -> Cameras:
    angles = start + np.linspace(0, 2 * np.pi, count, endpoint=False)
    c2w = np.stack([look_at(np.array([2 * np.cos(a), 2 * np.sin(a), 0.8])) for a in angles])
    return Cameras(c2w, Intrinsics(1.1 * size, 1.1 * size, size / 2, size / 2, size, size))


def scene(size: int) -> MultiViewScene:
    images = np.random.default_rng(0).random((2, size, size, 3), dtype=np.float32)
    return MultiViewScene(images, cameras(2, size, start=0.4))


def random_xunet(config, seed: int) -> XUNet:
    """An X-UNet whose zero-initialised layers are random too, so that its outputs depend on every input."""
    torch.manual_seed(seed)
    model = XUNet(config)
    with torch.no_grad():
        for parameter in model.parameters():
            if not parameter.any():
                parameter.normal_(0, 0.1)
    return model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = random_xunet(MICRO, seed=0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model", model, model, MICRO, step=1)


@pytest.mark.parametrize("sampler,step_rule", [("stochastic", "ancestral"), ("naive", "ddim"), ("markovian", "ddim")])
def test_generate_gives_deterministic_images_in_unit_range(checkpoint, sampler, step_rule):
    generator = XUNetViewGenerator(checkpoint, sampler, steps=3, guidance_weight=1.0, step_rule=step_rule)
    assert isinstance(generator, ViewGenerator) and generator.image_size == 8
    targets = cameras(3, 8)
    first = generator.generate(scene(8), targets, seed=1)
    assert first.shape == (3, 8, 8, 3) and first.dtype == np.float32
    assert first.min() >= 0 and first.max() <= 1
    np.testing.assert_array_equal(first, generator.generate(scene(8), targets, seed=1))
    assert np.abs(first - generator.generate(scene(8), targets, seed=2)).max() > 1e-3


def test_scenes_are_generated_as_one_batch(checkpoint):
    class BatchRecorder:
        """The checkpoint's denoiser, recording the batch size of every call."""

        image_size, parameterization, supports_guidance = 8, "eps", True

        def __call__(self, z, *args):
            calls.append(z.shape[0])
            return network(z, *args)

    generator = XUNetViewGenerator(checkpoint, "stochastic", steps=2, guidance_weight=0.0)
    calls, network = [], generator.denoiser
    generator.denoiser = BatchRecorder()
    first = generator.generate_scenes([scene(8), scene(8)], [cameras(3, 8), cameras(3, 8, start=0.2)], seed=1)
    assert first.shape == (2, 3, 8, 8, 3) and calls == [2] * (3 * 2)  # 3 views x 2 steps, each over both scenes
    np.testing.assert_array_equal(first, generator.generate_scenes([scene(8), scene(8)],
                                                                   [cameras(3, 8), cameras(3, 8, start=0.2)], seed=1))
    with pytest.raises(InvalidInputError, match="same number of target cameras"):
        generator.generate_scenes([scene(8), scene(8)], [cameras(3, 8), cameras(2, 8)], seed=1)


def test_unknown_sampler_fails_before_the_checkpoint_is_read(tmp_path):
    with pytest.raises(InvalidInputError, match="unknown sampler 'ddpm'"):
        XUNetViewGenerator(tmp_path / "not-a-checkpoint", "ddpm", steps=3, guidance_weight=0.0)
    with pytest.raises(InvalidInputError, match="unknown step rule 'euler'"):
        XUNetViewGenerator(tmp_path / "not-a-checkpoint", "naive", steps=3, guidance_weight=0.0, step_rule="euler")


def test_image_size_mismatch_names_both_sizes(checkpoint):
    generator = XUNetViewGenerator(checkpoint, "naive", steps=2, guidance_weight=0.0)
    with pytest.raises(InvalidInputError, match=r"16x16.*8x8"):
        generator.generate(scene(16), cameras(2, 8), seed=0)
    with pytest.raises(InvalidInputError, match="target_cameras"):
        generator.generate(scene(8), cameras(2, 16), seed=0)


def test_noise_views_are_uniform_independent_and_seeded():
    targets = cameras(4, 16)
    views = noise_views(targets, seed=3)
    assert views.shape == (4, 16, 16, 3) and views.dtype == np.float32
    assert views.min() >= 0 and views.max() < 1 and abs(views.mean() - 0.5) < 0.03
    np.testing.assert_array_equal(views, noise_views(targets, seed=3))
    assert not np.array_equal(views, noise_views(targets, seed=4))
    assert abs(np.corrcoef(views[0].ravel(), views[1].ravel())[0, 1]) < 0.1


def test_sampling_config_refuses_bad_values_whatever_the_sampler():
    from generators.denoiser_generator import SamplingConfig

    for values, message in (({"markovian_window": 0}, "markovian_window"), ({"step_rule": "euler"}, "step rule"),
                            ({"steps": 0}, "steps"), ({"sampler": "ddpm"}, "unknown sampler")):
        with pytest.raises(InvalidInputError, match=message):
            SamplingConfig(**values)


def test_a_checkpoint_plugged_in_as_a_denoiser_samples_as_the_built_in_generator(tmp_path):
    """luigi.cfg's `factory = generators.xunet_generator:checkpoint_denoiser` gives the views that the pipeline's
    own X-UNet generator gives from the same checkpoint, with the checkpoint's (here not the default) schedule."""
    from dataclasses import replace

    from generators.denoiser_generator import SamplingConfig
    from generators.generate import build_generator
    from generators.registry import find_generators, parse_method

    config = replace(MICRO, logsnr_min=-12.0, logsnr_max=8.0)
    model = random_xunet(config, seed=1)
    folder = save_checkpoint(tmp_path / "ckpt", model, model, config, step=1)
    options = json.dumps({"checkpoint": str(folder)})
    generators = find_generators({"generator.mine": {"factory": "generators.xunet_generator:checkpoint_denoiser",
                                                     "options": options}})
    sampling = SamplingConfig(steps=3, guidance_weight=0.0, step_rule="ddim")
    plugged = build_generator(parse_method("mine/naive", generators), "scene", sampling)
    assert (plugged.schedule.logsnr_min, plugged.schedule.logsnr_max) == (-12.0, 8.0)
    built_in = XUNetViewGenerator(folder, "naive", steps=3, guidance_weight=0.0, step_rule="ddim")
    np.testing.assert_array_equal(plugged.generate(scene(8), cameras(3, 8), seed=4),
                                  built_in.generate(scene(8), cameras(3, 8), seed=4))
