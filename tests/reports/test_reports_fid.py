"""FID and KID against float64 numpy/scipy computations on given features; Inception features against
torch-fidelity's own extractor on the same (random) weights file."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from reports.fid import (INCEPTION_WEIGHTS, FrechetInceptionDistance, KernelInceptionDistance, build_inception,
                         frechet_distance, inception_features, kernel_inception_distance, mmd2_unbiased)
from reports.weights import WeightsMissingError, resolve
from scenes.errors import InvalidInputError
from tests.reports.weight_files import random_weights_cache


def scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula (pytorch-fid's): matrix square root of S_a S_b by scipy, in float64."""
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))


def numpy_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel, written out as sums over i != j."""
    m, d = x.shape
    k = lambda p, q: (p @ q.T / d + 1.0) ** 3  # noqa: E731
    k_xx, k_yy, k_xy = k(x, x), k(y, y), k(x, y)
    off = ~np.eye(m, dtype=bool)
    return float(k_xx[off].sum() / (m * (m - 1)) + k_yy[off].sum() / (m * (m - 1)) - 2 * k_xy.mean())


@pytest.fixture(scope="module")
def features():
    rng = np.random.default_rng(11)
    return rng.normal(size=(40, 16)), rng.normal(loc=0.3, scale=1.2, size=(30, 16))


@pytest.mark.parametrize("shape_a, shape_b", [((40, 16), (30, 16)), ((12, 64), (9, 64))],
                         ids=["more-images-than-dims", "fewer-images-than-dims"])
def test_fid_matches_scipy(shape_a, shape_b):
    rng = np.random.default_rng(sum(shape_a))
    a = rng.normal(size=shape_a)
    b = rng.normal(loc=0.2, scale=1.3, size=shape_b) @ rng.normal(size=(shape_b[1], shape_b[1])) / 4
    ours = frechet_distance(torch.from_numpy(a), torch.from_numpy(b))
    assert ours == pytest.approx(scipy_fid(a, b), rel=1e-7, abs=1e-9)


def test_fid_of_a_set_with_itself_is_zero(features):
    a = torch.from_numpy(features[0])
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_kid_matches_numpy(features):
    a, b = features
    x, y = a[:30], b
    assert float(mmd2_unbiased(torch.from_numpy(x), torch.from_numpy(y))) == pytest.approx(numpy_mmd2(x, y), rel=1e-10)
    # Subsets as large as the smaller set: one subset of `b` is all of `b`, of `a` a random 30 of 40.
    mean, std = kernel_inception_distance(torch.from_numpy(a), torch.from_numpy(b), subsets=20, subset_size=1000)
    generator = torch.Generator().manual_seed(0)
    expected = []
    for _ in range(20):
        pick_a = torch.randperm(40, generator=generator)[:30].numpy()
        pick_b = torch.randperm(30, generator=generator)[:30].numpy()
        expected.append(numpy_mmd2(a[pick_a], b[pick_b]))
    assert mean == pytest.approx(np.mean(expected), rel=1e-10)
    assert std == pytest.approx(np.std(expected), rel=1e-8)
    assert kernel_inception_distance(torch.from_numpy(a), torch.from_numpy(b), subsets=20) == (mean, std)


def test_too_few_features_are_refused():
    with pytest.raises(InvalidInputError, match="at least 2"):
        frechet_distance(torch.zeros(1, 8), torch.zeros(5, 8))
    with pytest.raises(InvalidInputError, match="dimensions 8 and 9"):
        kernel_inception_distance(torch.zeros(3, 8), torch.zeros(5, 9))


@pytest.fixture(scope="module")
def images():
    generator = torch.Generator().manual_seed(5)
    return torch.rand(4, 3, 32, 32, generator=generator), torch.rand(3, 3, 32, 32, generator=generator)


def test_features_match_torch_fidelity_and_metrics_match_functions(images):
    cache = random_weights_cache()
    extractor = build_inception(cache)
    real, fake = images
    ours = inception_features(real, extractor, batch_size=3)
    reference = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                            feature_extractor_weights_path=str(resolve(INCEPTION_WEIGHTS, cache)))
    with torch.no_grad():
        (expected,) = reference((real * 255).to(torch.uint8))
    assert ours.shape == (4, 2048) and ours.dtype == torch.float64
    torch.testing.assert_close(ours, expected.double(), rtol=1e-4, atol=1e-5)

    fid, kid = FrechetInceptionDistance(extractor=extractor), KernelInceptionDistance(subsets=5, extractor=extractor)
    for metric in (fid, kid):
        metric.update(real[:2], real=True)
        metric.update(real[2:], real=True)
        metric.update(fake, real=False)
    fake_features = inception_features(fake, extractor)
    assert float(fid.compute()) == pytest.approx(frechet_distance(ours, fake_features), rel=1e-9)
    assert float(kid.compute()) == pytest.approx(kernel_inception_distance(ours, fake_features, subsets=5)[0],
                                                 rel=1e-9)
    assert FrechetInceptionDistance.higher_is_better is False and KernelInceptionDistance.higher_is_better is False


def test_missing_inception_names_the_fetch_command(tmp_path):
    with pytest.raises(WeightsMissingError, match="nvsc weights fetch inception-v3-fid"):
        FrechetInceptionDistance(cache=tmp_path)
