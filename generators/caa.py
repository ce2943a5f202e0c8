"""Correspondence-aware attention (CAA), MVDiffusion's block (Tang et al. 2023, Sec. 3.2, Eq. 1).

For pixel s of view i, and every other view l with corresponding location t^l (see `generators.correspondence`),
the query W_Q F(s) attends to the K x K pixels t* of view l around t^l, over all other views at once:

    M(s) = sum_l sum_{t* in N(t^l)} softmax_{l, t*}( [W_Q F(s)] . [W_K F_l(t*) + gamma(t* - t^l)] ) W_V F_l(t*)

N(t^l) are the K x K pixel centres around the pixel that holds t^l, gathered with integer indices (so the values are
exactly the features at those pixels); the sub-pixel displacement t* - t^l from the exact corresponding point enters
the keys through a Fourier positional encoding gamma (Eq. 1's positional term). Neighbours outside the other image,
or whose correspondence is invalid (behind the camera, no depth), are masked out; a pixel with no valid neighbour in
any view receives nothing. The block is residual, F + W_out M, with W_out initialised to zero: an untrained block is
exactly the identity, so inserting CAA into a trained UNet changes nothing until it learns (MVDiffusion initialises
its CAA blocks the same way to keep the pretrained Stable Diffusion intact).

All pixels, views and neighbours go through one gather and one batched `scaled_dot_product_attention`: the sequence
of each query is its M * K * K neighbours (M other views, all N - 1 by default); no Python loop over pixels or views.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from generators.correspondence import Correspondences
from generators.xunet import _group_norm, _zero_init


def displacement_encoding(displacement: torch.Tensor, octaves: int) -> torch.Tensor:
    """[..., 2 + 4 * octaves]: displacement [..., 2] (pixels) with sin and cos of displacement * pi * 2^k / 2."""
    # Displacements lie within about +-(K + 1) / 2 pixels, so the lowest frequency pi / 2 does not wrap for K <= 3.
    scales = math.pi * 2.0 ** torch.arange(octaves, device=displacement.device, dtype=displacement.dtype) / 2
    scaled = (displacement[..., None, :] * scales[:, None]).flatten(-2)
    return torch.cat([displacement, torch.sin(scaled), torch.cos(scaled)], dim=-1)


def neighbourhood(uv: torch.Tensor, kernel_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer pixels [..., K * K, 2] (column, row) around each sub-pixel location uv [..., 2], and the displacement
    [..., K * K, 2] from uv to each pixel's centre. The K x K block is centred on the pixel that holds uv."""
    radius = kernel_size // 2
    steps = torch.arange(-radius, radius + 1, device=uv.device)
    dv, du = torch.meshgrid(steps, steps, indexing="ij")
    offsets = torch.stack([du.flatten(), dv.flatten()], dim=-1)  # [K * K, 2], row-major over the block
    pixels = torch.floor(uv).long()[..., None, :] + offsets
    return pixels, pixels.to(uv.dtype) + 0.5 - uv[..., None, :]


class CorrespondenceAttention(nn.Module):
    """MVDiffusion's CAA block (module docstring) over features of N views of B scenes."""

    def __init__(self, channels: int, num_heads: int, kernel_size: int = 3, pos_octaves: int = 3):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
        self.num_heads, self.kernel_size, self.pos_octaves = num_heads, kernel_size, pos_octaves
        self.norm = _group_norm(channels)
        self.query, self.key, self.value = (nn.Linear(channels, channels) for _ in range(3))
        self.position = nn.Linear(2 + 4 * pos_octaves, channels)
        self.out = _zero_init(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor, correspondences: Correspondences) -> torch.Tensor:
        """x [B * N, C, h, w] (view n of scene b at row b * N + n) -> same shape; correspondences at h x w."""
        uv, valid = correspondences.uv, correspondences.valid  # [B, N, M, h, w, 2], [B, N, M, h, w]
        batch, views, _, height, width = valid.shape
        channels = x.shape[1]
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # [B * N, h * w, C]
        query = self.query(tokens).reshape(batch * views * height * width, 1, channels)
        # Keys and values of every pixel, side by side, so one gather reads both.
        key_value = torch.cat([self.key(tokens), self.value(tokens)], dim=-1).flatten(0, 1)  # [B * N * h * w, 2 C]

        pixels, displacement = neighbourhood(uv, self.kernel_size)  # [B, N, M, h, w, K * K, 2]
        column, row = pixels.unbind(-1)
        inside = (column >= 0) & (column < width) & (row >= 0) & (row < height) & valid[..., None]
        # Row of the feature map that slot m of view i reads: frame b * N + others[b, i, m].
        frame = torch.arange(batch, device=x.device)[:, None, None] * views + correspondences.others  # [B, N, M]
        flat = (frame[..., None, None, None] * height + row.clamp(0, height - 1)) * width + column.clamp(0, width - 1)
        # One sequence per query pixel: its M * K * K neighbours, view-major.
        flat = flat.permute(0, 1, 3, 4, 2, 5).reshape(batch * views * height * width, -1)  # [Q, L]
        inside = inside.permute(0, 1, 3, 4, 2, 5).reshape(flat.shape)
        displacement = displacement.permute(0, 1, 3, 4, 2, 5, 6).reshape(*flat.shape, 2)
        # index_select's backward is an index_add, much cheaper on the CPU than advanced indexing's index_put.
        key, value = key_value.index_select(0, flat.flatten()).unflatten(0, flat.shape).chunk(2, dim=-1)  # [Q, L, C]
        key = key + self.position(displacement_encoding(displacement.to(x.dtype), self.pos_octaves))

        # A query without any valid neighbour would softmax over nothing (NaN): let it attend everywhere, then drop it.
        anything = inside.any(dim=1)  # [Q]
        mask = inside | ~anything[:, None]
        heads = self.num_heads
        q, k, v = (t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in (query, key, value))  # [Q, heads, ., C / h]
        # One query per sequence: two small batched products do it, and the fused SDPA kernels gain nothing here
        # (cuDNN's refused the mvd-64 benchmark's Q ~ 10^5 sequences on an H100). Softmax in at least float32.
        scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # [Q, heads, 1, L]
        scores = scores.to(torch.promote_types(scores.dtype, torch.float32))
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
        attended = scores.softmax(dim=-1).to(v.dtype) @ v  # [Q, heads, 1, C / h]
        attended = attended.transpose(1, 2).reshape(-1, channels) * anything[:, None].to(x.dtype)
        out = self.out(attended).reshape(batch * views, height * width, channels)
        return x + out.transpose(1, 2).reshape_as(x)
