"""Training loop of the X-UNet: epsilon-prediction diffusion loss on view pairs (3DiM Sec. 2; Ho et al. 2020).

For a pair (conditioning view x_c, target view x) draw t ~ U(0, 1), logSNR = schedule(t), eps ~ N(0, I),
z_t = alpha x + sigma eps, and regress eps with a mean squared error. With probability `cond_dropout_prob` an example
is trained unconditionally (cond_mask = 0), which classifier-free guidance needs at sampling time (Ho & Salimans
2022). AdamW with linear warm-up, gradient clipping, and an exponential moving average (EMA) of the weights that
is what sampling uses.

Speed on a GPU: bf16 autocast, clipping, AdamW and the EMA in one pass (`fused_update`), the whole data set as
uint8 on the device (`DevicePairBatches`), no host synchronisation between log lines, optional channels_last and
`torch.compile` (benchmarks/generator.py measures each). Several GPUs: start the same command under `torchrun`;
every process draws the same global batch and noise and trains on its slice, so N processes follow the same
trajectory as one process with the whole batch.

Exact resume: a checkpoint holds the weights, the EMA, the optimizer state, the step and the states of the data and
noise generators; dropout's global generator is re-seeded from (seed, step, rank) at every checkpoint. A run killed
at any moment and started again continues from its last checkpoint as if it had never stopped.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from generators.checkpoint import (ARCHITECTURES, CONFIG_FILE, EMA_FILE, MODEL_FILE, STATE_FILE, build_model,
                                   load_train_state, load_weights, read_config, read_model_config,
                                   recover_checkpoint, save_checkpoint)
from generators.distributed import ProcessGroup, end_process_group, start_process_group
from generators.fused_update import ClippedAdamWEMA
from generators.schedule import CosineLogSNRSchedule
from generators.view_pairs import DevicePairBatches, ViewPairs, permute_colours
from generators.xunet import XUNetConfig
from scenes.errors import InvalidInputError
from scenes.scene import MultiViewScene

logger = logging.getLogger(__name__)



@dataclass
class TrainConfig:
    """How to train; the model's shape is an `XUNetConfig`."""

    steps: int = 2000
    """Optimiser steps."""
    batch_size: int = 16
    """View pairs per step, summed over all processes when training under torchrun."""
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
    """Seeds initial weights, pairs, noise levels, noise and dropout: a seed trains one model on one device."""
    device: str = "auto"
    """"cpu", "cuda", "cuda:N" or "auto" (CUDA when available)."""
    architecture: str = "xunet"
    """"xunet" (3DiM's X-UNet), "concat_unet" (the ablation's baseline, see generators.concat_unet) or
    "mvdiffusion" (the joint multi-view UNet, trained on N-view groups by generators.multiview_training)."""
    precision: str = "auto"
    """"bf16" (autocast, fp32 weights and optimizer), "fp32", or "auto": bf16 on CUDA, fp32 on the CPU."""
    channels_last: bool | None = None
    """NHWC activations; None = with `compile` on CUDA, the fastest pair measured on an H100 (eager PyTorch was
    slower with NHWC there: 137.5 against 160.4 images/s, see reports/benchmarks/generator.md)."""
    compile: bool = False
    """Compile the model with torch.compile (fuses GroupNorm, FiLM and SiLU; the first steps take minutes)."""
    cuda_graphs: bool | None = None
    """Replay the compiled forward and backward as CUDA graphs (Inductor's cudagraph trees, torch.compile's
    "reduce-overhead"): the host no longer launches each kernel. None = with `compile` in a single CUDA process
    (1.24x the images/s of compiling alone for 3dim-64 on an H100, reports/benchmarks/generator.md); True needs
    `compile`, CUDA and one process."""
    log_every: int = 50
    """Steps between log lines and TensorBoard scalars (each costs one host synchronisation)."""
    resume: bool = True
    """Continue from the checkpoint in the output folder when it holds a resume state of the same model."""
    overwrite: bool = False
    """Train from scratch over a checkpoint already in the output folder (replaced at the first save). Without it
    an existing checkpoint that cannot be resumed is refused, so a trained model is never lost by a mistyped --out."""
    grad_accumulation: int = 1
    """Micro-batches per step (gradients summed before the update): batch 128 in the memory of batch 32 at 4."""
    permute_colours: bool = False
    """Permute the RGB channels of each training pair at random (both views alike; `view_pairs.permute_colours`)."""
    loss: str = "eps"
    """"eps": the MSE of the predicted noise (Ho et al. 2020; 3DiM). "v": the MSE of v = alpha eps - sigma x
    (Salimans & Ho 2022), i.e. the eps MSE weighted by 1 / alpha^2 = 1 + exp(-logSNR), which weighs the noisy
    levels, where only the conditioning view can tell the target, about e^4 = 55 times more at logSNR -4. Pair it
    with an X-UNet whose `prediction` is "v": an eps-predicting network cannot bound its error at logSNR -20."""

    def __post_init__(self):
        for name in ("steps", "batch_size", "checkpoint_every", "grad_accumulation"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"TrainConfig.{name}", f"is {getattr(self, name)}", "use a positive integer")
        for name in ("lr", "grad_clip"):
            if not getattr(self, name) > 0:
                raise InvalidInputError(f"TrainConfig.{name}", f"is {getattr(self, name)}", "use a positive number")
        if not 0 <= self.ema_decay < 1:
            raise InvalidInputError("TrainConfig.ema_decay", f"is {self.ema_decay}", "use a number in [0, 1)")
        if self.warmup_steps < 0 or self.log_every < 1:
            raise InvalidInputError("TrainConfig", "warmup_steps must be >= 0 and log_every >= 1", "fix the config")
        if self.cuda_graphs is True and not self.compile:
            raise InvalidInputError("TrainConfig.cuda_graphs", "is set without compile (the graphs are captured "
                                    "from the compiled step)", "set compile = true too, or cuda_graphs = false")
        if self.architecture not in ARCHITECTURES:
            raise InvalidInputError("TrainConfig.architecture", f"unknown architecture {self.architecture!r}",
                                    f"use one of: {', '.join(ARCHITECTURES)}")
        if self.loss not in ("eps", "v"):
            raise InvalidInputError("TrainConfig.loss", f"is {self.loss!r}", 'use "eps" or "v"')
        if self.precision not in ("auto", "bf16", "fp32"):
            raise InvalidInputError("TrainConfig.precision", f"is {self.precision!r}", 'use "auto", "bf16" or "fp32"')

    def lr_at(self, step: int) -> float:
        """Learning rate of optimiser step `step` (1-based): linear warm-up to `lr`, then constant (3DiM)."""
        return self.lr * min(1.0, step / max(self.warmup_steps, 1))


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


def draw_noise(batch_size: int, image_shape: tuple[int, ...], cond_dropout_prob: float,
               generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The random part of a diffusion training step, on `generator`'s device.

    "t" [B] uniform times, "eps" [B, *image_shape] standard normal noise, "keep" [B] 1 = conditioned example,
    0 = conditioning dropped (classifier-free guidance training).
    """
    device = generator.device
    t = torch.rand(batch_size, generator=generator, device=device)
    eps = torch.randn((batch_size, *image_shape), generator=generator, device=device)
    keep = (torch.rand(batch_size, generator=generator, device=device) >= cond_dropout_prob).float()
    return {"t": t, "eps": eps, "keep": keep}


def diffusion_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], schedule: CosineLogSNRSchedule,
                   cond_dropout_prob: float, generator: torch.Generator, rows: slice = slice(None)) -> torch.Tensor:
    """Mean squared error of the eps prediction for rows `rows` of a batch of pairs (tensors on the model's device).

    Noise is drawn from `generator` for the whole batch and then sliced, so processes that each train a slice of
    one global batch see exactly the noise a single process would (DDP keeps one trajectory).
    """
    target = batch["target_image"]  # [B, 3, H, W]
    noise = draw_noise(target.shape[0], tuple(target.shape[1:]), cond_dropout_prob, generator)
    return loss_on(model, batch, noise, schedule, rows)


def loss_on(model: torch.nn.Module, batch: dict[str, torch.Tensor], noise: dict[str, torch.Tensor],
            schedule: CosineLogSNRSchedule, rows: slice = slice(None), loss: str = "eps") -> torch.Tensor:
    """The eps-prediction MSE of rows `rows` of `batch` with the given draws of `draw_noise` (on any device); with
    `loss` "v" the MSE of v instead (`TrainConfig.loss`)."""
    device = batch["target_image"].device
    noise = {name: tensor[rows].to(device) for name, tensor in noise.items()}
    batch = {name: tensor[rows] for name, tensor in batch.items()}
    logsnr = schedule.logsnr(noise["t"])
    alpha, sigma = (s[:, None, None, None] for s in schedule.alpha_sigma(logsnr))
    z_t = alpha * batch["target_image"] + sigma * noise["eps"]
    eps_hat = model(z_t, logsnr, batch["cond_image"], batch["cond_c2w"], batch["target_c2w"], batch["intrinsics"],
                    cond_mask=noise["keep"])
    if loss == "v":  # |v - v_hat| = |eps - eps_hat| / alpha for the same z_t
        per_example = (eps_hat.float() - noise["eps"]).square().mean(dim=(1, 2, 3))
        return (per_example * (1.0 + torch.exp(-logsnr.float()))).mean()
    return F.mse_loss(eps_hat.float(), noise["eps"])  # fp32 loss also under bf16 autocast


def _dropout_seed(seed: int, step: int, rank: int) -> int:
    # Dropout draws from the global generator; re-seeding it at each checkpoint from (seed, step, rank) makes it
    # resumable without gathering every process's generator state into the checkpoint.
    return (seed * 1_000_003 + step * 7919 + rank * 104_729) % 2 ** 63


class TrainingRun:
    """Model, EMA, optimizer and random generators of one training run, and its optimiser step.

    Every tensor lives on `device`; `group` says which slice of each global batch this process trains.
    """

    def __init__(self, model_config: XUNetConfig, train_config: TrainConfig, device: torch.device,
                 group: ProcessGroup = ProcessGroup()):
        self.model_config, self.config, self.device, self.group = model_config, train_config, device, group
        if train_config.batch_size % (group.world_size * train_config.grad_accumulation):
            raise InvalidInputError("TrainConfig.batch_size", f"{train_config.batch_size} does not split over "
                                    f"{group.world_size} processes x {train_config.grad_accumulation} micro-batches",
                                    "use a multiple of processes times grad_accumulation")
        self.schedule = CosineLogSNRSchedule(model_config.logsnr_min, model_config.logsnr_max)
        if device.type == "cuda":
            # Every step has the same shapes, so cuDNN may time its algorithms once and keep the fastest (as
            # benchmarks/generator.py measures).
            torch.backends.cudnn.benchmark = True
        torch.manual_seed(train_config.seed)  # the same initial weights in every process
        self.model = build_model(train_config.architecture, model_config).to(device)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        channels_last = train_config.channels_last
        if channels_last is None:
            channels_last = device.type == "cuda" and train_config.compile
        if channels_last:  # the EMA too: the fused lerp over it then reads both in the same layout
            self.model.to(memory_format=torch.channels_last)
            self.ema.to(memory_format=torch.channels_last)
        # AdamW's state and its eager step (fused on CUDA), for steps that fused_update below cannot take.
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=train_config.lr,
                                           fused=device.type == "cuda")
        # Clipping, AdamW and the EMA in one pass over the parameters where its kernel runs (CUDA with Triton).
        self.fused_update = ClippedAdamWEMA(self.model, self.ema, self.optimizer, train_config.grad_clip)
        if self.fused_update.reason:
            logger.debug("eager clipping, AdamW and EMA: %s", self.fused_update.reason)
        self.noise_generator = torch.Generator(device).manual_seed(train_config.seed + 1)
        self.data_generator = torch.Generator(device).manual_seed(train_config.seed + 2)
        self.step_count = 0
        bf16 = train_config.precision == "bf16" or (train_config.precision == "auto" and device.type == "cuda")
        self.autocast_dtype = torch.bfloat16 if bf16 else None
        share = train_config.batch_size // group.world_size
        self.rows = slice(group.rank * share, (group.rank + 1) * share)
        self.forward = self.model_for_sync = self.model
        if group.distributed:
            self.forward = self.model_for_sync = DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None)
        single_cuda = device.type == "cuda" and not group.distributed
        if train_config.cuda_graphs is True and not single_cuda:
            raise InvalidInputError("TrainConfig.cuda_graphs", f"needs one CUDA process (device {device}, "
                                    f"{group.world_size} processes)", "set cuda_graphs = false here")
        self.cuda_graphs = train_config.compile and train_config.cuda_graphs is not False and single_cuda
        if train_config.compile:
            # Inductor decides per graph whether to keep convolution activations channels-last, and it counts only
            # forward convolutions: the backward graph then hands cuDNN NCHW gradients, which every
            # convolution_backward first copies to NHWC (123 copies, 13 ms of a 123 ms step for 3dim-64 at batch 32
            # on an H100; reports/benchmarks/generator.md). Forcing the layout choice covers both graphs.
            options = {"force_layout_optimization": channels_last, "triton.cudagraphs": self.cuda_graphs}
            self.forward = torch.compile(self.forward, options=options)
        torch.manual_seed(_dropout_seed(train_config.seed, 0, group.rank))

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def draw_noise(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The random draws of one step for the whole global batch (`draw_noise`, one target image per example)."""
        target = batch["target_image"]
        return draw_noise(target.shape[0], tuple(target.shape[1:]), self.model_config.cond_dropout_prob,
                          self.noise_generator)

    def loss(self, batch: dict[str, torch.Tensor], noise: dict[str, torch.Tensor], rows: slice) -> torch.Tensor:
        """The loss of rows `rows` of the batch (view pairs here; other batch layouts override both hooks)."""
        return loss_on(self.forward, batch, noise, self.schedule, rows, self.config.loss)

    def train_step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One optimiser step on the global `batch` (this process trains its rows); returns the loss (no sync)."""
        self.step_count += 1
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr_at(self.step_count)
        self.model.train()
        autocast = (torch.autocast(self.device.type, dtype=self.autocast_dtype) if self.autocast_dtype
                    else contextlib.nullcontext())
        noise = self.draw_noise(batch)
        self.optimizer.zero_grad(set_to_none=True)
        if self.cuda_graphs:  # a new step: the graphs may reuse the memory of the last step's outputs
            torch.compiler.cudagraph_mark_step_begin()
        # Gradient accumulation: equal micro-batches, each loss weighted 1 / count, sum to the whole batch's mean.
        count, total = self.config.grad_accumulation, torch.zeros((), device=self.device)
        share = (self.rows.stop - self.rows.start) // count
        for i in range(count):
            rows = slice(self.rows.start + i * share, self.rows.start + (i + 1) * share)
            # DDP averages gradients across processes only on the last micro-batch's backward pass.
            last = i == count - 1
            sync = (self.model_for_sync.no_sync() if not last and isinstance(self.model_for_sync,
                                                                              DistributedDataParallel)
                    else contextlib.nullcontext())
            with sync:
                with autocast:
                    loss = self.loss(batch, noise, rows) / count
                loss.backward()
            total += loss.detach()
        ema_decay = ema_decay_at(self.step_count, self.config.ema_decay)
        if not self.fused_update.step(ema_decay):
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            self.optimizer.step()
            update_ema(self.ema, self.model, ema_decay)
        return total

    def state(self) -> dict:
        """What train_state.pt holds besides the weights (tensors and plain containers only)."""
        return {"step": self.step_count, "optimizer": self.optimizer.state_dict(),
                "noise_generator": self.noise_generator.get_state(), "data_generator": self.data_generator.get_state(),
                "world_size": self.group.world_size}

    def save(self, folder: Path) -> None:
        """Write the checkpoint (rank 0 only) and re-seed dropout, at the same step in every run (module doc)."""
        if self.group.is_main:
            save_checkpoint(folder, self.model, self.ema, self.model_config, self.step_count, self.state())
        self.group.barrier()
        torch.manual_seed(_dropout_seed(self.config.seed, self.step_count, self.group.rank))

    def resume(self, folder: Path) -> bool:
        """Continue from the checkpoint in `folder` if it has a resume state of this model; True when it did.

        An existing checkpoint that is not resumed (a finished one without train_state.pt, another model's, an
        unreadable one, or any with `resume` off) is refused unless `overwrite` is set; a folder of other files is
        refused always (the first save would replace it). Everything is checked before a step is trained.
        """
        folder = Path(folder)
        if self.group.is_main:
            recover_checkpoint(folder)
        self.group.barrier()
        files = {path.name for path in folder.iterdir()} if folder.is_dir() else set()
        if not files:
            return False
        retry = (f"train into a new folder, or set overwrite (nvsc generator train --overwrite) to train over "
                 f"it, or delete {folder}")
        if not files & {CONFIG_FILE, MODEL_FILE, EMA_FILE, STATE_FILE}:
            raise InvalidInputError(str(folder), f"is not a checkpoint folder (it holds {', '.join(sorted(files)[:3])}"
                                    f"{', ...' if len(files) > 3 else ''}), and saving would replace it",
                                    "name a new or empty folder for the checkpoint")
        if self.config.overwrite:
            logger.warning("overwrite: training from scratch; the checkpoint in %s is replaced at the first save",
                           folder)
            return False
        if not self.config.resume:
            raise InvalidInputError(str(folder), "holds a checkpoint and resume is off", retry)
        if STATE_FILE not in files:
            raise InvalidInputError(str(folder), f"holds a finished checkpoint (no {STATE_FILE}, so training cannot "
                                    "resume from it)", retry)
        try:
            self._load_resume_state(folder)
        except (InvalidInputError, KeyError, ValueError, RuntimeError, TypeError) as error:
            if isinstance(error, InvalidInputError):
                what = Path(error.what)
                what = what.relative_to(folder) if what.is_relative_to(folder) else what
                problem = f"{what}: {error.problem}"
            else:
                problem = f"{STATE_FILE} does not fit this run ({type(error).__name__}: {error})"
            raise InvalidInputError(str(folder), f"holds a checkpoint, but training cannot resume from it: "
                                    f"{problem}", retry) from error
        logger.info("resumed from step %d of %s", self.step_count, folder)
        return True

    def _load_resume_state(self, folder: Path) -> None:
        config = read_config(folder)
        stored = read_model_config(folder, config)
        if config["architecture"] != self.config.architecture or stored != self.model_config:
            raise InvalidInputError(CONFIG_FILE, f"holds a {config['architecture']} model, and this run trains a "
                                    f"{self.config.architecture} model ({stored} vs {self.model_config})",
                                    "train into a new folder")
        state = load_train_state(folder)
        if state.get("world_size", 1) != self.group.world_size:
            logger.warning("resuming a run of %s processes with %d: the batch slices change, the trajectory does not",
                           state.get("world_size"), self.group.world_size)
        load_weights(folder / MODEL_FILE, self.model)
        load_weights(folder / EMA_FILE, self.ema)
        self.optimizer.load_state_dict(state["optimizer"])
        self.noise_generator.set_state(state["noise_generator"])
        self.data_generator.set_state(state["data_generator"])
        self.step_count = int(state["step"])
        torch.manual_seed(_dropout_seed(self.config.seed, self.step_count, self.group.rank))


def _sample_grid(run: TrainingRun, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """[3, H', W'] grid of conditioning, target, noisy target at logSNR 0 and the EMA's one-step x0 estimate."""
    from torchvision.utils import make_grid

    count = min(4, batch["target_image"].shape[0])
    batch = {name: tensor[:count] for name, tensor in batch.items()}
    target = batch["target_image"]
    eps = torch.randn(target.shape, generator=torch.Generator().manual_seed(0)).to(target)
    logsnr = torch.zeros(count, device=target.device)
    z = (target + eps) / math.sqrt(2.0)  # alpha = sigma = sqrt(1/2) at logSNR 0
    with torch.no_grad():
        eps_hat = run.ema(z, logsnr, batch["cond_image"], batch["cond_c2w"], batch["target_c2w"],
                          batch["intrinsics"]).float()
    x0 = (z - eps_hat / math.sqrt(2.0)) * math.sqrt(2.0)
    rows = torch.cat([batch["cond_image"], target, z, x0.clamp(-1, 1)])  # [4 * count, 3, H, W]
    return make_grid((rows + 1) / 2, nrow=count).clamp(0, 1)


def _summary_writer(log_dir: Path, first_step: int):
    """A TensorBoard writer for `log_dir`, or None (with one warning) where tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        logger.warning("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)")
        return None
    # purge_step drops events a killed run logged after its last checkpoint, which the resumed run logs again.
    return SummaryWriter(str(log_dir), purge_step=first_step)



def run_steps(run, draw_batch: Callable[[], dict], out_dir: Path, writer, group, *, name: str, unit: str,
              on_checkpoint: Callable[[int], None] | None = None) -> None:
    """The training loop shared by every architecture: `run.train_step` on `draw_batch()` from the run's next step
    to `run.config.steps`; loss, learning rate and `unit`/s logged every `log_every` steps, a checkpoint in
    `out_dir` every `checkpoint_every` steps and at the end (then `on_checkpoint(step)` where a writer exists)."""
    train_config = run.config
    progress = tqdm(range(run.step_count + 1, train_config.steps + 1), desc=f"train {name}",
                    disable=None if group.is_main else True, unit="step")
    loss_sum, window_start, window_steps = torch.zeros((), device=run.device), time.perf_counter(), 0
    for step in progress:
        loss_sum += run.train_step(draw_batch())
        window_steps += 1
        checkpoint_now = step % train_config.checkpoint_every == 0 or step == train_config.steps
        if checkpoint_now or step % train_config.log_every == 0:
            loss = loss_sum.item() / window_steps  # the only host synchronisation
            if not math.isfinite(loss):  # stop before a checkpoint of non-finite weights replaces the last good one
                raise InvalidInputError(
                    "TrainConfig.lr", f"training diverged: the mean loss of steps {step - window_steps + 1}-{step} "
                    f"is {loss}", f"lower lr (now {train_config.lr:g}) or raise warmup_steps (now "
                    f"{train_config.warmup_steps}); the last checkpoint in {out_dir}, if any, is kept (resume = true "
                    "continues from it)")
            rate = window_steps * train_config.batch_size / (time.perf_counter() - window_start)
            progress.set_postfix(loss=f"{loss:.4f}", **{f"{unit}_s": f"{rate:.1f}"})
            if group.is_main:
                logger.info("step %d/%d: loss %.4f, %.1f %s/s", step, train_config.steps, loss, rate, unit)
            if writer is not None:
                for scalar, value in (("loss", loss), ("lr", train_config.lr_at(step)), (f"{unit}_per_s", rate)):
                    writer.add_scalar(f"train/{scalar}", value, step)
            loss_sum.zero_()
            window_start, window_steps = time.perf_counter(), 0
        if checkpoint_now:
            run.save(out_dir)
            if writer is not None:
                if on_checkpoint is not None:
                    on_checkpoint(step)
                writer.flush()

def train_generator(scenes: Sequence[MultiViewScene], model_config: XUNetConfig, train_config: TrainConfig,
                    out_dir: Path, log_dir: Path | None = None) -> Path:
    """Train a generator on pairs of views of `scenes`; writes the checkpoint folder `out_dir` and returns it.

    Under `torchrun` every process calls this with the same arguments. With `train_config.resume` a folder holding
    a resume state of the same model is continued; any other existing checkpoint needs `train_config.overwrite`.
    `log_dir`: TensorBoard event files (loss, lr, images/s, grids).
    """
    out_dir = Path(out_dir)
    group, device = start_process_group(resolve_device(train_config.device))
    pairs = DevicePairBatches(ViewPairs(scenes, model_config.image_size), device)
    # Seed only inside fork_rng so a library call leaves the caller's global random state untouched.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        run = TrainingRun(model_config, train_config, device, group)
        run.resume(out_dir)
        if group.is_main:
            logger.info("training %s (%d parameters) on %d view pairs of %d scenes, steps %d..%d on %s x %d",
                        train_config.architecture, run.parameter_count(), pairs.num_pairs, len(scenes),
                        run.step_count + 1, train_config.steps, device, group.world_size)
        writer = _summary_writer(log_dir, run.step_count + 1) if log_dir is not None and group.is_main else None
        preview = pairs.sample(min(4, train_config.batch_size), torch.Generator(device).manual_seed(0))

        def preview_grid(step: int) -> None:
            writer.add_image("ema/cond_target_noisy_x0", _sample_grid(run, preview), step)

        def draw() -> dict[str, torch.Tensor]:
            batch = pairs.sample(train_config.batch_size, run.data_generator)
            return permute_colours(batch, run.data_generator) if train_config.permute_colours else batch

        run_steps(run, draw, out_dir, writer, group, name=train_config.architecture, unit="images",
                  on_checkpoint=preview_grid)
        if writer is not None:
            writer.close()
    end_process_group(group)
    return out_dir
