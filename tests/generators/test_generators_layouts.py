"""The X-UNet's layout-minded formulations (what a compiled CUDA step runs) against their plain references."""

import math

import pytest
import torch
import torch.nn.functional as F

import generators.group_norm as group_norm
from generators.film import pixelwise_linear, pixelwise_product
from generators.group_norm import GroupNorm
from generators.xunet import AttnBlock


@pytest.mark.parametrize("channels_last", [False, True])
def test_pixelwise_product_is_the_1x1_convolution_and_channels_last(channels_last):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 12, 5, 7, generator=g, dtype=torch.float64)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    weight = torch.randn(20, 12, 1, 1, generator=g, dtype=torch.float64)
    bias = torch.randn(20, generator=g, dtype=torch.float64)
    reference = F.conv2d(x, weight, bias)
    product = pixelwise_product(x, weight, bias)
    torch.testing.assert_close(product, reference, atol=1e-12, rtol=1e-12)
    assert product.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(pixelwise_linear(x, weight, bias), reference, atol=1e-12, rtol=1e-12)


def test_channels_last_gradient_is_the_identity_with_a_channels_last_gradient():
    x = torch.randn(2, 8, 4, 4, dtype=torch.float64).to(memory_format=torch.channels_last).requires_grad_()
    y = group_norm._ChannelsLastGradient.apply(x)
    grad = torch.randn(2, 8, 4, 4, dtype=torch.float64)  # NCHW, as ATen's group norm backward hands it on
    y.backward(grad)
    torch.testing.assert_close(y, x)
    torch.testing.assert_close(x.grad, grad)
    assert x.grad.is_contiguous(memory_format=torch.channels_last) and not grad.is_contiguous(
        memory_format=torch.channels_last)


def test_compiled_group_norm_with_the_channels_last_gradient_equals_nn_group_norm(monkeypatch):
    # The CUDA condition is taken on the CPU here, so that the compiled path itself runs.
    monkeypatch.setattr(group_norm, "wants_channels_last_gradient",
                        lambda x: x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last))
    torch._dynamo.reset()
    torch.manual_seed(0)
    norm = GroupNorm(4, 16).double()
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    reference = torch.nn.GroupNorm(4, 16).double()
    reference.load_state_dict(norm.state_dict())
    x = torch.randn(3, 16, 6, 6, dtype=torch.float64).to(memory_format=torch.channels_last)
    grad = torch.randn(3, 16, 6, 6, dtype=torch.float64)
    outputs, gradients = [], []
    for module in (torch.compile(norm, fullgraph=True), reference):
        xi = x.clone().requires_grad_()
        out = module(xi)
        out.backward(grad)
        outputs.append(out)
        gradients.append([xi.grad, *(p.grad for p in module.parameters())])
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-12, rtol=1e-12)
    for mine, theirs in zip(*gradients):
        torch.testing.assert_close(mine, theirs, atol=1e-12, rtol=1e-12)
    assert gradients[0][0].is_contiguous(memory_format=torch.channels_last)
    torch._dynamo.reset()


def frame_swapped_cross_attention(block: AttnBlock, x: torch.Tensor) -> torch.Tensor:
    """Reference: keys and values of every example's two frames swapped, then one attention over all rows."""
    frames, channels, height, width = x.shape
    tokens = block.norm(x).flatten(2).transpose(1, 2)
    q, k, v = (t.unflatten(-1, (block.num_heads, -1)).transpose(1, 2) for t in block.qkv(tokens).chunk(3, dim=-1))
    k, v = (t.unflatten(0, (-1, 2)).flip(1).flatten(0, 1) for t in (k, v))
    out = block.out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2))
    return (x + out.transpose(1, 2).reshape(frames, channels, height, width)) / math.sqrt(2.0)


@pytest.mark.parametrize("channels_last", [False, True])
def test_cross_attention_on_strided_frames_equals_swapping_the_frames(channels_last):
    torch.manual_seed(0)
    block = AttnBlock(16, 4, cross=True).double()
    with torch.no_grad():
        block.out.weight.normal_(0, 0.3)  # zero-initialised: random, so that the attention shows
    x = torch.randn(6, 16, 4, 5, dtype=torch.float64)  # 3 examples, frames interleaved
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    out = block(x)
    torch.testing.assert_close(out, frame_swapped_cross_attention(block, x), atol=1e-12, rtol=1e-12)
    # Each example's frames read each other only: changing example 0 leaves the others' outputs alone.
    changed = x.clone()
    changed[0] = torch.randn_like(changed[0])
    assert torch.equal(block(changed)[2:], out[2:]) and not torch.allclose(block(changed)[1], out[1])
