"""Does a trained pose-conditioned denoiser use its conditioning view? A toy task and a measurement.

Toy "copy" task: the target view IS the conditioning view, seen from the same camera, and the images are smooth
random colour fields (a coarse x coarse grid of random colours, bilinearly enlarged). A model that reads its
conditioning view can predict x0 exactly; one that ignores it can only guess from the noisy target.

Measurement (`x0_errors`): at a few mid noise levels, the MSE of the one-step x0 estimate
x0_hat = (z_t - sigma eps_hat) / alpha with the right conditioning view and with a wrong one (another example's view,
`torch.roll` over the batch). right < wrong means the conditioning view is used; right == wrong means it is ignored.

Run as a script to train a model on the toy task and print the two errors during training, e.g.

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python -m tests.generators.conditioning_probe --preset tiny --steps 300
    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python -m tests.generators.conditioning_probe --arch concat_unet --steps 300

Findings (2-core CPU, one thread, batch 16, warm-up 50; "L-4 0.418/0.418" = x0 MSE right/wrong view at logSNR -4):

| model, task | steps, lr | L-4 right/wrong | L0 right/wrong |
|---|---|---|---|
| X-UNet `tiny` 32 px, copy, coarse 4 | 300, 2e-3 | 0.418 / 0.418 | 0.0220 / 0.0220 |
| concat-UNet `tiny` 32 px, same | 300, 2e-3 | 0.256 / 0.616 | 0.0064 / 0.1702 |
| X-UNet MICRO 8 px, copy, coarse 2 | 600, 2e-3 | 0.717 / 0.811 | 0.0737 / 0.0824 |
| concat-UNet MICRO 8 px, same | 600, 2e-3 | 0.417 / 0.950 | 0.0387 / 0.2119 |

The X-UNet's only route from the conditioning frame to the target frame is cross-frame attention, which starts out
uniform (every target pixel reads the mean of the conditioning frame's values, and GroupNorm has removed most of
that mean) and must learn correspondences before the view helps; the concat-UNet reads the view per pixel from its
first convolution. See `tests/generators/test_generators_conditioning.py`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from generators.schedule import CosineLogSNRSchedule
from scenes.cameras import look_at

#: logSNR levels of the measurement: mid noise, where the conditioning view should matter most.
LEVELS = (-4.0, -2.0, 0.0, 2.0)


def smooth_images(count: int, size: int, generator: torch.Generator, coarse: int) -> torch.Tensor:
    """[count, 3, size, size] in [-1, 1]: a coarse x coarse grid of random colours, bilinearly enlarged."""
    low = torch.rand(count, 3, coarse, coarse, generator=generator) * 2 - 1
    return F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


def ring_cameras(count: int, generator: torch.Generator) -> torch.Tensor:
    """[count, 4, 4] cameras at random angles on a ring of radius 2.5, 1 above the origin, looking at it."""
    angles = (torch.rand(count, generator=generator) * 2 * math.pi).tolist()
    eyes = [np.array([2.5 * math.cos(a), 2.5 * math.sin(a), 1.0]) for a in angles]
    return torch.tensor(np.stack([look_at(eye) for eye in eyes]), dtype=torch.float32)


def copy_batch(count: int, size: int, generator: torch.Generator, coarse: int = 4) -> dict[str, torch.Tensor]:
    """A batch of the copy task in the layout of `generators.view_pairs` (target = conditioning view and camera)."""
    images, c2w = smooth_images(count, size, generator, coarse), ring_cameras(count, generator)
    intrinsics = torch.tensor([1.2 * size, 1.2 * size, size / 2, size / 2]).expand(count, 4)
    return {"cond_image": images, "target_image": images.clone(), "cond_c2w": c2w, "target_c2w": c2w.clone(),
            "intrinsics": intrinsics}


@torch.no_grad()
def x0_errors(model: torch.nn.Module, batch: dict[str, torch.Tensor], levels=LEVELS, seed: int = 123
              ) -> list[tuple[float, float, float]]:
    """(logSNR, x0 MSE with the right conditioning view, x0 MSE with another example's view) per level."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    target = batch["target_image"]
    wrong = torch.roll(batch["cond_image"], 1, dims=0)
    rows = []
    for level in levels:
        eps = torch.randn(target.shape, generator=generator)
        logsnr = torch.full((target.shape[0],), level)
        alpha, sigma = (float(s) for s in CosineLogSNRSchedule.alpha_sigma(torch.tensor(level)))
        z = alpha * target + sigma * eps
        errors = []
        for cond in (batch["cond_image"], wrong):
            eps_hat = model(z, logsnr, cond, batch["cond_c2w"], batch["target_c2w"], batch["intrinsics"])
            errors.append(F.mse_loss(((z - sigma * eps_hat) / alpha).clamp(-1, 1), target).item())
        rows.append((level, *errors))
    model.train(was_training)
    return rows


def _apply_variant(run, variant: str) -> None:
    """Experimental changes for the ablation (not in the library): see --variant."""
    from generators.xunet import AttnBlock, ResnetBlock
    if variant in ("no_zero_init_attention", "no_zero_init"):
        for module in run.model.modules():
            if isinstance(module, AttnBlock):
                module.out.reset_parameters()  # PyTorch's default init instead of 3DiM's zero init
            if isinstance(module, ResnetBlock) and variant == "no_zero_init":
                module.conv2.reset_parameters()
        run.ema.load_state_dict(run.model.state_dict())


def main() -> None:
    from generators.training import TrainConfig, TrainingRun
    from generators.xunet import PRESETS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="tiny", help="an X-UNet preset, or 'micro' (tests' MICRO model)")
    parser.add_argument("--arch", default="xunet", choices=["xunet", "concat_unet"])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--coarse", type=int, default=4, help="colour grid of the toy images")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], help="XUNetConfig field=python literal")
    parser.add_argument("--variant", default="none", choices=["none", "no_zero_init_attention", "no_zero_init"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.preset == "micro":
        from tests.generators.micro_model import MICRO as config
    else:
        config = PRESETS[args.preset]
    changes = {"image_size": args.size}
    for item in args.set:
        name, value = item.split("=", 1)
        changes[name] = eval(value)  # a developer's command line, e.g. attn_resolutions=(16,8)
    config = dataclasses.replace(config, **changes)
    train = TrainConfig(steps=args.steps, batch_size=args.batch, lr=args.lr, warmup_steps=args.warmup, device="cpu",
                        architecture=args.arch, seed=args.seed)
    run = TrainingRun(config, train, torch.device("cpu"))
    _apply_variant(run, args.variant)
    data = torch.Generator().manual_seed(args.seed + 10)
    probe = copy_batch(32, args.size, torch.Generator().manual_seed(999), args.coarse)
    print(f"# {args.arch} {args.preset} {changes} variant={args.variant} parameters={run.parameter_count()} "
          f"lr={args.lr} batch={args.batch}")
    start, losses = time.perf_counter(), []
    for step in range(1, args.steps + 1):
        losses.append(run.train_step(copy_batch(args.batch, args.size, data, args.coarse)).item())
        if step % args.eval_every == 0 or step == args.steps:
            cells = " ".join(f"L{level:+.0f} {right:.4f}/{wrong:.4f}"
                             for level, right, wrong in x0_errors(run.model, probe))
            print(f"step {step} loss {np.mean(losses[-args.eval_every:]):.4f} x0 MSE right/wrong view: {cells} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
