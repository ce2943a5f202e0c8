"""The smallest X-UNet that still has every part (two levels, attention, cross-attention), for fast tests."""

from generators.xunet import XUNetConfig

MICRO = XUNetConfig(image_size=8, ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), num_heads=2,
                    dropout=0.0, emb_ch=16, pos_octaves=2)
