"""Samplers: guidance and ancestral-step math, determinism, stochastic conditioning's choice of views, oracle."""

import numpy as np
import pytest
import torch

from generators.samplers import SAMPLERS, get_sampler
from generators.samplers.ancestral import guided_eps, logsnr_levels, posterior_step, predict_x0
from generators.schedule import CosineLogSNRSchedule
from generators.xunet import XUNet, XUNetConfig
from scenes.cameras import look_at
from scenes.errors import InvalidInputError




SCHEDULE = CosineLogSNRSchedule()
SIZE = 8
INTRINSICS = torch.tensor([8.0, 8.0, 4.0, 4.0])


def c2w_ring(count: int, start: float = 0.0) -> torch.Tensor:
    angles = start + np.linspace(0, 2 * np.pi, count, endpoint=False)
    return torch.tensor(np.stack([look_at(np.array([2 * np.cos(a), 2 * np.sin(a), 1.0])) for a in angles]),
                        dtype=torch.float32)


class RecordingDenoiser:
    """Records every call; predicts an arbitrary eps that depends on z and on the conditioning image."""

    image_size, parameterization, supports_guidance = SIZE, "eps", True

    def __init__(self):
        self.calls = []

    def __call__(self, z, logsnr, cond_image, cond_c2w, target_c2w, intrinsics, cond_mask=None):
        self.calls.append({"cond_image": cond_image.clone(), "cond_c2w": cond_c2w.clone(),
                           "target_c2w": target_c2w.clone(), "cond_mask": cond_mask.clone(), "logsnr": logsnr.clone()})
        return 0.5 * z + 0.3 * cond_image * cond_mask[:, None, None, None]


class OracleDenoiser:
    """Returns the exact eps of z_t for a known clean image per target camera (looked up by camera position)."""

    image_size, parameterization, supports_guidance = SIZE, "eps", True

    def __init__(self, target_c2w, clean):
        self.positions, self.clean = target_c2w[:, :3, 3].double(), clean.double()

    def __call__(self, z, logsnr, cond_image, cond_c2w, target_c2w, intrinsics, cond_mask=None):
        index = torch.cdist(target_c2w[:, :3, 3].double(), self.positions).argmin(dim=1)
        alpha, sigma = (s.double()[:, None, None, None] for s in SCHEDULE.alpha_sigma(logsnr.double()))
        return ((z.double() - alpha * self.clean[index]) / sigma).float()


@pytest.fixture
def scene():
    g = torch.Generator().manual_seed(0)
    return {"input_image": torch.rand(3, SIZE, SIZE, generator=g) * 2 - 1, "input_c2w": c2w_ring(1, 0.3)[0],
            "target_c2w": c2w_ring(4), "intrinsics": INTRINSICS}


def run(name, denoiser, scene, seed=0, steps=6, guidance_weight=0.0):
    return get_sampler(name)(denoiser, scene["input_image"], scene["input_c2w"], scene["target_c2w"],
                             scene["intrinsics"], SCHEDULE, steps, guidance_weight, torch.Generator().manual_seed(seed))


def test_guided_eps_formula_and_single_pass_without_guidance():
    denoiser = RecordingDenoiser()
    g = torch.Generator().manual_seed(1)
    z, cond = torch.randn(2, 3, SIZE, SIZE, generator=g), torch.randn(2, 3, SIZE, SIZE, generator=g)
    c2w, k = c2w_ring(2), INTRINSICS.expand(2, 4)
    unguided = guided_eps(denoiser, z, torch.zeros(2), cond, c2w, c2w, k, 0.0)
    assert len(denoiser.calls) == 1 and denoiser.calls[0]["cond_mask"].tolist() == [1.0, 1.0]
    guided = guided_eps(denoiser, z, torch.zeros(2), cond, c2w, c2w, k, 2.5)
    assert len(denoiser.calls) == 2 and denoiser.calls[1]["cond_mask"].tolist() == [1.0, 1.0, 0.0, 0.0]
    eps_cond, eps_uncond = 0.5 * z + 0.3 * cond, 0.5 * z
    torch.testing.assert_close(unguided, eps_cond)
    torch.testing.assert_close(guided, 3.5 * eps_cond - 2.5 * eps_uncond)


def test_posterior_step_matches_float64_vdm_posterior():
    # Kingma et al. 2021, Eq. 25-27 (alpha_{t|s}, sigma^2_{t|s} form) with s noisier than t here.
    logsnr_s, logsnr_t = -1.3, 2.1
    g = torch.Generator().manual_seed(5)
    z_s = torch.randn(1, 3, 4, 4, generator=g, dtype=torch.float64)
    x0 = torch.rand(1, 3, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    z_t = posterior_step(z_s, x0, logsnr_s, logsnr_t, torch.Generator().manual_seed(9))
    noise = torch.randn(z_s.shape, generator=torch.Generator().manual_seed(9)).double()
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    a_s, s_s = np.sqrt(sigmoid(logsnr_s)), np.sqrt(sigmoid(-logsnr_s))
    a_t, s_t = np.sqrt(sigmoid(logsnr_t)), np.sqrt(sigmoid(-logsnr_t))
    a_st = a_s / a_t
    var_st = s_s ** 2 - a_st ** 2 * s_t ** 2
    mean = a_st * s_t ** 2 / s_s ** 2 * z_s + a_t * var_st / s_s ** 2 * x0
    std = np.sqrt(var_st * s_t ** 2 / s_s ** 2)
    torch.testing.assert_close(z_t, mean + std * noise, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="less noise"):
        posterior_step(z_s, x0, logsnr_t, logsnr_s, torch.Generator())


def test_predict_x0_inverts_forward_process_and_clips():
    x0 = torch.linspace(-1, 1, 48).reshape(1, 3, 4, 4)
    eps = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    logsnr = torch.tensor([0.7])
    alpha, sigma = SCHEDULE.alpha_sigma(logsnr)
    torch.testing.assert_close(predict_x0(alpha * x0 + sigma * eps, eps, logsnr), x0)
    assert predict_x0(alpha * 3 * x0 + sigma * eps, eps, logsnr).abs().max() == 1.0


def test_levels_run_from_noise_to_clean():
    levels = logsnr_levels(SCHEDULE, 4)
    assert len(levels) == 5 and levels[0] == pytest.approx(-20) and levels[-1] == pytest.approx(20)
    assert all(a < b for a, b in zip(levels, levels[1:]))


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_samplers_are_deterministic_in_the_seed(name, scene):
    torch.manual_seed(0)
    model = XUNet(XUNetConfig(image_size=SIZE, ch=8, ch_mult=(1, 2), attn_resolutions=(4,), num_heads=2, emb_ch=16,
                              pos_octaves=2)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            if not parameter.any():
                parameter.normal_(0, 0.1)
    first, again = run(name, model, scene, seed=3, steps=3, guidance_weight=1.0), \
        run(name, model, scene, seed=3, steps=3, guidance_weight=1.0)
    other = run(name, model, scene, seed=4, steps=3, guidance_weight=1.0)
    assert first.shape == (4, 3, SIZE, SIZE) and first.abs().max() <= 1
    assert torch.equal(first, again)
    assert (first - other).abs().max() > 1e-3


def test_stochastic_conditioning_draws_from_input_and_earlier_views_at_every_step(scene):
    steps, denoiser = 24, RecordingDenoiser()
    out = run("stochastic", denoiser, {**scene, "target_c2w": scene["target_c2w"][:3]}, steps=steps)
    targets = scene["target_c2w"][:3]
    pool_images = [scene["input_image"]] + list(out)
    pool_c2w = [scene["input_c2w"]] + list(targets)
    assert len(denoiser.calls) == 3 * steps
    for k in range(3):
        chosen = []
        for call in denoiser.calls[k * steps:(k + 1) * steps]:  # views are generated one after another
            assert torch.equal(call["target_c2w"][0], targets[k])
            matches = [j for j in range(k + 1) if torch.equal(call["cond_c2w"][0], pool_c2w[j])]
            assert len(matches) == 1, f"view {k} conditioned on a camera outside the input and views 0..{k - 1}"
            assert torch.equal(call["cond_image"][0], pool_images[matches[0]])
            chosen.append(matches[0])
        # Redrawn at every step: every allowed view is used (24 draws among at most 3 choices).
        assert sorted(set(chosen)) == list(range(k + 1))


def test_stochastic_conditioning_with_guidance_asks_both_predictions_for_the_same_view(scene):
    denoiser = RecordingDenoiser()
    run("stochastic", denoiser, scene, steps=5, guidance_weight=2.0)
    for call in denoiser.calls:
        assert call["cond_mask"].tolist() == [1.0, 0.0]
        assert torch.equal(call["cond_c2w"][0], call["cond_c2w"][1])


def test_naive_sampler_conditions_every_view_on_the_input_only(scene):
    denoiser = RecordingDenoiser()
    run("naive", denoiser, scene, steps=5)
    assert len(denoiser.calls) == 5
    for call in denoiser.calls:
        assert call["cond_c2w"].shape[0] == 4 and torch.equal(call["target_c2w"], scene["target_c2w"])
        assert all(torch.equal(c, scene["input_c2w"]) for c in call["cond_c2w"])
        assert all(torch.equal(image, scene["input_image"]) for image in call["cond_image"])


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("guidance_weight", [0.0, 3.0])
def test_oracle_denoiser_reproduces_the_targets(name, guidance_weight, scene):
    g = torch.Generator().manual_seed(11)
    clean = (torch.rand(4, 3, SIZE, SIZE, generator=g) * 1.8 - 0.9)
    out = run(name, OracleDenoiser(scene["target_c2w"], clean), scene, steps=8, guidance_weight=guidance_weight)
    torch.testing.assert_close(out, clean, atol=1e-4, rtol=0)


def test_unknown_sampler_names_the_choices():
    with pytest.raises(InvalidInputError, match="unknown sampler 'ddim'.*stochastic, naive"):
        get_sampler("ddim")


def test_guidance_needs_an_unconditional_mode(scene):
    denoiser = RecordingDenoiser()
    denoiser.supports_guidance = False
    with pytest.raises(InvalidInputError, match="guidance_weight"):
        run("naive", denoiser, scene, guidance_weight=1.0)
    with pytest.raises(InvalidInputError, match="steps"):
        run("stochastic", RecordingDenoiser(), scene, steps=0)
