"""Training of the multi-branch UNet on groups of N views of one scene (MVDiffusion, Tang et al. 2023, Sec. 3-4).

A group is N distinct views of one training scene drawn at random; view 0 of the group is the conditioning view.
All N views are diffused to one shared noise level, z = alpha x + sigma eps with a per-view eps, and the network
predicts every view's eps; the mean squared error is taken over the N - 1 generated views (view 0's clean image is
an input, so predicting its noise teaches nothing). With probability `cond_dropout_prob` a group is trained
without its conditioning image (cond_mask = 0): then view 0 is generated like the others and enters the loss too,
which classifier-free guidance needs at sampling time.

Everything else is the pair training of `generators.training`: `TrainingRun` (AdamW, warm-up, gradient clipping,
EMA, bf16 autocast, DDP slices, gradient accumulation, exact resume, atomic checkpoints); only the batch layout
(`DeviceViewGroups`) and the loss differ.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from generators.distributed import end_process_group, start_process_group
from generators.multiview_unet import MultiViewUNetConfig
from generators.schedule import CosineLogSNRSchedule
from generators.training import (TrainConfig, TrainingRun, _summary_writer, draw_noise, resolve_device,
                                 run_steps)
from generators.view_pairs import ViewPairs
from scenes.errors import InvalidInputError
from scenes.scene import MultiViewScene

logger = logging.getLogger(__name__)


def resize_depth(depth: np.ndarray, image_size: int, source: str) -> torch.Tensor:
    """Depth [V, H, W] at image_size x image_size: kept, or reduced by an integer factor to the nearest surface of
    each block (as `correspondence.pool_depth`; an average would mix the surface with the infinite background)."""
    depth = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))
    if depth.ndim != 3:
        raise InvalidInputError(source, f"depth of shape {list(depth.shape)}", "pass one [H, W] map per view")
    height, width = depth.shape[1:]
    if (height, width) == (image_size, image_size):
        return depth
    factor = height // image_size
    if height != width or factor * image_size != height:
        raise InvalidInputError(source, f"{width}x{height} depth maps cannot be reduced to {image_size}x{image_size} "
                                "by an integer factor", "render the dataset at a multiple of the model's size")
    return -F.max_pool2d(-depth[:, None], factor)[:, 0]


class DeviceViewGroups:
    """Every view of every scene (uint8 images, cameras, depth) on `device`; random N-view groups are gathered there.

    As `view_pairs.DevicePairBatches`: a batch costs a few small kernels and no host-to-device copy of images.
    """

    def __init__(self, scenes: Sequence[MultiViewScene], depths: Sequence[np.ndarray] | None, image_size: int,
                 device: torch.device | str):
        pairs = ViewPairs(scenes, image_size)  # resizes images and intrinsics, checks every scene has 2 views
        self.device, self.image_size = torch.device(device), int(image_size)
        self.images = torch.cat([((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
                                 for images in pairs.images]).to(self.device)  # [V, 3, S, S]
        self.c2w = torch.cat(pairs.c2w).float().to(self.device)  # [V, 4, 4]
        self.counts = torch.tensor([len(images) for images in pairs.images], device=self.device)  # [scenes]
        self.offsets = torch.cumsum(self.counts, 0) - self.counts
        self.intrinsics = torch.stack(pairs.intrinsics).float().to(self.device)  # [scenes, 4]
        self.depth = None
        if depths is not None:
            if len(depths) != len(scenes):
                raise InvalidInputError("depths", f"{len(depths)} depth stacks for {len(scenes)} scenes",
                                        "pass one [V, H, W] depth array per scene")
            maps = []
            for index, (scene, depth) in enumerate(zip(scenes, depths)):
                resized = resize_depth(depth, image_size, f"depths[{index}]")
                if len(resized) != len(scene):
                    raise InvalidInputError(f"depths[{index}]", f"{len(resized)} depth maps for {len(scene)} views",
                                            "pass one depth map per view")
                maps.append(resized)
            self.depth = torch.cat(maps).to(self.device)  # [V, S, S]

    @property
    def fewest_views(self) -> int:
        return int(self.counts.min())

    def sample(self, batch_size: int, num_views: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """`batch_size` groups of `num_views` distinct views of one random scene each (on the generator's device):
        "images" [B, N, 3, S, S] in [-1, 1], "c2w" [B, N, 4, 4], "intrinsics" [B, 4], "depth" [B, N, S, S]
        (only when depth was given)."""
        scene = torch.randint(len(self.counts), (batch_size,), generator=generator, device=self.device)
        largest = int(self.counts.max())
        # N distinct views uniformly: the N smallest of one uniform score per view, views past the scene's end last.
        scores = torch.rand(batch_size, largest, generator=generator, device=self.device)
        scores = scores.masked_fill(torch.arange(largest, device=self.device) >= self.counts[scene, None], 2.0)
        views = self.offsets[scene, None] + scores.argsort(dim=1)[:, :num_views]  # [B, N] global view indices
        batch = {"images": self.images[views].float() / 127.5 - 1.0, "c2w": self.c2w[views],
                 "intrinsics": self.intrinsics[scene]}
        if self.depth is not None:
            batch["depth"] = self.depth[views]
        return batch


def group_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], noise: dict[str, torch.Tensor],
               schedule: CosineLogSNRSchedule, rows: slice = slice(None)) -> torch.Tensor:
    """Eps-prediction MSE over the generated views of rows `rows` of a batch of groups (module docstring).

    noise: "t" [B], "eps" [B, N, 3, S, S], "keep" [B] as `training.draw_noise` draws them.
    """
    device = batch["images"].device
    noise = {name: tensor[rows].to(device) for name, tensor in noise.items()}
    batch = {name: tensor[rows] for name, tensor in batch.items()}
    images = batch["images"]
    logsnr = schedule.logsnr(noise["t"])
    alpha, sigma = (s[:, None, None, None, None] for s in schedule.alpha_sigma(logsnr))
    z_t = alpha * images + sigma * noise["eps"]
    eps_hat = model(z_t, logsnr, images[:, 0], batch["c2w"], batch["intrinsics"], batch.get("depth"),
                    cond_mask=noise["keep"])
    per_view = (eps_hat.float() - noise["eps"]).square().mean(dim=(2, 3, 4))  # [B, N], fp32 under autocast too
    generated = torch.ones_like(per_view)
    generated[:, 0] = 1.0 - noise["keep"]  # view 0 is generated only where its conditioning was dropped
    return (per_view * generated).sum() / generated.sum()


class MultiViewTrainingRun(TrainingRun):
    """`TrainingRun` on batches of N-view groups (`DeviceViewGroups.sample`) with `group_loss`."""

    def draw_noise(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        images = batch["images"]
        return draw_noise(images.shape[0], tuple(images.shape[1:]), self.model_config.cond_dropout_prob,
                          self.noise_generator)

    def loss(self, batch: dict[str, torch.Tensor], noise: dict[str, torch.Tensor], rows: slice) -> torch.Tensor:
        return group_loss(self.forward, batch, noise, self.schedule, rows)


def train_multiview(scenes: Sequence[MultiViewScene], depths: Sequence[np.ndarray] | None,
                    model_config: MultiViewUNetConfig, train_config: TrainConfig, out_dir: Path,
                    log_dir: Path | None = None) -> Path:
    """Train the multi-branch UNet on N-view groups of `scenes` (N = model_config.num_views); writes the checkpoint
    folder `out_dir` and returns it. `depths`: one [V, H, W] array per scene (depth task), or None (panoramas).

    Resumes, checkpoints and runs under torchrun as `training.train_generator` does.
    """
    out_dir = Path(out_dir)
    if train_config.architecture != "mvdiffusion":
        raise InvalidInputError("TrainConfig.architecture", f"is {train_config.architecture!r}",
                                'train the multi-branch UNet with architecture "mvdiffusion"')
    if train_config.loss != "eps":
        raise InvalidInputError("TrainConfig.loss", f"is {train_config.loss!r}; the multi-view UNet trains with the "
                                "eps loss only", 'use loss = "eps" for mvdiffusion')
    if model_config.uses_depth and depths is None:
        raise InvalidInputError("depths", "missing for a depth-conditioned model",
                                "pass the depth maps of every training view, or use correspondence='homography'")
    group, device = start_process_group(resolve_device(train_config.device))
    groups = DeviceViewGroups(scenes, depths if model_config.uses_depth else None, model_config.image_size, device)
    if groups.fewest_views < model_config.num_views:
        raise InvalidInputError("scenes", f"a scene has {groups.fewest_views} views, fewer than a group's "
                                f"{model_config.num_views}", "lower num_views or render more views per scene")
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        run = MultiViewTrainingRun(model_config, train_config, device, group)
        run.resume(out_dir)
        if group.is_main:
            logger.info("training mvdiffusion (%d parameters) on groups of %d views of %d scenes, steps %d..%d on %s",
                        run.parameter_count(), model_config.num_views, len(scenes), run.step_count + 1,
                        train_config.steps, device)
        writer = _summary_writer(log_dir, run.step_count + 1) if log_dir is not None and group.is_main else None
        run_steps(run, lambda: groups.sample(train_config.batch_size, model_config.num_views, run.data_generator),
                  out_dir, writer, group, name="mvdiffusion", unit="groups")
        if writer is not None:
            writer.close()
    end_process_group(group)
    return out_dir
