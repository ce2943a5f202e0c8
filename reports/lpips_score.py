"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric") with every
weight read from the nvsc weight cache, never downloaded.

The network is the `lpips` package's own definition (`lpips.LPIPS`), built with a random backbone and no heads
loaded (`pnet_rand=True, pretrained=False`, which reaches no download path); the backbone weights then come from
torchvision's ImageNet file in the cache and the linear heads from the lpips v0.1 file in the cache. So scores
equal `lpips.LPIPS(net=...)`'s on the same weights.

Images are [B, 3, H, W] in [0, 1]; LPIPS is a distance: lower is better.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import lpips
import torch
from torchmetrics import Metric

from reports.weights import load_state_dict, resolve
from scenes.errors import InvalidInputError

#: Backbone weights (a key of `reports.weights.MANIFEST`) of each LPIPS network.
BACKBONES = {"alex": "alexnet", "vgg": "vgg16"}
#: Channels of the five backbone layers LPIPS compares (lpips.LPIPS.chns).
CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}


def weights_needed(net: str) -> list[str]:
    """Names of the cached weight files LPIPS on `net` reads."""
    check_net(net)
    return [BACKBONES[net], f"lpips-{net}"]


def check_net(net: str) -> None:
    if net not in BACKBONES:
        raise InvalidInputError("LPIPS network", f"unknown network '{net}'", f"use one of: {', '.join(BACKBONES)}")


class _Heads(torch.nn.Module):
    """The five linear heads `lin0`..`lin4` of LPIPS, laid out as in the lpips v0.1 weight files."""

    def __init__(self, channels: tuple[int, ...]):
        super().__init__()
        for index, width in enumerate(channels):
            # use_dropout=True puts the 1x1 convolution at `model.1`, the key the published files use.
            setattr(self, f"lin{index}", lpips.NetLinLayer(width, use_dropout=True))


def lpips_heads(net: str) -> torch.nn.Module:
    """Randomly initialised LPIPS heads of `net` (the architecture a heads file must match)."""
    check_net(net)
    return _Heads(CHANNELS[net])


def _backbone_state(model: lpips.LPIPS, torchvision_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's `features.<i>.<param>` keys -> lpips' `slice<k>.<i>.<param>`: lpips cuts the same
    `features` Sequential into slices and keeps each layer's index as its name."""
    mapped = {}
    for key in model.net.state_dict():
        _, index, param = key.split(".")
        mapped[key] = torchvision_state[f"features.{index}.{param}"]
    return mapped


def build_lpips(net: str = "alex", cache: Path | None = None) -> lpips.LPIPS:
    """`lpips.LPIPS` on `net` with the backbone and heads from the cache (`WeightsMissingError` when absent)."""
    backbone_path, heads_path = (resolve(name, cache) for name in weights_needed(net))
    with warnings.catch_warnings():
        # lpips builds its backbone with torchvision's deprecated `pretrained=False`; the warning is about lpips.
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
        model = lpips.LPIPS(pretrained=False, net=net, pnet_rand=True, verbose=False)
    model.net.load_state_dict(_backbone_state(model, load_state_dict(backbone_path, f"{net} backbone weights")))
    heads = lpips_heads(net)
    heads.load_state_dict(load_state_dict(heads_path, f"LPIPS {net} heads"))
    for index in range(len(CHANNELS[net])):
        getattr(model, f"lin{index}").load_state_dict(getattr(heads, f"lin{index}").state_dict())
    return model.eval().requires_grad_(False)


@functools.lru_cache(maxsize=4)
def cached_lpips(net: str, cache: str) -> lpips.LPIPS:
    """`build_lpips`, once per process and cache folder (the pipeline scores many scenes in one process)."""
    return build_lpips(net, Path(cache))


def lpips_distance(predictions: torch.Tensor, targets: torch.Tensor, network: lpips.LPIPS,
                   batch_size: int = 32) -> torch.Tensor:
    """LPIPS of each image pair: predictions, targets [B, 3, H, W] in [0, 1] -> [B] float64."""
    parameter = next(network.parameters())
    distances = []
    with torch.no_grad():
        for start in range(0, len(predictions), batch_size):
            a = predictions[start:start + batch_size].to(parameter)
            b = targets[start:start + batch_size].to(parameter)
            distances.append(network(a, b, normalize=True).reshape(-1))  # normalize: [0, 1] -> [-1, 1]
    return torch.cat(distances).double().cpu()


class LearnedPerceptualSimilarity(Metric):
    """Mean LPIPS over every image pair seen by `update`."""

    higher_is_better = False
    is_differentiable = False
    full_state_update = False

    def __init__(self, net: str = "alex", cache: Path | None = None, **kwargs):
        super().__init__(**kwargs)
        self.network = build_lpips(net, cache)
        self.add_state("sum_distance", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        """predictions, targets: [B, 3, H, W] in [0, 1]."""
        distances = lpips_distance(predictions, targets, self.network)
        self.sum_distance += distances.sum().to(self.sum_distance)
        self.total += len(distances)

    def compute(self) -> torch.Tensor:
        return self.sum_distance / self.total
