"""Hash encoding backends: the torch backend against nerfstudio's reference, and the backend probe's errors."""

import dataclasses

import pytest
import torch
from nerfstudio.field_components.encodings import HashEncoding

from nerf.encoding import (TCNN_INSTALL_COMMAND, TorchHashEncoding, available_backends, make_hash_encoding,
                           resolve_backend, tcnn_import_error)
from nerf.field import FieldConfig
from scenes.errors import InvalidInputError


@pytest.mark.parametrize("levels, log2_size, features", [(8, 12, 2), (5, 10, 4)])
def test_torch_encoding_matches_nerfstudio_reference(levels, log2_size, features):
    torch.manual_seed(0)
    kwargs = dict(num_levels=levels, min_res=4, max_res=200, log2_hashmap_size=log2_size,
                  features_per_level=features)
    fast = TorchHashEncoding(**kwargs)
    reference = HashEncoding(implementation="torch", **kwargs)
    with torch.no_grad():
        fast.hash_table.normal_()
        reference.hash_table.copy_(fast.hash_table)
    # Grid vertices (integer scaled coordinates) and the box faces are the corner cases of the interpolation.
    positions = torch.cat([torch.rand(3000, 3), torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.5, 0.25, 1.0]])])
    out_fast, out_reference = fast(positions), reference(positions)
    assert out_fast.shape == (len(positions), levels * features)
    torch.testing.assert_close(out_fast, out_reference, rtol=1e-5, atol=1e-6)
    upstream = torch.randn_like(out_fast)
    out_fast.backward(upstream)
    out_reference.backward(upstream)
    torch.testing.assert_close(fast.hash_table.grad, reference.hash_table.grad, rtol=1e-4, atol=1e-5)


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
