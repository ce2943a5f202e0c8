"""Formulations for a compiled step on channels-last CUDA activations: gradients handed on channels-last, for cuDNN
convolutions that work NHWC, and a group norm whose reductions Inductor reads well in that layout.

Under `torch.compile` Inductor lays out each backward tensor as the traced eager ops would. Several ops of the UNets
produce NCHW gradients whatever their input's layout: ATen's CUDA group norm (NCHW-only), a row slice's backward
(a zero-filled contiguous tensor scattered into), nearest upsampling's backward (an index_put with atomic adds).
Most of those gradients flow straight into a convolution's backward, and cuDNN, working channels-last, first copies
each one to NHWC (47 copies after the norms alone, about 4 ms of a 93 ms `3dim-64` training step on an H100;
reports/benchmarks/generator.md). Asking for the gradient channels-last where it leaves the op lets Inductor write it
that way in the kernel that computes it. Eager runs, and CPU ones (whose kernels handle channels-last), run the
plain operations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _ChannelsLastGradient(torch.autograd.Function):
    """Identity whose backward returns the gradient as a dense channels-last tensor."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous(memory_format=torch.channels_last)


def wants_channels_last_gradient(x: torch.Tensor) -> bool:
    """Whether x's gradient is to be handed on channels-last: a channels-last CUDA input traced by torch.compile."""
    return (torch.compiler.is_compiling() and x.is_cuda and x.ndim == 4
            and x.is_contiguous(memory_format=torch.channels_last))


def channels_last_gradient(x: torch.Tensor) -> torch.Tensor:
    """x, whose gradient is handed on channels-last where `wants_channels_last_gradient(x)`."""
    return _ChannelsLastGradient.apply(x) if wants_channels_last_gradient(x) else x


def upsample_nearest2x(x: torch.Tensor) -> torch.Tensor:
    """`F.interpolate(x, scale_factor=2, mode="nearest")`; compiled on channels-last CUDA input, written as every
    pixel of the channels-last view broadcast to a 2x2 block (same values), whose backward sums each block where
    interpolate's scatters into an NCHW gradient with atomic adds (about 0.8 ms of a `3dim-64` step, plus the copies
    of that gradient to NHWC)."""
    if not wants_channels_last_gradient(x):
        return F.interpolate(x, scale_factor=2, mode="nearest")
    batch, channels, height, width = x.shape
    pixels = _ChannelsLastGradient.apply(x).permute(0, 2, 3, 1)[:, :, None, :, None, :]
    blocks = pixels.expand(batch, height, 2, width, 2, channels)
    return blocks.reshape(batch, 2 * height, 2 * width, channels).permute(0, 3, 1, 2)


def group_norm_by_channel_sums(x: torch.Tensor, groups: int, weight: torch.Tensor | None, bias: torch.Tensor | None,
                               eps: float) -> torch.Tensor:
    """`F.group_norm(x, groups, weight, bias, eps)` from sums of x and x^2 over each channel's pixels, added up per
    group; one pass over x for both. Computed in at least float32; the result has x's dtype, or float32 under
    autocast (which runs group norm in float32).

    Compiled on channels-last input, a sum over one channel's pixels is a reduction down the columns of the
    [pixels, channels] rows, which Inductor reads at close to the memory bandwidth; the group norm's own reductions,
    over a group's few channels of every pixel, and their backward ran at a third to a half of it (6.7 ms of the
    reductions of a `3dim-64` step on an H100). The variance as E[x^2] - E[x]^2 in float32, as NVIDIA's NHWC group
    norm kernels compute it, is exact enough for activations whose mean is not thousands of times their spread."""
    count, channels, height, width = x.shape
    per_group = channels // groups
    values = x.to(torch.promote_types(x.dtype, torch.float32))

    def per_group_mean(t: torch.Tensor) -> torch.Tensor:  # [N, C, H, W] -> [N, G]
        return t.sum(dim=(2, 3)).view(count, groups, per_group).sum(-1) / (per_group * height * width)

    def per_channel(t: torch.Tensor) -> torch.Tensor:  # [N, G] -> [N, C, 1, 1]
        return t[:, :, None].expand(count, groups, per_group).reshape(count, channels, 1, 1)

    mean = per_group_mean(values)
    variance = (per_group_mean(values * values) - mean * mean).clamp_min(0.0)
    scale = per_channel(torch.rsqrt(variance + eps))
    if weight is not None:
        scale = scale * weight[:, None, None]
    shift = -per_channel(mean) * scale
    if bias is not None:
        shift = shift + bias[:, None, None]
    normed = values * scale + shift
    return normed if torch.is_autocast_enabled(x.device.type) else normed.to(x.dtype)


class GroupNorm(nn.GroupNorm):
    """nn.GroupNorm (same parameters, same checkpoint keys) that, traced by torch.compile on CUDA with channels-last
    activations, is `group_norm_by_channel_sums` with a channels-last input gradient."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if wants_channels_last_gradient(x):
            return group_norm_by_channel_sums(_ChannelsLastGradient.apply(x), self.num_groups, self.weight,
                                              self.bias, self.eps)
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
