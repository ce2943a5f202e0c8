"""Multiresolution hash encodings (instant-NGP, Mueller et al. 2022): the one place that probes the backends.

Backends:
- `tcnn`: tiny-cuda-nn's fused CUDA kernel, used whenever `import tinycudann` works and the field lives on a GPU.
- `triton`: our Triton kernels (`nerf/triton_hash.py`), used on a GPU when tinycudann does not import and triton does.
- `torch`: `nerf.hash_grid.TorchHashEncoding`, the readable reference in plain torch.
All three share tiny-cuda-nn's layout and hash (`nerf/hash_grid.py`), so one table means the same field in each.
"""

from __future__ import annotations

import functools
import importlib
import logging
from typing import TYPE_CHECKING

import torch
from nerfstudio.field_components.encodings import HashEncoding

from nerf.hash_grid import TorchHashEncoding
from scenes.errors import InvalidInputError

if TYPE_CHECKING:
    from nerf.field import FieldConfig

logger = logging.getLogger(__name__)

#: The official install command of tiny-cuda-nn's torch bindings (needs a CUDA toolkit).
TCNN_INSTALL_COMMAND = "pip install ninja git+https://github.com/NVlabs/tiny-cuda-nn/#subdirectory=bindings/torch"
#: Values accepted by `FieldConfig.backend`.
BACKEND_CHOICES = ("auto", "torch", "triton", "tcnn", "nerfstudio")

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
        # nerfstudio's wrapper configures tiny-cuda-nn's "HashGrid" with the same growth factor as
        # `nerf.hash_grid.per_level_scale`, so its parameter array has our layout.
        module = HashEncoding(implementation="tcnn", **kwargs)
    elif backend == "triton":
        from nerf.triton_hash import TritonHashEncoding  # imports triton, which the probe above found

        module = TritonHashEncoding(**kwargs)
    elif backend == "nerfstudio":
        module = HashEncoding(implementation="torch", **kwargs)
    else:
        module = TorchHashEncoding(**kwargs)
    logger.info("hash encoding: backend %s, %d levels of 2^%d x %d, resolutions %d..%d", backend,
                config.num_levels, config.log2_hashmap_size, config.features_per_level, config.base_resolution,
                config.max_resolution)
    return module.to(device), backend
