"""The multiresolution hash encoding (instant-NGP, Mueller et al. 2022) as Triton kernels: the fast GPU backend.

Same table, hash, level scales, interpolation and output values [P, L * F] as `TorchHashEncoding` (and so as
nerfstudio's torch `HashEncoding`): a drop-in whose `hash_table` [L * T, F] can be copied between the two (the
output is stored feature-major by default, see `triton_hash_encode`). The forward pass
runs one program per (block of points, level) that hashes the 8 cell corners and interpolates trilinearly; the
backward pass scatters the weighted output gradient into the table with atomic adds, so neither pass
materialises the [L, 8, P] corner indices and weights that the torch version builds.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from nerf.encoding import TorchHashEncoding

# Points per program and warps per program. Both passes are bound by memory traffic (random table reads, atomics,
# the [P, L * F] output); 128 to 1024 points and 2 to 8 warps are within 5% of each other on an H100
# (`python benchmarks/nerf.py --breakdown` sweeps them).
BLOCK_POINTS = 256
NUM_WARPS = 4
# Without fused multiply-adds the kernels round `x * scale` before `- floor(...)` exactly as the torch reference
# does; a fused version differs from it by up to one ulp of the scaled coordinate (1e-4 at resolution 1024).
_LAUNCH_OPTIONS = dict(enable_fp_fusion=False)


@triton.jit
def _axis_hashes(points_ptr, offs_points, mask_points, axis: tl.constexpr, scale, prime: tl.constexpr):
    """Hashes of the lower and upper grid coordinate along one axis, and the upper corner's weight [BLOCK]."""
    scaled = tl.load(points_ptr + offs_points * 3 + axis, mask=mask_points, other=0.0) * scale
    lower = tl.floor(scaled)
    frac = scaled - lower
    # uint32 products wrap modulo 2^32 like tiny-cuda-nn's arithmetic; the table size is a power of two, so the
    # low bits taken below equal those of nerfstudio's int64 product modulo the table size.
    lower_u32 = lower.to(tl.int32).to(tl.uint32, bitcast=True)
    return lower_u32 * prime, (lower_u32 + 1) * prime, frac


@triton.jit
def _corner_offsets(hash_x, hash_y, hash_z, level_base, features_range, FEATURES: tl.constexpr,
                    TABLE_SIZE: tl.constexpr):
    """Flat offsets [BLOCK, FEATURES_P2] into the [L * T, F] table of one corner's features."""
    row = ((hash_x ^ hash_y ^ hash_z) & (TABLE_SIZE - 1)).to(tl.int64) + level_base
    return row[:, None] * FEATURES + features_range[None, :]


@triton.jit
def _gather_corner(table_ptr, hash_x, hash_y, hash_z, weight, mask, level_base, features_range,
                   FEATURES: tl.constexpr, TABLE_SIZE: tl.constexpr):
    """weight [BLOCK] times the table rows of one corner: [BLOCK, FEATURES_P2] (the twin of `_scatter_corner`)."""
    rows = tl.load(table_ptr + _corner_offsets(hash_x, hash_y, hash_z, level_base, features_range, FEATURES,
                                               TABLE_SIZE), mask=mask, other=0.0)
    return weight[:, None] * rows


@triton.jit
def _hash_encode_forward_kernel(points_ptr, table_ptr, scales_ptr, out_ptr, num_points, out_stride_point,
                                out_stride_column, TABLE_SIZE: tl.constexpr, NUM_LEVELS: tl.constexpr,
                                FEATURES: tl.constexpr, FEATURES_P2: tl.constexpr, BLOCK: tl.constexpr):
    level = tl.program_id(1)
    offs_points = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask_points = offs_points < num_points
    features_range = tl.arange(0, FEATURES_P2)  # padded to a power of two, as tl.arange needs
    mask = mask_points[:, None] & (features_range[None, :] < FEATURES)
    scale = tl.load(scales_ptr + level)
    level_base = level.to(tl.int64) * TABLE_SIZE
    hx0, hx1, fx = _axis_hashes(points_ptr, offs_points, mask_points, 0, scale, 1)
    hy0, hy1, fy = _axis_hashes(points_ptr, offs_points, mask_points, 1, scale, 2654435761)
    hz0, hz1, fz = _axis_hashes(points_ptr, offs_points, mask_points, 2, scale, 805459861)
    gx0, gy0, gz0 = 1 - fx, 1 - fy, 1 - fz
    # The 8 corners, (x, y, z) in {lower, upper}^3, each weighted by the product of its axes' weights.
    acc = _gather_corner(table_ptr, hx0, hy0, hz0, gx0 * gy0 * gz0, mask, level_base, features_range, FEATURES,
                         TABLE_SIZE)
    acc += _gather_corner(table_ptr, hx0, hy0, hz1, gx0 * gy0 * fz, mask, level_base, features_range, FEATURES,
                          TABLE_SIZE)
    acc += _gather_corner(table_ptr, hx0, hy1, hz0, gx0 * fy * gz0, mask, level_base, features_range, FEATURES,
                          TABLE_SIZE)
    acc += _gather_corner(table_ptr, hx0, hy1, hz1, gx0 * fy * fz, mask, level_base, features_range, FEATURES,
                          TABLE_SIZE)
    acc += _gather_corner(table_ptr, hx1, hy0, hz0, fx * gy0 * gz0, mask, level_base, features_range, FEATURES,
                          TABLE_SIZE)
    acc += _gather_corner(table_ptr, hx1, hy0, hz1, fx * gy0 * fz, mask, level_base, features_range, FEATURES,
                          TABLE_SIZE)
    acc += _gather_corner(table_ptr, hx1, hy1, hz0, fx * fy * gz0, mask, level_base, features_range, FEATURES,
                          TABLE_SIZE)
    acc += _gather_corner(table_ptr, hx1, hy1, hz1, fx * fy * fz, mask, level_base, features_range, FEATURES,
                          TABLE_SIZE)
    # Output [P, L * F], column level * F + feature as nerfstudio flattens [..., L, F]; strides of either layout.
    out_offsets = offs_points.to(tl.int64)[:, None] * out_stride_point \
        + (level * FEATURES + features_range[None, :]).to(tl.int64) * out_stride_column
    tl.store(out_ptr + out_offsets, acc, mask=mask)


@triton.jit
def _scatter_corner(grad_table_ptr, hash_x, hash_y, hash_z, weight, grad, mask, level_base, features_range,
                    FEATURES: tl.constexpr, TABLE_SIZE: tl.constexpr):
    """Add weight [BLOCK] times the output gradient [BLOCK, FEATURES_P2] into the table rows of one corner."""
    tl.atomic_add(grad_table_ptr + _corner_offsets(hash_x, hash_y, hash_z, level_base, features_range, FEATURES,
                                                   TABLE_SIZE),
                  weight[:, None] * grad, mask=mask, sem="relaxed")


@triton.jit
def _hash_encode_backward_kernel(points_ptr, grad_out_ptr, scales_ptr, grad_table_ptr, num_points,
                                 grad_stride_point, grad_stride_column, TABLE_SIZE: tl.constexpr,
                                 NUM_LEVELS: tl.constexpr, FEATURES: tl.constexpr, FEATURES_P2: tl.constexpr,
                                 BLOCK: tl.constexpr):
    level = tl.program_id(1)
    offs_points = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask_points = offs_points < num_points
    features_range = tl.arange(0, FEATURES_P2)
    mask = mask_points[:, None] & (features_range[None, :] < FEATURES)
    scale = tl.load(scales_ptr + level)
    level_base = level.to(tl.int64) * TABLE_SIZE
    hx0, hx1, fx = _axis_hashes(points_ptr, offs_points, mask_points, 0, scale, 1)
    hy0, hy1, fy = _axis_hashes(points_ptr, offs_points, mask_points, 1, scale, 2654435761)
    hz0, hz1, fz = _axis_hashes(points_ptr, offs_points, mask_points, 2, scale, 805459861)
    gx0, gy0, gz0 = 1 - fx, 1 - fy, 1 - fz
    grad_offsets = offs_points.to(tl.int64)[:, None] * grad_stride_point \
        + (level * FEATURES + features_range[None, :]).to(tl.int64) * grad_stride_column
    grad = tl.load(grad_out_ptr + grad_offsets, mask=mask, other=0.0)  # [BLOCK, FEATURES_P2]
    # d out / d table[row] = the corner's weight; many points share a row (hash collisions, coarse levels), so the
    # contributions must be accumulated atomically. (sm_90's two-float `red.global.v2.f32.add` was measured as no
    # faster than these scalar atomics on an H100: the atomics are not what bounds this pass.)
    _scatter_corner(grad_table_ptr, hx0, hy0, hz0, gx0 * gy0 * gz0, grad, mask, level_base, features_range, FEATURES,
                    TABLE_SIZE)
    _scatter_corner(grad_table_ptr, hx0, hy0, hz1, gx0 * gy0 * fz, grad, mask, level_base, features_range, FEATURES,
                    TABLE_SIZE)
    _scatter_corner(grad_table_ptr, hx0, hy1, hz0, gx0 * fy * gz0, grad, mask, level_base, features_range, FEATURES,
                    TABLE_SIZE)
    _scatter_corner(grad_table_ptr, hx0, hy1, hz1, gx0 * fy * fz, grad, mask, level_base, features_range, FEATURES,
                    TABLE_SIZE)
    _scatter_corner(grad_table_ptr, hx1, hy0, hz0, fx * gy0 * gz0, grad, mask, level_base, features_range, FEATURES,
                    TABLE_SIZE)
    _scatter_corner(grad_table_ptr, hx1, hy0, hz1, fx * gy0 * fz, grad, mask, level_base, features_range, FEATURES,
                    TABLE_SIZE)
    _scatter_corner(grad_table_ptr, hx1, hy1, hz0, fx * fy * gz0, grad, mask, level_base, features_range, FEATURES,
                    TABLE_SIZE)
    _scatter_corner(grad_table_ptr, hx1, hy1, hz1, fx * fy * fz, grad, mask, level_base, features_range, FEATURES,
                    TABLE_SIZE)


class _HashEncodeFunction(torch.autograd.Function):
    """positions [P, 3] in [0, 1], table [L * T, F] -> encoded [P, L * F]; differentiable in the table only."""

    @staticmethod
    def forward(ctx, points: Tensor, table: Tensor, level_scales: Tensor, table_size: int, block_points: int,
                num_warps: int, feature_major: bool) -> Tensor:
        num_points = points.shape[0]
        features = table.shape[1]
        num_levels = level_scales.shape[0]
        columns = num_levels * features
        if feature_major:  # [L * F, P] storage seen as [P, L * F]: each program's stores are contiguous
            encoded = torch.empty((columns, num_points), dtype=torch.float32, device=points.device).t()
        else:
            encoded = torch.empty((num_points, columns), dtype=torch.float32, device=points.device)
        if num_points > 0:
            # Levels on the slower grid axis: the programs of one level run together, so its table (4 MiB at 2^19
            # x 2 floats) stays in L2 while they gather from it.
            grid = (triton.cdiv(num_points, block_points), num_levels)
            _hash_encode_forward_kernel[grid](points, table, level_scales, encoded, num_points, *encoded.stride(),
                                              TABLE_SIZE=table_size, NUM_LEVELS=num_levels, FEATURES=features,
                                              FEATURES_P2=triton.next_power_of_2(features), BLOCK=block_points,
                                              num_warps=num_warps, **_LAUNCH_OPTIONS)
        ctx.save_for_backward(points, level_scales)
        ctx.table_shape, ctx.table_size = table.shape, table_size
        ctx.block_points, ctx.num_warps = block_points, num_warps
        return encoded

    @staticmethod
    def backward(ctx, grad_encoded: Tensor):
        points, level_scales = ctx.saved_tensors
        num_points, num_levels = points.shape[0], level_scales.shape[0]
        features = ctx.table_shape[1]
        grad_table = torch.zeros(ctx.table_shape, dtype=torch.float32, device=points.device)
        if num_points > 0:
            grid = (triton.cdiv(num_points, ctx.block_points), num_levels)
            grad_encoded = grad_encoded.float()
            _hash_encode_backward_kernel[grid](points, grad_encoded, level_scales, grad_table, num_points,
                                               *grad_encoded.stride(), TABLE_SIZE=ctx.table_size, NUM_LEVELS=num_levels,
                                               FEATURES=features, FEATURES_P2=triton.next_power_of_2(features),
                                               BLOCK=ctx.block_points, num_warps=ctx.num_warps, **_LAUNCH_OPTIONS)
        return None, grad_table, None, None, None, None, None


def triton_hash_encode(points: Tensor, table: Tensor, level_scales: Tensor, table_size: int,
                       block_points: int = BLOCK_POINTS, num_warps: int = NUM_WARPS,
                       feature_major: bool = True) -> Tensor:
    """Encode positions [P, 3] in [0, 1] with `table` [L * T, F] at grid scales [L]; returns [P, L * F] float32.

    `block_points` (a power of two) and `num_warps` set the launch shape of both passes (benchmarks sweep them);
    `feature_major` returns the transpose of a contiguous [L * F, P] tensor instead of a contiguous [P, L * F] one
    (same values; matrix products read either layout without a copy, and the full training step of the benchmark
    is about 7-9% faster with it on an H100).
    """
    return _HashEncodeFunction.apply(points.float().contiguous(), table.contiguous(),
                                     level_scales.float().contiguous(), table_size, block_points, num_warps,
                                     feature_major)


class TritonHashEncoding(TorchHashEncoding):
    """The hash encoding on Triton kernels: parameters, buffers and outputs of `TorchHashEncoding`.

    Input positions [P, 3] in [0, 1]; output [P, num_levels * features_per_level] float32. The kernels give no
    gradient with respect to the positions, so positions that require one (normals from the density gradient,
    say) take the torch path of the parent class, which gives the same values.
    """

    #: Launch settings of the kernels (see `triton_hash_encode`); plain attributes so a benchmark can sweep them.
    block_points: int = BLOCK_POINTS
    num_warps: int = NUM_WARPS
    feature_major: bool = True

    def pytorch_fwd(self, in_tensor: Tensor) -> Tensor:
        if in_tensor.requires_grad and torch.is_grad_enabled():
            return super().pytorch_fwd(in_tensor)
        level_scales = self.level_scales.view(-1)  # [L]
        return triton_hash_encode(in_tensor, self.hash_table, level_scales, self.hash_table_size,
                                  self.block_points, self.num_warps, self.feature_major)
