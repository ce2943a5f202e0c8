"""The Triton hash encoding against the torch reference on the CPU, through Triton's interpreter: outputs and table
gradients, both output layouts, a partly masked last block and the box's corners (tests/nerf/test_nerf_triton.py
runs the same kernels compiled, on the GPU, at full size)."""

import pytest
import torch

from nerf.encoding import triton_import_error
from nerf.hash_grid import TorchHashEncoding

pytestmark = pytest.mark.skipif(triton_import_error() is not None,
                                reason=f"`import triton` fails: {triton_import_error()}")


@pytest.fixture(autouse=True)
def interpreted(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")


# Coarse levels where many points share a row (atomics collide), odd feature counts (padded lanes), one level.
@pytest.mark.parametrize("levels, min_res, max_res, log2_size, features", [(4, 2, 64, 10, 3), (1, 8, 8, 8, 1)])
@pytest.mark.parametrize("feature_major", [True, False])
def test_interpreted_kernels_match_torch_outputs_and_table_gradients(levels, min_res, max_res, log2_size, features,
                                                                     feature_major):
    from nerf.triton_hash import TritonHashEncoding

    settings = dict(num_levels=levels, min_res=min_res, max_res=max_res, log2_hashmap_size=log2_size,
                    features_per_level=features)
    torch.manual_seed(0)
    reference, fast = TorchHashEncoding(**settings), TritonHashEncoding(**settings)
    fast.feature_major = feature_major
    with torch.no_grad():
        reference.hash_table.normal_()
        fast.hash_table.copy_(reference.hash_table)
    generator = torch.Generator().manual_seed(1)
    # 1001 points: not a multiple of the kernels' block, so the last block is partly masked.
    positions = torch.cat([torch.rand(1001, 3, generator=generator),
                           torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.5, 0.25, 1.0]])])
    out_reference, out_fast = reference(positions), fast(positions)
    assert out_fast.shape == (len(positions), levels * features)
    # The interpreter evaluates the kernel with numpy's float32 arithmetic, which rounds differently from both
    # torch and the compiled kernel: agreement to 1e-5 here, where the GPU test holds 1e-6.
    torch.testing.assert_close(out_fast, out_reference, rtol=1e-4, atol=1e-5)
    upstream = torch.randn(out_fast.shape, generator=generator)
    out_reference.backward(upstream)
    out_fast.backward(upstream)
    torch.testing.assert_close(fast.hash_table.grad, reference.hash_table.grad, rtol=1e-4, atol=1e-5)
    # A kernel that dropped a corner or a level would be off by a whole contribution, not by rounding.
    assert fast.hash_table.grad.abs().sum() > 0
