"""The concat-UNet baseline of 3DiM's ablation (Watson et al. 2023, Sec. 5.2, Table 3: X-UNet vs concat-UNet).

Instead of running both views through shared weights as two frames that meet in cross-attention (the X-UNet), the
conditioning view and the noisy target are stacked as the 6 input channels of one ordinary UNet ("concatenation",
as in SR3 and Palette image-to-image diffusion). Pose conditioning is the X-UNet's: the NeRF positional encoding of
the rays through every pixel, here of both cameras stacked per pixel, added to the logSNR embedding and turned into
per-block FiLM scales and shifts. Same `Denoiser` contract and the same `XUNetConfig` fields as the X-UNet (with
self-attention only at `attn_resolutions`), so the two differ only in how the views meet.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from generators.film import pose_film_inputs
from generators.unet_levels import build_levels, run_levels
from generators.xunet import (ADDED_FIELDS, AttnBlock, ResnetBlock, XUNetConfig, _group_norm, _zero_init,
                              logsnr_embedding, nerf_positional_encoding)
from scenes.cameras import camera_rays
from scenes.errors import InvalidInputError


class ConcatBlock(nn.Module):
    """A ResNet block, then (at attention resolutions) self-attention over the pixels of the one frame."""

    def __init__(self, in_ch: int, out_ch: int, config: XUNetConfig, use_attn: bool):
        super().__init__()
        self.resnet = ResnetBlock(in_ch, out_ch, config.emb_ch, config.dropout)
        self.attention = AttnBlock(out_ch, config.num_heads, cross=False) if use_attn else nn.Identity()

    def forward(self, x: torch.Tensor, emb_act: torch.Tensor) -> torch.Tensor:
        return self.attention(self.resnet(x, emb_act))


class ConcatUNet(nn.Module):
    """eps prediction for z_t given the conditioning view stacked as extra input channels (the `Denoiser`)."""

    parameterization = "eps"
    supports_guidance = True

    def __init__(self, config: XUNetConfig):
        super().__init__()
        defaults = XUNetConfig.__dataclass_fields__
        changed = sorted(name for name in ADDED_FIELDS if getattr(config, name) != defaults[name].default)
        if changed:
            raise InvalidInputError("XUNetConfig", f"sets {changed}, which only the X-UNet implements",
                                    "leave them at their defaults for the concat-UNet")
        self.config, self.image_size = config, config.image_size
        attends = [r in config.attn_resolutions for r in config.resolutions()]
        pose_dim = 2 * 2 * (3 + 6 * config.pos_octaves)  # origins and directions of both cameras
        self.logsnr_mlp = nn.Sequential(nn.Linear(config.ch, config.emb_ch), nn.SiLU(),
                                        nn.Linear(config.emb_ch, config.emb_ch))
        self.pose_proj = nn.ModuleList(nn.Conv2d(pose_dim, config.emb_ch, 1) for _ in config.ch_mult)
        self.conv_in = nn.Conv2d(6, config.ch, 3, padding=1)

        channels = build_levels(self, config.ch, config.ch_mult, config.num_res_blocks,
                                lambda c_in, c_out, level: ConcatBlock(c_in, c_out, config, attends[level]),
                                lambda c, direction: ResnetBlock(c, c, config.emb_ch, config.dropout, direction))
        self.norm_out = _group_norm(channels)
        self.conv_out = _zero_init(nn.Conv2d(channels, 3, 3, padding=1))

    def _embeddings(self, logsnr: torch.Tensor, cond_c2w: torch.Tensor, target_c2w: torch.Tensor,
                    intrinsics: torch.Tensor, cond_mask: torch.Tensor, height: int, width: int
                    ) -> list[torch.Tensor]:
        """SiLU(logSNR embedding + pose embedding) [B, E, H / 2^i, W / 2^i] for every level i."""
        config, batch, device = self.config, logsnr.shape[0], logsnr.device
        logsnr_emb = self.logsnr_mlp(logsnr_embedding(logsnr, config.ch, config.logsnr_min, config.logsnr_max))
        c2w = torch.stack([cond_c2w, target_c2w], dim=1).flatten(0, 1).to(device, torch.float32)  # [B * 2, 4, 4]
        intrinsics = intrinsics.to(device, torch.float32).expand(batch, 4).repeat_interleave(2, dim=0)
        origins, directions = camera_rays(c2w, intrinsics, height, width)  # [B * 2, H, W, 3]
        pose = torch.cat([nerf_positional_encoding(origins, config.pos_octaves),
                          nerf_positional_encoding(directions, config.pos_octaves)], dim=-1)
        pose = pose.unflatten(0, (batch, 2)).permute(0, 1, 4, 2, 3).flatten(1, 2)  # [B, 2 * P, H, W]
        # As the X-UNet's unconditional mode: without conditioning the model sees neither view nor cameras.
        pose = pose * cond_mask[:, None, None, None]
        return pose_film_inputs(logsnr_emb, pose, self.pose_proj)

    def forward(self, z_t: torch.Tensor, logsnr: torch.Tensor, cond_image: torch.Tensor, cond_c2w: torch.Tensor,
                target_c2w: torch.Tensor, intrinsics: torch.Tensor, cond_mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        """eps [B, 3, H, W]; arguments as `XUNet.forward`."""
        batch, _, height, width = z_t.shape
        if cond_mask is None:
            cond_mask = torch.ones(batch, device=z_t.device)
        cond_mask = cond_mask.to(device=z_t.device, dtype=z_t.dtype)
        emb_acts = self._embeddings(logsnr.to(z_t.device, z_t.dtype), cond_c2w, target_c2w, intrinsics, cond_mask,
                                    height, width)
        h = self.conv_in(torch.cat([cond_image * cond_mask[:, None, None, None], z_t], dim=1))  # [B, ch, H, W]
        h = run_levels(self, h, emb_acts)
        return self.conv_out(F.silu(self.norm_out(h)))

