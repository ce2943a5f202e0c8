"""LPIPS from the weight cache against the `lpips` package loading the same weights through its own path."""

from __future__ import annotations

import lpips
import numpy as np
import pytest
import torch

from reports.lpips_score import LearnedPerceptualSimilarity, build_lpips, lpips_distance
from reports.weights import MANIFEST, WeightsMissingError, resolve
from scenes.errors import InvalidInputError
from tests.reports.weight_files import random_weights_cache


@pytest.fixture(scope="module")
def cache():
    return random_weights_cache()


@pytest.fixture(scope="module")
def image_pairs():
    """Images [6, 3, 32, 32] in [0, 1] and copies with noise growing with the index."""
    generator = torch.Generator().manual_seed(3)
    targets = torch.rand(6, 3, 32, 32, generator=generator)
    noise = torch.randn(targets.shape, generator=generator) * torch.linspace(0.02, 0.4, 6)[:, None, None, None]
    return (targets + noise).clamp(0, 1), targets


def reference_lpips(net: str, cache, tmp_path, monkeypatch) -> lpips.LPIPS:
    """`lpips.LPIPS` built the package's usual way: the backbone through torchvision's download path (served from
    a torch hub folder holding our file, so nothing is downloaded), the heads through `model_path`."""
    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    backbone = {"alex": "alexnet", "vgg": "vgg16"}[net]
    (hub / "checkpoints" / MANIFEST[backbone].filename).symlink_to(resolve(backbone, cache))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))
    return lpips.LPIPS(net=net, model_path=str(resolve(f"lpips-{net}", cache)), verbose=False).eval()


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_matches_the_lpips_package_on_the_same_weights(net, cache, image_pairs, tmp_path, monkeypatch):
    predictions, targets = image_pairs
    ours = lpips_distance(predictions, targets, build_lpips(net, cache))
    reference = reference_lpips(net, cache, tmp_path, monkeypatch)
    with torch.no_grad():
        expected = reference(predictions * 2 - 1, targets * 2 - 1).reshape(-1).double()
    np.testing.assert_allclose(ours.numpy(), expected.numpy(), rtol=1e-5, atol=1e-7)
    assert ours.dtype == torch.float64 and ours.shape == (6,)
    # Random weights still make a distance: zero for identical images, growing with the noise here.
    assert torch.all(ours > 0) and lpips_distance(targets, targets, build_lpips(net, cache)).abs().max() < 1e-6


def test_metric_class_averages_over_updates(cache, image_pairs):
    predictions, targets = image_pairs
    metric = LearnedPerceptualSimilarity("alex", cache)
    metric.update(predictions[:2], targets[:2])
    metric.update(predictions[2:], targets[2:])
    expected = lpips_distance(predictions, targets, build_lpips("alex", cache)).mean()
    assert float(metric.compute()) == pytest.approx(float(expected), rel=1e-9)
    assert LearnedPerceptualSimilarity.higher_is_better is False


def test_missing_weights_and_unknown_network(tmp_path):
    with pytest.raises(WeightsMissingError, match="nvsc weights fetch alexnet"):
        build_lpips("alex", tmp_path)
    with pytest.raises(InvalidInputError, match="unknown network 'squeezenet'"):
        build_lpips("squeezenet", tmp_path)
