"""The contracts between generators and the rest of nvsc.

`Denoiser`: a pose-conditioned image-to-image diffusion network (3DiM's X-UNet or a foreign model behind an adapter,
as k-diffusion's `external.py` wraps foreign denoisers). Samplers in `generators.samplers` are plain functions over
this contract and never look inside the network.

`MultiViewDenoiser`: a network that denoises N views of one scene together, view 0 conditioning the others
(MVDiffusion's multi-branch UNet, `generators.multiview_unet`); sampled by `generators.samplers.joint`.

`ViewGenerator`: anything that turns input views and target cameras into images, for black-box models that expose
no denoiser (and for any denoiser through `generators.denoiser_generator`, the X-UNet included).

A plug-in (see `generators.registry`) returns either. A plug-in `Denoiser` may also carry `device` (where its inputs
must live; an `nn.Module` is asked for its parameters' device instead) and `schedule` (a `CosineLogSNRSchedule`
whose logSNR range it was trained on; default [-20, 20]).
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch

from scenes.cameras import Cameras
from scenes.scene import MultiViewScene


@runtime_checkable
class Denoiser(Protocol):
    """Predicts the noise in a noisy target view, given one clean conditioning view and both cameras.

    All tensors live on the denoiser's device; images are in [-1, 1]; cameras are camera-to-world matrices with
    OpenGL axes; intrinsics are (fx, fy, cx, cy) in pixels of the `image_size` x `image_size` images.
    """

    image_size: int
    """Side of the square images the denoiser works at."""
    parameterization: Literal["eps"]
    """What the output predicts: "eps" is the noise added to the clean target (Ho et al. 2020)."""
    supports_guidance: bool
    """True when `cond_mask = 0` gives an unconditional prediction, so classifier-free guidance can be used."""

    def __call__(self, z_t: torch.Tensor, logsnr: torch.Tensor, cond_image: torch.Tensor, cond_c2w: torch.Tensor,
                 target_c2w: torch.Tensor, intrinsics: torch.Tensor, cond_mask: torch.Tensor | None = None
                 ) -> torch.Tensor:
        """eps [B, 3, H, W] for z_t [B, 3, H, W] at logsnr [B], given cond_image [B, 3, H, W], cond_c2w and
        target_c2w [B, 4, 4], intrinsics [B, 4] and cond_mask [B] (1 = conditioned, 0 = unconditional; None = all 1)."""
        ...


@runtime_checkable
class MultiViewDenoiser(Protocol):
    """Predicts the noise in N noisy views at once, given the clean view 0, every camera and (optionally) depth.

    Conventions as `Denoiser`; view 0 is the conditioning view, views 1 .. N - 1 are generated.
    """

    image_size: int
    """Side of the square images the denoiser works at."""
    parameterization: Literal["eps"]
    """What the output predicts: "eps" is the noise added to the clean views (Ho et al. 2020)."""
    supports_guidance: bool
    """True when `cond_mask = 0` gives a prediction that ignores view 0's image (classifier-free guidance)."""

    def __call__(self, z_t: torch.Tensor, logsnr: torch.Tensor, cond_image: torch.Tensor, c2w: torch.Tensor,
                 intrinsics: torch.Tensor, depth: torch.Tensor | None = None, cond_mask: torch.Tensor | None = None
                 ) -> torch.Tensor:
        """eps [B, N, 3, H, W] for z_t [B, N, 3, H, W] at logsnr [B], given cond_image [B, 3, H, W] (view 0, clean),
        c2w [B, N, 4, 4], intrinsics [B, 4], depth [B, N, H, W] (for depth-conditioned models) and cond_mask [B]."""
        ...


@runtime_checkable
class ViewGenerator(Protocol):
    """Generates views of the object in `input_views` as seen from `target_cameras`."""

    def generate(self, input_views: MultiViewScene, target_cameras: Cameras, seed: int) -> np.ndarray:
        """Images [N, H, W, 3] float32 in [0, 1], one per target camera; the same seed gives the same images."""
        ...
