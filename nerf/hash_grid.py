"""The multiresolution hash encoding (instant-NGP, Mueller et al. 2022, Sec. 3) laid out and hashed exactly as
tiny-cuda-nn's `GridEncoding` (`include/tiny-cuda-nn/encodings/grid.h`), in readable torch: the reference that
the fast backends are tested against, and the CPU backend.

tiny-cuda-nn's layout, which differs from the paper's equations and from nerfstudio's torch `HashEncoding`:
- level l has grid scale s_l = 2^(l * log2(b)) * N_min - 1 (float32; b the per-level growth factor) and
  resolution R_l = ceil(s_l) + 1 vertices per axis; a point x in [0, 1] sits at s_l * x + 0.5 (one fused
  multiply-add), its cell's lower vertex is the floor of that and the trilinear weights its fraction;
- all levels share one parameter array: level l owns P_l = min(next_multiple(R_l^3, 8), T) rows starting at
  the running sum of the previous levels' P (the per-level offsets nerfstudio's torch version lacks);
- a level whose dense grid fits (P_l >= R_l^3) indexes vertex (i, j, k) densely as i + j R_l + k R_l^2; the
  others use the spatial hash i * 1 xor j * 2654435761 xor k * 805459861 in uint32 arithmetic (Eq. 4);
  either index is taken modulo P_l.
So coarse levels have no collisions, and a table copied from or to tiny-cuda-nn gives the same features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

# The hash primes of Eq. 4 as int32 with the same low 32 bits: int32 products wrap modulo 2^32 exactly like the
# uint32 arithmetic of tiny-cuda-nn, and xor and the power-of-two mask only look at those bits.
PRIMES = (1, 2654435761, 805459861)
_PRIMES_INT32 = tuple(p - 2**32 if p >= 2**31 else p for p in PRIMES)


@dataclass(frozen=True)
class GridLayout:
    """Where each level of a hash grid lives in the shared parameter array (tiny-cuda-nn's offset table)."""

    scales: np.ndarray
    """[L] float32 grid scales s_l (a point x maps to s_l * x + 0.5 in vertex units)."""
    resolutions: np.ndarray
    """[L] int64 vertices per axis R_l = ceil(s_l) + 1."""
    sizes: np.ndarray
    """[L] int64 rows P_l of each level (a power of two for hashed levels)."""
    offsets: np.ndarray
    """[L] int64 first row of each level; the table has offsets[-1] + sizes[-1] rows."""
    hashed: np.ndarray
    """[L] bool: the level uses the spatial hash (its dense grid would not fit in T rows)."""

    @property
    def num_rows(self) -> int:
        """Rows of the shared table."""
        return int(self.offsets[-1] + self.sizes[-1])


def per_level_scale(num_levels: int, base_resolution: int, max_resolution: int) -> float:
    """Growth factor b between levels, from the coarsest to the finest resolution (nerfstudio's formula)."""
    if num_levels == 1:
        return 1.0
    return math.exp((math.log(max_resolution) - math.log(base_resolution)) / (num_levels - 1))


def grid_layout(num_levels: int, base_resolution: int, max_resolution: int, log2_hashmap_size: int) -> GridLayout:
    """tiny-cuda-nn's per-level scales, resolutions, row counts and offsets (float32 arithmetic as its C++)."""
    log2_scale = np.float32(np.log2(np.float32(per_level_scale(num_levels, base_resolution, max_resolution))))
    levels = np.arange(num_levels, dtype=np.float32)
    scales = (np.exp2(levels * log2_scale) * np.float32(base_resolution) - np.float32(1.0)).astype(np.float32)
    resolutions = np.ceil(scales).astype(np.int64) + 1
    dense = resolutions**3
    sizes = np.minimum((dense + 7) // 8 * 8, 2**log2_hashmap_size)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    return GridLayout(scales, resolutions, sizes.astype(np.int64), offsets, sizes < dense)


class TorchHashEncoding(nn.Module):
    """Hash encoding in plain torch. Input positions [P, 3] in [0, 1]; output [P, num_levels * features]
    float32, column l * features + f for feature f of level l (as tiny-cuda-nn orders them).

    `hash_table` [rows, features] is tiny-cuda-nn's parameter array viewed as rows (`GridLayout.num_rows`).
    """

    def __init__(self, num_levels: int, min_res: int, max_res: int, log2_hashmap_size: int, features_per_level: int):
        super().__init__()
        self.num_levels, self.features_per_level = num_levels, features_per_level
        self.layout = grid_layout(num_levels, min_res, max_res, log2_hashmap_size)
        # Uniform in [-1e-3, 1e-3], nerfstudio's initialisation (tiny-cuda-nn's is 1e-4; held-out PSNR of CPU fits
        # differed by less than the spread between seeds).
        self.hash_table = nn.Parameter((torch.rand(self.layout.num_rows, features_per_level) * 2 - 1) * 1e-3)
        self.register_buffer("level_scales", torch.as_tensor(self.layout.scales), persistent=False)  # [L] float32
        self.register_buffer("level_hashed", torch.as_tensor(self.layout.hashed), persistent=False)  # [L] bool
        for name in ("resolutions", "sizes", "offsets"):  # [L] int32
            self.register_buffer(f"level_{name}", torch.as_tensor(getattr(self.layout, name).astype(np.int32)),
                                 persistent=False)

    def get_out_dim(self) -> int:
        """Width of the encoding: levels x features per level."""
        return self.num_levels * self.features_per_level

    def forward(self, positions: Tensor) -> Tensor:
        # Work in [L, ..., P] layouts: the point axis innermost keeps every elementwise op contiguous.
        points = positions.t()  # [3, P]
        num_points, levels, features = points.shape[1], self.num_levels, self.features_per_level
        # fmaf(s, x, 0.5): the float64 product of two float32 numbers is exact, so one rounding to float32 follows.
        scaled = (points.double()[None] * self.level_scales.double().view(-1, 1, 1) + 0.5).float()  # [L, 3, P]
        lower = torch.floor(scaled)
        frac = scaled - lower  # [L, 3, P] weight of each axis's upper vertex
        lower = lower.to(torch.int32)
        # Vertex coordinates along each axis, lower and upper: [L, 3, 2, P].
        vertex = torch.stack([lower, lower + 1], dim=2)
        # Corner (i, j, k) in {0, 1}^3 sits at [:, i, j, k] of the [L, 2, 2, 2, P] arrays below.
        x, y, z = vertex[:, 0, :, None, None], vertex[:, 1, None, :, None], vertex[:, 2, None, None, :]
        row = hash_grid_rows(x, y, z, *(getattr(self, f"level_{name}").view(-1, 1, 1, 1, 1)
                                        for name in ("resolutions", "sizes", "offsets", "hashed")))
        axis_weight = torch.stack([1 - frac, frac], dim=2)  # [L, 3, 2, P]
        weight = (axis_weight[:, 0, :, None, None] * axis_weight[:, 1, None, :, None]
                  * axis_weight[:, 2, None, None, :]).view(levels, 8, num_points)  # [L, 8, P]
        corner_features = gather_rows_transposed(self.hash_table, row.reshape(-1).to(torch.int64))  # [F, L * 8 * P]
        corner_features = corner_features.view(features, levels, 8, num_points)
        encoded = (corner_features * weight).sum(dim=2)  # [F, L, P]
        return encoded.permute(2, 1, 0).reshape(num_points, levels * features)


def hash_grid_rows(x: Tensor, y: Tensor, z: Tensor, resolution: Tensor, size: Tensor, offset: Tensor,
                   hashed: Tensor) -> Tensor:
    """Table rows (int32) of the grid vertices with int32 coordinates x, y, z on levels with the given resolution,
    row count, first row and hashing (all broadcast together).

    Modulo P_l without a division: a hashed level's P_l is a power of two (a mask), and a dense index is below
    2 P_l (its coordinates reach R_l at most, and R_l^3 + R_l^2 + R_l < 2 R_l^3 <= 2 P_l), so one conditional
    subtraction suffices. The dense index of a hashed level may overflow int32; it is discarded there.
    """
    dense = x + (y + z * resolution) * resolution
    dense = torch.where(dense >= size, dense - size, dense)
    spatial_hash = (x * _PRIMES_INT32[0]) ^ (y * _PRIMES_INT32[1]) ^ (z * _PRIMES_INT32[2])
    return torch.where(hashed, spatial_hash & (size - 1), dense) + offset


class _GatherRowsTransposed(torch.autograd.Function):
    """table[index].T, whose backward is one scatter-add along the rows of a [F, N] gradient.

    torch's own backward of row indexing (index_add / index_put with accumulate) is several times slower on a
    CPU than this scatter-add, and the table gradient is a bottleneck of a fit.
    """

    @staticmethod
    def forward(ctx, table: Tensor, index: Tensor) -> Tensor:
        ctx.save_for_backward(index)
        ctx.num_rows = table.shape[0]
        return table.t().index_select(1, index)

    @staticmethod
    def backward(ctx, grad_columns: Tensor):
        (index,) = ctx.saved_tensors
        features = grad_columns.shape[0]
        grad_table = torch.zeros((features, ctx.num_rows), dtype=grad_columns.dtype, device=grad_columns.device)
        grad_table.scatter_add_(1, index.view(1, -1).expand(features, -1), grad_columns.contiguous())
        return grad_table.t().contiguous(), None


def gather_rows_transposed(table: Tensor, index: Tensor) -> Tensor:
    """Rows of `table` [N, F] at int64 `index` [M], as columns [F, M]; differentiable in `table`."""
    return _GatherRowsTransposed.apply(table, index)
