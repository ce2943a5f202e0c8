"""The smallest X-UNet that still has every part (two levels, attention, cross-attention), and tiny scenes, for
fast tests."""

import numpy as np

from generators.xunet import XUNetConfig
from scenes.cameras import Cameras, Intrinsics, look_at
from scenes.scene import MultiViewScene

MICRO = XUNetConfig(image_size=8, ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), num_heads=2,
                    dropout=0.0, emb_ch=16, pos_octaves=2)


def make_scenes(count: int, views: int, size: int, seed: int = 0) -> list[MultiViewScene]:
    """Views of a colour gradient: each scene gets random colours, cameras on a ring around the origin."""
    rng = np.random.default_rng(seed)
    intrinsics = Intrinsics(fx=1.2 * size, fy=1.2 * size, cx=size / 2, cy=size / 2, width=size, height=size)
    scenes = []
    for s in range(count):
        angles = s + np.linspace(0, 2 * np.pi, views, endpoint=False)
        c2w = np.stack([look_at(np.array([2.5 * np.cos(a), 2.5 * np.sin(a), 1.0])) for a in angles])
        ramp = np.linspace(0, 1, size, dtype=np.float32)[None, :, None, None] * rng.random((views, 1, 1, 3))
        images = np.broadcast_to(ramp, (views, size, size, 3)) * 0.5 + 0.5 * rng.random((views, size, size, 3))
        scenes.append(MultiViewScene(images.astype(np.float32), Cameras(c2w, intrinsics)))
    return scenes


