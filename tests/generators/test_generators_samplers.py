"""Samplers: guidance and step math against float64 formulas, determinism, which views condition each step,
batching over scenes, and an oracle denoiser that every sampler x step rule must reproduce."""

import numpy as np
import pytest
import torch

from generators.samplers import STEP_RULES, get_sampler
from generators.samplers.ancestral import ancestral_step
from generators.samplers.ddim import ddim_step
from generators.samplers.guidance import guided_eps
from generators.samplers.loop import logsnr_levels, predict_x0
from generators.schedule import CosineLogSNRSchedule
from generators.xunet import XUNet
from scenes.cameras import look_at
from scenes.errors import InvalidInputError
from tests.generators.micro_model import MICRO

SCHEDULE = CosineLogSNRSchedule()
SIZE = 8
SCENES, TARGETS = 2, 4
INTRINSICS = torch.tensor([8.0, 8.0, 4.0, 4.0])
#: (sampler, markovian window) pairs under test.
VARIANTS = [("stochastic", 1), ("naive", 1), ("markovian", 1), ("markovian", 2)]


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def c2w_ring(count: int, start: float = 0.0, height: float = 1.0) -> torch.Tensor:
    angles = start + np.linspace(0, 2 * np.pi, count, endpoint=False)
    return torch.tensor(np.stack([look_at(np.array([2 * np.cos(a), 2 * np.sin(a), height])) for a in angles]),
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
def scenes():
    """Two scenes with their own input views and rings of target cameras (at different heights)."""
    g = torch.Generator().manual_seed(0)
    return {"input_image": torch.rand(SCENES, 3, SIZE, SIZE, generator=g) * 2 - 1,
            "input_c2w": torch.stack([c2w_ring(1, 0.3, h)[0] for h in (1.0, 0.5)]),
            "target_c2w": torch.stack([c2w_ring(TARGETS, 0.0, h) for h in (1.0, 0.5)]),
            "intrinsics": INTRINSICS.expand(SCENES, 4)}


def run(name, denoiser, scenes, seed=0, steps=6, guidance_weight=0.0, step_rule="ancestral", window=1):
    return get_sampler(name, window)(denoiser, scenes["input_image"], scenes["input_c2w"], scenes["target_c2w"],
                                     scenes["intrinsics"], SCHEDULE, steps, guidance_weight,
                                     torch.Generator().manual_seed(seed), step_rule=step_rule)


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


def test_ancestral_step_matches_float64_vdm_posterior():
    # Kingma et al. 2021, Eq. 25-27 (alpha_{t|s}, sigma^2_{t|s} form) with s noisier than t here.
    logsnr_s, logsnr_t = -1.3, 2.1
    g = torch.Generator().manual_seed(5)
    z_s = torch.randn(1, 3, 4, 4, generator=g, dtype=torch.float64)
    x0 = torch.rand(1, 3, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    z_t = ancestral_step(z_s, x0, logsnr_s, logsnr_t, torch.Generator().manual_seed(9))
    noise = torch.randn(z_s.shape, generator=torch.Generator().manual_seed(9)).double()
    a_s, s_s = np.sqrt(sigmoid(logsnr_s)), np.sqrt(sigmoid(-logsnr_s))
    a_t, s_t = np.sqrt(sigmoid(logsnr_t)), np.sqrt(sigmoid(-logsnr_t))
    a_st = a_s / a_t
    var_st = s_s ** 2 - a_st ** 2 * s_t ** 2
    mean = a_st * s_t ** 2 / s_s ** 2 * z_s + a_t * var_st / s_s ** 2 * x0
    std = np.sqrt(var_st * s_t ** 2 / s_s ** 2)
    torch.testing.assert_close(z_t, mean + std * noise, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="less noise"):
        ancestral_step(z_s, x0, logsnr_t, logsnr_s, torch.Generator())


def test_ddim_step_matches_song_et_al_eq_12_in_float64():
    # DDIM (eta = 0): x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev) eps, eps = (x - sqrt(abar) x0) / sqrt(1 - abar)
    logsnr_s, logsnr_t = -0.4, 1.7
    g = torch.Generator().manual_seed(6)
    z_s = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    x0 = torch.rand(2, 3, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    abar_s, abar_t = sigmoid(logsnr_s), sigmoid(logsnr_t)
    eps = (z_s - np.sqrt(abar_s) * x0) / np.sqrt(1 - abar_s)
    expected = np.sqrt(abar_t) * x0 + np.sqrt(1 - abar_t) * eps
    state = torch.Generator().manual_seed(3)
    before = state.get_state()
    torch.testing.assert_close(ddim_step(z_s, x0, logsnr_s, logsnr_t, state), expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(state.get_state(), before)  # deterministic: draws nothing


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


@pytest.fixture(scope="module")
def micro_xunet():
    torch.manual_seed(0)
    model = XUNet(MICRO).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            if not parameter.any():  # zero-initialised output layers would make every prediction 0
                parameter.normal_(0, 0.1)
    return model


@pytest.mark.parametrize("step_rule", sorted(STEP_RULES))
@pytest.mark.parametrize("name,window", VARIANTS[:3])
def test_samplers_are_deterministic_in_the_seed(name, window, step_rule, scenes, micro_xunet):
    def sample(seed):
        return run(name, micro_xunet, scenes, seed=seed, steps=3, guidance_weight=1.0, step_rule=step_rule,
                   window=window)

    first, again, other = sample(3), sample(3), sample(4)
    assert first.shape == (SCENES, TARGETS, 3, SIZE, SIZE) and first.abs().max() <= 1
    assert torch.equal(first, again)
    assert (first - other).abs().max() > 1e-3


def pool_index(camera, pool_c2w):
    matches = [j for j, c in enumerate(pool_c2w) if torch.equal(camera, c)]
    assert len(matches) == 1, "conditioned on a camera that is neither the input nor a target"
    return matches[0]


@pytest.mark.parametrize("name,window", [("stochastic", None), ("markovian", 1), ("markovian", 2)])
def test_sequential_samplers_draw_the_conditioning_view_at_every_step_from_their_window(name, window, scenes):
    """Pool of scene s: [input, view 0, ..., view N-1]. View k may condition on entries low .. k of the pool, with
    low = 0 for stochastic conditioning and k + 1 - window for the Markovian sampler; each step draws anew."""
    steps, denoiser = 30, RecordingDenoiser()
    out = run(name, denoiser, scenes, steps=steps, window=window or 1)
    assert len(denoiser.calls) == TARGETS * steps  # one call per step, batched over the scenes
    for s in range(SCENES):
        pool_images = [scenes["input_image"][s]] + list(out[s])
        pool_c2w = [scenes["input_c2w"][s]] + list(scenes["target_c2w"][s])
        for k in range(TARGETS):
            low = 0 if window is None else max(0, k + 1 - window)
            chosen = []
            for call in denoiser.calls[k * steps:(k + 1) * steps]:  # views are generated one after another
                assert call["cond_image"].shape[0] == SCENES
                assert torch.equal(call["target_c2w"][s], scenes["target_c2w"][s, k])
                j = pool_index(call["cond_c2w"][s], pool_c2w)
                assert torch.equal(call["cond_image"][s], pool_images[j])
                chosen.append(j)
            # Redrawn at every step: every allowed view is used (30 draws among at most 4 choices), no other one.
            assert sorted(set(chosen)) == list(range(low, k + 1)), (k, sorted(set(chosen)))
    if window is None:  # stochastic conditioning reaches beyond the input view
        assert any(pool_index(c["cond_c2w"][0], [scenes["input_c2w"][0]] + list(scenes["target_c2w"][0])) > 0
                   for c in denoiser.calls)


def test_stochastic_conditioning_with_guidance_asks_both_predictions_for_the_same_view(scenes):
    denoiser = RecordingDenoiser()
    run("stochastic", denoiser, scenes, steps=5, guidance_weight=2.0)
    for call in denoiser.calls:
        assert call["cond_mask"].tolist() == [1.0] * SCENES + [0.0] * SCENES
        assert torch.equal(call["cond_c2w"][:SCENES], call["cond_c2w"][SCENES:])


def test_naive_sampler_batches_all_targets_and_conditions_on_the_input_only(scenes):
    denoiser = RecordingDenoiser()
    run("naive", denoiser, scenes, steps=5)
    assert len(denoiser.calls) == 5
    for call in denoiser.calls:
        assert call["cond_c2w"].shape[0] == SCENES * TARGETS
        assert torch.equal(call["target_c2w"], scenes["target_c2w"].reshape(-1, 4, 4))
        for i in range(SCENES * TARGETS):
            s = i // TARGETS
            assert torch.equal(call["cond_c2w"][i], scenes["input_c2w"][s])
            assert torch.equal(call["cond_image"][i], scenes["input_image"][s])


@pytest.mark.parametrize("step_rule", sorted(STEP_RULES))
@pytest.mark.parametrize("name,window", VARIANTS)
@pytest.mark.parametrize("guidance_weight", [0.0, 3.0])
def test_oracle_denoiser_makes_every_sampler_reproduce_the_targets(name, window, step_rule, guidance_weight, scenes):
    g = torch.Generator().manual_seed(11)
    clean = torch.rand(SCENES * TARGETS, 3, SIZE, SIZE, generator=g) * 1.8 - 0.9
    oracle = OracleDenoiser(scenes["target_c2w"].reshape(-1, 4, 4), clean)
    out = run(name, oracle, scenes, steps=8, guidance_weight=guidance_weight, step_rule=step_rule, window=window)
    torch.testing.assert_close(out, clean.reshape(SCENES, TARGETS, 3, SIZE, SIZE), atol=1e-4, rtol=0)


def test_unknown_names_list_the_choices(scenes):
    with pytest.raises(InvalidInputError, match="unknown sampler 'ddpm'.*stochastic, naive, markovian"):
        get_sampler("ddpm")
    with pytest.raises(InvalidInputError, match="unknown step rule 'euler'.*ancestral, ddim"):
        run("naive", RecordingDenoiser(), scenes, step_rule="euler")
    with pytest.raises(InvalidInputError, match="markovian_window"):
        get_sampler("markovian", 0)


def test_bad_arguments_are_refused(scenes):
    denoiser = RecordingDenoiser()
    denoiser.supports_guidance = False
    with pytest.raises(InvalidInputError, match="guidance_weight"):
        run("naive", denoiser, scenes, guidance_weight=1.0)
    with pytest.raises(InvalidInputError, match="steps"):
        run("stochastic", RecordingDenoiser(), scenes, steps=0)
    with pytest.raises(InvalidInputError, match="target_c2w"):
        run("markovian", RecordingDenoiser(), {**scenes, "target_c2w": scenes["target_c2w"][:1]})
    with pytest.raises(InvalidInputError, match="input_image"):
        run("stochastic", RecordingDenoiser(), {**scenes, "input_image": scenes["input_image"][:, :, :4]})
