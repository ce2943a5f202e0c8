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


class DevicePairBatches:
    """Every view of every scene as one uint8 tensor [V, 3, S, S] on `device`; random pairs are gathered there.

    A training step then costs no host work and no host-to-device copy of images: the index draw, the gather and
    the conversion to [-1, 1] are three small kernels (a DataLoader with workers would copy every batch through
    pinned host memory instead). uint8 holds 8-bit source images exactly; resized images are rounded to 1/255.
    Pairs are drawn independently and uniformly among all ordered pairs of `ViewPairs` (with replacement).
    """

    def __init__(self, pairs: ViewPairs, device: torch.device | str):
        self.device, self.image_size = torch.device(device), pairs.image_size
        self.images = torch.cat([((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
                                 for images in pairs.images]).to(self.device)  # [V, 3, S, S]
        self.c2w = torch.cat(pairs.c2w).float().to(self.device)  # [V, 4, 4]
        counts = torch.tensor([len(images) for images in pairs.images])
        self.intrinsics = torch.cat([k.float().expand(n, 4) for k, n in zip(pairs.intrinsics, counts.tolist())]
                                    ).to(self.device)  # [V, 4]
        self.view_offsets = (torch.cumsum(counts, 0) - counts).to(self.device)  # [scenes] first view of each scene
        self.views_per_scene = counts.to(self.device)
        self.pair_offsets = torch.as_tensor(pairs._offsets, dtype=torch.int64, device=self.device)  # [scenes + 1]
        self.num_pairs = len(pairs)

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """A batch of `batch_size` random pairs, in the layout of `ViewPairs` items stacked ([B, 3, S, S] etc.).

        `generator` must live on this object's device (it is all the randomness of the draw).
        """
        index = torch.randint(self.num_pairs, (batch_size,), generator=generator, device=self.device)
        scene = torch.searchsorted(self.pair_offsets, index, right=True) - 1
        local, others = index - self.pair_offsets[scene], self.views_per_scene[scene] - 1
        target, cond = local // others, local % others
        cond = cond + (cond >= target).long()  # the same enumeration as ViewPairs.pair
        cond, target = self.view_offsets[scene] + cond, self.view_offsets[scene] + target
        return {"cond_image": _to_unit(self.images[cond]), "target_image": _to_unit(self.images[target]),
                "cond_c2w": self.c2w[cond], "target_c2w": self.c2w[target], "intrinsics": self.intrinsics[target]}


def permute_colours(batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The batch with the RGB channels of each pair permuted at random, the same permutation for both views.

    A training augmentation against memorising the instances: with few training objects a model can tell the
    instance, and so its colours, from the noisy target itself and never read the conditioning view; with the colours
    of each pair permuted, the colours of the target come from the conditioning view. Grey (the white background)
    stays as it is. `generator` lives on the batch's device (the draw is all its randomness)."""
    cond = batch["cond_image"]
    order = torch.argsort(torch.rand(cond.shape[0], 3, generator=generator, device=cond.device), dim=1)
    index = order[:, :, None, None].expand_as(cond)  # [B, 3, S, S]
    return {**batch, "cond_image": torch.gather(cond, 1, index),
            "target_image": torch.gather(batch["target_image"], 1, index)}


def _to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] images -> float32 [-1, 1], same shape."""
    return images.float() / 127.5 - 1.0
