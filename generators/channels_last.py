"""Operations whose compiled backward hands on channels-last gradients, for cuDNN convolutions that work NHWC.

Under `torch.compile` Inductor lays out each backward tensor as the traced eager ops would. Several ops of the UNets
produce NCHW gradients whatever their input's layout: ATen's CUDA group norm (NCHW-only), a row slice's backward
(a zero-filled contiguous tensor scattered into), nearest upsampling's backward (an index_put with atomic adds).
Most of those gradients flow straight into a convolution's backward, and cuDNN, working channels-last, first copies
each one to NHWC (47 copies after the norms alone, about 4 ms of a 93 ms `3dim-64` training step on an H100;
reports/benchmarks/generator.md). Asking for the gradient channels-last where it leaves the op lets Inductor write it
that way in the kernel that computes it. Eager runs, and CPU ones (whose kernels handle channels-last), are
unchanged.
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


def compiling_for_cuda(x: torch.Tensor) -> bool:
    """Whether x is a 4-D CUDA tensor traced by torch.compile (the formulations here are for Inductor's kernels)."""
    return torch.compiler.is_compiling() and x.is_cuda and x.ndim == 4


def wants_channels_last_gradient(x: torch.Tensor) -> bool:
    """Whether x's gradient is to be handed on channels-last: a channels-last CUDA input traced by torch.compile."""
    return compiling_for_cuda(x) and x.is_contiguous(memory_format=torch.channels_last)


def channels_last_gradient(x: torch.Tensor) -> torch.Tensor:
    """x, whose gradient is handed on channels-last where `wants_channels_last_gradient(x)`."""
    return _ChannelsLastGradient.apply(x) if wants_channels_last_gradient(x) else x


def upsample_nearest2x(x: torch.Tensor) -> torch.Tensor:
    """`F.interpolate(x, scale_factor=2, mode="nearest")`; compiled for CUDA, written as every pixel of the
    channels-last view broadcast to a 2x2 block (same values, a channels-last result whatever x's layout), whose
    backward sums each block where interpolate's scatters into an NCHW gradient with atomic adds (about 0.8 ms of a
    `3dim-64` step, plus the copies of its result to NHWC)."""
    if not compiling_for_cuda(x):
        return F.interpolate(x, scale_factor=2, mode="nearest")
    batch, channels, height, width = x.shape
    pixels = _ChannelsLastGradient.apply(x).permute(0, 2, 3, 1)[:, :, None, :, None, :]
    blocks = pixels.expand(batch, height, 2, width, 2, channels)
    return blocks.reshape(batch, 2 * height, 2 * width, channels).permute(0, 3, 1, 2)


class GroupNorm(nn.GroupNorm):
    """nn.GroupNorm (same parameters, same checkpoint keys) whose input gradient stays channels-last when
    torch.compile traces it on CUDA with channels-last activations. (Writing the norm out as a mean and a variance
    per group keeps the layout too, but its backward takes more reduction passes: slower overall.)"""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(channels_last_gradient(x), self.num_groups, self.weight, self.bias, self.eps)
