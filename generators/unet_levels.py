"""The level plan that the X-UNet, the concat-UNet and the multi-view UNet share (DDPM's UNet, Ho et al. 2020, as
3DiM's appendix sizes it): per resolution level `num_res_blocks` blocks on the way down, a resampling ResNet block
between levels, a middle block, `num_res_blocks + 1` blocks per level on the way up, each fed the matching skip.

The models differ only in their blocks (two frames with cross-attention, one stacked frame, N views with
correspondence-aware attention), so each passes a factory for them. The modules are set on the model itself under
the names `down_blocks`, `downsamples`, `middle`, `up_blocks` and `upsamples`, which are the names of the weights
in every checkpoint.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

#: make_block(in_channels, out_channels, level) -> block called as block(h, emb_act, *per_level_extra)
BlockFactory = Callable[[int, int, int], nn.Module]
#: make_resample(channels, "down" | "up") -> block called as block(h, emb_act) that halves or doubles h's size
ResampleFactory = Callable[[int, str], nn.Module]
#: after_up_block(index, h, skips, emb_acts) -> (h, skips, emb_acts), called after up block `index` (0-based)
UpBlockHook = Callable[[int, torch.Tensor, list, list], tuple[torch.Tensor, list, list]]


def build_levels(owner: nn.Module, ch: int, ch_mult: Sequence[int], num_res_blocks: int, make_block: BlockFactory,
                 make_resample: ResampleFactory) -> int:
    """Create the level modules on `owner` (after its input convolution of `ch` channels, so that weights are
    initialised in the same order in every model); returns the channels of the last up block."""
    widths = [ch * m for m in ch_mult]
    skip_channels, channels = [ch], ch
    owner.down_blocks, owner.downsamples = nn.ModuleList(), nn.ModuleList()
    for level, width in enumerate(widths):
        blocks = nn.ModuleList()
        for _ in range(num_res_blocks):
            blocks.append(make_block(channels, width, level))
            channels = width
            skip_channels.append(channels)
        owner.down_blocks.append(blocks)
        if level != len(widths) - 1:
            owner.downsamples.append(make_resample(channels, "down"))
            skip_channels.append(channels)
    owner.middle = make_block(channels, channels, len(widths) - 1)
    owner.up_blocks, owner.upsamples = nn.ModuleList(), nn.ModuleList()
    for level in reversed(range(len(widths))):
        blocks = nn.ModuleList()
        for _ in range(num_res_blocks + 1):
            blocks.append(make_block(channels + skip_channels.pop(), widths[level], level))
            channels = widths[level]
        owner.up_blocks.append(blocks)
        if level != 0:
            owner.upsamples.append(make_resample(channels, "up"))
    return channels


def blocks_in_order(owner: nn.Module) -> list[tuple[nn.Module, int]]:
    """(block, level of the embedding it reads) for every block of `owner` in the order `run_levels` calls them
    (tests check the two agree), so a model can plan work over its blocks before a pass."""
    order, levels = [], len(owner.down_blocks)
    for level, blocks in enumerate(owner.down_blocks):
        order += [(block, level) for block in blocks]
        if level < len(owner.downsamples):
            order.append((owner.downsamples[level], level + 1))
    order.append((owner.middle, levels - 1))
    for i, blocks in enumerate(owner.up_blocks):
        level = levels - 1 - i
        order += [(block, level) for block in blocks]
        if level != 0:
            order.append((owner.upsamples[i], level - 1))
    return order


def run_levels(owner: nn.Module, h: torch.Tensor, emb_acts: list[torch.Tensor], per_level: Sequence | None = None,
               after_up_block: UpBlockHook | None = None) -> torch.Tensor:
    """h after the levels that `build_levels` made on `owner`. Blocks of level i get emb_acts[i] (the activated
    embedding at that level's resolution) and, if given, per_level[i]; `after_up_block` may replace h, the skips
    still to be read and the embeddings (the X-UNet drops the conditioning frame once nothing reads it)."""
    def extra(level: int) -> tuple:
        return () if per_level is None else (per_level[level],)

    skips = [h]
    for level, blocks in enumerate(owner.down_blocks):
        for block in blocks:
            h = block(h, emb_acts[level], *extra(level))
            skips.append(h)
        if level < len(owner.downsamples):
            h = owner.downsamples[level](h, emb_acts[level + 1])
            skips.append(h)
    h = owner.middle(h, emb_acts[-1], *extra(-1))
    index = 0
    for i, blocks in enumerate(owner.up_blocks):
        level = len(owner.up_blocks) - 1 - i
        for block in blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb_acts[level], *extra(level))
            if after_up_block is not None:
                h, skips, emb_acts = after_up_block(index, h, skips, emb_acts)
            index += 1
        if level != 0:
            h = owner.upsamples[i](h, emb_acts[level - 1])
    return h
