"""Training loop of the X-UNet: epsilon-prediction diffusion loss on view pairs (3DiM Sec. 2; Ho et al. 2020).

For a pair (conditioning view x_c, target view x) draw t ~ U(0, 1), logSNR = schedule(t), eps ~ N(0, I),
z_t = alpha x + sigma eps, and regress eps with a mean squared error. With probability `cond_dropout_prob` an example
is trained unconditionally (cond_mask = 0), which classifier-free guidance needs at sampling time (Ho & Salimans
2022). AdamW with linear warm-up, gradient clipping, and an exponential moving average (EMA) of the weights that
is what sampling uses.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, RandomSampler
from tqdm.auto import tqdm

from generators.checkpoint import save_checkpoint
from generators.schedule import CosineLogSNRSchedule
from generators.view_pairs import ViewPairs
from generators.xunet import XUNet, XUNetConfig
from scenes.errors import InvalidInputError
from scenes.scene import MultiViewScene

logger = logging.getLogger(__name__)

LOG_EVERY = 100  #: steps between log lines of the loss (checkpoints are logged as well)


@dataclass
class TrainConfig:
    """How to train; the model's shape is an `XUNetConfig`."""

    steps: int = 2000
    """Optimiser steps."""
    batch_size: int = 16
    """View pairs per step."""
    lr: float = 1e-3
    """Peak AdamW learning rate (after warm-up)."""
    warmup_steps: int = 100
    """Steps of linear learning-rate warm-up from lr / warmup_steps to lr."""
    grad_clip: float = 1.0
    """Largest global gradient norm; larger gradients are scaled down to it."""
    ema_decay: float = 0.999
    """Decay of the weights' exponential moving average (ramped up over the first steps, see `ema_decay_at`)."""
    checkpoint_every: int = 500
    """Write the checkpoint every this many steps (and always at the end)."""
    seed: int = 0
    """Seeds initial weights, pair order, noise levels, noise and dropout: a seed trains one model on CPU."""
    device: str = "auto"
    """"cpu", "cuda", "cuda:N" or "auto" (CUDA when available)."""
    num_workers: int = 0
    """DataLoader worker processes (0 loads in the training process; pairs are cheap slices of memory)."""

    def __post_init__(self):
        for name in ("steps", "batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"TrainConfig.{name}", f"is {getattr(self, name)}", "use a positive integer")
        for name in ("lr", "grad_clip"):
            if not getattr(self, name) > 0:
                raise InvalidInputError(f"TrainConfig.{name}", f"is {getattr(self, name)}", "use a positive number")
        if not 0 <= self.ema_decay < 1:
            raise InvalidInputError("TrainConfig.ema_decay", f"is {self.ema_decay}", "use a number in [0, 1)")
        if self.warmup_steps < 0 or self.num_workers < 0:
            raise InvalidInputError("TrainConfig", "warmup_steps and num_workers must be >= 0", "fix the config")


def resolve_device(name: str) -> torch.device:
    """The torch device for a `TrainConfig.device` string."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise InvalidInputError("device", f"unknown device {name!r}", 'use "cpu", "cuda" or "auto"') from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError("device", f"{name!r} requested but CUDA is not available", 'use "cpu" or "auto"')
    return device


def ema_decay_at(step: int, decay: float) -> float:
    """EMA decay used after `step` updates: min(decay, (1 + step) / (10 + step)).

    The ramp (as in TensorFlow's ExponentialMovingAverage with num_updates) keeps the average from being dominated
    by the random initial weights in short runs: with a fixed 0.999, 1000 steps still weigh the init by 0.999^1000.
    """
    return min(decay, (1.0 + step) / (10.0 + step))


@torch.no_grad()
def update_ema(ema_model: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * weights, for every parameter; buffers are copied."""
    # One fused call over all tensors (as timm's ModelEmaV3), instead of a kernel launch per parameter.
    torch._foreach_lerp_(list(ema_model.parameters()), list(model.parameters()), 1.0 - decay)
    for ema_buffer, buffer in zip(ema_model.buffers(), model.buffers()):
        ema_buffer.copy_(buffer)


def diffusion_loss(model: XUNet, batch: dict[str, torch.Tensor], schedule: CosineLogSNRSchedule,
                   cond_dropout_prob: float, generator: torch.Generator) -> torch.Tensor:
    """Mean squared error of the eps prediction for one batch of pairs (tensors on the model's device).

    Random draws come from `generator` (CPU) and are moved to the device, so a seed means the same on every device.
    """
    target = batch["target_image"]  # [B, 3, H, W]
    device, size = target.device, target.shape[0]
    t = torch.rand(size, generator=generator).to(device)
    eps = torch.randn(target.shape, generator=generator).to(device)
    keep = (torch.rand(size, generator=generator) >= cond_dropout_prob).float().to(device)  # [B] 1 = conditioned
    logsnr = schedule.logsnr(t)
    alpha, sigma = (s[:, None, None, None] for s in schedule.alpha_sigma(logsnr))
    z_t = alpha * target + sigma * eps
    eps_hat = model(z_t, logsnr, batch["cond_image"], batch["cond_c2w"], batch["target_c2w"], batch["intrinsics"],
                    cond_mask=keep)
    return F.mse_loss(eps_hat, eps)


def _forever(loader: DataLoader) -> Iterator[dict[str, torch.Tensor]]:
    while True:  # a new shuffle per pass, drawn from the loader's sampler generator
        yield from loader


def train_generator(scenes: Sequence[MultiViewScene], model_config: XUNetConfig, train_config: TrainConfig,
                    out_dir: Path) -> Path:
    """Train an X-UNet on pairs of views of `scenes`; writes the checkpoint folder `out_dir` and returns it."""
    out_dir = Path(out_dir)
    device = resolve_device(train_config.device)
    dataset = ViewPairs(scenes, model_config.image_size)
    schedule = CosineLogSNRSchedule(model_config.logsnr_min, model_config.logsnr_max)
    # Seed only inside fork_rng so a library call leaves the caller's global random state untouched.
    rng_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(train_config.seed)
        model = XUNet(model_config).to(device)
        ema_model = copy.deepcopy(model).eval().requires_grad_(False)
        noise_generator = torch.Generator().manual_seed(train_config.seed + 1)
        order_generator = torch.Generator().manual_seed(train_config.seed + 2)
        loader = DataLoader(dataset, batch_size=train_config.batch_size, num_workers=train_config.num_workers,
                            sampler=RandomSampler(dataset, generator=order_generator),
                            drop_last=len(dataset) >= train_config.batch_size)
        optimizer = torch.optim.AdamW(model.parameters(), lr=train_config.lr)
        warmup = max(train_config.warmup_steps, 1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
        logger.info("training X-UNet (%d parameters) on %d view pairs of %d scenes, %d steps on %s",
                    sum(p.numel() for p in model.parameters()), len(dataset), len(scenes), train_config.steps, device)

        batches = _forever(loader)
        smoothed_loss, images_per_s, start = math.nan, 0.0, time.perf_counter()
        progress = tqdm(range(1, train_config.steps + 1), desc="train X-UNet", disable=None, unit="step")
        for step in progress:
            tick = time.perf_counter()
            model.train()
            batch = {name: tensor.to(device, non_blocking=True) for name, tensor in next(batches).items()}
            loss = diffusion_loss(model, batch, schedule, model_config.cond_dropout_prob, noise_generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_config.grad_clip)
            optimizer.step()
            scheduler.step()
            update_ema(ema_model, model, ema_decay_at(step, train_config.ema_decay))

            value = loss.item()
            smoothed_loss = value if math.isnan(smoothed_loss) else 0.98 * smoothed_loss + 0.02 * value
            rate = len(batch["target_image"]) / max(time.perf_counter() - tick, 1e-9)
            images_per_s = rate if step == 1 else 0.9 * images_per_s + 0.1 * rate
            progress.set_postfix(loss=f"{smoothed_loss:.4f}", img_s=f"{images_per_s:.1f}")
            checkpoint_now = step % train_config.checkpoint_every == 0 or step == train_config.steps
            if checkpoint_now or step % LOG_EVERY == 0:
                logger.info("step %d/%d: loss %.4f (smoothed %.4f), %.1f images/s", step, train_config.steps, value,
                            smoothed_loss, step * train_config.batch_size / (time.perf_counter() - start))
            if checkpoint_now:
                save_checkpoint(out_dir, model, ema_model, model_config, step)
    return out_dir
