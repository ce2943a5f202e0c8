"""A generator package that lives outside the repository: written into a folder by the tests, with the
`*.dist-info/entry_points.txt` that registers its generators in the `nvsc.generators` group.

Put the folder on sys.path (or PYTHONPATH) and `importlib.metadata` finds it as an installed distribution.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

DISTRIBUTION, VERSION, MODULE = "nvsc-test-plugin", "0.3.1", "nvsc_test_plugin"

SOURCE = '''
"""Generators of a third-party package, as nvsc sees them: factories named by entry points."""

import numpy as np
import torch


class CopyInputDenoiser:
    """A Denoiser whose conditional prediction is the noise of the conditioning image itself, and whose
    unconditional prediction is that of a grey image, so every sampler returns (a guided blend of) the
    conditioning view."""

    parameterization = "eps"
    supports_guidance = True

    def __init__(self, image_size=32, device="cpu"):
        self.image_size, self.device = image_size, device

    def __call__(self, z_t, logsnr, cond_image, cond_c2w, target_c2w, intrinsics, cond_mask=None):
        alpha, sigma = torch.sigmoid(logsnr).sqrt(), torch.sigmoid(-logsnr).sqrt()
        mask = torch.ones_like(logsnr) if cond_mask is None else cond_mask
        clean = cond_image * mask[:, None, None, None]
        return (z_t - alpha[:, None, None, None] * clean) / sigma[:, None, None, None]


class FlatViews:
    """A black-box ViewGenerator: every target view is one flat colour."""

    def __init__(self, colour):
        self.colour = float(colour)

    def generate(self, input_views, target_cameras, seed):
        k = target_cameras.intrinsics
        return np.full((len(target_cameras), k.height, k.width, 3), self.colour, dtype=np.float32)


def make_denoiser(image_size=32, device="cpu"):
    return CopyInputDenoiser(image_size, device)


def make_flat(colour=0.25):
    return FlatViews(colour)


def not_a_generator():
    return 42
'''

ENTRY_POINTS = """
[nvsc.generators]
copycat = nvsc_test_plugin:make_denoiser
flat = nvsc_test_plugin:make_flat
broken = nvsc_test_plugin:not_a_generator
"""


def write_plugin_package(site: Path) -> Path:
    """Write the package and its distribution metadata into `site` (a folder for sys.path); returns `site`."""
    (site / MODULE).mkdir(parents=True)
    (site / MODULE / "__init__.py").write_text(textwrap.dedent(SOURCE))
    dist_info = site / f"{DISTRIBUTION.replace('-', '_')}-{VERSION}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DISTRIBUTION}\nVersion: {VERSION}\n")
    (dist_info / "entry_points.txt").write_text(ENTRY_POINTS.lstrip())
    return site
