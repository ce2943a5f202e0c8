"""GroupNorm whose compiled backward hands on channels-last gradients.

ATen's CUDA group norm works on NCHW tensors only, and `torch.compile` lays out each backward tensor as the traced
eager ops would: the gradient leaving every GroupNorm is NCHW. Most of them flow straight into a convolution's
backward, and cuDNN, working channels-last, first copies each one to NHWC (47 copies, about 4 ms of a 93 ms
`3dim-64` training step on an H100; reports/benchmarks/generator.md). Asking for the gradient channels-last where
it leaves the norm lets Inductor write it that way in the kernel that computes it. (Writing the norm out as a mean
and a variance per group keeps the layout too, but its backward takes more reduction passes: slower overall.)
Eager runs, and CPU ones (whose kernel handles channels-last), are unchanged.
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


class GroupNorm(nn.GroupNorm):
    """nn.GroupNorm (same parameters, same checkpoint keys) whose input gradient stays channels-last when
    torch.compile traces it on CUDA with channels-last activations."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if wants_channels_last_gradient(x):
            x = _ChannelsLastGradient.apply(x)
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
