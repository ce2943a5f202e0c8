"""The Triton hash encoding against the torch reference on the GPU: outputs and table gradients."""

import pytest
import torch

from nerf.encoding import TorchHashEncoding, make_hash_encoding, tcnn_import_error, triton_import_error
from nerf.field import FieldConfig

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="the Triton kernels run on a CUDA device only"),
    pytest.mark.skipif(triton_import_error() is not None, reason=f"`import triton` fails: {triton_import_error()}"),
]


def _twin_encodings(feature_major=True, **kwargs):
    """A torch and a Triton encoding sharing one random table, on the GPU."""
    from nerf.triton_hash import TritonHashEncoding

    torch.manual_seed(0)
    reference = TorchHashEncoding(**kwargs).cuda()
    fast = TritonHashEncoding(**kwargs).cuda()
    fast.feature_major = feature_major
    with torch.no_grad():
        reference.hash_table.normal_()
        fast.hash_table.copy_(reference.hash_table)
    return reference, fast


# The first row is the benchmark's configuration (ANCHORS.md); the others cover odd and wider feature counts
# (padded lanes in the kernels), coarse levels where many points share a row, and one level.
@pytest.mark.parametrize("levels, min_res, max_res, log2_size, features", [
    (16, 16, 1024, 19, 2), (8, 4, 200, 12, 2), (5, 4, 200, 10, 3), (4, 2, 64, 10, 4), (1, 8, 8, 8, 1)])
# Both layouts of the encoded output: the default [L * F, P] storage and a contiguous [P, L * F] one.
@pytest.mark.parametrize("feature_major", [True, False])
def test_triton_matches_torch_outputs_and_table_gradients(levels, min_res, max_res, log2_size, features,
                                                          feature_major):
    reference, fast = _twin_encodings(feature_major, num_levels=levels, min_res=min_res, max_res=max_res,
                                      log2_hashmap_size=log2_size, features_per_level=features)
    generator = torch.Generator(device="cuda").manual_seed(1)
    # Grid vertices and the box faces are the corner cases of the interpolation; 70001 is not a multiple of the
    # kernels' block, so the last block is partly masked.
    positions = torch.cat([torch.rand(70001, 3, device="cuda", generator=generator),
                           torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.5, 0.25, 1.0]], device="cuda")])
    out_reference, out_fast = reference(positions), fast(positions)
    assert out_fast.shape == (len(positions), levels * features) and out_fast.dtype == torch.float32
    torch.testing.assert_close(out_fast, out_reference, rtol=1e-5, atol=1e-6)
    upstream = torch.randn(out_fast.shape, device="cuda", generator=generator)
    out_reference.backward(upstream)
    out_fast.backward(upstream)
    # Both backends sum each row's contributions with atomics in an arbitrary order, so a row differs by the
    # rounding of a float32 sum: bounded by a few ulps of the sum of the contributions' magnitudes (which, on a
    # coarse level, add up from tens of thousands of points and cancel to a small gradient).
    magnitude, = torch.autograd.grad(reference(positions), reference.hash_table, upstream.abs())
    error = (fast.hash_table.grad - reference.hash_table.grad).abs()
    bound = 1e-6 * magnitude + 1e-6
    assert bool((error <= bound).all()), f"worst error / bound {(error / bound).max().item():.2f}"


def test_triton_handles_empty_input_and_position_gradients():
    reference, fast = _twin_encodings(num_levels=4, min_res=4, max_res=64, log2_hashmap_size=10,
                                      features_per_level=2)
    assert fast(torch.zeros(0, 3, device="cuda")).shape == (0, 8)
    # Positions that need a gradient take the torch path, so the gradient exists and equals the reference's.
    positions = torch.rand(500, 3, device="cuda", requires_grad=True)
    grad_fast, = torch.autograd.grad(fast(positions).sum(), positions)
    grad_reference, = torch.autograd.grad(reference(positions).sum(), positions)
    torch.testing.assert_close(grad_fast, grad_reference)


@pytest.mark.skipif(tcnn_import_error() is None, reason="tinycudann imports here, so auto picks tcnn")
def test_auto_picks_triton_on_cuda_without_tcnn():
    from nerf.triton_hash import TritonHashEncoding

    module, backend = make_hash_encoding(FieldConfig(num_levels=4, log2_hashmap_size=10, backend="auto"), "cuda")
    assert backend == "triton" and isinstance(module, TritonHashEncoding)
    assert module(torch.rand(7, 3, device="cuda")).shape == (7, 8)
