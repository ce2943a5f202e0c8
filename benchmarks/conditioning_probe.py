"""Does a trained pose-conditioned denoiser use its conditioning view? A toy task and a measurement.

Toy "copy" task: the target view IS the conditioning view, seen from the same camera, and the images are smooth
random colour fields (a coarse x coarse grid of random colours, bilinearly enlarged). A model that reads its
conditioning view can predict x0 exactly; one that ignores it can only guess from the noisy target.

Measurement (`x0_errors`): at a few mid noise levels, the MSE of the one-step x0 estimate
x0_hat = (z_t - sigma eps_hat) / alpha with the right conditioning view and with a wrong one (another example's view,
`torch.roll` over the batch). right < wrong means the conditioning view is used; right == wrong means it is ignored.

Run as a script to train a model on the toy task and print the two errors during training, e.g.

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python -m benchmarks.conditioning_probe --preset tiny --steps 300
    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python -m benchmarks.conditioning_probe --arch concat_unet --steps 300

Findings (2-core CPU, one thread, batch 16, warm-up 50, seed 0; cells are x0 MSE with the right / another view):

| model, task | lr | logSNR | step 200 | 400 | 600 | 800 | 1000 | 1200 | 1400 |
|---|---|---|---|---|---|---|---|---|---|
| X-UNet `tiny` 32 px, copy | 2e-3 | -2 | .135/.135 | .105/.105 | .103/.103 | .094/.094 | .094/.096 | .053/.132 | .025/.178 |
| concat-UNet `tiny` 32 px, copy | 2e-3 | -2 | .084/.376 (step 100: .143/.361, step 300: .047/.345) | | | | | | |
| X-UNet `tiny` 32 px, copy (warm-up 100) | 3e-4 | -2 | .245/.245 | .153/.153 | .124/.124 | .113/.113 | .107/.107 | .103/.103 | .095/.099 |
| X-UNet `tiny` 16 px, copy | 2e-3 | -2 | .209/.210 | .178/.178 | .171/.171 | .156/.181 | | | |

So the X-UNet is not broken; it sits on a plateau. Its only route from the conditioning frame to the target frame is
cross-frame attention, which starts out uniform (after 60 steps the cross-attention entropy is 4.09 nats of the
log 64 = 4.16 of uniform weights over the 8x8 tokens): every target pixel then reads the mean of the conditioning
frame's values, and GroupNorm has removed most of that mean. The view helps only once attention has learned
correspondences, a slow second-order process (the attention logits get gradient only through the output
projection, which starts at zero). The concat-UNet reads the view per pixel from its first convolution.

Levers tried (same copy task; MICRO 8 px, 600 steps, logSNR -4, right/wrong; base .717/.811, concat-UNet
.417/.950): lr 5e-4 .917/.928 (slower), lr 5e-3 .610/.733 and batch 32 .618/.733 (a little faster),
`--variant no_zero_init_attention` .791/.807, `pos_octaves=8` .729/.751, `cond_dropout_prob=0` .777/.796, attention
also at 8 px .720/.761, seed 1 .771/.796. On `tiny` at 16 px, 800 steps, logSNR -2, neither lr 5e-3 (.169/.169) nor
`--variant no_zero_init` (.173/.174) beat lr 2e-3 (.156/.181). Two of 3DiM's own features that nvsc's X-UNet lacks,
tried as throw-away patches: a learned per-pixel position embedding added to the pose embedding (3DiM's
`use_pos_emb`; MICRO .702/.778, `tiny` 32 px at 300 steps .407/.407) and GroupNorm statistics over both frames
(3DiM's flax GroupNorm over [B, F, H, W, C]; MICRO .764/.774). None removes the plateau.

A deviation from 3DiM that is not the cause here (`tiny`, with 6 octaves, shows the same plateau) but matters for the
3dim presets: 3DiM encodes ray origins with 15 octaves and ray directions with 8 (144 channels); the presets use
`pos_octaves` = 15 for both, and at 64 px neighbouring pixels' directions differ by about 0.01 rad, so the direction
octaves above about 2^7 are per-pixel noise in the pose embedding.

The GPU preset leaves the plateau within the steps a GPU run can afford. On an H100, copy task at 64 px
(`--preset 3dim-64 --size 64 --batch 32 --lr 3e-4 --warmup 100 --device cuda --compile`), logSNR -2: .0391/.0391
at step 400, .0323/.0324 at 800, .0300/.0303 at 1200, .0263/.0310 at 1600, .0130/.0660 at 2000 (logSNR -4 at 2000:
.083/.192), 401 s including compilation.

The demo's own task (`--data <srn root>`: pairs of different views of the procedural objects, the wrong view is
another scene's) is much harder than copying. The demo's checkpoint (`tiny`, 400 steps; `--checkpoint <folder>`):
logSNR -4 .2833/.2836, -2 .1173/.1173. `tiny` trained on it at lr 2e-3: logSNR -4 .458/.458 at step 200,
.262/.263 at 800, .259/.263 at 1400, .261/.261 at 1600; logSNR -2 .118/.118 at 800, .118/.120 at 1400, .113/.114
at 1600: still on the plateau after 4x the demo's steps. The concat-UNet on the same data: logSNR -4 .489/.505 at
step 200, .327/.338 at 400 (logSNR -2 .137/.141). (Those numbers are of the probe before the wrong view was always
another scene's: `torch.roll` over the shuffled batch gave a view of the same scene for about one pair in six.)

On the GPU the real task leaves the plateau (reports/benchmarks/trained_model.md, H100, batch 128, lr 2e-3, held-out
scenes, EMA): `tiny` unchanged logSNR -4 .2050/.2547 after 900 steps (ratio 0.80; raw weights 0.90 at step 500);
with v-prediction and the v loss (`--loss v --set prediction='v'`) .1720/.2945 after 571 (0.58; 0.62 at step 500).
At batch 16 on the CPU both stay at 1.000 after 800 steps, with or without `--permute-colours`.
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
LEVELS = (-8.0, -4.0, -2.0, 0.0)


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
    wrong = batch["wrong_image"] if "wrong_image" in batch else torch.roll(batch["cond_image"], 1, dims=0)
    rows = []
    for level in levels:
        eps = torch.randn(target.shape, generator=generator).to(target.device)
        logsnr = torch.full((target.shape[0],), level, device=target.device)
        alpha, sigma = (float(s) for s in CosineLogSNRSchedule.alpha_sigma(torch.tensor(level)))
        z = alpha * target + sigma * eps
        errors = []
        for cond in (batch["cond_image"], wrong):
            eps_hat = model(z, logsnr, cond, batch["cond_c2w"], batch["target_c2w"], batch["intrinsics"])
            errors.append(F.mse_loss(((z - sigma * eps_hat) / alpha).clamp(-1, 1), target).item())
        rows.append((level, *errors))
    model.train(was_training)
    return rows


def probe_batch(scenes, size: int, per_scene: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    """`per_scene` random pairs (conditioning view, another target view) of every scene, in the layout of
    `generators.view_pairs`, plus "wrong_image": a view of the next scene (never the pair's own scene)."""
    from generators.view_pairs import ViewPairs

    pairs = ViewPairs(scenes, size)
    rng = np.random.default_rng(seed)
    items, wrong = [], []
    for scene, images in enumerate(pairs.images):
        other = pairs.images[(scene + 1) % len(pairs.images)]
        for _ in range(per_scene):
            cond, target = rng.choice(len(images), 2, replace=False)
            items.append({"cond_image": images[cond], "target_image": images[target],
                          "cond_c2w": pairs.c2w[scene][cond], "target_c2w": pairs.c2w[scene][target],
                          "intrinsics": pairs.intrinsics[scene]})
            wrong.append(other[rng.integers(len(other))])
    batch = {name: torch.stack([item[name] for item in items]).float().to(device) for name in items[0]}
    batch["wrong_image"] = torch.stack(wrong).float().to(device)
    return batch


def dataset_batches(root: str, size: int, device: torch.device, per_scene: int = 8):
    """(training pair sampler, a probe batch of the val/test scenes, a probe batch of the train scenes) of an
    SRN-layout dataset: `probe_batch` of every held-out scene and of 48 train scenes at most (wrong view: another
    scene's). The held-out probe measures what the demo needs, the train probe whether the view is read at all."""
    from generators.view_pairs import DevicePairBatches, ViewPairs
    from scenes.srn import list_srn_instances, read_srn_instance

    scenes = [read_srn_instance(f) for f in list_srn_instances(root, "train")]
    train = DevicePairBatches(ViewPairs(scenes, size), device)
    held = [read_srn_instance(f) for split in ("val", "test") for f in list_srn_instances(root, split)]
    step = max(1, len(scenes) // 48)
    return (train, probe_batch(held, size, per_scene, device),
            probe_batch(scenes[::step][:48], size, max(1, 48 // len(scenes[::step][:48])), device, seed=1))


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


def _cells(model: torch.nn.Module, probe: dict[str, torch.Tensor]) -> str:
    return " ".join(f"L{level:+.0f} {right:.4f}/{wrong:.4f}" for level, right, wrong in x0_errors(model, probe))


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
    parser.add_argument("--loss", default="eps", choices=["eps", "v"], help="TrainConfig.loss")
    parser.add_argument("--permute-colours", action="store_true", help="TrainConfig.permute_colours")
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--time-budget", type=float, default=0, help="stop after this many seconds (0 = no limit)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], help="XUNetConfig field=python literal")
    parser.add_argument("--data", default=None, help="an SRN-layout dataset: its view pairs instead of the copy task")
    parser.add_argument("--checkpoint", default=None, help="only measure this checkpoint folder's EMA on --data")
    parser.add_argument("--variant", default="none", choices=["none", "no_zero_init_attention", "no_zero_init"])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the GPU presets at their size)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the training step (CUDA graphs on CUDA)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.checkpoint:
        from generators.checkpoint import load_checkpoint
        model, config = load_checkpoint(args.checkpoint, torch.device(args.device), use_ema=True)
        _, held, seen = dataset_batches(args.data, config.image_size, torch.device(args.device))
        for name, probe in (("held-out scenes", held), ("train scenes", seen)):
            for level, right, wrong in x0_errors(model, probe):
                print(f"{args.checkpoint} EMA, {name}: logSNR {level:+.0f}: x0 MSE right view {right:.4f}, another "
                      f"scene's {wrong:.4f}, ratio {right / wrong:.3f}")
        return
    if args.preset == "micro":
        from tests.generators.micro_model import MICRO as config
    else:
        config = PRESETS[args.preset]
    changes = {"image_size": args.size}
    for item in args.set:
        name, value = item.split("=", 1)
        changes[name] = eval(value)  # a developer's command line, e.g. attn_resolutions=(16,8)
    config = dataclasses.replace(config, **changes)
    device = torch.device(args.device)
    train = TrainConfig(steps=args.steps, batch_size=args.batch, lr=args.lr, warmup_steps=args.warmup,
                        device=args.device, architecture=args.arch, seed=args.seed, compile=args.compile,
                        loss=args.loss)
    run = TrainingRun(config, train, device)
    _apply_variant(run, args.variant)
    data = torch.Generator(device).manual_seed(args.seed + 10)
    seen = None
    if args.data:
        pairs, probe, seen = dataset_batches(args.data, args.size, device)
        from generators.view_pairs import permute_colours
        draw = lambda: (permute_colours(pairs.sample(args.batch, data), data) if args.permute_colours  # noqa: E731
                        else pairs.sample(args.batch, data))
    else:
        data = torch.Generator().manual_seed(args.seed + 10)
        on_device = lambda batch: {k: v.to(device) for k, v in batch.items()}  # noqa: E731
        probe = on_device(copy_batch(32, args.size, torch.Generator().manual_seed(999), args.coarse))
        draw = lambda: on_device(copy_batch(args.batch, args.size, data, args.coarse))  # noqa: E731
    print(f"# {args.arch} {args.preset} {changes} variant={args.variant} parameters={run.parameter_count()} "
          f"lr={args.lr} batch={args.batch} loss={args.loss} "
          f"permute_colours={args.permute_colours}", flush=True)
    start, losses, step = time.perf_counter(), [], 0
    for step in range(1, args.steps + 1):
        losses.append(run.train_step(draw()))
        over = args.time_budget and time.perf_counter() - start > args.time_budget
        if step % args.eval_every == 0 or step == args.steps or over:
            loss = torch.stack(losses[-args.eval_every:]).mean().item()
            train_cells = f" | train scenes {_cells(run.model, seen)}" if seen is not None else ""
            print(f"step {step} loss {loss:.4f} x0 MSE right/wrong view: {_cells(run.model, probe)}{train_cells} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
            losses = losses[-args.eval_every:]
        if over:
            break
    train_cells = f" | train scenes {_cells(run.ema, seen)}" if seen is not None else ""
    print(f"final EMA step {step}: {_cells(run.ema, probe)}{train_cells} ({time.perf_counter() - start:.0f} s, "
          f"{step / (time.perf_counter() - start):.1f} steps/s)", flush=True)


if __name__ == "__main__":
    main()
