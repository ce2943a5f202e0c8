"""The X-UNet's layout-minded formulations (what a compiled CUDA step runs) against their plain references."""

import math

import pytest
import torch
import torch.nn.functional as F

import generators.channels_last as channels_last_ops
from generators.film import pixelwise_linear, pixelwise_linear_pieces, pixelwise_product, pixelwise_product_pieces
from generators.channels_last import GroupNorm, upsample_nearest2x
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
    y = channels_last_ops._ChannelsLastGradient.apply(x)
    grad = torch.randn(2, 8, 4, 4, dtype=torch.float64)  # NCHW, as ATen's group norm backward hands it on
    y.backward(grad)
    torch.testing.assert_close(y, x)
    torch.testing.assert_close(x.grad, grad)
    assert x.grad.is_contiguous(memory_format=torch.channels_last) and not grad.is_contiguous(
        memory_format=torch.channels_last)


def test_compiled_group_norm_with_the_channels_last_gradient_equals_nn_group_norm(monkeypatch):
    # The CUDA condition is taken on the CPU here, so that the compiled path itself runs.
    monkeypatch.setattr(channels_last_ops, "wants_channels_last_gradient",
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
    k, v = (t.unflatten(0, (2, -1)).flip(0).flatten(0, 1) for t in (k, v))
    out = block.out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2))
    return (x + out.transpose(1, 2).reshape(frames, channels, height, width)) / math.sqrt(2.0)


@pytest.mark.parametrize("channels_last", [False, True])
def test_cross_attention_on_frame_swapped_keys_equals_the_reference_in_values_and_gradients(channels_last):
    torch.manual_seed(0)
    block = AttnBlock(16, 4, cross=True).double()
    with torch.no_grad():
        block.out.weight.normal_(0, 0.3)  # zero-initialised: random, so that the attention shows
    x = torch.randn(6, 16, 4, 5, dtype=torch.float64)  # 3 examples, conditioning frames (rows 0-2) first
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    grad = torch.randn(x.shape, dtype=torch.float64)
    results = []
    for attention in (block, lambda xi: frame_swapped_cross_attention(block, xi)):
        block.zero_grad()
        xi = x.clone().requires_grad_()
        out = attention(xi)
        out.backward(grad)
        results.append([out, xi.grad, *(p.grad.clone() for p in block.parameters())])
    for mine, theirs in zip(*results):
        torch.testing.assert_close(mine, theirs, atol=1e-12, rtol=1e-12)
    out = results[0][0].detach()
    # Each example's frames read each other only: changing example 0's conditioning frame (row 0) changes its target
    # frame (row 3) and leaves the other examples' rows alone.
    changed = x.clone()
    changed[0] = torch.randn_like(changed[0])
    others = [1, 2, 4, 5]
    with torch.no_grad():
        assert torch.equal(block(changed)[others], out[others]) and not torch.allclose(block(changed)[3], out[3])


def test_the_cross_attention_benchmarks_two_call_form_is_the_same_function_as_the_block():
    from benchmarks.cross_attention import TwoCallsOnSlices
    torch.manual_seed(1)
    block = AttnBlock(16, 4, cross=True).double()
    with torch.no_grad():
        block.out.weight.normal_(0, 0.3)
    two_calls = TwoCallsOnSlices(16, 4, cross=True).double()
    two_calls.load_state_dict(block.state_dict())
    x = torch.randn(6, 16, 4, 5, dtype=torch.float64).to(memory_format=torch.channels_last).requires_grad_()
    grad = torch.randn(x.shape, dtype=torch.float64)
    results = []
    for module in (block, two_calls):
        out = module(x)
        results.append([out, *torch.autograd.grad(out, [x, *module.parameters()], grad)])
    for mine, theirs in zip(*results):
        torch.testing.assert_close(mine, theirs, atol=1e-12, rtol=1e-12)


def test_pixelwise_product_pieces_are_the_split_convolution_with_gradients_concatenated_along_rows():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 12, 5, 7, generator=g, dtype=torch.float64).to(memory_format=torch.channels_last)
    weight = torch.randn(20, 12, 1, 1, generator=g, dtype=torch.float64)
    bias = torch.randn(20, generator=g, dtype=torch.float64)
    sizes = [4, 10, 6]
    references = F.conv2d(x, weight, bias).split(sizes, dim=1)
    pieces = pixelwise_product_pieces(x, weight, bias, sizes)
    for piece, reference in zip(pieces, references):
        torch.testing.assert_close(piece, reference, atol=1e-12, rtol=1e-12)
        assert piece.shape == reference.shape
    for piece, reference in zip(pixelwise_linear_pieces(x, weight, bias, sizes), references):
        torch.testing.assert_close(piece, reference, atol=1e-12, rtol=1e-12)
    # The gradients of every input match the convolution's.
    grads = [torch.randn(r.shape, generator=g, dtype=torch.float64) for r in references]
    inputs = [t.clone().requires_grad_() for t in (x, weight, bias)]
    torch.autograd.backward(pixelwise_product_pieces(*inputs, sizes), grads)
    expected = [t.clone().requires_grad_() for t in (x, weight, bias)]
    torch.autograd.backward(F.conv2d(*expected).split(sizes, dim=1), grads)
    for mine, theirs in zip(inputs, expected):
        torch.testing.assert_close(mine.grad, theirs.grad, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("channels_last", [False, True])
def test_compiled_nearest_upsampling_equals_interpolate_and_keeps_channels_last(monkeypatch, channels_last):
    # As above, the CUDA condition is taken on the CPU so that the block-broadcast formulation runs compiled.
    monkeypatch.setattr(channels_last_ops, "wants_channels_last_gradient",
                        lambda x: torch.compiler.is_compiling() and x.is_contiguous(memory_format=torch.channels_last))
    torch._dynamo.reset()
    x = torch.randn(2, 6, 3, 5, dtype=torch.float64)  # NCHW (interpolate itself, compiled), or channels-last
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    grad = torch.randn(2, 6, 6, 10, dtype=torch.float64)
    results = []
    for upsample in (torch.compile(upsample_nearest2x, fullgraph=True),
                     lambda t: F.interpolate(t, scale_factor=2, mode="nearest")):
        xi = x.clone().requires_grad_()
        out = upsample(xi)
        out.backward(grad)
        results.append((out, xi.grad))
    (out, x_grad), (reference, reference_grad) = results
    assert torch.equal(out, reference)
    torch.testing.assert_close(x_grad, reference_grad, atol=1e-12, rtol=1e-12)
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert x_grad.is_contiguous(memory_format=torch.channels_last) == channels_last
    # Not compiling: interpolate itself.
    assert torch.equal(upsample_nearest2x(x), reference)
    torch._dynamo.reset()


def test_compiled_film_inputs_equal_the_broadcast_sum_in_values_and_gradients(monkeypatch):
    import generators.film as film
    # The compiled CUDA condition on the CPU: the vectors' gradient comes from the batched product with ones.
    monkeypatch.setattr(film, "wants_channels_last_gradient",
                        lambda x: x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last))
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(2)
    vectors = torch.randn(3, 8, generator=g, dtype=torch.float64)
    maps = [torch.randn(3, 8, s, s, generator=g, dtype=torch.float64).to(memory_format=torch.channels_last)
            for s in (6, 3)]
    grads = [torch.randn(m.shape, generator=g, dtype=torch.float64) for m in maps]
    results = []
    for inputs in (lambda v, ms: torch.compile(film.film_inputs, fullgraph=True)([v, 2 * v], ms),
                   lambda v, ms: [F.silu(m + s * v[:, :, None, None]) for s, m in zip((1, 2), ms)]):
        v, ms = vectors.clone().requires_grad_(), [m.clone().requires_grad_() for m in maps]
        outs = inputs(v, ms)
        torch.autograd.backward(outs, grads)
        results.append((outs, v.grad, [m.grad for m in ms]))
    (outs, v_grad, m_grads), (ref_outs, ref_v_grad, ref_m_grads) = results
    for mine, theirs in zip([*outs, v_grad, *m_grads], [*ref_outs, ref_v_grad, *ref_m_grads]):
        torch.testing.assert_close(mine, theirs, atol=1e-12, rtol=1e-12)
    torch._dynamo.reset()


def test_group_norm_by_channel_sums_matches_group_norm_in_dtype_and_value():
    from generators.channels_last import group_norm_by_channel_sums
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 8, 5, 6, generator=g).to(memory_format=torch.channels_last)
    weight, bias = torch.randn(8, generator=g), torch.randn(8, generator=g)
    # Under autocast, as in training: float32 out, as CUDA autocast runs group norm, from the bfloat16 values.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mine = group_norm_by_channel_sums(x.bfloat16(), 4, weight, bias, 1e-5)
    assert mine.dtype == torch.float32
    torch.testing.assert_close(mine, F.group_norm(x.bfloat16().float(), 4, weight, bias, 1e-5), atol=1e-5, rtol=1e-5)
    # Without autocast the result has the input's dtype.
    mine = group_norm_by_channel_sums(x.bfloat16(), 4, weight.bfloat16(), bias.bfloat16(), 1e-5)
    assert mine.dtype == torch.bfloat16
    torch.testing.assert_close(mine, F.group_norm(x.bfloat16(), 4, weight.bfloat16(), bias.bfloat16(), 1e-5),
                               atol=0.05, rtol=0.02)
    # Without affine parameters, and in the regime where E[x^2] - E[x]^2 loses digits: mean 40x the spread.
    torch.testing.assert_close(group_norm_by_channel_sums(x.double(), 2, None, None, 1e-5),
                               F.group_norm(x.double(), 2, eps=1e-5), atol=1e-12, rtol=1e-12)
    shifted = 20 + 0.5 * x
    torch.testing.assert_close(group_norm_by_channel_sums(shifted, 4, weight, bias, 1e-5),
                               F.group_norm(shifted, 4, weight, bias, 1e-5), atol=2e-3, rtol=2e-3)


def test_pixelwise_product_pieces_are_views_of_one_channels_last_product():
    x = torch.randn(2, 12, 5, 7).to(memory_format=torch.channels_last)
    pieces = pixelwise_product_pieces(x, torch.randn(20, 12, 1, 1), torch.randn(20), [4, 10, 6])
    # Each piece reads its channels of the same [N, H, W, 20] rows, so their gradients meet in that layout.
    assert [p.stride() for p in pieces] == [(5 * 7 * 20, 1, 7 * 20, 20)] * 3
    assert len({p.untyped_storage().data_ptr() for p in pieces}) == 1
