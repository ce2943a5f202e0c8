"""The multi-branch UNet, joint sampling and N-view training: zero-initialised CAA leaves the base UNet unchanged,
views really meet through CAA only, joint sampling reproduces an oracle and is fixed by its seed, training learns
and resumes exactly."""

import dataclasses

import numpy as np
import pytest
import torch

from generators.checkpoint import load_checkpoint
from generators.multiview_generator import JointViewGenerator
from generators.multiview_training import DeviceViewGroups, train_multiview
from generators.multiview_unet import MultiViewUNet, MultiViewUNetConfig
from generators.samplers.joint import guided_joint_eps, sample_joint
from generators.schedule import CosineLogSNRSchedule
from generators.training import TrainConfig
from scenes.errors import InvalidInputError
from scenes.scene import MultiViewScene

SIZE = 16
#: A very small depth-conditioned model: two levels, CAA at both.
MICRO = MultiViewUNetConfig(image_size=SIZE, ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,),
                            num_heads=2, dropout=0.0, emb_ch=16, pos_octaves=2, caa_resolutions=(16, 8), num_views=3)


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """The model with every weight drawn at random (zero-initialised layers included), except CAA output layers."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".caa.out." not in name:
                parameter.copy_(0.2 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


def inputs(scene, depth, views: int = 3, batch: int = 2):
    generator = torch.Generator().manual_seed(1)
    k = scene.cameras.intrinsics
    c2w = scene.cameras.c2w_tensor()[:views][None].repeat(batch, 1, 1, 1)
    return {"z_t": torch.randn(batch, views, 3, SIZE, SIZE, generator=generator),
            "logsnr": torch.tensor([0.5, -2.0])[:batch],
            "cond_image": torch.from_numpy(scene.images[0]).permute(2, 0, 1)[None].repeat(batch, 1, 1, 1) * 2 - 1,
            "c2w": c2w, "intrinsics": torch.tensor([[k.fx, k.fy, k.cx, k.cy]]).repeat(batch, 1),
            "depth": torch.from_numpy(depth[:views])[None].repeat(batch, 1, 1, 1)}


def test_zero_initialised_caa_leaves_the_base_unet_unchanged(scene_with_depth):
    scene, depth = scene_with_depth
    with_caa = randomised(MultiViewUNet(MICRO))
    base = MultiViewUNet(dataclasses.replace(MICRO, caa_resolutions=()))
    base.load_state_dict({k: v for k, v in with_caa.state_dict().items() if ".caa." not in k})
    x = inputs(scene, depth)
    with torch.no_grad():
        expected, got = base(**x), with_caa(**x)
    assert expected.abs().mean() > 1e-2  # a non-trivial output
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_views_meet_only_through_caa(scene_with_depth):
    """Changing view 2's noise changes view 1's prediction with trained (non-zero) CAA, and not without CAA."""
    scene, depth = scene_with_depth
    x = inputs(scene, depth)
    changed = dict(x, z_t=x["z_t"].clone())
    changed["z_t"][:, 2] += 1.0
    for caa, moves in (((16, 8), True), ((), False)):
        model = MultiViewUNet(dataclasses.replace(MICRO, caa_resolutions=caa))
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.copy_(0.2 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(3)))
            difference = (model(**x)[:, 1] - model(**changed)[:, 1]).abs().max().item()
        assert (difference > 1e-4) == moves, (caa, difference)


def test_depth_model_needs_depth(scene_with_depth):
    scene, depth = scene_with_depth
    x = inputs(scene, depth)
    x["depth"] = None
    with pytest.raises(InvalidInputError, match="depth"):
        MultiViewUNet(MICRO)(**x)


class OracleJointDenoiser:
    """The exact eps of every view for known clean views (what a perfect model predicts)."""

    image_size, parameterization, supports_guidance = SIZE, "eps", True

    def __init__(self, clean):
        self.clean, self.calls = clean.double(), 0

    def __call__(self, z, logsnr, cond_image, c2w, intrinsics, depth=None, cond_mask=None):
        self.calls += 1
        alpha, sigma = CosineLogSNRSchedule.alpha_sigma(logsnr.double()[:, None, None, None, None])
        clean = self.clean.repeat(z.shape[0] // self.clean.shape[0], 1, 1, 1, 1)
        return ((z.double() - alpha * clean) / sigma).float()


@pytest.mark.parametrize("step_rule", ["ancestral", "ddim"])
def test_joint_sampling_reproduces_an_oracle(step_rule, scene_with_depth):
    scene, _ = scene_with_depth
    clean = torch.from_numpy(scene.images).permute(0, 3, 1, 2)[None] * 2 - 1  # [1, 5, 3, H, W]
    oracle = OracleJointDenoiser(clean)
    c2w = scene.cameras.c2w_tensor()[None]
    k = scene.cameras.intrinsics
    images = sample_joint(oracle, clean[:, 0], c2w[:, 0], c2w[:, 1:], torch.tensor([[k.fx, k.fy, k.cx, k.cy]]),
                          CosineLogSNRSchedule(), 6, 2.0, torch.Generator().manual_seed(0), step_rule)
    assert oracle.calls == 6  # guidance runs both halves in one call per step
    torch.testing.assert_close(images, clean[:, 1:], atol=1e-4, rtol=0)


def test_guidance_combines_conditional_and_unconditional():
    class Recording:
        image_size, parameterization, supports_guidance = SIZE, "eps", True

        def __call__(self, z, logsnr, cond_image, c2w, intrinsics, depth=None, cond_mask=None):
            return z * (1.0 + cond_mask[:, None, None, None, None])

    z = torch.randn(2, 3, 3, SIZE, SIZE)
    w = 2.5
    eps = guided_joint_eps(Recording(), z, torch.zeros(2), torch.zeros(2, 3, SIZE, SIZE),
                           torch.eye(4).repeat(2, 3, 1, 1), torch.ones(2, 4), None, w)
    torch.testing.assert_close(eps, (1 + w) * 2 * z - w * z)


def test_joint_sampling_is_deterministic_from_its_seed(scene_with_depth):
    scene, depth = scene_with_depth
    model = randomised(MultiViewUNet(MICRO), seed=4)
    with torch.no_grad():  # non-zero CAA outputs, so the views interact
        for name, parameter in model.named_parameters():
            if ".caa.out." in name:
                parameter.normal_(0, 0.1, generator=torch.Generator().manual_seed(5))
    generator = JointViewGenerator(model, steps=3, guidance_weight=1.0, depth=depth[:3])
    inputs_, targets = scene.subset([0]), scene.cameras[[1, 2]]
    first, again = generator.generate(inputs_, targets, seed=7), generator.generate(inputs_, targets, seed=7)
    other = generator.generate(inputs_, targets, seed=8)
    assert first.shape == (2, SIZE, SIZE, 3) and first.min() >= 0 and first.max() <= 1
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3
    with pytest.raises(InvalidInputError, match="depth"):
        JointViewGenerator(model, steps=3, depth=depth[:2]).generate(inputs_, targets, seed=7)


def test_view_groups_are_distinct_views_of_one_scene(scene_with_depth):
    scene, depth = scene_with_depth
    groups = DeviceViewGroups([scene, scene.subset([4, 3, 2])], [depth, depth[[4, 3, 2]]], SIZE, "cpu")
    batch = groups.sample(64, 3, torch.Generator().manual_seed(0))
    assert batch["images"].shape == (64, 3, 3, SIZE, SIZE) and batch["depth"].shape == (64, 3, SIZE, SIZE)
    for images, c2w, view_depth in zip(batch["images"], batch["c2w"], batch["depth"]):
        index = [int(np.argmin(np.abs(scene.cameras.c2w[:, :3, 3] - c.numpy()[:3, 3]).sum(1))) for c in c2w]
        assert len(set(index)) == 3  # distinct views
        np.testing.assert_allclose((images.numpy().transpose(0, 2, 3, 1) + 1) / 2, scene.images[index], atol=1 / 255)
        np.testing.assert_array_equal(view_depth.numpy(), depth[index])


def test_training_learns_and_resumes_exactly(tmp_path, scene_with_depth):
    scene, depth = scene_with_depth
    config = dataclasses.replace(MICRO, cond_dropout_prob=0.2)
    train = TrainConfig(steps=4, batch_size=2, lr=2e-3, warmup_steps=1, checkpoint_every=2, architecture="mvdiffusion",
                        device="cpu", log_every=1)
    whole = train_multiview([scene], [depth], config, train, tmp_path / "whole")
    half = train_multiview([scene], [depth], config, dataclasses.replace(train, steps=2), tmp_path / "split")
    train_multiview([scene], [depth], config, train, half)  # resumes at step 2
    a, _ = load_checkpoint(whole, architecture="mvdiffusion")
    b, stored = load_checkpoint(half, architecture="mvdiffusion")
    assert stored == config
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=name)
    untrained = MultiViewUNet(config).state_dict()
    assert any(not torch.equal(untrained[name], x) for name, x in a.state_dict().items() if ".caa.out." in name)


def test_mvdiffusion_takes_the_joint_sampler_only():
    from generators.registry import find_generators, parse_method

    generators = find_generators()
    assert parse_method("mvdiffusion/joint@2", generators).guidance_weight == 2.0
    for method in ("mvdiffusion/stochastic", "xunet/joint", "mvdiffusion"):
        with pytest.raises(InvalidInputError, match="sampler"):
            parse_method(method, generators)


def test_panorama_model_trains_and_samples_without_depth(tmp_path):
    """The homography variant: rotation-only cameras about 45 degrees apart, no depth anywhere."""
    from tests.generators.test_generators_caa import panorama_cameras

    cameras = panorama_cameras(views=4, size=SIZE)
    images = np.random.default_rng(0).random((4, SIZE, SIZE, 3), dtype=np.float32)
    scene = MultiViewScene(images, cameras)
    config = dataclasses.replace(MICRO, correspondence="homography")
    train = TrainConfig(steps=2, batch_size=2, warmup_steps=1, checkpoint_every=2, architecture="mvdiffusion",
                        device="cpu")
    folder = train_multiview([scene], None, config, train, tmp_path / "panorama")
    generator = JointViewGenerator.from_checkpoint(folder, steps=2, guidance_weight=0.5)
    views = generator.generate(scene.subset([0]), cameras[[1, 2, 3]], seed=0)
    assert views.shape == (3, SIZE, SIZE, 3) and np.isfinite(views).all()
