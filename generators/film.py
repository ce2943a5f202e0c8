"""FiLM (3DiM's per-pixel scale and shift) and the projections of a whole UNet pass computed one product per level.

Every ResNet block of 3DiM's UNets turns the per-pixel embedding of its level (1024 channels at the paper's sizes)
into its own scale and shift with a 1x1 convolution. Done block by block, each product reads the whole embedding
(537 MB per pass at 64x64 for 32 pairs in bf16) to write a thin 2C-channel output, and in backward each writes an
embedding-sized gradient that autograd then sums. All blocks that read the same embedding can instead stack their
weights into one product (`FiLMPlan.project`): the embedding is read once, backward writes one gradient, and the
product is wide enough to keep the matrix units busy. The weights stay in their blocks, so checkpoints are the same;
stacking them costs one concatenation of weights per pass. Exact: each output channel is the same dot product.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from generators.channels_last import wants_channels_last_gradient


def pixelwise_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A 1x1 convolution [N, C_in, H, W] -> [N, C_out, H, W] (weight [C_out, C_in, 1, 1]): on CUDA as
    `pixelwise_product`, on the CPU as the convolution (the faster there: the tiny preset's eager training step was
    6% slower with the product, 268 against 252.5 ms, timed once on a 2-core CPU)."""
    return pixelwise_linear_pieces(x, weight, bias, [weight.shape[0]])[0]


def pixelwise_product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The 1x1 convolution as one matrix product over the pixels of x's channels-last view; the result is
    channels-last.

    For the wide per-pixel projections of the embeddings this beats cuDNN's 1x1 convolution under torch.compile:
    cuBLAS adds the bias in the product's epilogue, and Inductor lays out the gradients that meet the product as the
    product reads them, where cuDNN's convolution backward first copied the 1024-channel embedding gradient to NHWC
    (3dim-64 at batch 32 on an H100: 330 -> 344 images/s; reports/benchmarks/generator.md)."""
    return pixelwise_product_pieces(x, weight, bias, [weight.shape[0]])[0]


def pixelwise_linear_pieces(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                            sizes: Sequence[int]) -> list[torch.Tensor]:
    """`pixelwise_linear(x, weight, bias).split(sizes, dim=1)`: on CUDA as `pixelwise_product_pieces`, on the CPU as
    the convolution."""
    if not x.is_cuda:
        return list(F.conv2d(x, weight, bias).split(sizes, dim=1))
    return pixelwise_product_pieces(x, weight, bias, sizes)


def pixelwise_product_pieces(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                             sizes: Sequence[int]) -> list[torch.Tensor]:
    """`pixelwise_product(x, weight, bias).split(sizes, dim=1)`, with the product's channels-last rows split before
    each piece is viewed as NCHW: autograd then concatenates the pieces' gradients along the rows, the layout the
    product's backward reads. Split in the NCHW view, the compiled backward concatenated them in NCHW and
    transposed the result for the product (the level-0 pieces of `3dim-64`: 0.5 ms of copies per step, and a slow
    reduction for the bias gradient)."""
    rows = F.linear(x.permute(0, 2, 3, 1), weight.flatten(1), bias)  # [N, H, W, sum(sizes)]
    return [piece.permute(0, 3, 1, 2) for piece in rows.split(sizes, dim=-1)]


class _AddPerMap(torch.autograd.Function):
    """maps [N, E, h, w] + vectors [N, E] broadcast over the pixels, whose vectors' gradient (each map's sum over its
    pixels) is one batched product with a vector of ones. Compiled, the broadcast's own backward became a reduction
    down the rows of a channels-last tensor, which Inductor reads slowly (1.2 ms per step for the level-0
    embedding of `3dim-64` on an H100)."""

    @staticmethod
    def forward(ctx, maps: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        ctx.vectors_dtype = vectors.dtype
        return maps + vectors[:, :, None, None]

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        count, channels, height, width = grad.shape
        pixels = grad.permute(0, 2, 3, 1).reshape(count, height * width, channels)
        sums = torch.bmm(grad.new_ones(count, 1, height * width), pixels).view(count, channels)
        return grad, sums.to(ctx.vectors_dtype)


def film_inputs(vectors: Sequence[torch.Tensor], maps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """SiLU(map + its vectors broadcast over its pixels) for each map [N, E, h, w] and its vectors [N, E]: the
    activated embedding that FiLM projects (3DiM applies SiLU before FiLM's projection), one per resolution level."""
    return [F.silu(_AddPerMap.apply(m, v) if wants_channels_last_gradient(m) else m + v[:, :, None, None])
            for v, m in zip(vectors, maps, strict=True)]


def pose_film_inputs(vectors: torch.Tensor, pose: torch.Tensor, projections: Sequence[nn.Conv2d],
                     pose_offsets: torch.Tensor | None = None) -> list[torch.Tensor]:
    """`film_inputs` of the per-pixel pose embeddings `projections[i](avg_pool(pose + pose_offsets, 2^i))` plus
    vectors [N, E], for each level i (pose [N, P, H, W], pose_offsets [N, P] constant over the pixels).

    The terms constant over a map's pixels (the projection's bias, the projected offsets) are added to the map's
    vectors, not to its pixels; the same sum, since average pooling keeps a constant. Their gradients then come from
    the per-map sums of the gradient that the vectors need anyway, and the pose (made of rays) needs no gradient even
    where a learned offset is added to it. The backward drops two passes over every embedding-wide gradient: the
    bias's sum down its rows and the product back to the pose (537 MB each at level 0 of `3dim-64`, batch 32)."""
    maps, level_vectors = [], []
    for level, projection in enumerate(projections):
        pooled = F.avg_pool2d(pose, 2 ** level) if level else pose
        maps.append(pixelwise_linear(pooled, projection.weight, None))
        constant = (projection.bias if pose_offsets is None
                    else F.linear(pose_offsets, projection.weight.flatten(1), projection.bias))
        level_vectors.append(vectors + constant.to(maps[-1].dtype))  # no float32 promotion under autocast
    return film_inputs(level_vectors, maps)


class FiLM(nn.Module):
    """Feature-wise scale and shift from a per-pixel embedding (3DiM's FiLM: h * (1 + scale) + shift)."""

    def __init__(self, emb_ch: int, features: int):
        super().__init__()
        self.proj = nn.Conv2d(emb_ch, 2 * features, 1)
        self.slot: int | None = None
        """Index of this block's output in a `ProjectedFiLM`; set by `FiLMPlan`."""

    def forward(self, h: torch.Tensor, emb: torch.Tensor | ProjectedFiLM) -> torch.Tensor:
        """h [BF, C, h, w] modulated by emb: the embedding after SiLU [BF, E, h, w], or a pass's `ProjectedFiLM`
        that already holds this block's projection of it."""
        params = emb.of(self) if isinstance(emb, ProjectedFiLM) else self.proj(emb)
        scale, shift = params.chunk(2, dim=1)
        return h * (1.0 + scale) + shift


@dataclass
class ProjectedFiLM:
    """Every FiLM projection [BF, 2C, h, w] of one pass, by `FiLM.slot`."""

    outputs: list[torch.Tensor]

    def of(self, film: FiLM) -> torch.Tensor:
        return self.outputs[film.slot]


@dataclass
class FiLMGroup:
    """The FiLM modules that read one embedding tensor: level `level`'s, on every frame or (`after_split`) only on
    the frames a model keeps after it drops some part-way (the X-UNet's conditioning frame)."""

    level: int
    after_split: bool
    films: list[FiLM]


class FiLMPlan:
    """Which blocks share an embedding, found once from the order the blocks run in; `project` then computes every
    block's FiLM projection of a pass in one product per group."""

    def __init__(self, blocks: Sequence[tuple[nn.Module, int]], split_after: nn.Module | None = None):
        """blocks: (block, level of the embedding it reads) in the order they run (`unet_levels.blocks_in_order`);
        blocks after `split_after` read the embedding with the rows `project`'s `keep_rows` selects."""
        groups: dict[tuple[int, bool], FiLMGroup] = {}
        after = False
        for block, level in blocks:
            for film in (m for m in block.modules() if isinstance(m, FiLM)):
                group = groups.setdefault((level, after), FiLMGroup(level, after, []))
                group.films.append(film)
            after = after or block is split_after
        self.groups = list(groups.values())
        for slot, film in enumerate(f for group in self.groups for f in group.films):
            film.slot = slot

    def project(self, emb_acts: Sequence[torch.Tensor],
                keep_rows: Callable[[torch.Tensor], torch.Tensor] | None = None) -> ProjectedFiLM:
        """Projections of emb_acts (one [BF, E, h, w] per level) for every FiLM of the plan."""
        outputs: list[torch.Tensor] = []
        for group in self.groups:
            emb = emb_acts[group.level]
            if group.after_split:
                emb = keep_rows(emb)
            weight = torch.cat([film.proj.weight for film in group.films])
            bias = torch.cat([film.proj.bias for film in group.films])
            outputs += pixelwise_linear_pieces(emb, weight, bias, [film.proj.out_channels for film in group.films])
        return ProjectedFiLM(outputs)
