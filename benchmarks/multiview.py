"""Joint multi-view generation (MVDiffusion's multi-branch UNet) against 3DiM's X-UNet, side by side in one run.

    python benchmarks/multiview.py --mv-preset mvd-64 --xunet-preset 3dim-64            # GPU
    python benchmarks/multiview.py --mv-preset tiny --xunet-preset tiny --device cpu    # CPU smoke test

Three rows, each a ratio of two measurements taken in the same process on the same device:
  - training: generated views per second of `MultiViewTrainingRun.train_step` on groups of num_views views against
    `TrainingRun.train_step` on view pairs (one generated view each), same precision;
  - sampling: seconds per generated view and denoising step of `sample_joint` (all targets of a scene at once, with
    guidance) against 3DiM's naive sampler (`sample_naive`, the same number of targets, with guidance);
  - CAA: the multi-branch UNet's forward pass against the same UNet without CAA blocks (what correspondence-aware
    attention costs).
Training data are synthetic (random images and depth on an orbit): speed does not depend on image content.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generators.multiview_training import DeviceViewGroups, MultiViewTrainingRun  # noqa: E402
from generators.multiview_unet import MULTIVIEW_PRESETS, MultiViewUNet  # noqa: E402
from generators.samplers.joint import sample_joint  # noqa: E402
from generators.samplers.naive import sample_naive  # noqa: E402
from generators.schedule import CosineLogSNRSchedule  # noqa: E402
from generators.training import TrainConfig, TrainingRun  # noqa: E402
from generators.view_pairs import DevicePairBatches, ViewPairs  # noqa: E402
from generators.xunet import PRESETS, XUNet  # noqa: E402
from scenes.camera_paths import intrinsics_from_fov, orbit_cameras  # noqa: E402
from scenes.cameras import Cameras  # noqa: E402
from scenes.scene import MultiViewScene  # noqa: E402


def synthetic(count: int, views: int, size: int) -> tuple[list[MultiViewScene], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    cameras = Cameras(orbit_cameras(views, 2.7, 25.0), intrinsics_from_fov(40.0, size))
    scenes = [MultiViewScene(rng.random((views, size, size, 3), dtype=np.float32), cameras) for _ in range(count)]
    return scenes, [rng.uniform(2.0, 3.5, (views, size, size)).astype(np.float32) for _ in range(count)]


def timed(device: torch.device, work, repeats: int, warmup: int = 2) -> float:
    """Seconds per call of `work()`, after `warmup` untimed calls."""
    for _ in range(warmup):
        work()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        work()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def training_seconds(run: TrainingRun, draw, steps: int) -> float:
    """Seconds per `run.train_step` on batches `draw(generator)`; the run is dropped afterwards (GPU memory)."""
    return timed(run.device, lambda: run.train_step(draw(run.data_generator)), steps)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mv-preset", default="mvd-64", choices=sorted(MULTIVIEW_PRESETS))
    parser.add_argument("--xunet-preset", default="3dim-64", choices=sorted(PRESETS))
    parser.add_argument("--groups", type=int, default=4, help="N-view groups per training step.")
    parser.add_argument("--steps", type=int, default=5, help="Timed training steps / denoising steps.")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    device = torch.device(args.device)
    precision = "bf16" if device.type == "cuda" else "fp32"
    mv, xu = MULTIVIEW_PRESETS[args.mv_preset], PRESETS[args.xunet_preset]
    if mv.image_size != xu.image_size:
        xu = dataclasses.replace(xu, image_size=mv.image_size)
    size, views = mv.image_size, mv.num_views
    scenes, depths = synthetic(2, 2 * views, size)
    generated = args.groups * (views - 1)  # generated views per step, the same for both models
    rows = []

    train = TrainConfig(batch_size=args.groups, precision=precision, architecture="mvdiffusion", steps=10 ** 9)
    groups = DeviceViewGroups(scenes, depths, size, device)
    joint_train = training_seconds(MultiViewTrainingRun(mv, train, device),
                                   lambda generator: groups.sample(args.groups, views, generator), args.steps)
    pairs = DevicePairBatches(ViewPairs(scenes, size), device)
    pair_train = training_seconds(TrainingRun(xu, dataclasses.replace(train, batch_size=generated,
                                                                      architecture="xunet"), device),
                                  lambda generator: pairs.sample(generated, generator), args.steps)
    rows.append(("training, generated views/s", generated / joint_train, generated / pair_train))

    schedule, k = CosineLogSNRSchedule(mv.logsnr_min, mv.logsnr_max), scenes[0].cameras.intrinsics
    c2w = scenes[0].cameras.c2w_tensor(device)[:views][None].repeat(args.groups, 1, 1, 1)
    image = torch.rand(args.groups, 3, size, size, device=device) * 2 - 1
    intrinsics = k.as_tensor(device)[None].repeat(args.groups, 1)
    depth = torch.from_numpy(depths[0][:views]).to(device)[None].repeat(args.groups, 1, 1, 1)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    mv_model, xu_model = MultiViewUNet(mv).to(device).eval(), XUNet(xu).to(device).eval()
    with autocast:
        joint = timed(device, lambda: sample_joint(mv_model, image, c2w[:, 0], c2w[:, 1:], intrinsics, schedule,
                                                   args.steps, 3.0, torch.Generator().manual_seed(0),
                                                   depth=depth, progress=False), 1, warmup=1)
        naive = timed(device, lambda: sample_naive(xu_model, image, c2w[:, 0], c2w[:, 1:], intrinsics, schedule,
                                                   args.steps, 3.0, torch.Generator().manual_seed(0)), 1, warmup=1)
    per = generated * args.steps
    rows.append(("sampling, generated views x steps/s (guidance 3)", per / joint, per / naive))

    base = MultiViewUNet(dataclasses.replace(mv, caa_resolutions=())).to(device).eval()
    z = torch.randn(args.groups, views, 3, size, size, device=device)
    logsnr = torch.zeros(args.groups, device=device)
    with torch.no_grad(), autocast:
        with_caa = timed(device, lambda: mv_model(z, logsnr, image, c2w, intrinsics, depth), args.steps)
        without = timed(device, lambda: base(z, logsnr, image, c2w, intrinsics, depth), args.steps)
    rows.append(("forward passes/s: with CAA vs without", 1 / with_caa, 1 / without))

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{name}, torch {torch.__version__}, {precision}; {args.mv_preset} (groups of {views}) vs X-UNet "
          f"{args.xunet_preset} at {size}x{size}, {generated} generated views per step\n")
    print("| workload | joint (mvdiffusion) | reference | ratio |\n|---|---:|---:|---:|")
    for label, ours, reference in rows:
        print(f"| {label} | {ours:.2f} | {reference:.2f} | {ours / reference:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
