"""Multiresolution hash encodings (instant-NGP, Mueller et al. 2022): the one place that probes the backends.

Backends:
- `tcnn`: tiny-cuda-nn's fused CUDA kernel, used whenever `import tinycudann` works and the field lives on a GPU.
- `triton`: our Triton kernels (`nerf/triton_hash.py`), used on a GPU when tinycudann does not import and triton does.
- `torch`: nerfstudio's pure-torch `HashEncoding` (same parameters, hash and level scales), with a forward pass
  that hashes all 8 cell corners in one broadcast and a backward pass that is one scatter-add; about 4x faster
  on a CPU than nerfstudio's corner-by-corner version and equal to it up to float rounding (tests compare them).
"""

from __future__ import annotations

import functools
import importlib
import logging
from typing import TYPE_CHECKING

import torch
from nerfstudio.field_components.encodings import HashEncoding
from torch import Tensor

from scenes.errors import InvalidInputError

if TYPE_CHECKING:
    from nerf.field import FieldConfig

logger = logging.getLogger(__name__)

#: The official install command of tiny-cuda-nn's torch bindings (needs a CUDA toolkit).
TCNN_INSTALL_COMMAND = "pip install ninja git+https://github.com/NVlabs/tiny-cuda-nn/#subdirectory=bindings/torch"
#: Values accepted by `FieldConfig.backend`.
BACKEND_CHOICES = ("auto", "torch", "triton", "tcnn")

# instant-NGP's spatial hash primes (Eq. 4), as int32 with the same low 32 bits: products wrap modulo 2^32 like
# the uint32 arithmetic of the paper, and the table size is a power of two, so the index (low bits of the xor) is
# the one nerfstudio's int64 arithmetic gives.
_PRIMES = (1, 2654435761 - 2**32, 805459861)


@functools.cache
def import_error(module: str) -> str | None:
    """Why `import <module>` fails on this machine, or None when it works (probed once per process)."""
    try:
        importlib.import_module(module)
    except Exception as error:  # a missing module, a missing libcuda, an unknown compute capability ...
        return f"{type(error).__name__}: {error}"
    return None


def tcnn_import_error() -> str | None:
    """Why tiny-cuda-nn's torch bindings do not import here, or None."""
    return import_error("tinycudann")


def triton_import_error() -> str | None:
    """Why Triton does not import here, or None."""
    return import_error("triton")


#: GPU-only backends, fastest first: the module each needs and how to install it.
GPU_BACKENDS = {"tcnn": ("tinycudann", TCNN_INSTALL_COMMAND), "triton": ("triton", "pip install triton")}


def available_backends(device: torch.device | str | None = None) -> list[str]:
    """Backends that can encode on `device` (default: CUDA when present), fastest first."""
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    gpu = [name for name, (module, _) in GPU_BACKENDS.items() if device.type == "cuda" and not import_error(module)]
    return [*gpu, "torch"]


def resolve_backend(requested: str, device: torch.device | str) -> str:
    """The backend `requested` (one of `BACKEND_CHOICES`) stands for on `device`; raises if it cannot run there."""
    device = torch.device(device)
    if requested not in BACKEND_CHOICES:
        raise InvalidInputError("FieldConfig.backend", f"unknown backend {requested!r}",
                                f"use one of {', '.join(BACKEND_CHOICES)}")
    if requested == "auto":
        return available_backends(device)[0]
    if requested in GPU_BACKENDS:
        module, install = GPU_BACKENDS[requested]
        error = import_error(module)
        if error is not None:
            raise InvalidInputError("FieldConfig.backend", f"'{requested}' was asked for but `import {module}` "
                                                           f"fails ({error})",
                                    f"install it with `{install}`, or set backend to 'auto' or 'torch'")
        if device.type != "cuda":
            raise InvalidInputError("FieldConfig.backend", f"'{requested}' runs on CUDA devices only, the field "
                                                           f"is on {device}", "set device to 'cuda', or backend to 'auto'")
    return requested


class TorchHashEncoding(HashEncoding):
    """nerfstudio's pure-torch hash encoding with a faster forward pass (same table, hash, scales and output).

    Input positions [P, 3] in [0, 1]; output [P, num_levels * features_per_level].
    """

    def __init__(self, num_levels: int, min_res: int, max_res: int, log2_hashmap_size: int, features_per_level: int):
        super().__init__(num_levels=num_levels, min_res=min_res, max_res=max_res, log2_hashmap_size=log2_hashmap_size,
                         features_per_level=features_per_level, implementation="torch")
        self.register_buffer("level_scales", self.scalings.to(torch.float32).view(-1, 1, 1), persistent=False)
        self.register_buffer("level_offsets", self.hash_offset.to(torch.int32).view(-1, 1, 1, 1, 1), persistent=False)

    def pytorch_fwd(self, in_tensor: Tensor) -> Tensor:
        # Work in [L, ..., P] layouts: the point axis innermost keeps every elementwise op contiguous and vectorised.
        points = in_tensor.t()  # [3, P]
        num_points, levels, features = points.shape[1], self.num_levels, self.features_per_level
        scaled = points[None] * self.level_scales  # [L, 3, P]
        lower = torch.floor(scaled)
        frac = scaled - lower  # [L, 3, P] trilinear weight of each axis's upper corner
        lower = lower.to(torch.int32)
        # Hash each axis's two grid coordinates once, then combine the 8 corners by broadcasting xor.
        # Corner (i, j, k) in {0, 1}^3 sits at [:, i, j, k] of the [L, 2, 2, 2, P] arrays below.
        axis_hash = [torch.stack([lower[:, a] * _PRIMES[a], (lower[:, a] + 1) * _PRIMES[a]], dim=1)
                     for a in range(3)]  # 3 x [L, 2, P]
        corner_hash = (axis_hash[0][:, :, None, None] ^ axis_hash[1][:, None, :, None]
                       ^ axis_hash[2][:, None, None, :])  # [L, 2, 2, 2, P]
        row = (corner_hash & (self.hash_table_size - 1)) + self.level_offsets  # [L, 2, 2, 2, P] table rows
        axis_weight = torch.stack([1 - frac, frac], dim=2)  # [L, 3, 2, P]
        weight = (axis_weight[:, 0, :, None, None] * axis_weight[:, 1, None, :, None]
                  * axis_weight[:, 2, None, None, :]).view(levels, 8, num_points)  # [L, 8, P]
        corner_features = gather_rows_transposed(self.hash_table, row.view(-1).to(torch.int64))  # [F, L * 8 * P]
        corner_features = corner_features.view(features, levels, 8, num_points)
        encoded = (corner_features * weight).sum(dim=2)  # [F, L, P]
        return encoded.permute(2, 1, 0).reshape(num_points, levels * features)


class _GatherRowsTransposed(torch.autograd.Function):
    """table[index].T, whose backward is one scatter-add along the rows of a [F, N] gradient.

    torch's own backward of row indexing (index_add / index_put with accumulate) is several times slower on a
    CPU than this scatter-add, and the table gradient is a bottleneck of a fit.
    """

    @staticmethod
    def forward(ctx, table: Tensor, index: Tensor) -> Tensor:
        ctx.save_for_backward(index)
        ctx.num_rows = table.shape[0]
        return table.t().index_select(1, index)

    @staticmethod
    def backward(ctx, grad_columns: Tensor):
        (index,) = ctx.saved_tensors
        features = grad_columns.shape[0]
        grad_table = torch.zeros((features, ctx.num_rows), dtype=grad_columns.dtype, device=grad_columns.device)
        grad_table.scatter_add_(1, index.view(1, -1).expand(features, -1), grad_columns.contiguous())
        return grad_table.t().contiguous(), None


def gather_rows_transposed(table: Tensor, index: Tensor) -> Tensor:
    """Rows of `table` [N, F] at int64 `index` [M], as columns [F, M]; differentiable in `table`."""
    return _GatherRowsTransposed.apply(table, index)


def make_hash_encoding(config: FieldConfig, device: torch.device | str) -> tuple[torch.nn.Module, str]:
    """A hash encoding on `device` for inputs [P, 3] in [0, 1], and the name of the backend it uses.

    Its output [P, num_levels * features_per_level] is float32 whichever the backend (tcnn computes in half).
    """
    backend = resolve_backend(config.backend, device)
    for name in ("num_levels", "log2_hashmap_size", "features_per_level", "base_resolution", "max_resolution"):
        if int(getattr(config, name)) < 1:
            raise InvalidInputError(f"FieldConfig.{name}", f"must be a positive integer, got {getattr(config, name)}",
                                    "use the defaults of FieldConfig as a starting point")
    if config.max_resolution < config.base_resolution:
        raise InvalidInputError("FieldConfig.max_resolution", f"{config.max_resolution} is below base_resolution "
                                                              f"{config.base_resolution}",
                                "make the finest level at least as fine as the coarsest")
    if config.num_levels * 2**config.log2_hashmap_size > 2**31:  # table rows are indexed in int32
        raise InvalidInputError("FieldConfig.log2_hashmap_size", f"{config.num_levels} levels of "
                                                                 f"2^{config.log2_hashmap_size} entries is too large",
                                "use 14 to 22")
    kwargs = dict(num_levels=config.num_levels, min_res=config.base_resolution, max_res=config.max_resolution,
                  log2_hashmap_size=config.log2_hashmap_size, features_per_level=config.features_per_level)
    if backend == "tcnn":
        module = HashEncoding(implementation="tcnn", **kwargs)
    elif backend == "triton":
        from nerf.triton_hash import TritonHashEncoding  # imports triton, which the probe above found

        module = TritonHashEncoding(**kwargs)
    else:
        module = TorchHashEncoding(**kwargs)
    logger.info("hash encoding: backend %s, %d levels of 2^%d x %d, resolutions %d..%d", backend,
                config.num_levels, config.log2_hashmap_size, config.features_per_level, config.base_resolution,
                config.max_resolution)
    return module.to(device), backend
