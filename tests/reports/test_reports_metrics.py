"""Per-view PSNR and SSIM against skimage's implementation, on random image pairs."""

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from reports.metrics import (HIGHER_IS_BETTER, METRICS, PSNR_CAP_DB, consistency_scores, fidelity_scores,
                             per_view_scores, psnr, sharpness)
from scenes.errors import InvalidInputError


@pytest.fixture(params=[(32, 32), (24, 40)], ids=["32x32", "24x40"])
def image_pairs(request):
    """Views [5, H, W, 3] float32 and noisy copies of them, noise level growing with the view index."""
    height, width = request.param
    rng = np.random.default_rng(7)
    targets = rng.random((5, height, width, 3)).astype(np.float32)
    noise = rng.standard_normal(targets.shape) * np.linspace(0.02, 0.3, 5)[:, None, None, None]
    predictions = np.clip(targets + noise, 0.0, 1.0).astype(np.float32)
    return predictions, targets


def _skimage_scores(predictions, targets):
    psnr = [peak_signal_noise_ratio(t.astype(np.float64), p.astype(np.float64), data_range=1.0)
            for p, t in zip(predictions, targets)]
    ssim = [structural_similarity(p.astype(np.float64), t.astype(np.float64), channel_axis=-1,
                                  gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
            for p, t in zip(predictions, targets)]
    return np.array(psnr), np.array(ssim)


def test_per_view_scores_match_skimage(image_pairs):
    predictions, targets = image_pairs
    scores = per_view_scores(predictions, targets, names=[f"v{i}" for i in range(5)])
    psnr, ssim = _skimage_scores(predictions, targets)
    assert list(scores.columns) == ["view", "psnr", "ssim"]
    assert scores["view"].tolist() == ["v0", "v1", "v2", "v3", "v4"]
    np.testing.assert_allclose(scores["psnr"], psnr, atol=1e-4)
    np.testing.assert_allclose(scores["ssim"], ssim, atol=1e-3)
    # More noise, lower scores: the per-view values are not a constant that happens to agree.
    assert np.all(np.diff(scores["psnr"]) < 0) and np.all(np.diff(scores["ssim"]) < 0)


def test_tensor_input_and_default_names(image_pairs):
    predictions, targets = image_pairs
    from_tensors = per_view_scores(torch.from_numpy(predictions), torch.from_numpy(targets))
    from_arrays = per_view_scores(predictions, targets)
    assert from_tensors["view"].tolist() == ["000000", "000001", "000002", "000003", "000004"]
    np.testing.assert_allclose(from_tensors[["psnr", "ssim"]], from_arrays[["psnr", "ssim"]])


def test_scene_means_are_means_of_views(image_pairs):
    predictions, targets = image_pairs
    psnr, ssim = _skimage_scores(predictions, targets)
    for scores in (consistency_scores(predictions, targets), fidelity_scores(predictions, targets)):
        assert set(scores) == {"psnr", "ssim"}
        assert scores["psnr"] == pytest.approx(psnr.mean(), abs=1e-4)
        assert scores["ssim"] == pytest.approx(ssim.mean(), abs=1e-3)


def test_identical_views_score_perfectly(image_pairs):
    _, targets = image_pairs
    scores = fidelity_scores(targets, targets)
    assert scores["psnr"] == PSNR_CAP_DB  # capped, not +inf
    assert scores["ssim"] == pytest.approx(1.0, abs=1e-9)


def test_registry_directions():
    assert set(METRICS) >= {"psnr", "ssim"}
    assert HIGHER_IS_BETTER["psnr"] is True and HIGHER_IS_BETTER["ssim"] is True


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(InvalidInputError, match=r"\[2, 32, 32, 3\].*\[3, 32, 32, 3\]"):
        per_view_scores(np.zeros((2, 32, 32, 3)), np.zeros((3, 32, 32, 3)))


@pytest.mark.parametrize("shape", [(2, 32, 32), (2, 32, 32, 4), (2, 8, 8, 3)])
def test_bad_shapes_are_rejected(shape):
    with pytest.raises(InvalidInputError):
        per_view_scores(np.zeros(shape), np.zeros(shape))


def test_names_must_match_views():
    with pytest.raises(InvalidInputError, match="names"):
        per_view_scores(np.zeros((2, 16, 16, 3)), np.zeros((2, 16, 16, 3)), names=["only one"])


def test_directions_agree_with_the_metric_classes():
    from reports.fid import FrechetInceptionDistance, KernelInceptionDistance
    from reports.lpips_score import LearnedPerceptualSimilarity
    from reports.tsed import ThresholdedSymmetricEpipolarDistance

    classes = {"lpips": LearnedPerceptualSimilarity, "fid": FrechetInceptionDistance,
               "kid": KernelInceptionDistance, "tsed": ThresholdedSymmetricEpipolarDistance}
    assert {name: HIGHER_IS_BETTER[name] for name in classes} == {n: c.higher_is_better for n, c in classes.items()}


def test_extra_scores_get_their_own_column(image_pairs):
    predictions, targets = image_pairs
    mse = lambda p, t: (p - t).square().mean(dim=(1, 2, 3))  # noqa: E731
    scores = per_view_scores(predictions, targets, extra={"mse": mse})
    assert list(scores.columns) == ["view", "psnr", "ssim", "mse"]
    np.testing.assert_allclose(scores["psnr"], -10 * np.log10(scores["mse"]), rtol=1e-6)


def test_psnr_is_capped_and_matches_the_float64_formula_below_the_cap():
    rng = np.random.default_rng(0)
    truth = rng.random((3, 3, 16, 16))
    noisy = np.clip(truth + rng.normal(0, [[[[0.1]]], [[[0.003]]], [[[0.0]]]], truth.shape), 0, 1)
    values = psnr(torch.from_numpy(noisy), torch.from_numpy(truth)).numpy()
    reference = -10 * np.log10(np.maximum(((noisy - truth) ** 2).mean(axis=(1, 2, 3)), 1e-300))
    assert values[0] == pytest.approx(reference[0], abs=1e-5) and reference[0] < PSNR_CAP_DB
    assert reference[1] > PSNR_CAP_DB and values[1] == PSNR_CAP_DB and values[2] == PSNR_CAP_DB


def test_sharpness_is_one_for_the_target_and_falls_with_blur_and_with_noise():
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(1)
    truth = gaussian_filter(rng.random((1, 3, 32, 32)), (0, 0, 1, 1))
    blurred = [gaussian_filter(truth, (0, 0, s, s)) for s in (0.5, 1.0, 2.0)]
    noisy = np.clip(truth + rng.normal(0, 0.2, truth.shape), 0, 1)
    score = lambda x: float(sharpness(torch.from_numpy(x), torch.from_numpy(truth))[0])  # noqa: E731
    assert score(truth) == pytest.approx(1.0)
    values = [score(b) for b in blurred]
    assert 1.0 > values[0] > values[1] > values[2] > 0
    assert score(np.ones_like(truth)) == 0.0 and score(noisy) < 0.5
    # The float64 formula: mean |neighbour differences| across and down, ratio folded into (0, 1].
    energy = lambda x: np.abs(np.diff(x, axis=-1)).mean() + np.abs(np.diff(x, axis=-2)).mean()  # noqa: E731
    assert values[1] == pytest.approx(energy(blurred[1]) / energy(truth), rel=1e-12)
