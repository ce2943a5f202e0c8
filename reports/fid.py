"""FID and KID between two image sets, on Inception-v3 pool features read from the nvsc weight cache.

Features: torch-fidelity's `FeatureExtractorInceptionV3` through torchmetrics' `NoTrainInceptionV3` (the 2048-d
pool3 layer, "inception-v3-compat"), with `feature_extractor_weights_path` pointing into the cache. Images are
resized with TensorFlow 1's bilinear rule (`antialias=False`), as the original FID code and torch-fidelity do, so
values compare with published FIDs computed the same way.

- FID (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule...", Sec. "Frechet Inception Distance"):
  d^2 = |mu_1 - mu_2|^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)) between Gaussians fitted to the two feature sets.
- KID (Binkowski et al. 2018, "Demystifying MMD GANs", Sec. 4): the unbiased estimate of MMD^2 under the kernel
  k(x, y) = (x.y / d + 1)^3, averaged over random equal-size subsets of the two sets.
Both are distances: lower is better. All arithmetic on features is float64.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import torch
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torchmetrics import Metric
from torchmetrics.image.fid import NoTrainInceptionV3
from tqdm import tqdm

from reports.weights import check_architecture, resolve
from scenes.errors import InvalidInputError

#: Name of the cached Inception weights (a key of `reports.weights.MANIFEST`).
INCEPTION_WEIGHTS = "inception-v3-fid"
#: The pool3 features FID and KID are defined on.
FEATURE_LAYER = "2048"


class _UnloadedInception(FeatureExtractorInceptionV3):
    """torch-fidelity's Inception-v3 left randomly initialised: its constructor always loads a state dict (from a
    path, else by download), so it is handed an empty one, which this class skips."""

    def load_state_dict(self, state_dict, *args, **kwargs):
        if len(state_dict) == 0:
            return None
        return super().load_state_dict(state_dict, *args, **kwargs)


def inception_architecture() -> torch.nn.Module:
    """A randomly initialised Inception-v3 of torch-fidelity's layout (what a weights file must match)."""
    with tempfile.TemporaryDirectory() as scratch:
        empty = os.path.join(scratch, "empty.pth")
        torch.save({}, empty)
        return _UnloadedInception("inception-v3-compat", [FEATURE_LAYER], feature_extractor_weights_path=empty)


def build_inception(cache: Path | None = None) -> NoTrainInceptionV3:
    """The feature extractor with the cached weights (`WeightsMissingError` when absent)."""
    path = resolve(INCEPTION_WEIGHTS, cache)
    # torch-fidelity unpickles the file with weights_only=False: refuse anything that is not a plain tensor
    # state dict of this architecture before it gets there.
    check_architecture(INCEPTION_WEIGHTS, path)
    return NoTrainInceptionV3("inception-v3-compat", [FEATURE_LAYER], feature_extractor_weights_path=str(path),
                              antialias=False)


@functools.lru_cache(maxsize=2)
def cached_inception(cache: str) -> NoTrainInceptionV3:
    """`build_inception`, once per process and cache folder."""
    return build_inception(Path(cache))


def inception_features(images: torch.Tensor, extractor: torch.nn.Module, batch_size: int = 16,
                       progress: bool = False) -> torch.Tensor:
    """Pool features [N, 2048] float64 of images [N, 3, H, W] in [0, 1] (quantised to 8 bits, as torchmetrics'
    `normalize=True` does, since the network was trained on 8-bit images)."""
    device = next(extractor.parameters()).device
    features = []
    starts = range(0, len(images), batch_size)
    with torch.no_grad():
        for start in tqdm(starts, desc="Inception features", disable=not progress, leave=False):
            batch = (images[start:start + batch_size].clamp(0, 1) * 255).to(torch.uint8).to(device)
            features.append(extractor(batch).double().cpu())
    return torch.cat(features) if features else torch.zeros(0, int(FEATURE_LAYER), dtype=torch.float64)


def _check_sets(features_a: torch.Tensor, features_b: torch.Tensor, minimum: int) -> None:
    for what, features in (("first feature set", features_a), ("second feature set", features_b)):
        if features.ndim != 2 or len(features) < minimum:
            raise InvalidInputError(what, f"shape {list(features.shape)} is not [N >= {minimum}, D]",
                                    f"give at least {minimum} images per set")
    if features_a.shape[1] != features_b.shape[1]:
        raise InvalidInputError("feature sets", f"dimensions {features_a.shape[1]} and {features_b.shape[1]} differ",
                                "extract both sets with the same network layer")


def trace_sqrt_product(centred_a: torch.Tensor, centred_b: torch.Tensor) -> torch.Tensor:
    """Tr((S_a S_b)^(1/2)) for S = X^T X / (n - 1) of centred features X [n, D], in float64.

    The eigenvalues of S_a S_b (a product of two PSD matrices) are real and >= 0. With fewer images than feature
    dimensions (the usual case for per-benchmark FID) its non-zero eigenvalues are the squared singular values of
    X_a X_b^T / sqrt((n_a - 1)(n_b - 1)), an n_a x n_b matrix: the trace is that matrix's nuclear norm, exact and
    far cheaper than a D x D eigen-decomposition. Otherwise: eigenvalues of S_a^(1/2) S_b S_a^(1/2), symmetric.
    """
    n_a, n_b, dim = len(centred_a), len(centred_b), centred_a.shape[1]
    if n_a * n_b <= dim * dim:
        cross = centred_a @ centred_b.T / ((n_a - 1) * (n_b - 1)) ** 0.5
        return torch.linalg.svdvals(cross).sum()
    cov_a = centred_a.T @ centred_a / (n_a - 1)
    cov_b = centred_b.T @ centred_b / (n_b - 1)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = (vectors * values.clamp(min=0).sqrt()) @ vectors.T
    return torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """FID between feature sets [N_a, D] and [N_b, D] (N >= 2 each)."""
    _check_sets(features_a, features_b, minimum=2)
    a, b = features_a.double(), features_b.double()
    mean_a, mean_b = a.mean(0), b.mean(0)
    centred_a, centred_b = a - mean_a, b - mean_b
    trace_a = centred_a.square().sum() / (len(a) - 1)
    trace_b = centred_b.square().sum() / (len(b) - 1)
    distance = (mean_a - mean_b).square().sum() + trace_a + trace_b - 2 * trace_sqrt_product(centred_a, centred_b)
    return float(distance)


def _polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD^2 (Binkowski et al. 2018, Eq. 3 with the polynomial kernel) of equal-size sets [m, D]."""
    m = len(x)
    k_xx, k_yy, k_xy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
    off_diagonal = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return off_diagonal - 2 * k_xy.sum() / (m * m)


def kernel_inception_distance(features_a: torch.Tensor, features_b: torch.Tensor, subsets: int = 100,
                              subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID (mean, std over subsets) between feature sets [N_a, D] and [N_b, D] (N >= 2 each).

    Each subset draws min(subset_size, N_a, N_b) features from each set without replacement, with a seeded
    generator so that the score of the same sets is the same on every run (torch-fidelity's defaults: 100 subsets
    of 1000)."""
    _check_sets(features_a, features_b, minimum=2)
    a, b = features_a.double(), features_b.double()
    size = min(subset_size, len(a), len(b))
    generator = torch.Generator().manual_seed(seed)
    values = torch.stack([mmd2_unbiased(a[torch.randperm(len(a), generator=generator)[:size]],
                                        b[torch.randperm(len(b), generator=generator)[:size]])
                          for _ in range(subsets)])
    return float(values.mean()), float(values.std(unbiased=False))


class _InceptionSets(Metric):
    """Inception features of real and generated images, gathered by `update(images, real=...)`."""

    is_differentiable = False
    full_state_update = False

    def __init__(self, cache: Path | None = None, extractor: torch.nn.Module | None = None, **kwargs):
        super().__init__(**kwargs)
        self.extractor = extractor if extractor is not None else build_inception(cache)
        self.add_state("real_features", default=[], dist_reduce_fx="cat")
        self.add_state("fake_features", default=[], dist_reduce_fx="cat")

    def update(self, images: torch.Tensor, real: bool) -> None:
        """images: [B, 3, H, W] in [0, 1]."""
        features = inception_features(images, self.extractor)
        (self.real_features if real else self.fake_features).append(features)

    def _sets(self) -> tuple[torch.Tensor, torch.Tensor]:
        def gathered(state):
            return torch.cat(state) if isinstance(state, list) else state
        return gathered(self.real_features), gathered(self.fake_features)


class FrechetInceptionDistance(_InceptionSets):
    """FID between every real and every generated image seen by `update`."""

    higher_is_better = False

    def compute(self) -> torch.Tensor:
        real, fake = self._sets()
        return torch.tensor(frechet_distance(real, fake), dtype=torch.float64)


class KernelInceptionDistance(_InceptionSets):
    """KID (the mean over subsets) between every real and every generated image seen by `update`."""

    higher_is_better = False

    def __init__(self, subsets: int = 100, subset_size: int = 1000, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.subsets, self.subset_size, self.seed = subsets, subset_size, seed

    def compute(self) -> torch.Tensor:
        real, fake = self._sets()
        mean, _ = kernel_inception_distance(real, fake, self.subsets, self.subset_size, self.seed)
        return torch.tensor(mean, dtype=torch.float64)
