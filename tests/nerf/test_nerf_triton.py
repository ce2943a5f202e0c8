"""On the GPU: the Triton hash encoding against the torch reference (outputs and table gradients, float32 and
bfloat16 outputs), and tiny-cuda-nn against the torch reference where tinycudann imports."""

import pytest
import torch

from nerf.encoding import make_hash_encoding, tcnn_import_error, triton_import_error
from nerf.hash_grid import TorchHashEncoding
from nerf.field import FieldConfig

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                   reason="the Triton kernels and tiny-cuda-nn run on CUDA only")]
needs_triton = pytest.mark.skipif(triton_import_error() is not None,
                                  reason=f"`import triton` fails: {triton_import_error()}")


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


# The first row is the benchmark's configuration (reports/benchmarks/peers.md); the others cover odd and wider
# feature counts (padded lanes in the kernels), coarse levels where many points share a row, and one level.
@pytest.mark.parametrize("levels, min_res, max_res, log2_size, features", [
    (16, 16, 1024, 19, 2), (8, 4, 200, 12, 2), (5, 4, 200, 10, 3), (4, 2, 64, 10, 4), (1, 8, 8, 8, 1)])
# Both layouts of the encoded output: the default [L * F, P] storage and a contiguous [P, L * F] one.
@pytest.mark.parametrize("feature_major", [True, False])
@needs_triton
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


@needs_triton
def test_bfloat16_output_is_the_rounded_float32_output():
    reference, fast = _twin_encodings(num_levels=8, min_res=4, max_res=200, log2_hashmap_size=12,
                                      features_per_level=2)
    positions = torch.rand(5000, 3, device="cuda", generator=torch.Generator(device="cuda").manual_seed(2))
    fast.out_dtype = torch.bfloat16
    out = fast(positions)
    assert out.dtype == torch.bfloat16
    # One bfloat16 rounding of float32 sums that may differ in their last bit.
    torch.testing.assert_close(out, reference(positions).to(torch.bfloat16), rtol=2**-8, atol=1e-6)
    upstream = torch.randn(out.shape, device="cuda").to(torch.bfloat16)
    out.backward(upstream)
    expected, = torch.autograd.grad(reference(positions), reference.hash_table, upstream.float())
    torch.testing.assert_close(fast.hash_table.grad, expected, rtol=1e-4, atol=1e-5)


@needs_triton
def test_triton_handles_empty_input_and_position_gradients():
    reference, fast = _twin_encodings(num_levels=4, min_res=4, max_res=64, log2_hashmap_size=10,
                                      features_per_level=2)
    assert fast(torch.zeros(0, 3, device="cuda")).shape == (0, 8)
    # Positions that need a gradient take the torch path, so the gradient exists and equals the reference's.
    positions = torch.rand(500, 3, device="cuda", requires_grad=True)
    grad_fast, = torch.autograd.grad(fast(positions).sum(), positions)
    grad_reference, = torch.autograd.grad(reference(positions).sum(), positions)
    torch.testing.assert_close(grad_fast, grad_reference)


@needs_triton
@pytest.mark.skipif(tcnn_import_error() is None, reason="tinycudann imports here, so auto picks tcnn")
def test_auto_picks_triton_on_cuda_without_tcnn():
    from nerf.triton_hash import TritonHashEncoding

    module, backend = make_hash_encoding(FieldConfig(num_levels=4, log2_hashmap_size=10, backend="auto"), "cuda")
    assert backend == "triton" and isinstance(module, TritonHashEncoding)
    assert module(torch.rand(7, 3, device="cuda")).shape == (7, 8)


@pytest.mark.skipif(tcnn_import_error() is not None, reason=f"tinycudann does not import: {tcnn_import_error()}")
def test_tcnn_matches_torch_reference_with_the_same_table():
    """tiny-cuda-nn's parameter array, filled with our table, gives our features: same layout, offsets and hash."""
    from nerfstudio.field_components.encodings import HashEncoding

    kwargs = dict(num_levels=16, min_res=16, max_res=1024, log2_hashmap_size=19, features_per_level=2)
    torch.manual_seed(0)
    reference = TorchHashEncoding(**kwargs).cuda()
    tcnn_encoding = HashEncoding(implementation="tcnn", **kwargs).cuda()
    params = tcnn_encoding.tcnn_encoding.params
    assert params.numel() == reference.hash_table.numel(), "tiny-cuda-nn's offset table differs from ours"
    with torch.no_grad():
        reference.hash_table.uniform_(-1, 1)
        params.copy_(reference.hash_table.flatten())
    positions = torch.rand(20000, 3, device="cuda")
    # tiny-cuda-nn interpolates in half precision: agreement to half-precision rounding.
    torch.testing.assert_close(tcnn_encoding(positions).float(), reference(positions), rtol=1e-2, atol=4e-3)


@needs_triton
def test_gpu_fit_scores_like_the_cpu_fit():
    """A whole fit on the GPU defaults (Triton encoding, bfloat16 MLPs, fused Adam) against the same fit on the CPU
    (torch encoding, float32): the same held-out quality up to the spread between random streams."""
    from dataclasses import replace

    from nerf.fit import NeRFConfig
    from nerf.protocol import SubsetConfig, run_protocol
    from tests.nerf.test_nerf_consistency import TEST_CONFIG
    from tests.nerf.test_nerf_toyscene import make_toy_scene, psnr

    scene = make_toy_scene(size=32, num_views=20, radius=2.6)
    scores = {}
    for device in ("cpu", "cuda"):
        config: NeRFConfig = replace(TEST_CONFIG, device=device)
        result = run_protocol(scene, SubsetConfig(heldout_every=4), config)
        scores[device] = psnr(result.renders.images, result.heldout.images)
    assert result.fitted.field.backend in ("triton", "tcnn") and result.fitted.field.mlp_bfloat16
    # Seeds move a CPU fit by about +-1 dB (22-24.5 dB over six seeds); a broken kernel scores 10-15 dB.
    assert scores["cuda"] > max(20.0, scores["cpu"] - 2.0), scores
