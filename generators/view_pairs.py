"""Training pairs for a pose-conditioned diffusion model: two different views of the same object (3DiM Sec. 2)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from scenes.errors import InvalidInputError
from scenes.scene import MultiViewScene


class ViewPairs(Dataset):
    """Every ordered pair (conditioning view, target view) of two different views of one scene.

    Item i is a dict: "cond_image", "target_image" [3, S, S] in [-1, 1]; "cond_c2w", "target_c2w" [4, 4];
    "intrinsics" [4] (fx, fy, cx, cy) of the S x S images. The index enumerates all pairs, so a shuffling sampler
    draws random pairs while each item stays a pure function of its index (reproducible with workers).
    Images are resized once, here (area averaging when shrinking), and the intrinsics with them.
    """

    def __init__(self, scenes: Sequence[MultiViewScene], image_size: int):
        if not scenes:
            raise InvalidInputError("scenes", "no training scenes given", "pass at least one MultiViewScene")
        self.image_size = int(image_size)
        self.images, self.c2w, self.intrinsics = [], [], []
        for index, scene in enumerate(scenes):
            if len(scene) < 2:
                raise InvalidInputError(f"scenes[{index}]", f"has {len(scene)} view(s); a training pair needs two",
                                        "drop the scene or give it more views")
            images = torch.from_numpy(np.ascontiguousarray(scene.images)).permute(0, 3, 1, 2)  # [N, 3, H, W]
            if images.shape[-2:] != (self.image_size, self.image_size):
                # Area averaging when shrinking (no aliasing of fine texture), bilinear when enlarging.
                size = (self.image_size, self.image_size)
                if images.shape[-1] > self.image_size:
                    images = F.interpolate(images, size=size, mode="area")
                else:
                    images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
            self.images.append((images.clamp(0, 1) * 2 - 1).contiguous())
            self.c2w.append(scene.cameras.c2w_tensor())
            self.intrinsics.append(scene.cameras.intrinsics.resized(self.image_size, self.image_size).as_tensor())
        pairs_per_scene = [len(images) * (len(images) - 1) for images in self.images]
        self._offsets = np.cumsum([0] + pairs_per_scene)

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def pair(self, index: int) -> tuple[int, int, int]:
        """(scene, conditioning view, target view) of item `index`."""
        if not 0 <= index < len(self):
            raise IndexError(f"pair {index} out of range [0, {len(self)})")
        scene = int(np.searchsorted(self._offsets, index, side="right") - 1)
        local, others = index - int(self._offsets[scene]), len(self.images[scene]) - 1
        target, cond = divmod(local, others)
        return scene, cond + (cond >= target), target  # skip the target itself among the conditioning views

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        scene, cond, target = self.pair(int(index))
        return {"cond_image": self.images[scene][cond], "target_image": self.images[scene][target],
                "cond_c2w": self.c2w[scene][cond], "target_c2w": self.c2w[scene][target],
                "intrinsics": self.intrinsics[scene]}
