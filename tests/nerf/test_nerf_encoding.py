"""Hash encoding: tiny-cuda-nn's layout, the torch backend against a float64 reference of hashing and trilinear
interpolation, and the backend probe's errors."""

import dataclasses

import numpy as np
import pytest
import torch

from nerf.encoding import (TCNN_INSTALL_COMMAND, available_backends, make_hash_encoding, resolve_backend,
                           tcnn_import_error)
from nerf.hash_grid import TorchHashEncoding, grid_layout
from nerf.field import FieldConfig
from scenes.errors import InvalidInputError


def reference_encoding(points: np.ndarray, table: np.ndarray, num_levels: int, base: int, finest: int,
                       log2_size: int, upstream: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """tiny-cuda-nn's hash encoding of points [P, 3] with `table` [rows, F], point by point and corner by corner in
    float64 with Python integers (exact uint32 hashing and modulo); also the table's gradient of
    sum(encoding * upstream). Only the vertex position s * x + 0.5 is rounded to float32, as tcnn's fmaf does."""
    features = table.shape[1]
    growth = np.exp((np.log(finest) - np.log(base)) / (num_levels - 1)) if num_levels > 1 else 1.0
    log2_growth = np.float32(np.log2(np.float32(growth)))
    out, grad, offset = np.zeros((len(points), num_levels * features)), np.zeros_like(table), 0
    for level in range(num_levels):
        scale = np.float32(np.float32(np.exp2(np.float32(level) * log2_growth)) * np.float32(base) - np.float32(1))
        resolution = int(np.ceil(scale)) + 1
        rows = min((resolution**3 + 7) // 8 * 8, 2**log2_size)
        for p, point in enumerate(points):
            position = [float(np.float32(float(scale) * float(x) + 0.5)) for x in point]
            vertex = [int(np.floor(v)) for v in position]
            frac = [v - np.floor(v) for v in position]
            for corner in range(8):
                bits = [(corner >> axis) & 1 for axis in range(3)]
                c = [vertex[axis] + bits[axis] for axis in range(3)]
                weight = np.prod([frac[axis] if bits[axis] else 1 - frac[axis] for axis in range(3)])
                if rows < resolution**3:
                    index = ((c[0] * 1) ^ (c[1] * 2654435761) ^ (c[2] * 805459861)) & 0xFFFFFFFF
                else:
                    index = c[0] + c[1] * resolution + c[2] * resolution**2
                row = offset + index % rows
                columns = slice(level * features, (level + 1) * features)
                out[p, columns] += weight * table[row]
                grad[row] += weight * upstream[p, columns]
        offset += rows
    assert offset == len(table)
    return out, grad


def test_layout_follows_tiny_cuda_nn():
    # Growth 2 from 4 to 32: scales 3, 7, 15, 31 and resolutions 4, 8, 16, 32 vertices; with T = 2^12 the first
    # three levels fit densely (64, 512, 4096 rows; 4096 <= T counts as fitting), the last one is hashed.
    layout = grid_layout(4, 4, 32, 12)
    np.testing.assert_array_equal(layout.scales, [3, 7, 15, 31])
    np.testing.assert_array_equal(layout.resolutions, [4, 8, 16, 32])
    np.testing.assert_array_equal(layout.sizes, [64, 512, 4096, 4096])
    np.testing.assert_array_equal(layout.offsets, [0, 64, 576, 4672])
    np.testing.assert_array_equal(layout.hashed, [False, False, False, True])
    assert layout.num_rows == 8768
    # Resolution 3 has 27 vertices: rounded up to 32 rows, so accesses stay aligned.
    assert grid_layout(1, 3, 3, 10).sizes.tolist() == [32]


# Dense and hashed levels, odd feature counts, growth factors that are not powers of two.
@pytest.mark.parametrize("levels, base, finest, log2_size, features", [(4, 4, 32, 12, 2), (6, 3, 150, 10, 3),
                                                                       (1, 5, 5, 8, 1)])
def test_torch_encoding_matches_float64_reference(levels, base, finest, log2_size, features):
    torch.manual_seed(0)
    encoding = TorchHashEncoding(num_levels=levels, min_res=base, max_res=finest, log2_hashmap_size=log2_size,
                                 features_per_level=features)
    with torch.no_grad():
        encoding.hash_table.normal_()
    # Grid vertices (integer scaled coordinates) and the box faces are the corner cases of the interpolation.
    positions = torch.cat([torch.rand(150, 3), torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.5, 0.25, 1.0]])])
    upstream = torch.randn(len(positions), levels * features)
    out = encoding(positions)
    out.backward(upstream)
    expected, expected_grad = reference_encoding(positions.double().numpy(), encoding.hash_table.detach().double()
                                                 .numpy(), levels, base, finest, log2_size, upstream.double().numpy())
    np.testing.assert_allclose(out.detach().double().numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(encoding.hash_table.grad.double().numpy(), expected_grad, rtol=1e-5, atol=1e-5)


def test_make_hash_encoding_on_cpu_uses_torch():
    config = FieldConfig(num_levels=4, log2_hashmap_size=10, features_per_level=2, backend="auto")
    module, backend = make_hash_encoding(config, "cpu")
    assert backend == "torch" and isinstance(module, TorchHashEncoding)
    out = module(torch.rand(7, 3))
    assert out.shape == (7, 8) and out.dtype == torch.float32
    assert available_backends("cpu") == ["torch"]


@pytest.mark.skipif(tcnn_import_error() is None, reason="tinycudann imports here, so asking for it cannot fail")
def test_asking_for_missing_tcnn_names_the_install_command():
    with pytest.raises(InvalidInputError, match="FieldConfig.backend") as error:
        resolve_backend("tcnn", "cuda")
    assert TCNN_INSTALL_COMMAND in str(error.value)
    with pytest.raises(InvalidInputError):
        make_hash_encoding(FieldConfig(backend="tcnn"), "cpu")


def test_tcnn_on_cpu_and_unknown_backends_are_refused():
    with pytest.raises(InvalidInputError, match="FieldConfig.backend"):
        resolve_backend("cuda-kernel", "cpu")
    if tcnn_import_error() is None:
        with pytest.raises(InvalidInputError, match="CUDA"):
            resolve_backend("tcnn", "cpu")


@pytest.mark.parametrize("change", [dict(num_levels=0), dict(max_resolution=8, base_resolution=16)])
def test_bad_grid_sizes_are_refused(change):
    with pytest.raises(InvalidInputError, match="FieldConfig"):
        make_hash_encoding(dataclasses.replace(FieldConfig(), **change), "cpu")
