"""3DiM's X-UNet (Watson et al. 2023, "Novel View Synthesis with Diffusion Models", Sec. 3 and Appendix).

Two frames per example go through the same UNet weights: frame 0 is the clean conditioning view, frame 1 the noisy
target z_t. Frames are stacked in the batch dimension, conditioning frames first ([B * 2, C, H, W], row f * B + b
is frame f of example b), so convolutions and normalisations see each frame on its own; only the attention blocks
mix them: self-attention inside each frame, then cross-attention where each frame attends to the other one. (With
the frames in two blocks of rows, the other frames are the rows with the halves swapped, and the target frame's part
is a slice; with the frames interleaved the compiled backward assembled the attention's gradients from strided
pieces, 1.9 ms of a `3dim-64` step on an H100.)

Every ResNet block is modulated (FiLM) by the sum of two embeddings: the frame's logSNR (the clean conditioning
frame is told logsnr_max) and its per-pixel pose embedding, i.e. the NeRF positional encoding of the ray origin and
direction through every pixel, resized to the block's resolution. Classifier-free guidance (Ho & Salimans 2022) needs
an unconditional model: where `cond_mask` is 0 the conditioning image is zeroed and, as in 3DiM's
`ConditioningProcessor`, the pose embedding of both frames is zeroed, so the prediction uses neither the
conditioning view nor the cameras. A learned per-frame embedding, added after the masking, still tells the two
frames apart.

Training budget: cross-frame attention is the only path from the conditioning frame to the target frame, and it
starts out uniform (each target pixel reads the mean of the other frame's normalised values), so a fresh X-UNet
ignores its conditioning view until attention has learned correspondences. On the easiest task there is (target =
conditioning view, same camera) `tiny` at 32 px, batch 16, lr 2e-3 shows no use of the view for 1000 steps and a
strong one at 1400 (x0 MSE at logSNR -2 with the right / another view: 0.094/0.096 at step 1000, 0.025/0.178 at
1400), where the concat-UNet uses it from step 100. A model trained inside that plateau (the CPU demo's 400 steps)
samples views that do not depend on the input view. Measured by benchmarks/conditioning_probe.py. On the demo's
real task (different views, another scene's view as the wrong one) `tiny` leaves the plateau within 500-900 steps
of batch 128 on an H100, and much further with `prediction = "v"` and the v loss, which weigh the noisy levels where
the view matters (reports/benchmarks/trained_model.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from generators.channels_last import GroupNorm, channels_last_gradient, upsample_nearest2x
from generators.film import FiLM, FiLMPlan, ProjectedFiLM, film_inputs, pose_film_inputs
from generators.unet_levels import blocks_in_order, build_levels, run_levels
from scenes.cameras import camera_rays
from scenes.errors import InvalidInputError


@dataclass
class XUNetConfig:
    """Shape of an X-UNet; stored in a checkpoint's config.json under "model"."""

    image_size: int = 32
    """Side of the square images (pixels); must be divisible by 2 ** (len(ch_mult) - 1)."""
    ch: int = 32
    """Channels of the first resolution level."""
    ch_mult: tuple[int, ...] = (1, 2, 2)
    """Channel multiplier per resolution level; the image is halved between consecutive levels."""
    num_res_blocks: int = 1
    """ResNet blocks per level on the way down (the way up has one more, as in DDPM)."""
    attn_resolutions: tuple[int, ...] = (16, 8)
    """Resolutions (pixels per side) whose blocks get self- and cross-frame attention; at least one level must be
    listed, because cross-attention is the only place where the target frame sees the conditioning frame."""
    num_heads: int = 4
    """Attention heads."""
    dropout: float = 0.1
    """Dropout rate inside every ResNet block."""
    emb_ch: int = 128
    """Channels of the logSNR and pose embeddings that FiLM turns into per-block scales and shifts."""
    pos_octaves: int = 8
    """NeRF positional encoding of ray origins and directions uses sin/cos at frequencies 2^0 .. 2^(pos_octaves-1)."""
    cond_dropout_prob: float = 0.1
    """Probability per training example of dropping the conditioning (classifier-free guidance training)."""
    logsnr_min: float = -20.0
    """Noisiest logSNR of the schedule the model is trained with."""
    logsnr_max: float = 20.0
    """Cleanest logSNR of the schedule; the clean conditioning frame is embedded at this level."""
    # The fields below came after format version 1's first checkpoints; a config.json without them loads with these
    # defaults, which build the model those checkpoints were written from (see `ADDED_FIELDS`).
    dir_octaves: int | None = None
    """Octaves of the ray directions' encoding; None = `pos_octaves` (3DiM: 15 for origins, 8 for directions)."""
    pos_emb: bool = False
    """A learned per-pixel embedding [pose channels, H, W] added to the pose encoding of both frames after the
    guidance mask (3DiM's `use_pos_emb`)."""
    pose_conv: int = 1
    """Kernel of each level's pose projection: 1 = area-resize the encoding to the level, then a 1x1 convolution;
    3 = 3DiM's 3x3 convolution of the full-resolution encoding with stride 2^level."""
    logsnr_dim: int | None = None
    """Width of the sinusoidal logSNR encoding before its MLP; None = `ch` (3DiM: `emb_ch`)."""
    init: str = "torch"
    """Initial weights of convolutions and linear layers that do not start at zero: "torch" (PyTorch's defaults,
    uniform with variance 1 / (3 fan_in)) or "flax" (3DiM's: truncated-normal LeCun, variance 1 / fan_in, zero
    biases)."""
    prediction: str = "eps"
    """What the last convolution predicts: "eps" (the noise) or "v" (alpha eps - sigma x, Salimans & Ho 2022),
    turned into eps = alpha v + sigma z_t before it is returned, so the model's contract stays eps."""

    def __post_init__(self):
        self.ch_mult = tuple(int(m) for m in self.ch_mult)
        self.attn_resolutions = tuple(int(r) for r in self.attn_resolutions)
        levels = len(self.ch_mult)
        if levels < 1 or self.image_size % 2 ** (levels - 1) != 0:
            raise InvalidInputError("XUNetConfig.image_size", f"{self.image_size} is not divisible by "
                                    f"2^{levels - 1} (one halving per level of ch_mult={self.ch_mult})",
                                    "pick an image size divisible by that power of two or fewer levels")
        if not set(self.resolutions()) & set(self.attn_resolutions):
            raise InvalidInputError("XUNetConfig.attn_resolutions", f"{self.attn_resolutions} contains none of the "
                                    f"UNet's resolutions {self.resolutions()}, so the frames would never mix",
                                    "list at least one of the UNet's resolutions")
        for name in ("dropout", "cond_dropout_prob"):
            if not 0 <= getattr(self, name) < 1:
                raise InvalidInputError(f"XUNetConfig.{name}", f"is {getattr(self, name)}", "use a value in [0, 1)")
        if not self.logsnr_min < self.logsnr_max:
            raise InvalidInputError("XUNetConfig.logsnr_min", f"{self.logsnr_min} is not below logsnr_max "
                                    f"{self.logsnr_max}", "use e.g. -20 and 20")
        if self.pose_conv not in (1, 3):
            raise InvalidInputError("XUNetConfig.pose_conv", f"is {self.pose_conv}", "use 1 or 3")
        if self.init not in ("torch", "flax"):
            raise InvalidInputError("XUNetConfig.init", f"is {self.init!r}", 'use "torch" or "flax"')
        if self.prediction not in ("eps", "v"):
            raise InvalidInputError("XUNetConfig.prediction", f"is {self.prediction!r}", 'use "eps" or "v"')
        for name in ("dir_octaves", "logsnr_dim"):
            if getattr(self, name) is not None and getattr(self, name) < (0 if name == "dir_octaves" else 2):
                raise InvalidInputError(f"XUNetConfig.{name}", f"is {getattr(self, name)}",
                                        "use a positive integer or null")
        for mult in self.ch_mult:
            if (self.ch * mult) % self.num_heads != 0:
                raise InvalidInputError("XUNetConfig.num_heads", f"{self.ch * mult} channels do not split into "
                                        f"{self.num_heads} heads", "pick num_heads dividing every level's channels")

    def resolutions(self) -> list[int]:
        """Pixels per side at each level, from the input resolution down."""
        return [self.image_size // 2 ** i for i in range(len(self.ch_mult))]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "XUNetConfig") -> XUNetConfig:
        """Rebuild from `to_dict()` output; unknown or missing fields raise `InvalidInputError` naming `source`."""
        names = {f.name for f in fields(cls)}
        unknown, missing = sorted(set(data) - names), sorted(names - set(data) - ADDED_FIELDS)
        if unknown or missing:
            raise InvalidInputError(source, f"model config has unknown fields {unknown} and lacks {missing}",
                                    "write a config produced by XUNetConfig.to_dict()")
        return cls(**data)


#: Fields a config.json may lack: added after checkpoints were written without them; their defaults rebuild those.
ADDED_FIELDS = frozenset({"dir_octaves", "pos_emb", "pose_conv", "logsnr_dim", "init", "prediction"})


#: Named configurations. "tiny" trains on a 2-core CPU in minutes at 32x32 or 64x64
#: (use `dataclasses.replace(PRESETS["tiny"], image_size=64)`). Its frames mix at 8x8 only: attention at 16x16
#: would halve its CPU throughput, and the fourth level keeps an 8x8 level at 64x64 as well.
#: "3dim-64" and "3dim-128" follow 3DiM's appendix (channel multipliers (1, 2, 2, 4), embedding width 1024, 3 ResNet
#: blocks per level, attention with 4 heads at the 32, 16 and 8 pixel levels, dropout 0.1); "3dim-64" is the public
#: PyTorch port's size (ch=128) and "3dim-128" the paper's (ch=256; 454M parameters here against the paper's 471M,
#: see `nvsc generator info` and reports/benchmarks/generator.md for where the difference comes from).
#: The 3dim presets keep nvsc's defaults for the fields 3DiM sets otherwise (`dir_octaves`, `pos_emb`, `pose_conv`,
#: `logsnr_dim`, `init`), so that checkpoints trained with them still load; 3DiM's values are the fields' docstrings'.
#: "small-32" is the GPU preset for the demo's 32 px data, small enough to commit (936k parameters, 3.8 MB a weights
#: file): tiny's width on three levels, frames mixing at every level (32, 16 and 8 pixels, as 3DiM's at 64 px), and
#: v-prediction, to be trained with `TrainConfig.loss = "v"`. Deviations from 3DiM (eps prediction, 8 direction
#: octaves, a learned position embedding, strided 3x3 pose convolutions) and why: reports/benchmarks/trained_model.md.
_3DIM = dict(ch_mult=(1, 2, 2, 4), num_res_blocks=3, attn_resolutions=(8, 16, 32), num_heads=4, dropout=0.1,
             emb_ch=1024, pos_octaves=15)
PRESETS: dict[str, XUNetConfig] = {
    "tiny": XUNetConfig(image_size=32, ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1, attn_resolutions=(8,),
                        num_heads=4, dropout=0.0, emb_ch=64, pos_octaves=6),
    "small-32": XUNetConfig(image_size=32, ch=32, ch_mult=(1, 1, 2), num_res_blocks=1, attn_resolutions=(32, 16, 8),
                            num_heads=4, dropout=0.0, emb_ch=64, pos_octaves=6, prediction="v"),
    "3dim-64": XUNetConfig(image_size=64, ch=128, **_3DIM),
    "3dim-128": XUNetConfig(image_size=128, ch=256, **_3DIM),
}


def _group_norm(channels: int) -> GroupNorm:
    # 32 groups as in DDPM/3DiM where channels allow, but at least 4 channels per group for the narrow tiny model.
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0 and channels // g >= 4 or g == 1)
    return GroupNorm(groups, channels)


def _zero_init(module: nn.Module) -> nn.Module:
    # 3DiM's out_init_scale(): residual branches start as the identity, which keeps deep UNets stable early on.
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module


def _flax_init(model: nn.Module) -> None:
    """3DiM's (flax's) default initialisation for every convolution and linear layer not initialised at zero:
    LeCun normal weights (variance 1 / fan_in, truncated at 2 standard deviations) and zero biases."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and bool(module.weight.detach().any()):
            # flax's truncated normal: the std of the untruncated normal, corrected for the truncation
            std = (1.0 / module.weight[0].numel()) ** 0.5 / 0.87962566103423978
            nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def logsnr_embedding(logsnr: torch.Tensor, dim: int, logsnr_min: float, logsnr_max: float) -> torch.Tensor:
    """[N, dim] DDPM sinusoidal embedding of logsnr [N] after mapping it to a time in [0, 1] (3DiM Appendix)."""
    logsnr = logsnr.clamp(logsnr_min, logsnr_max)
    # 2/pi atan(exp(-logsnr/2)) inverts the unclipped cosine schedule, so the embedding sees a time-like input.
    time = 2.0 / math.pi * torch.atan(torch.exp(-0.5 * logsnr))
    half = dim // 2
    frequencies = torch.exp(-math.log(10000.0) * torch.arange(half, device=logsnr.device) / max(half - 1, 1))
    angles = 1000.0 * time[:, None] * frequencies[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def nerf_positional_encoding(x: torch.Tensor, octaves: int) -> torch.Tensor:
    """[..., 3 + 6 * octaves]: x [..., 3] with sin and cos of x * 2^k, k = 0 .. octaves - 1 (Mildenhall et al. 2020)."""
    scales = 2.0 ** torch.arange(octaves, device=x.device, dtype=x.dtype)
    scaled = (x[..., None, :] * scales[:, None]).flatten(-2)
    return torch.cat([x, torch.sin(scaled), torch.cos(scaled)], dim=-1)


class ResnetBlock(nn.Module):
    """GroupNorm, SiLU, (resample), conv, GroupNorm, FiLM, SiLU, dropout, conv, plus skip, scaled by 1/sqrt(2)."""

    def __init__(self, in_ch: int, out_ch: int, emb_ch: int, dropout: float, resample: str | None = None):
        super().__init__()
        self.resample = resample
        self.norm1, self.conv1 = _group_norm(in_ch), nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2, self.film = _group_norm(out_ch), FiLM(emb_ch, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero_init(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "down":
            return F.avg_pool2d(x, 2)
        if self.resample == "up":
            return upsample_nearest2x(x)
        return x

    def forward(self, x: torch.Tensor, emb_act: torch.Tensor | ProjectedFiLM) -> torch.Tensor:
        """x [BF, in_ch, h, w] -> [BF, out_ch, h', w'] (h' = h / 2 or 2 h when resampling)."""
        h = self._resample(F.silu(self.norm1(x)))
        h = self.film(self.norm2(self.conv1(h)), emb_act)
        h = self.conv2(self.dropout(F.silu(h)))
        return (h + self.skip(self._resample(x))) / math.sqrt(2.0)


class _SwapHalves(torch.autograd.Function):
    """The two halves of x's rows swapped ([a; b] -> [b; a]), a copy whose backward swaps the gradient back.

    Cross-attention on the swapped keys and values is one attention call whose gradients come back as one tensor;
    with two calls on slices of the rows instead, the compiled backward assembled the qkv gradient from six padded
    slices at about 0.9 TB/s. The explicit backward keeps it a plain copy, where autograd's own for a concatenation
    of slices pads them again. (`3dim-64`'s cross-attention block at 32x32, batch 32, compiled, forward and backward
    on an H100: 1.560 -> 1.401 ms; benchmarks/cross_attention.py.)"""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return _swap_halves(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _swap_halves(grad)


def _swap_halves(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[0] // 2
    return torch.cat([x[half:], x[:half]])


class AttnBlock(nn.Module):
    """Multi-head attention over pixels: within each frame (self) or from each frame to the other one (cross)."""

    def __init__(self, channels: int, num_heads: int, cross: bool):
        super().__init__()
        self.cross, self.num_heads = cross, num_heads
        self.norm = _group_norm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = _zero_init(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B * 2, C, h, w] (conditioning frames first) -> same shape."""
        frames, channels, height, width = x.shape
        # Pixels as rows of one matrix, so that each projection is one product with its bias fused (a view of
        # channels-last activations).
        tokens = self.norm(x).permute(0, 2, 3, 1).reshape(-1, channels)  # [B * 2 * h * w, C]
        q, kv = self.qkv(tokens).unflatten(0, (frames, -1)).split([channels, 2 * channels], dim=-1)
        if self.cross:
            # Each frame attends to the other one: the conditioning frames' queries to the target frames' keys and
            # values, and back. Keys and values with the two halves of rows swapped make that one attention call.
            kv = _SwapHalves.apply(kv)
        q, k, v = (t.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)  # [B * 2, heads, h * w, C / heads]
                   for t in (q, *kv.chunk(2, dim=-1)))
        attended = F.scaled_dot_product_attention(q, k, v)
        out = self.out(attended.transpose(1, 2).reshape(-1, channels))  # [B * 2 * h * w, C]
        return (x + out.view(frames, height, width, channels).permute(0, 3, 1, 2)) / math.sqrt(2.0)


class XUNetBlock(nn.Module):
    """A ResNet block, then (at attention resolutions) self-attention and cross-frame attention."""

    def __init__(self, in_ch: int, out_ch: int, config: XUNetConfig, use_attn: bool):
        super().__init__()
        self.resnet = ResnetBlock(in_ch, out_ch, config.emb_ch, config.dropout)
        self.attention = nn.Sequential(AttnBlock(out_ch, config.num_heads, cross=False),
                                       AttnBlock(out_ch, config.num_heads, cross=True)) if use_attn else nn.Identity()

    def forward(self, x: torch.Tensor, emb_act: torch.Tensor | ProjectedFiLM) -> torch.Tensor:
        return self.attention(self.resnet(x, emb_act))


class Conditioning(nn.Module):
    """logSNR embedding per frame and per-pixel pose embeddings per resolution level (3DiM's ConditioningProcessor)."""

    def __init__(self, config: XUNetConfig):
        super().__init__()
        self.config = config
        self.logsnr_dim = config.ch if config.logsnr_dim is None else config.logsnr_dim
        self.dir_octaves = config.pos_octaves if config.dir_octaves is None else config.dir_octaves
        self.logsnr_mlp = nn.Sequential(nn.Linear(self.logsnr_dim, config.emb_ch), nn.SiLU(),
                                        nn.Linear(config.emb_ch, config.emb_ch))
        pose_dim = (3 + 6 * config.pos_octaves) + (3 + 6 * self.dir_octaves)  # encoded origins and directions
        self.frame_emb = nn.Parameter(torch.randn(2, pose_dim) / math.sqrt(pose_dim))
        if config.pose_conv == 1:
            self.pose_proj = nn.ModuleList(nn.Conv2d(pose_dim, config.emb_ch, 1) for _ in config.ch_mult)
        else:  # 3DiM: a 3x3 convolution with stride 2^level of the full-resolution encoding, per level
            self.pose_proj = nn.ModuleList(nn.Conv2d(pose_dim, config.emb_ch, 3, stride=2 ** level, padding=1)
                                           for level in range(len(config.ch_mult)))
        if config.pos_emb:  # 3DiM's normal(1 / sqrt(D)) init, as the frame embedding's
            size = config.image_size
            self.pos_emb = nn.Parameter(torch.randn(pose_dim, size, size) / math.sqrt(pose_dim))

    def forward(self, logsnr: torch.Tensor, cond_c2w: torch.Tensor, target_c2w: torch.Tensor,
                intrinsics: torch.Tensor, cond_mask: torch.Tensor, height: int, width: int) -> list[torch.Tensor]:
        """FiLM's input per level i: SiLU(logSNR embedding + pose embedding) [B * 2, E, H / 2^i, W / 2^i]."""
        config, batch = self.config, logsnr.shape[0]
        frame_logsnr = torch.cat([torch.full_like(logsnr, config.logsnr_max), logsnr])
        logsnr_emb = self.logsnr_mlp(logsnr_embedding(frame_logsnr, self.logsnr_dim, config.logsnr_min,
                                                      config.logsnr_max))

        # Rays are built in torch on the model's device: no NumPy, no host round trip per forward pass.
        device = logsnr.device
        c2w = torch.cat([cond_c2w, target_c2w]).to(device, torch.float32)  # [B * 2, 4, 4]
        intrinsics = intrinsics.to(device, torch.float32).expand(batch, 4).repeat(2, 1)
        origins, directions = camera_rays(c2w, intrinsics, height, width)  # [B * 2, H, W, 3]
        pose = torch.cat([nerf_positional_encoding(origins, config.pos_octaves),
                          nerf_positional_encoding(directions, self.dir_octaves)], dim=-1).permute(0, 3, 1, 2)
        pose = pose * cond_mask.repeat(2)[:, None, None, None]
        if config.pos_emb:  # after the mask, as 3DiM: the unconditional model still knows where a pixel is
            pose = pose + self.pos_emb.to(pose.dtype)
        offsets = self.frame_emb.repeat_interleave(batch, dim=0)  # [B * 2, P]
        if config.pose_conv == 1:
            # Each level's pose embedding projects the encoding area-resized to it (anti-aliases the high octaves)
            # plus the frame's learned embedding.
            return pose_film_inputs(logsnr_emb, pose, self.pose_proj, pose_offsets=offsets)
        # A 3x3 convolution's zero padding makes a constant offset non-constant at the borders: add it to the pixels.
        pose = pose + offsets[:, :, None, None]
        return film_inputs([logsnr_emb] * len(self.pose_proj), [projection(pose) for projection in self.pose_proj])


def _target_rows(x: torch.Tensor) -> torch.Tensor:
    """The target frame's rows of a tensor of both frames [B * 2, ...] -> [B, ...]. (The slice's backward writes a
    zero-filled NCHW gradient, which the convolutions before it would copy to NHWC; see channels_last.)"""
    return channels_last_gradient(x)[x.shape[0] // 2:]


class XUNet(nn.Module):
    """3DiM's X-UNet: eps prediction for the noisy target frame given one clean conditioning frame (the Denoiser)."""

    parameterization = "eps"
    supports_guidance = True

    def __init__(self, config: XUNetConfig):
        super().__init__()
        self.config = config
        self.image_size = config.image_size
        attends = [r in config.attn_resolutions for r in config.resolutions()]
        self.conditioning = Conditioning(config)
        self.conv_in = nn.Conv2d(3, config.ch, 3, padding=1)

        channels = build_levels(self, config.ch, config.ch_mult, config.num_res_blocks,
                                lambda c_in, c_out, level: XUNetBlock(c_in, c_out, config, attends[level]),
                                lambda c, direction: ResnetBlock(c, c, config.emb_ch, config.dropout, direction))
        # After the last attention block on the way up nothing reads the conditioning frame any more, so the rest of
        # the UNet runs on the target frame only (same result, about a third less work at the high resolutions).
        up_attends = [attends[level] for level in reversed(range(len(config.ch_mult)))
                      for _ in range(config.num_res_blocks + 1)]
        self._last_mixing_block = max(i for i, a in enumerate(up_attends) if a)  # config ensures one exists
        last_mixing = [block for blocks in self.up_blocks for block in blocks][self._last_mixing_block]
        self._film_plan = FiLMPlan(blocks_in_order(self), split_after=last_mixing)
        self.norm_out = _group_norm(channels)
        self.conv_out = _zero_init(nn.Conv2d(channels, 3, 3, padding=1))
        if config.init == "flax":
            _flax_init(self)

    def _keep_target_frame(self, index: int, h: torch.Tensor, skips: list, films: list) -> tuple:
        """After the last up block that mixes frames, keep only the target frame (the second half of the rows) from
        there on; the FiLM plan projected the embeddings of the later blocks on those rows already."""
        if index != self._last_mixing_block:
            return h, skips, films
        return _target_rows(h), [_target_rows(s) for s in skips], films

    def forward(self, z_t: torch.Tensor, logsnr: torch.Tensor, cond_image: torch.Tensor, cond_c2w: torch.Tensor,
                target_c2w: torch.Tensor, intrinsics: torch.Tensor, cond_mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        """eps [B, 3, H, W] for z_t [B, 3, H, W] at logsnr [B] given cond_image [B, 3, H, W], cond_c2w and
        target_c2w [B, 4, 4], intrinsics [B, 4] (fx, fy, cx, cy) and cond_mask [B] (1 = conditioned)."""
        batch, _, height, width = z_t.shape
        if cond_mask is None:
            cond_mask = torch.ones(batch, device=z_t.device)
        cond_mask = cond_mask.to(device=z_t.device, dtype=z_t.dtype)
        # SiLU before FiLM's projection, as 3DiM's FiLM; computed once per level and shared by its blocks.
        emb_acts = self.conditioning(logsnr.to(z_t.device, z_t.dtype), cond_c2w, target_c2w, intrinsics, cond_mask,
                                     height, width)
        films = self._film_plan.project(emb_acts, keep_rows=_target_rows)  # every block's FiLM, a product per level

        h = torch.cat([cond_image * cond_mask[:, None, None, None], z_t])  # [B * 2, 3, H, W]
        h = run_levels(self, self.conv_in(h), [films] * len(emb_acts), after_up_block=self._keep_target_frame)
        out = self.conv_out(F.silu(self.norm_out(h)))  # [B, 3, H, W]
        if self.config.prediction == "v":
            # eps = alpha v + sigma z_t (z_t = alpha x + sigma eps, v = alpha eps - sigma x, alpha^2 + sigma^2 = 1)
            logsnr = logsnr.to(z_t.device, torch.float32)[:, None, None, None]
            out = torch.sigmoid(logsnr).sqrt() * out.float() + torch.sigmoid(-logsnr).sqrt() * z_t.float()
        return out
