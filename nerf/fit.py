"""Fit a position-only hash-grid NeRF to the views of a scene, and render it at other cameras.

Training follows instant-NGP (Mueller et al. 2022, Sec. 4): random pixels drawn across all training views each
step, an L2 loss on colour, Adam with beta2 = 0.99 and eps = 1e-15 (their hash-table entries see tiny gradients;
a larger eps would freeze the rarely hit ones), weight decay on the MLP weights only, an exponentially
decaying learning rate, and an occupancy grid that skips empty space (`nerf/occupancy.py`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field as dataclass_field, replace

import numpy as np
import torch
from tqdm.auto import tqdm

from nerf.field import FieldConfig, HashGridField
from nerf.occupancy import OccupancyConfig, OccupancyGrid, check_occupancy_config
from nerf.renderer import render_rays, render_surface
from nerf.scene_box import scene_box_from_cameras
from nerf.train_step import TrainStep
from scenes.cameras import Cameras, camera_rays
from scenes.errors import InvalidInputError
from scenes.scene import MultiViewScene

logger = logging.getLogger(__name__)


@dataclass
class NeRFConfig:
    """Everything that decides a fit. The defaults fit 15 views of 32x32 or 64x64 in about 15 s on two CPU cores
    (the cost is per step, not per pixel)."""

    field: FieldConfig = dataclass_field(default_factory=FieldConfig)
    """Architecture of the field."""
    steps: int = 600
    """Optimisation steps (at most, with a `time_budget_s`). Far fewer (~300) at lr 3e-2 sometimes leave the colour
    sigmoid saturated (a fit that lost some colours, depending on the seed), and held-out PSNR varies more between
    seeds."""
    rays_per_batch: int = 1024
    """Pixels drawn (uniformly over all training views) per step."""
    samples_per_ray: int = 24
    """Stratified samples per ray inside the scene box."""
    lr: float = 3e-2
    """Initial Adam learning rate (higher than instant-NGP's 1e-2: a few hundred steps must converge)."""
    lr_final_factor: float = 0.1
    """The learning rate decays exponentially to lr * lr_final_factor at the last step."""
    weight_decay: float = 1e-6
    """L2 weight decay of the MLP weights (the hash table gets none)."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Colour (RGB in [0, 1]) behind the scene; the views must be composited on the same one."""
    seed: int = 0
    """Seed of the initial weights and of the pixel and jitter draws: a CPU fit is a function of it."""
    device: str = "auto"
    """"auto" (CUDA when available), "cpu" or "cuda"."""
    eval_chunk: int = 8192
    """Rays rendered at a time when rendering views."""
    time_budget_s: float = 0.0
    """If > 0: stop after this many seconds of optimisation even before `steps` (the learning rate decays over
    whichever runs out first). A fit that stops on time depends on the machine's speed, not only on the seed."""
    scene_box: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None
    """Box (min corner, max corner) that holds the object, in world units; None: from the training cameras
    (`nerf.scene_box.scene_box_from_cameras`). Replaces `field.aabb`."""
    occupancy: OccupancyConfig = dataclass_field(default_factory=OccupancyConfig)
    """The occupancy grid that skips empty space."""
    cuda_graphs: bool = True
    """On CUDA, give the training step static shapes and replay it as a captured CUDA graph (`nerf/train_step.py`:
    one launch and no host sync per step; the samples the grid keeps go into a buffer sized from recent steps).
    False, and always on the CPU: the eager step with dynamic shapes, the readable reference. Fields on
    nerfstudio's torch encoding run eagerly (it copies host tensors in every pass, which a capture forbids)."""


@dataclass
class FittedNeRF:
    """A fitted field and the configuration it was fitted with."""

    field: HashGridField
    """The fitted field (on `device`)."""
    config: NeRFConfig
    """The configuration of the fit (its rendering settings apply to `render_views`)."""
    device: torch.device
    """Where the field lives."""
    final_loss: float = float("nan")
    """Mean squared error of the last training batch."""
    seconds: float = float("nan")
    """Wall time of the optimisation."""
    steps: int = 0
    """Optimisation steps taken (fewer than `config.steps` when the time budget ran out)."""
    occupancy: OccupancyGrid | None = None
    """The occupancy grid at the end of the fit (rendering skips its empty cells); None without one."""
    dropped_rays: int = 0
    """Rays left out of the loss because the samples they kept overflowed the static step's buffer (only with
    CUDA graphs; the buffer then grows)."""
    cuda_graphs: bool = False
    """Whether the steps were replays of a CUDA graph."""


def resolve_device(device: str) -> torch.device:
    """The torch device `NeRFConfig.device` stands for."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise InvalidInputError("NeRFConfig.device", f"unknown device {device!r}", "use 'auto', 'cpu' or 'cuda'")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInputError("NeRFConfig.device", f"{device!r} was asked for but torch sees no CUDA device",
                                "use 'auto' or 'cpu'")
    return torch.device(device)


def check_config(config: NeRFConfig) -> None:
    """Raise `InvalidInputError` naming the first parameter of `config` that cannot work."""
    for name in ("steps", "rays_per_batch", "samples_per_ray", "eval_chunk"):
        if int(getattr(config, name)) < 1:
            raise InvalidInputError(f"NeRFConfig.{name}", f"must be a positive integer, got {getattr(config, name)}",
                                    "use the default of NeRFConfig")
    if not config.lr > 0 or not 0 < config.lr_final_factor <= 1:
        raise InvalidInputError("NeRFConfig.lr", f"lr={config.lr}, lr_final_factor={config.lr_final_factor}",
                                "use lr > 0 and 0 < lr_final_factor <= 1")
    if not config.time_budget_s >= 0:
        raise InvalidInputError("NeRFConfig.time_budget_s", f"must be 0 (none) or positive, got {config.time_budget_s}",
                                "give seconds, e.g. 10")
    check_occupancy_config(config.occupancy)
    if config.weight_decay < 0:
        raise InvalidInputError("NeRFConfig.weight_decay", f"negative ({config.weight_decay})", "use 0 or more")
    if config.scene_box is not None:
        box = np.asarray(config.scene_box, dtype=float)
        if box.shape != (2, 3) or not np.all(np.isfinite(box)) or not np.all(box[0] < box[1]):
            raise InvalidInputError("NeRFConfig.scene_box", f"expected [[xmin, ymin, zmin], [xmax, ymax, zmax]] "
                                                            f"with min < max, got {config.scene_box}",
                                    "give the box around the object in the cameras' world coordinates")
    background = np.asarray(config.background, dtype=float)
    if background.shape != (3,) or not np.all((background >= 0) & (background <= 1)):
        raise InvalidInputError("NeRFConfig.background", f"expected 3 values in [0, 1], got {config.background}",
                                "give an RGB colour such as (1.0, 1.0, 1.0) for white")


def scene_rays(cameras: Cameras, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Origins and unit directions [N * H * W, 3] of every pixel of every camera, view-major and row-major."""
    k = cameras.intrinsics
    origins, directions = camera_rays(cameras.c2w_tensor(device), k.as_tensor(device), k.height, k.width)
    return origins.reshape(-1, 3), directions.reshape(-1, 3)


def uses_cuda_graphs(config: NeRFConfig, field: HashGridField) -> bool:
    """Whether a fit of `field` replays its steps as a CUDA graph (`NeRFConfig.cuda_graphs`)."""
    return config.cuda_graphs and field.aabb.device.type == "cuda" and field.backend != "nerfstudio"


def make_optimizer(field: HashGridField, config: NeRFConfig, graphs: bool) -> torch.optim.Adam:
    """instant-NGP's Adam over `field` (weight decay on the MLPs only); fused on a GPU (one kernel), and for a
    CUDA graph capturable, with each group's learning rate a device tensor that the host updates in place."""
    device = field.aabb.device
    lr = (lambda: torch.tensor(config.lr, device=device)) if graphs else (lambda: config.lr)
    return torch.optim.Adam(
        [{"params": field.encoding_parameters(), "weight_decay": 0.0, "lr": lr()},
         {"params": field.mlp_parameters(), "weight_decay": config.weight_decay, "lr": lr()}],
        lr=config.lr, betas=(0.9, 0.99), eps=1e-15, fused=device.type == "cuda", capturable=graphs)


def fit_nerf(scene: MultiViewScene, config: NeRFConfig) -> FittedNeRF:
    """Fit a field to all views of `scene` (images composited on `config.background`)."""
    check_config(config)
    if len(scene) == 0:
        raise InvalidInputError("scene", "has no views to fit", "pass at least one view")
    if not np.all(np.isfinite(scene.images)) or scene.images.min() < 0 or scene.images.max() > 1:
        raise InvalidInputError("scene images", "values outside [0, 1] or not finite",
                                "store colours as float32 in [0, 1]")
    device = resolve_device(config.device)
    box = config.scene_box if config.scene_box is not None else scene_box_from_cameras(scene.cameras)
    # Seed a private copy of torch's generators for the initial weights, so a fit neither depends on nor
    # disturbs the caller's random state.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        nerf_field = HashGridField(replace(config.field, aabb=box), device)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    grid = OccupancyGrid(config.occupancy, nerf_field.aabb) if config.occupancy.enabled else None
    # The grid's opacity threshold is for the longest sample step the renderer takes: the box diagonal's share.
    step_size = float((nerf_field.aabb[1] - nerf_field.aabb[0]).norm()) / config.samples_per_ray

    origins, directions = scene_rays(scene.cameras, device)
    pixels = torch.as_tensor(scene.images, device=device).reshape(-1, 3)
    graphs = uses_cuda_graphs(config, nerf_field)
    optimizer = make_optimizer(nerf_field, config, graphs)
    trainer = TrainStep(nerf_field, optimizer, origins, directions, pixels, config, generator, grid, static=graphs,
                        graph=graphs)
    logger.info("fitting a NeRF (%s backend, %s%s) on %d views of %dx%d for %d steps%s, scene box %s",
                nerf_field.backend, device, ", CUDA graph steps" if graphs else "", len(scene),
                scene.cameras.intrinsics.width, scene.cameras.intrinsics.height, config.steps,
                f" or {config.time_budget_s:g} s" if config.time_budget_s > 0 else "", box)

    start = time.perf_counter()
    loss_value, step = float("nan"), 0
    progress = tqdm(total=config.steps, desc="NeRF fit", disable=None, leave=False)
    while step < config.steps:
        elapsed = time.perf_counter() - start
        if config.time_budget_s > 0 and elapsed >= config.time_budget_s:
            break
        # Exponential decay to lr * lr_final_factor over the fit, measured in steps or in time, whichever is
        # further along.
        done = max(step / max(config.steps - 1, 1), elapsed / config.time_budget_s if config.time_budget_s else 0.0)
        trainer.set_learning_rate(config.lr * config.lr_final_factor ** min(done, 1.0))
        trainer.run()
        if grid is not None and grid.due(step):
            grid.update(nerf_field, step_size, generator)
            trainer.adapt()
        if step % 25 == 0 or step == config.steps - 1:
            loss_value = trainer.loss.item()
            progress.set_postfix(loss=f"{loss_value:.4f}", psnr=f"{-10 * math.log10(max(loss_value, 1e-10)):.2f}")
        step += 1
        progress.update()
    progress.close()
    loss_value = trainer.loss.item() if step > 0 else loss_value
    dropped = trainer.dropped_rays()
    if dropped:
        logger.warning("NeRF fit: %d of %d rays left out of the loss (their samples overflowed the step's buffer, "
                       "which then grew)", dropped, step * config.rays_per_batch)
    seconds = time.perf_counter() - start
    logger.info("NeRF fit: %d steps in %.1f s, last batch loss %.5f, %s of the grid occupied%s", step, seconds,
                loss_value, f"{grid.occupied_fraction():.0%}" if grid is not None else "all",
                f", {trainer.captures} graph captures" if graphs else "")
    return FittedNeRF(nerf_field, config, device, loss_value, seconds, step, grid, dropped, graphs)


@torch.no_grad()
def render_views(fitted: FittedNeRF, cameras: Cameras) -> np.ndarray:
    """Images [N, H, W, 3] float32 in [0, 1] of the fitted field seen from `cameras`."""
    k = cameras.intrinsics
    images = []
    for i in tqdm(range(len(cameras)), desc="NeRF render", disable=None, leave=False):
        origins, directions = scene_rays(cameras[i], fitted.device)
        rgb = render_rays(fitted.field, origins, directions, fitted.config, training=False, grid=fitted.occupancy)
        images.append(rgb.clamp(0.0, 1.0).reshape(k.height, k.width, 3).cpu().numpy())
    if not images:
        return np.zeros((0, k.height, k.width, 3), dtype=np.float32)
    return np.stack(images).astype(np.float32)


@torch.no_grad()
def render_geometry(fitted: FittedNeRF, cameras: Cameras) -> tuple[np.ndarray, np.ndarray]:
    """(expected surface points [N, H, W, 3] in world space, opacity [N, H, W]) of the fitted field seen from
    `cameras` (`nerf.renderer.render_surface`): the field's geometry, to compare with the scene's true depth."""
    k = cameras.intrinsics
    points, opacity = [], []
    for i in range(len(cameras)):
        origins, directions = scene_rays(cameras[i], fitted.device)
        surface, alpha = render_surface(fitted.field, origins, directions, fitted.config, grid=fitted.occupancy)
        points.append(surface.reshape(k.height, k.width, 3).cpu().numpy())
        opacity.append(alpha.reshape(k.height, k.width).cpu().numpy())
    if not points:
        return np.zeros((0, k.height, k.width, 3), np.float32), np.zeros((0, k.height, k.width), np.float32)
    return np.stack(points).astype(np.float32), np.stack(opacity).astype(np.float32)
