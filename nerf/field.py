"""A radiance field whose density AND colour are functions of position only.

Without view dependence the field cannot explain views that disagree with one another, which is what makes its
held-out error a 3D-consistency score (3DiM, Watson et al. 2023, Sec. 5). The colour network reads the density
network's geometry features and nothing else, as nerfstudio's `GenerfactoField` does; no direction argument
exists anywhere in the model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nerf.encoding import make_hash_encoding
from scenes.errors import InvalidInputError

logger = logging.getLogger(__name__)


@dataclass
class FieldConfig:
    """Architecture of the hash-grid field."""

    num_levels: int = 8
    """Resolution levels of the hash grid."""
    log2_hashmap_size: int = 15
    """Entries per level of the hash table, as a power of two."""
    features_per_level: int = 2
    """Features stored per table entry."""
    base_resolution: int = 8
    """Grid resolution of the coarsest level, across the scene box."""
    max_resolution: int = 64
    """Grid resolution of the finest level, across the scene box. Finer than the pixel footprint only adds
    freedom the views cannot pin down: on 32x32 to 64x64 views of a [-1, 1]^3 box seen from ~3 units away, one
    pixel spans 1/25 to 1/50 of the box, and held-out PSNR is best at 64 (worse at 96 and above on 32x32)."""
    hidden_dim: int = 32
    """Width of the hidden layer of the density and of the colour MLP."""
    geo_feat_dim: int = 15
    """Geometry features passed from the density MLP to the colour MLP."""
    backend: str = "auto"
    """Hash encoding backend: "auto" (on CUDA: tcnn when it imports, else triton; torch on the CPU), "torch",
    "triton", "tcnn", or "nerfstudio" (nerfstudio's own pure-torch `HashEncoding`, without tiny-cuda-nn's layout:
    the peer that benchmarks compare with)."""
    mlp_precision: str = "auto"
    """Arithmetic of the two MLPs: "float32", "bfloat16" (autocast; tiny-cuda-nn's MLPs run in half precision
    too), or "auto" (bfloat16 on CUDA, float32 elsewhere). Densities and colours leave the field as float32."""
    aabb: tuple[tuple[float, float, float], tuple[float, float, float]] = ((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0))
    """Scene box (min corner, max corner) in world units; objects sit inside the unit sphere, so [-1, 1]^3."""


class _TruncExp(torch.autograd.Function):
    """exp whose gradient uses exp of the input clamped to [-15, 15] (instant-NGP's density activation): the
    forward pass may produce large densities while the backward pass stays finite."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(-15, 15))


def trunc_exp(x: Tensor) -> Tensor:
    """exp(x) with a clamped gradient (see `_TruncExp`)."""
    return _TruncExp.apply(x)


class HashGridField(nn.Module):
    """density(x) -> (sigma, geo_feat) and rgb(geo_feat) -> colour, for world positions inside `config.aabb`."""

    def __init__(self, config: FieldConfig, device: torch.device | str = "cpu"):
        super().__init__()
        aabb = torch.tensor(config.aabb, dtype=torch.float32)
        if aabb.shape != (2, 3) or not bool((aabb[1] > aabb[0]).all()):
            raise InvalidInputError("FieldConfig.aabb", f"expected ((xmin, ymin, zmin), (xmax, ymax, zmax)) with "
                                                        f"min < max, got {config.aabb}",
                                    "give the box that contains the object, e.g. ((-1, -1, -1), (1, 1, 1))")
        for name in ("hidden_dim", "geo_feat_dim"):
            if int(getattr(config, name)) < 1:
                raise InvalidInputError(f"FieldConfig.{name}", f"must be a positive integer, got "
                                                               f"{getattr(config, name)}", "use the default")
        if config.mlp_precision not in ("auto", "float32", "bfloat16"):
            raise InvalidInputError("FieldConfig.mlp_precision", f"unknown precision {config.mlp_precision!r}",
                                    "use 'auto', 'float32' or 'bfloat16'")
        self.config = config
        self.register_buffer("aabb", aabb)
        self.encoding, self.backend = make_hash_encoding(config, device)
        self.mlp_bfloat16 = config.mlp_precision == "bfloat16" or (config.mlp_precision == "auto"
                                                                   and torch.device(device).type == "cuda")
        if self.mlp_bfloat16 and self.backend == "triton":
            self.encoding.out_dtype = torch.bfloat16  # what the first layer reads: half the bytes, no cast
        encoded_dim = config.num_levels * config.features_per_level
        self.density_mlp = nn.Sequential(nn.Linear(encoded_dim, config.hidden_dim), nn.ReLU(),
                                         nn.Linear(config.hidden_dim, 1 + config.geo_feat_dim))
        self.color_mlp = nn.Sequential(nn.Linear(config.geo_feat_dim, config.hidden_dim), nn.ReLU(),
                                       nn.Linear(config.hidden_dim, 3))
        self.to(device)

    def normalize(self, positions: Tensor) -> Tensor:
        """World positions [P, 3] -> [P, 3] in [0, 1] across the scene box (clamped: the grid ends there)."""
        return ((positions - self.aabb[0]) / (self.aabb[1] - self.aabb[0])).clamp(0.0, 1.0)

    def density(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Volume density sigma [P] (per world unit) and geometry features [P, geo_feat_dim] at positions [P, 3]."""
        encoded = self.encoding(self.normalize(positions))  # [P, L * F]
        with self._mlp_autocast(positions):
            hidden = self.density_mlp(encoded if self.mlp_bfloat16 else encoded.float())  # [P, 1 + geo_feat_dim]
        # The shift by -1 starts the fit from a mostly transparent box (as nerfstudio's fields do).
        sigma = trunc_exp(hidden[:, 0].float() - 1.0)
        return sigma, hidden[:, 1:]

    def rgb(self, geo_feat: Tensor) -> Tensor:
        """Colour [P, 3] in (0, 1) from geometry features [P, geo_feat_dim] alone."""
        with self._mlp_autocast(geo_feat):
            logits = self.color_mlp(geo_feat)
        return torch.sigmoid(logits.float())

    def _mlp_autocast(self, like: Tensor) -> torch.autocast:
        # No cast cache: torch's CUDA-graph notes ask for it off in captured regions (a cast cached outside a capture
        # would be replayed stale); each weight is cast once per pass anyway.
        return torch.autocast(like.device.type, dtype=torch.bfloat16, enabled=self.mlp_bfloat16, cache_enabled=False)

    def forward(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Density [P] and colour [P, 3] at world positions [P, 3]."""
        sigma, geo_feat = self.density(positions)
        return sigma, self.rgb(geo_feat)

    def mlp_parameters(self) -> list[nn.Parameter]:
        """Weights of the two MLPs (the ones that take weight decay; the hash table does not)."""
        return list(self.density_mlp.parameters()) + list(self.color_mlp.parameters())

    def encoding_parameters(self) -> list[nn.Parameter]:
        """Parameters of the hash encoding."""
        return list(self.encoding.parameters())
