"""MVDiffusion's multi-branch UNet (Tang et al. 2023, Sec. 3 and 4), image-conditioned, built from the X-UNet's parts.

N views of one scene go through one UNet with shared weights, stacked in the batch dimension ([B * N, C, H, W],
view n of scene b at row b * N + n), so convolutions and normalisations see each view on its own. After every UNet
block at the resolutions `caa_resolutions`, a correspondence-aware attention block (`generators.caa`) lets each pixel
read the pixels around its corresponding locations in the other views; that is the only place where views meet.

Image conditioning as in MVDiffusion's image&text-conditioned generation (Sec. 4.1, "the conditioning image enters
with a mask of ones, generated views with a black image and a mask of zeros"): every branch gets, beside its noisy
view z_t, 3 channels of conditioning image and 1 mask channel. View 0 is the conditioning view (its clean image and a
mask of ones), the N - 1 others are generated (black image, mask zeros), so one network completes the N - 1 missing
views around a given one. In the depth-conditioned task (Sec. 4.2) every branch also gets its view's inverse depth
(0 on the background) as an input channel, and correspondences come from depth; in the panorama task they come from
homographies of rotation-only cameras.

Every ResNet block is FiLM-modulated, as in the X-UNet, by the logSNR embedding plus a per-pixel embedding of the
view's camera rays (NeRF positional encoding of origins and directions). Classifier-free guidance: where `cond_mask`
is 0, view 0's conditioning image and mask are zeroed, so it is generated like the others; the cameras (and depth)
stay, since the correspondences need them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from generators.caa import CorrespondenceAttention
from generators.correspondence import (Correspondences, depth_correspondences, homography_correspondences,
                                       nearest_views, pool_depth, scale_intrinsics)
from generators.film import pose_film_inputs
from generators.unet_levels import build_levels, run_levels
from generators.xunet import (AttnBlock, ResnetBlock, XUNetConfig, _group_norm, _zero_init, logsnr_embedding,
                              nerf_positional_encoding)
from scenes.cameras import camera_rays
from scenes.errors import InvalidInputError

CORRESPONDENCE_KINDS = ("depth", "homography")


@dataclass
class MultiViewUNetConfig(XUNetConfig):
    """Shape of the multi-branch UNet: the X-UNet's fields (`attn_resolutions` here means self-attention inside each
    view) plus the multi-view ones; stored in a checkpoint's config.json under "model"."""

    caa_resolutions: tuple[int, ...] = (16, 8)
    """Resolutions (pixels per side) whose blocks are followed by a CAA block; () gives N independent UNets."""
    caa_kernel: int = 3
    """K of the K x K neighbourhood each pixel attends to around its correspondence in every other view."""
    num_views: int = 4
    """Views per training group: the conditioning view and num_views - 1 generated ones."""
    caa_views: int = 0
    """Other views each view's CAA reads: the conditioning view and the nearest by viewing direction; 0 =
    num_views - 1, as in training, so sampling many views at once costs CAA no more per view than a training group."""
    correspondence: str = "depth"
    """`depth` (objects: cameras plus per-view depth, which also enters as an input channel) or `homography`
    (panoramas: rotation-only cameras, no depth)."""

    def __post_init__(self):
        super().__post_init__()
        self.caa_resolutions = tuple(int(r) for r in self.caa_resolutions)
        if set(self.caa_resolutions) - set(self.resolutions()):
            raise InvalidInputError("MultiViewUNetConfig.caa_resolutions", f"{self.caa_resolutions} lists sizes that "
                                    f"are not UNet resolutions {self.resolutions()}", "list only UNet resolutions")
        if self.caa_kernel < 1 or self.caa_kernel % 2 == 0:
            raise InvalidInputError("MultiViewUNetConfig.caa_kernel", f"is {self.caa_kernel}",
                                    "use a positive odd number (3 in MVDiffusion)")
        if self.num_views < 2:
            raise InvalidInputError("MultiViewUNetConfig.num_views", f"is {self.num_views}",
                                    "use at least 2 (one conditioning view and one generated view)")
        if self.caa_views < 0:
            raise InvalidInputError("MultiViewUNetConfig.caa_views", f"is {self.caa_views}",
                                    "use 0 (num_views - 1) or a positive number of views")
        if self.correspondence not in CORRESPONDENCE_KINDS:
            raise InvalidInputError("MultiViewUNetConfig.correspondence", f"unknown kind {self.correspondence!r}",
                                    f"use one of: {', '.join(CORRESPONDENCE_KINDS)}")

    @property
    def uses_depth(self) -> bool:
        return self.correspondence == "depth"


#: "tiny" trains on a CPU at 32x32 with groups of 4 views, CAA at 16x16 and 8x8 only (benchmarks/multiview.py: on
#: the CPU it trains 0.45x as many generated views per second as the tiny X-UNet). "mvd-64" is the GPU size: CAA
#: after every block at every level, as MVDiffusion, groups of 8 views (a panorama), each view reading its 2 nearest
#: views, which bounds the gathered keys at 64x64 to 2 * 9 per pixel (not yet measured on a GPU).
MULTIVIEW_PRESETS: dict[str, MultiViewUNetConfig] = {
    "tiny": MultiViewUNetConfig(image_size=32, ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(8,),
                                num_heads=4, dropout=0.0, emb_ch=64, pos_octaves=6, caa_resolutions=(16, 8),
                                num_views=4),
    "mvd-64": MultiViewUNetConfig(image_size=64, ch=128, ch_mult=(1, 2, 2, 4), num_res_blocks=2,
                                  attn_resolutions=(8, 16), num_heads=4, dropout=0.1, emb_ch=512, pos_octaves=10,
                                  caa_resolutions=(64, 32, 16, 8), num_views=8, caa_views=2),
}


class MultiViewBlock(nn.Module):
    """A ResNet block, self-attention inside each view (at `attn_resolutions`), then CAA (at `caa_resolutions`)."""

    def __init__(self, in_ch: int, out_ch: int, config: MultiViewUNetConfig, use_attn: bool, use_caa: bool):
        super().__init__()
        self.resnet = ResnetBlock(in_ch, out_ch, config.emb_ch, config.dropout)
        self.attention = AttnBlock(out_ch, config.num_heads, cross=False) if use_attn else nn.Identity()
        self.caa = CorrespondenceAttention(out_ch, config.num_heads, config.caa_kernel) if use_caa else None

    def forward(self, x: torch.Tensor, emb_act: torch.Tensor, correspondences: Correspondences) -> torch.Tensor:
        h = self.attention(self.resnet(x, emb_act))
        return self.caa(h, correspondences) if self.caa is not None else h


class MultiViewUNet(nn.Module):
    """eps prediction for N views denoised together, view 0 conditioning the others (the `MultiViewDenoiser`)."""

    parameterization = "eps"
    supports_guidance = True

    def __init__(self, config: MultiViewUNetConfig):
        super().__init__()
        self.config, self.image_size = config, config.image_size
        resolutions = config.resolutions()
        attends = [r in config.attn_resolutions for r in resolutions]
        mixes = [r in config.caa_resolutions for r in resolutions]
        pose_dim = 2 * (3 + 6 * config.pos_octaves)
        self.logsnr_mlp = nn.Sequential(nn.Linear(config.ch, config.emb_ch), nn.SiLU(),
                                        nn.Linear(config.emb_ch, config.emb_ch))
        self.pose_proj = nn.ModuleList(nn.Conv2d(pose_dim, config.emb_ch, 1) for _ in config.ch_mult)
        # z_t (3), conditioning image (3), mask (1), inverse depth (1, depth task only).
        self.conv_in = nn.Conv2d(7 + int(config.uses_depth), config.ch, 3, padding=1)

        channels = build_levels(self, config.ch, config.ch_mult, config.num_res_blocks,
                                lambda c_in, c_out, level: MultiViewBlock(c_in, c_out, config, attends[level],
                                                                          mixes[level]),
                                lambda c, direction: ResnetBlock(c, c, config.emb_ch, config.dropout, direction))
        self.norm_out = _group_norm(channels)
        self.conv_out = _zero_init(nn.Conv2d(channels, 3, 3, padding=1))

    def correspondences(self, c2w: torch.Tensor, intrinsics: torch.Tensor, depth: torch.Tensor | None
                        ) -> list[Correspondences | None]:
        """Correspondences at every level's resolution (None where no CAA block reads them), in float32 even under
        autocast: bf16 would move a point at 64 pixels by a quarter pixel."""
        with torch.autocast(c2w.device.type, enabled=False):
            return self._correspondences(c2w.float(), intrinsics.float(), depth.float() if depth is not None else None)

    def _correspondences(self, c2w: torch.Tensor, intrinsics: torch.Tensor, depth: torch.Tensor | None
                         ) -> list[Correspondences | None]:
        config, found = self.config, []
        # [B, N, M], the same at every level; every view reads the conditioning view 0, as in training groups.
        others = nearest_views(c2w, config.caa_views or config.num_views - 1, anchor=0)
        for level, size in enumerate(config.resolutions()):
            if size not in config.caa_resolutions:
                found.append(None)
                continue
            factor = 2 ** level
            k = scale_intrinsics(intrinsics, 1.0 / factor)
            if config.uses_depth:
                found.append(depth_correspondences(c2w, k, pool_depth(depth, factor), others))
            else:
                found.append(homography_correspondences(c2w, k, size, size, others))
        return found

    def _embeddings(self, logsnr: torch.Tensor, c2w: torch.Tensor, intrinsics: torch.Tensor, height: int,
                    width: int) -> list[torch.Tensor]:
        """SiLU(logSNR embedding + ray embedding) [B * N, E, H / 2^i, W / 2^i] for every level i."""
        config = self.config
        batch, views = c2w.shape[:2]
        logsnr_emb = self.logsnr_mlp(logsnr_embedding(logsnr.repeat_interleave(views), config.ch, config.logsnr_min,
                                                      config.logsnr_max))
        k = intrinsics.repeat_interleave(views, dim=0)
        origins, directions = camera_rays(c2w.flatten(0, 1), k, height, width)  # [B * N, H, W, 3]
        pose = torch.cat([nerf_positional_encoding(origins, config.pos_octaves),
                          nerf_positional_encoding(directions, config.pos_octaves)], dim=-1).permute(0, 3, 1, 2)
        return pose_film_inputs(logsnr_emb, pose, self.pose_proj)

    def check(self, z_t: torch.Tensor, c2w: torch.Tensor, intrinsics: torch.Tensor, depth: torch.Tensor | None
              ) -> None:
        """Raise `InvalidInputError` for inputs of the wrong shape, or missing depth in the depth task."""
        size = self.image_size
        if z_t.ndim != 5 or tuple(z_t.shape[2:]) != (3, size, size) or z_t.shape[1] < 2:
            raise InvalidInputError("z_t", f"shape {list(z_t.shape)}", f"pass [B, N, 3, {size}, {size}] with N >= 2")
        batch, views = z_t.shape[:2]
        if tuple(c2w.shape) != (batch, views, 4, 4) or tuple(intrinsics.shape) != (batch, 4):
            raise InvalidInputError("cameras", f"c2w {list(c2w.shape)}, intrinsics {list(intrinsics.shape)}",
                                    f"pass c2w [{batch}, {views}, 4, 4] and intrinsics [{batch}, 4]")
        if self.config.uses_depth and (depth is None or tuple(depth.shape) != (batch, views, size, size)):
            raise InvalidInputError("depth", f"{'missing' if depth is None else list(depth.shape)} for a "
                                    "depth-conditioned model", f"pass the depth of every view, [B, N, {size}, {size}]")

    def forward(self, z_t: torch.Tensor, logsnr: torch.Tensor, cond_image: torch.Tensor, c2w: torch.Tensor,
                intrinsics: torch.Tensor, depth: torch.Tensor | None = None, cond_mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        """eps [B, N, 3, H, W] for the noisy views z_t [B, N, 3, H, W] at logsnr [B], given the clean view 0
        cond_image [B, 3, H, W], cameras c2w [B, N, 4, 4] (OpenGL axes), intrinsics [B, 4] (fx, fy, cx, cy), depth
        [B, N, H, W] along each viewing axis (+inf on the background; depth task only) and cond_mask [B]
        (1 = conditioned on view 0, 0 = unconditional; None = all 1)."""
        self.check(z_t, c2w, intrinsics, depth)
        batch, views, _, height, width = z_t.shape
        device, dtype = z_t.device, z_t.dtype
        if cond_mask is None:
            cond_mask = torch.ones(batch, device=device)
        cond_mask = cond_mask.to(device, dtype)
        c2w, intrinsics = c2w.to(device, torch.float32), intrinsics.to(device, torch.float32)
        depth = depth.to(device, torch.float32) if depth is not None else None
        emb_acts = self._embeddings(logsnr.to(device, torch.float32), c2w, intrinsics, height, width)
        found = self.correspondences(c2w, intrinsics, depth)

        mask = torch.zeros(batch, views, 1, height, width, device=device, dtype=dtype)
        mask[:, 0] = cond_mask[:, None, None, None]
        conditioning = torch.zeros_like(z_t)
        conditioning[:, 0] = cond_image.to(device, dtype) * cond_mask[:, None, None, None]
        inputs = [z_t, conditioning, mask]
        if self.config.uses_depth:
            # Inverse depth: bounded, and 0 on the background (+inf depth) without a special value.
            inputs.append((1.0 / depth.clamp_min(1e-6))[:, :, None].to(dtype))
        h = self.conv_in(torch.cat(inputs, dim=2).flatten(0, 1))  # [B * N, ch, H, W]

        h = run_levels(self, h, emb_acts, per_level=found)
        return self.conv_out(F.silu(self.norm_out(h))).unflatten(0, (batch, views))
