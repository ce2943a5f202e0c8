"""Per-view image scores (PSNR, SSIM) through torchmetrics, the direction of every score nvsc reports, and the
per-scene means the pipeline records.

Images arrive as numpy arrays [N, H, W, 3] float in [0, 1] (the layout of `scenes.MultiViewScene.images`).
PSNR is computed in float64 and capped at `PSNR_CAP_DB`. SSIM is computed in float32: its grouped convolution
has no fast float64 path on
CPU (16x slower at 100 views of 64 x 64), and float32 agrees with skimage's float64 SSIM to 3e-7.
"""

from __future__ import annotations

from typing import Callable, Mapping, NamedTuple

import numpy as np
import pandas as pd
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from reports.tables import PSNR_CAP_DB
from scenes.errors import InvalidInputError

#: Standard deviation of the SSIM Gaussian window (Wang et al. 2004, Sec. III-C).
SSIM_SIGMA = 1.5
#: Width of the SSIM Gaussian window: torchmetrics and skimage both truncate the Gaussian at 3.5 sigma,
#: which gives 2 * int(3.5 * 1.5 + 0.5) + 1 = 11 pixels for sigma 1.5.
SSIM_KERNEL_SIZE = 11


def psnr(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of each image, capped at `PSNR_CAP_DB`: predictions, targets [B, 3, H, W] in [0, 1] -> [B]."""
    return peak_signal_noise_ratio(predictions.double(), targets.double(), data_range=1.0, reduction="none",
                                   dim=(1, 2, 3)).clamp(max=PSNR_CAP_DB)


def ssim(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of each image: predictions, targets [B, 3, H, W] in [0, 1] -> [B], needs H, W >= 11.

    torchmetrics computes the SSIM map on a reflection-padded image and averages over every pixel, border
    included. The reference convention (Wang et al.'s code, skimage) averages only where the 11 x 11 window lies
    inside the image; at 32 x 32 the border is 53% of the pixels and moves the score by up to 1e-2, so the map is
    taken from torchmetrics and cropped to that valid region before averaging.
    """
    _, ssim_map = structural_similarity_index_measure(
        predictions.float(), targets.float(), gaussian_kernel=True, sigma=SSIM_SIGMA, kernel_size=SSIM_KERNEL_SIZE,
        data_range=1.0, reduction="none", return_full_image=True)  # [B, 3, H, W]
    pad = (SSIM_KERNEL_SIZE - 1) // 2
    return ssim_map[..., pad:-pad, pad:-pad].mean(dim=(1, 2, 3))


def gradient_energy(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels, across and down, of images [B, 3, H, W] -> [B]."""
    return (images.diff(dim=-1).abs().mean(dim=(1, 2, 3)) + images.diff(dim=-2).abs().mean(dim=(1, 2, 3)))


def sharpness(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """How much of the target's detail each prediction has, in (0, 1]: r = gradient energy of the prediction over
    the target's, scored min(r, 1 / r) -> [B] (predictions, targets [B, 3, H, W]).

    1: as much detail as the target; below 1: detail lost (blur, a blank view: 0) or invented (noise). PSNR cannot
    show this: a blurred view is closer in mean squared error to the truth than a sharp view slightly off."""
    ratio = gradient_energy(predictions.double()) / gradient_energy(targets.double()).clamp(min=1e-12)
    return torch.minimum(ratio, 1.0 / ratio.clamp(min=1e-12))


class MetricSpec(NamedTuple):
    """One registered score: how to compute it and which direction is better."""

    #: `(predictions [B, 3, H, W], targets [B, 3, H, W]) -> [B]`, images in [0, 1].
    functional: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    #: True when a larger value means images closer to their target.
    higher_is_better: bool


#: The per-view scores that need no network weights, by name; the direction is the one torchmetrics declares on
#: its Metric class.
METRICS: dict[str, MetricSpec] = {
    "psnr": MetricSpec(psnr, bool(PeakSignalNoiseRatio.higher_is_better)),
    "ssim": MetricSpec(ssim, bool(StructuralSimilarityIndexMeasure.higher_is_better)),
}

#: Direction of every score nvsc reports, for tables that mark the best cell. The scores beyond METRICS repeat
#: the `higher_is_better` of their Metric classes (`LearnedPerceptualSimilarity`, `FrechetInceptionDistance`,
#: `KernelInceptionDistance`, `ThresholdedSymmetricEpipolarDistance`; a test checks they agree), so reading a
#: table does not import lpips, torch-fidelity and OpenCV.
HIGHER_IS_BETTER: dict[str, bool] = {
    **{name: spec.higher_is_better for name, spec in METRICS.items()},
    "lpips": False,
    "sharpness": True,
    "iou": True,
    "depth_l1": False,
    "chamfer": False,
    "fscore": True,
    "fid": False,
    "kid": False,
    "tsed": True,
}


def _as_batch(images, what: str) -> torch.Tensor:
    """[N, H, W, 3] numpy array or tensor -> float64 tensor [N, 3, H, W], with its shape checked."""
    array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise InvalidInputError(what, f"shape {list(array.shape)} is not [N, H, W, 3]",
                                "pass a stack of RGB views, channels last")
    if not np.isfinite(array).all():
        raise InvalidInputError(what, "contains NaN or infinite values", "pass images with values in [0, 1]")
    return torch.from_numpy(array.astype(np.float64)).permute(0, 3, 1, 2)


def per_view_scores(predictions, targets, names: list[str] | None = None,
                    extra: Mapping[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] | None = None
                    ) -> pd.DataFrame:
    """Score each view of predictions [N, H, W, 3] against the view of targets [N, H, W, 3] at the same index.

    Returns one row per view with columns `view` (from `names`, or the index as "000000"), `psnr`, `ssim`, then
    one column per entry of `extra` (name -> functional as in `MetricSpec`, e.g. LPIPS bound to its network).
    """
    predictions_shape, targets_shape = list(np.shape(predictions)), list(np.shape(targets))
    if predictions_shape != targets_shape:
        raise InvalidInputError("predictions and targets",
                                f"shapes {predictions_shape} and {targets_shape} differ",
                                "score each view against the target view at the same camera and resolution")
    predictions_batch = _as_batch(predictions, "predictions")
    targets_batch = _as_batch(targets, "targets")
    n, _, height, width = predictions_batch.shape
    if n == 0:
        raise InvalidInputError("predictions", "holds no views", "pass at least one view to score")
    if min(height, width) < SSIM_KERNEL_SIZE:
        raise InvalidInputError("predictions", f"views of {height} x {width} pixels are smaller than the "
                                               f"{SSIM_KERNEL_SIZE} x {SSIM_KERNEL_SIZE} SSIM window",
                                "score views of at least 11 x 11 pixels")
    if names is None:
        names = [f"{i:06d}" for i in range(n)]
    elif len(names) != n:
        raise InvalidInputError("names", f"{len(names)} names for {n} views", "give one name per view")
    table = pd.DataFrame({"view": list(names)})
    functionals = {name: spec.functional for name, spec in METRICS.items()} | dict(extra or {})
    for name, functional in functionals.items():
        table[name] = functional(predictions_batch, targets_batch).double().numpy()
    return table


def _scene_means(predictions, targets) -> dict[str, float]:
    scores = per_view_scores(predictions, targets)
    return {name: float(scores[name].mean()) for name in METRICS}


def consistency_scores(renders, heldout_views) -> dict[str, float]:
    """3D-consistency score of one scene (3DiM, Sec. 5): NeRF renders [N, H, W, 3] at the held-out cameras
    against the held-out generated views [N, H, W, 3] -> `{"psnr": mean, "ssim": mean}` over the views."""
    return _scene_means(renders, heldout_views)


def fidelity_scores(generated, ground_truth) -> dict[str, float]:
    """Fidelity of one scene: generated views [N, H, W, 3] against the real views [N, H, W, 3] at the same
    cameras -> `{"psnr": mean, "ssim": mean}` over the views (PSNR capped at `PSNR_CAP_DB`)."""
    return _scene_means(generated, ground_truth)
