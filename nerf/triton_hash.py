"""The multiresolution hash encoding (instant-NGP, Mueller et al. 2022) as Triton kernels: the fast GPU backend.

Same layout, hash, level scales, interpolation and output values [P, L * F] as `TorchHashEncoding` (tiny-cuda-nn's,
see `nerf/hash_grid.py`): a drop-in whose `hash_table` [rows, F] can be copied between the two (the output is
stored feature-major by default, see `triton_hash_encode`). The forward pass
runs one program per (block of points, level) that hashes the 8 cell corners and interpolates trilinearly; the
backward pass scatters the weighted output gradient into the table with atomic adds, so neither pass
materialises the [L, 8, P] corner indices and weights that the torch version builds.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from nerf.hash_grid import TorchHashEncoding

# Points per program and warps per program. Both passes are bound by memory traffic (random table reads, atomics,
# the [P, L * F] output); 128 to 1024 points and 2 to 8 warps are within 5% of each other on an H100
# (`python benchmarks/nerf.py --breakdown` sweeps them).
BLOCK_POINTS = 256
NUM_WARPS = 4
# The vertex position is one explicit fused multiply-add (as tiny-cuda-nn's); no other operation may be fused, so
# the weights are rounded exactly as the torch reference rounds them.
_LAUNCH_OPTIONS = dict(enable_fp_fusion=False)


@triton.jit
def _axis_vertices(points_ptr, offs_points, mask_points, axis: tl.constexpr, scale):
    """Lower vertex coordinate (int32) along one axis and the upper vertex's weight [BLOCK]: tiny-cuda-nn's
    `pos_fract`, s * x + 0.5 in one fused multiply-add."""
    x = tl.load(points_ptr + offs_points * 3 + axis, mask=mask_points, other=0.0)
    position = tl.fma(x, scale, 0.5)
    lower = tl.floor(position)
    return lower.to(tl.int32), position - lower


@triton.jit
def _corner_features_offsets(dense_x, dense_y, dense_z, hash_x, hash_y, hash_z, size, level_offset, hashed,
                             features_range, FEATURES: tl.constexpr):
    """Flat offsets [BLOCK, FEATURES_P2] into the [rows, F] table of one corner's features, from the corner's
    per-axis dense terms (x, y R, z R^2) and per-axis hash terms (coordinate times prime, uint32).

    As `nerf.hash_grid.hash_grid_rows`: a hashed level's size is a power of two, and a dense index is below twice
    the size, so one conditional subtraction takes it modulo the size.
    """
    dense = dense_x + dense_y + dense_z
    dense = tl.where(dense >= size, dense - size, dense)
    spatial_hash = ((hash_x ^ hash_y ^ hash_z) & (size - 1).to(tl.uint32)).to(tl.int32, bitcast=True)
    row = (tl.where(hashed, spatial_hash, dense) + level_offset).to(tl.int64)
    return row[:, None] * FEATURES + features_range[None, :]


@triton.jit
def _level_setup(points_ptr, levels_ptr, scales_ptr, offs_points, mask_points, level):
    """Per-axis dense and hash terms of the lower and upper vertex, the axes' weights, and the level's row count,
    first row and hashing flag."""
    scale = tl.load(scales_ptr + level)
    resolution = tl.load(levels_ptr + level * 4)
    size = tl.load(levels_ptr + level * 4 + 1)
    level_offset = tl.load(levels_ptr + level * 4 + 2)
    hashed = tl.load(levels_ptr + level * 4 + 3) != 0
    x0, fx = _axis_vertices(points_ptr, offs_points, mask_points, 0, scale)
    y0, fy = _axis_vertices(points_ptr, offs_points, mask_points, 1, scale)
    z0, fz = _axis_vertices(points_ptr, offs_points, mask_points, 2, scale)
    # Dense terms x + y R + z R^2 (int32; they overflow only on hashed levels, which discard them).
    dx0, dx1 = x0, x0 + 1
    dy0, dy1 = y0 * resolution, (y0 + 1) * resolution
    dz0, dz1 = z0 * resolution * resolution, (z0 + 1) * resolution * resolution
    # Hash terms in uint32: products wrap modulo 2^32 as tiny-cuda-nn's arithmetic does.
    ux, uy, uz = x0.to(tl.uint32, bitcast=True), y0.to(tl.uint32, bitcast=True), z0.to(tl.uint32, bitcast=True)
    hx0, hx1 = ux, ux + 1
    hy0, hy1 = uy * 2654435761, (uy + 1) * 2654435761
    hz0, hz1 = uz * 805459861, (uz + 1) * 805459861
    return (dx0, dx1, dy0, dy1, dz0, dz1, hx0, hx1, hy0, hy1, hz0, hz1, fx, fy, fz, size, level_offset, hashed)


@triton.jit
def _hash_encode_forward_kernel(points_ptr, table_ptr, scales_ptr, levels_ptr, out_ptr, num_points,
                                out_stride_point, out_stride_column, FEATURES: tl.constexpr,
                                FEATURES_P2: tl.constexpr, BLOCK: tl.constexpr):
    level = tl.program_id(1)
    offs_points = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask_points = offs_points < num_points
    features_range = tl.arange(0, FEATURES_P2)  # padded to a power of two, as tl.arange needs
    mask = mask_points[:, None] & (features_range[None, :] < FEATURES)
    (dx0, dx1, dy0, dy1, dz0, dz1, hx0, hx1, hy0, hy1, hz0, hz1, fx, fy, fz, size, level_offset,
     hashed) = _level_setup(points_ptr, levels_ptr, scales_ptr, offs_points, mask_points, level)
    gx, gy, gz = 1 - fx, 1 - fy, 1 - fz
    # The 8 corners, (x, y, z) in {lower, upper}^3, each weighted by the product of its axes' weights.
    acc = (gx * gy * gz)[:, None] * tl.load(table_ptr + _corner_features_offsets(
        dx0, dy0, dz0, hx0, hy0, hz0, size, level_offset, hashed, features_range, FEATURES), mask=mask, other=0.0)
    acc += (gx * gy * fz)[:, None] * tl.load(table_ptr + _corner_features_offsets(
        dx0, dy0, dz1, hx0, hy0, hz1, size, level_offset, hashed, features_range, FEATURES), mask=mask, other=0.0)
    acc += (gx * fy * gz)[:, None] * tl.load(table_ptr + _corner_features_offsets(
        dx0, dy1, dz0, hx0, hy1, hz0, size, level_offset, hashed, features_range, FEATURES), mask=mask, other=0.0)
    acc += (gx * fy * fz)[:, None] * tl.load(table_ptr + _corner_features_offsets(
        dx0, dy1, dz1, hx0, hy1, hz1, size, level_offset, hashed, features_range, FEATURES), mask=mask, other=0.0)
    acc += (fx * gy * gz)[:, None] * tl.load(table_ptr + _corner_features_offsets(
        dx1, dy0, dz0, hx1, hy0, hz0, size, level_offset, hashed, features_range, FEATURES), mask=mask, other=0.0)
    acc += (fx * gy * fz)[:, None] * tl.load(table_ptr + _corner_features_offsets(
        dx1, dy0, dz1, hx1, hy0, hz1, size, level_offset, hashed, features_range, FEATURES), mask=mask, other=0.0)
    acc += (fx * fy * gz)[:, None] * tl.load(table_ptr + _corner_features_offsets(
        dx1, dy1, dz0, hx1, hy1, hz0, size, level_offset, hashed, features_range, FEATURES), mask=mask, other=0.0)
    acc += (fx * fy * fz)[:, None] * tl.load(table_ptr + _corner_features_offsets(
        dx1, dy1, dz1, hx1, hy1, hz1, size, level_offset, hashed, features_range, FEATURES), mask=mask, other=0.0)
    # Output [P, L * F], column level * F + feature as tiny-cuda-nn orders them; strides of either layout.
    out_offsets = offs_points.to(tl.int64)[:, None] * out_stride_point \
        + (level * FEATURES + features_range[None, :]).to(tl.int64) * out_stride_column
    tl.store(out_ptr + out_offsets, acc.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _hash_encode_backward_kernel(points_ptr, grad_out_ptr, scales_ptr, levels_ptr, grad_table_ptr, num_points,
                                 grad_stride_point, grad_stride_column, FEATURES: tl.constexpr,
                                 FEATURES_P2: tl.constexpr, BLOCK: tl.constexpr):
    level = tl.program_id(1)
    offs_points = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask_points = offs_points < num_points
    features_range = tl.arange(0, FEATURES_P2)
    mask = mask_points[:, None] & (features_range[None, :] < FEATURES)
    (dx0, dx1, dy0, dy1, dz0, dz1, hx0, hx1, hy0, hy1, hz0, hz1, fx, fy, fz, size, level_offset,
     hashed) = _level_setup(points_ptr, levels_ptr, scales_ptr, offs_points, mask_points, level)
    gx, gy, gz = 1 - fx, 1 - fy, 1 - fz
    grad_offsets = offs_points.to(tl.int64)[:, None] * grad_stride_point \
        + (level * FEATURES + features_range[None, :]).to(tl.int64) * grad_stride_column
    grad = tl.load(grad_out_ptr + grad_offsets, mask=mask, other=0.0).to(tl.float32)  # [BLOCK, FEATURES_P2]
    # d out / d table[row] = the corner's weight; many points share a row (hash collisions, coarse levels), so the
    # contributions must be accumulated atomically. (sm_90's two-float `red.global.v2.f32.add` was measured as no
    # faster than these scalar atomics on an H100: the atomics are not what bounds this pass.)
    tl.atomic_add(grad_table_ptr + _corner_features_offsets(dx0, dy0, dz0, hx0, hy0, hz0, size, level_offset, hashed,
                                                            features_range, FEATURES),
                  (gx * gy * gz)[:, None] * grad, mask=mask, sem="relaxed")
    tl.atomic_add(grad_table_ptr + _corner_features_offsets(dx0, dy0, dz1, hx0, hy0, hz1, size, level_offset, hashed,
                                                            features_range, FEATURES),
                  (gx * gy * fz)[:, None] * grad, mask=mask, sem="relaxed")
    tl.atomic_add(grad_table_ptr + _corner_features_offsets(dx0, dy1, dz0, hx0, hy1, hz0, size, level_offset, hashed,
                                                            features_range, FEATURES),
                  (gx * fy * gz)[:, None] * grad, mask=mask, sem="relaxed")
    tl.atomic_add(grad_table_ptr + _corner_features_offsets(dx0, dy1, dz1, hx0, hy1, hz1, size, level_offset, hashed,
                                                            features_range, FEATURES),
                  (gx * fy * fz)[:, None] * grad, mask=mask, sem="relaxed")
    tl.atomic_add(grad_table_ptr + _corner_features_offsets(dx1, dy0, dz0, hx1, hy0, hz0, size, level_offset, hashed,
                                                            features_range, FEATURES),
                  (fx * gy * gz)[:, None] * grad, mask=mask, sem="relaxed")
    tl.atomic_add(grad_table_ptr + _corner_features_offsets(dx1, dy0, dz1, hx1, hy0, hz1, size, level_offset, hashed,
                                                            features_range, FEATURES),
                  (fx * gy * fz)[:, None] * grad, mask=mask, sem="relaxed")
    tl.atomic_add(grad_table_ptr + _corner_features_offsets(dx1, dy1, dz0, hx1, hy1, hz0, size, level_offset, hashed,
                                                            features_range, FEATURES),
                  (fx * fy * gz)[:, None] * grad, mask=mask, sem="relaxed")
    tl.atomic_add(grad_table_ptr + _corner_features_offsets(dx1, dy1, dz1, hx1, hy1, hz1, size, level_offset, hashed,
                                                            features_range, FEATURES),
                  (fx * fy * fz)[:, None] * grad, mask=mask, sem="relaxed")


class _HashEncodeFunction(torch.autograd.Function):
    """positions [P, 3] in [0, 1], table [rows, F] -> encoded [P, L * F]; differentiable in the table only."""

    @staticmethod
    def forward(ctx, points: Tensor, table: Tensor, level_scales: Tensor, levels: Tensor, block_points: int,
                num_warps: int, feature_major: bool, out_dtype: torch.dtype) -> Tensor:
        num_points = points.shape[0]
        features = table.shape[1]
        num_levels = level_scales.shape[0]
        columns = num_levels * features
        if feature_major:  # [L * F, P] storage seen as [P, L * F]: each program's stores are contiguous
            encoded = torch.empty((columns, num_points), dtype=out_dtype, device=points.device).t()
        else:
            encoded = torch.empty((num_points, columns), dtype=out_dtype, device=points.device)
        if num_points > 0:
            # Levels on the slower grid axis: the programs of one level run together, so its table (4 MiB at 2^19
            # x 2 floats) stays in L2 while they gather from it.
            grid = (triton.cdiv(num_points, block_points), num_levels)
            _hash_encode_forward_kernel[grid](points, table, level_scales, levels, encoded, num_points,
                                              *encoded.stride(), FEATURES=features,
                                              FEATURES_P2=triton.next_power_of_2(features), BLOCK=block_points,
                                              num_warps=num_warps, **_LAUNCH_OPTIONS)
        ctx.save_for_backward(points, level_scales, levels)
        ctx.table_shape = table.shape
        ctx.block_points, ctx.num_warps = block_points, num_warps
        return encoded

    @staticmethod
    def backward(ctx, grad_encoded: Tensor):
        points, level_scales, levels = ctx.saved_tensors
        num_points, num_levels = points.shape[0], level_scales.shape[0]
        features = ctx.table_shape[1]
        grad_table = torch.zeros(ctx.table_shape, dtype=torch.float32, device=points.device)
        if num_points > 0:
            grid = (triton.cdiv(num_points, ctx.block_points), num_levels)
            _hash_encode_backward_kernel[grid](points, grad_encoded, level_scales, levels, grad_table,
                                               num_points, *grad_encoded.stride(), FEATURES=features,
                                               FEATURES_P2=triton.next_power_of_2(features), BLOCK=ctx.block_points,
                                               num_warps=ctx.num_warps, **_LAUNCH_OPTIONS)
        return None, grad_table, None, None, None, None, None, None


def level_table(encoding: TorchHashEncoding) -> Tensor:
    """[L, 4] int32 rows (resolution, rows, first row, hashed) of `encoding`'s levels, as the kernels read them."""
    return torch.stack([encoding.level_resolutions, encoding.level_sizes, encoding.level_offsets,
                        encoding.level_hashed.to(torch.int32)], dim=1).contiguous()


def triton_hash_encode(points: Tensor, table: Tensor, level_scales: Tensor, levels: Tensor,
                       block_points: int = BLOCK_POINTS, num_warps: int = NUM_WARPS, feature_major: bool = True,
                       out_dtype: torch.dtype = torch.float32) -> Tensor:
    """Encode positions [P, 3] in [0, 1] with `table` [rows, F], grid scales [L] float32 and `levels` [L, 4]
    (`level_table`); returns [P, L * F] of `out_dtype` (float32, or bfloat16 for a bf16 MLP: half the bytes
    written and read back; the sums are float32 either way).

    `block_points` (a power of two) and `num_warps` set the launch shape of both passes (benchmarks sweep them);
    `feature_major` returns the transpose of a contiguous [L * F, P] tensor instead of a contiguous [P, L * F] one
    (same values; matrix products read either layout without a copy, and the full training step of the benchmark
    is about 7-9% faster with it on an H100).
    """
    return _HashEncodeFunction.apply(points.float().contiguous(), table.contiguous(),
                                     level_scales.float().contiguous(), levels.contiguous(), block_points, num_warps,
                                     feature_major, out_dtype)


class TritonHashEncoding(TorchHashEncoding):
    """The hash encoding on Triton kernels: parameters, buffers and outputs of `TorchHashEncoding`.

    Input positions [P, 3] in [0, 1]; output [P, num_levels * features_per_level] (float32 unless `out_dtype`
    says otherwise). The kernels give no gradient with respect to the positions, so positions that require one
    (normals from the density gradient, say) take the torch path of the parent class, which gives the same values.
    """

    #: Launch settings of the kernels (see `triton_hash_encode`); plain attributes so a benchmark can sweep them.
    block_points: int = BLOCK_POINTS
    num_warps: int = NUM_WARPS
    feature_major: bool = True
    out_dtype: torch.dtype = torch.float32

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("level_rows", level_table(self), persistent=False)  # [L, 4] int32

    def forward(self, positions: Tensor) -> Tensor:
        if positions.requires_grad and torch.is_grad_enabled():
            return super().forward(positions)
        return triton_hash_encode(positions, self.hash_table, self.level_scales, self.level_rows,
                                  self.block_points, self.num_warps, self.feature_major, self.out_dtype)
