"""Generator benchmark (GPU): training images/s, peak memory and FLOPs utilisation of an X-UNet preset, and the
time of guided ancestral sampling beside the time of its bare forward passes.

    python benchmarks/generator.py --preset 3dim-64 --out reports/benchmarks/generator.md

Reference column: the public PyTorch port of 3DiM's X-UNet at the same size (ch=128), 79.8 images/s with bf16
autocast at batch 32 on the same H100 (reports/benchmarks/peers.md); it runs out of memory at batch 128. FLOPs are
counted with `torch.utils.flop_counter` (matrix products and convolutions of one training step, forward and
backward) and divided by the measured bf16 peak of 798 TFLOP/s. Training runs the real `TrainingRun.train_step`
(noise draw, bf16 autocast, backward, clipping, fused AdamW, EMA) on batches drawn by `DevicePairBatches` from
synthetic scenes.
Sampling times a slice of the 256 steps (every step does the same work) and scales to 256.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generators.training import TrainConfig, TrainingRun  # noqa: E402
from generators.view_pairs import DevicePairBatches, ViewPairs  # noqa: E402
from generators.xunet import PRESETS, XUNet  # noqa: E402
from scenes.cameras import Cameras, Intrinsics, look_at  # noqa: E402
from scenes.scene import MultiViewScene  # noqa: E402

#: Learning rate of the timed training runs. At TrainConfig's 1e-3 (10 warm-up steps here) the compiled batch-32 row
#: of two runs ended with a NaN loss, and a GPU can run faster on NaN (its products draw less power, so it holds
#: higher clocks): such a row times nothing that training does. Ten times lower makes a divergence within the few
#: dozen timed steps unlikely, and each row reports its last loss, so that a diverged one shows.
TIMED_LR = 1e-4


def timed_train_config(**settings) -> TrainConfig:
    """The TrainConfig of a timed run: `settings` on the benchmarks' common ones."""
    return TrainConfig(**{"lr": TIMED_LR, "warmup_steps": 10, "steps": 10 ** 9, **settings})


def loss_text(loss: float) -> str:
    """A row's last loss, or why a non-finite one makes its timing meaningless."""
    return f"{loss:.4f}" if math.isfinite(loss) else f"{loss} (diverged: not a training step's timing)"


PORT_IMAGES_PER_S = 79.8  #: public port, 3dim-64 size, bf16 autocast, batch 32, H100 (reports/benchmarks/peers.md)
PEAK_FLOPS = 798e12  #: measured bf16 dense matrix product on the H100 (reports/benchmarks/peers.md)
DEVICE = torch.device("cuda")  #: --device cpu smoke-tests this script with --preset tiny


def synthetic_scenes(count: int, views: int, size: int) -> list[MultiViewScene]:
    """Random images on cameras around the origin: training speed does not depend on image content."""
    rng = np.random.default_rng(0)
    intrinsics = Intrinsics(fx=1.2 * size, fy=1.2 * size, cx=size / 2, cy=size / 2, width=size, height=size)
    scenes = []
    for s in range(count):
        angles = s + np.linspace(0, 2 * np.pi, views, endpoint=False)
        c2w = np.stack([look_at(np.array([2.5 * np.cos(a), 2.5 * np.sin(a), 1.0])) for a in angles])
        scenes.append(MultiViewScene(rng.random((views, size, size, 3), dtype=np.float32), Cameras(c2w, intrinsics)))
    return scenes


def synchronize() -> float:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2 ** 30 if DEVICE.type == "cuda" else float("nan")


def reset_peak() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def train_variant(config, pairs, batch: int, precision: str, channels_last: bool, compile: bool, cuda_graphs: bool,
                  grad_accumulation: int, steps: int, warmup: int, repeats: int = 1) -> dict:
    """images/s (of the fastest of `repeats` timed runs of `steps` training steps) and peak GiB, after `warmup`
    steps (compilation happens there)."""
    reset_peak()
    run = TrainingRun(config, timed_train_config(batch_size=batch, precision=precision, channels_last=channels_last,
                                                 compile=compile, cuda_graphs=cuda_graphs,
                                                 grad_accumulation=grad_accumulation), DEVICE)
    for _ in range(warmup):
        run.train_step(pairs.sample(batch, run.data_generator))
    if not cuda_graphs:  # CUDA graphs allocate their memory pool while warm-up records them: keep it in the peak
        reset_peak()
    seconds = float("inf")
    for _ in range(repeats):
        start = synchronize()
        for _ in range(steps):
            loss = run.train_step(pairs.sample(batch, run.data_generator))
        seconds = min(seconds, synchronize() - start)
    result = {"images_per_s": steps * batch / seconds, "peak_gib": peak_gib(),
              "loss": float(loss)}
    del run
    return result


def training_flops_per_image(config, pairs, batch: int = 4) -> float:
    """FLOPs of one training step (forward + backward) per image, counted by torch.utils.flop_counter."""
    run = TrainingRun(config, TrainConfig(batch_size=batch, precision="bf16", channels_last=False, steps=10 ** 9),
                      DEVICE)
    sample = pairs.sample(batch, run.data_generator)
    with FlopCounterMode(display=False) as counter:
        run.train_step(sample)
    return counter.get_total_flops() / batch


def data_draw_ms(pairs, batch: int) -> float:
    generator = torch.Generator(DEVICE).manual_seed(0)
    for _ in range(3):
        pairs.sample(batch, generator)
    start = synchronize()
    for _ in range(50):
        pairs.sample(batch, generator)
    return (synchronize() - start) / 50 * 1e3


@torch.no_grad()
def sampling(config, batch: int, steps: int, guidance: float, channels_last: bool, compile: bool) -> dict:
    """Seconds per view for 256 guided ancestral steps, and the same for the bare forward passes alone.

    The loop is the ancestral sampler's (generators/samplers/ancestral.py): one forward pass of 2B requests
    (conditional and unconditional) per step, guidance, x0 estimate, posterior mean and noise, all on the GPU.
    """
    torch.manual_seed(0)
    model = XUNet(config).to(DEVICE).eval()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if compile else model
    size, device = config.image_size, DEVICE
    generator = torch.Generator(device).manual_seed(0)
    c2w = torch.tensor(np.stack([look_at(np.array([2.5 * math.cos(a), 2.5 * math.sin(a), 1.0]))
                                 for a in np.linspace(0, 6.28, batch)]), dtype=torch.float32, device=device)
    intrinsics = torch.tensor([1.2 * size, 1.2 * size, size / 2, size / 2], device=device).expand(2 * batch, 4)
    cond = torch.rand(batch, 3, size, size, device=device) * 2 - 1
    requests = (torch.cat([cond, cond]), torch.cat([c2w.roll(1, 0)] * 2), torch.cat([c2w, c2w]), intrinsics,
                torch.cat([torch.ones(batch, device=device), torch.zeros(batch, device=device)]))
    levels = torch.linspace(1.0, 0.0, 257, dtype=torch.float64)
    logsnr = -2.0 * torch.log(torch.tan(math.atan(math.exp(10.0)) * levels + math.atan(math.exp(-10.0)) *
                                        (1 - levels)))  # clipped cosine schedule, -20..20 (generators/schedule.py)

    def denoise(z, level):
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
            return forward(torch.cat([z, z]), torch.full((2 * batch,), float(logsnr[level]), device=device),
                           *requests).float()

    def ancestral(z, i):
        eps_cond, eps_uncond = denoise(z, i).chunk(2)
        eps = (1 + guidance) * eps_cond - guidance * eps_uncond
        s, t = logsnr[i], logsnr[i + 1]
        alpha_s, sigma_s = math.sqrt(torch.sigmoid(s)), math.sqrt(torch.sigmoid(-s))
        alpha_t, sigma_t = math.sqrt(torch.sigmoid(t)), math.sqrt(torch.sigmoid(-t))
        x0 = ((z - sigma_s * eps) / alpha_s).clamp(-1, 1)
        one_minus_r = float(-torch.expm1(s - t))
        mean = (1 - one_minus_r) * alpha_t / alpha_s * z + one_minus_r * alpha_t * x0
        noise = torch.randn(z.shape, generator=generator, device=device)
        return mean + math.sqrt(one_minus_r) * sigma_t * noise

    z = torch.randn(batch, 3, size, size, generator=generator, device=device)
    for i in range(3):  # warm-up (and compilation)
        denoise(z, i)
        ancestral(z, i)
    start = synchronize()
    for i in range(steps):
        denoise(z, i)
    bare = synchronize() - start
    start = synchronize()
    for i in range(steps):
        z = ancestral(z, i)
    full = synchronize() - start
    scale = 256 / steps / batch
    return {"batch": batch, "bare_s_per_view": bare * scale, "sampling_s_per_view": full * scale,
            "overhead": full / bare - 1, "peak_gib": peak_gib()}


def text_of_training(args, rows: list[dict], flops: float, parameters: int, device_name: str, draw: float) -> str:
    """The training table (markdown) with its header."""
    lines = [f"# Generator benchmark: `{args.preset}` ({parameters / 1e6:.1f}M parameters)", "",
             f"{device_name}, torch {torch.__version__}. Command: `python benchmarks/generator.py --preset "
             f"{args.preset}`. Training FLOPs per image (forward + backward, `torch.utils.flop_counter`): "
             f"{flops / 1e9:.1f} GFLOP; MFU against the measured 798 TFLOP/s bf16 peak.", "",
             "| batch | variant | images/s | public port (bf16, batch 32) | ratio | MFU | peak memory | last loss |",
             "|---:|---|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        lines.append(f"| {row['batch']} | {row['variant']} | {row['images_per_s']:.1f} | {PORT_IMAGES_PER_S} | "
                     f"{row['ratio']:.2f}x | {100 * row['mfu']:.1f}% | {row['peak_gib']:.1f} GiB | "
                     f"{loss_text(row.get('loss', math.nan))} |")
    lines += ["", f"Drawing a batch of 32 pairs from the device-resident data: {draw:.3f} ms."]
    return "\n".join(lines)


def write_text(out: Path | None, text: str) -> None:
    """Print the tables, and write them to `out` where given."""
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="3dim-64", choices=sorted(PRESETS))
    parser.add_argument("--steps", type=int, default=15, help="Timed training steps per variant.")
    parser.add_argument("--warmup", type=int, default=5, help="Untimed steps first (compilation happens here).")
    parser.add_argument("--repeats", type=int, default=2,
                        help="Timed runs of --steps steps per variant; the fastest counts (as generator_variants.py).")
    parser.add_argument("--variants", default="bf16,bf16+cl,bf16+cl+compile",
                        help="Comma-separated training variants at batch 32: precision[+cl][+compile].")
    parser.add_argument("--big-batch", type=int, default=128)
    parser.add_argument("--big-variant", default="bf16+cl+compile+acc4",
                        help="Variant at --big-batch; accN = N micro-batches per step (gradient accumulation); "
                             "none skips it.")
    parser.add_argument("--sample-batch", type=int, default=256, help="Target views sampled at once.")
    parser.add_argument("--sample-steps", type=int, default=8, help="Timed denoising steps (scaled to 256).")
    parser.add_argument("--sample-variant", default="bf16+cl")
    parser.add_argument("--out", type=Path, default=None, help="Markdown file for the table.")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    if args.repeats < 1 or args.steps < 1:
        parser.error("--steps and --repeats must be at least 1")
    global DEVICE
    DEVICE = torch.device(args.device)
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        print("benchmarks/generator.py needs a CUDA device")
        return 1
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    # Each batch size gets its own static graph: shape-specialised kernels are what is being measured.
    torch._dynamo.config.automatic_dynamic_shapes = False
    config = PRESETS[args.preset]
    pairs = DevicePairBatches(ViewPairs(synthetic_scenes(8, 50, config.image_size), config.image_size), DEVICE)
    device_name = torch.cuda.get_device_name() if DEVICE.type == "cuda" else "CPU"
    parameters = sum(p.numel() for p in XUNet(config).parameters())
    print(f"{args.preset}: {parameters / 1e6:.1f}M parameters on {device_name}, torch {torch.__version__}", flush=True)
    flops = training_flops_per_image(config, pairs)
    print(f"training FLOPs per image (forward + backward): {flops / 1e9:.1f} GFLOP", flush=True)

    rows = []

    def parse(variant: str) -> dict:
        parts = variant.split("+")
        accumulation = [int(part[3:]) for part in parts if part.startswith("acc")]
        return {"precision": parts[0], "channels_last": "cl" in parts, "compile": "compile" in parts,
                "cuda_graphs": "graphs" in parts, "grad_accumulation": accumulation[0] if accumulation else 1}

    runs = [(32, v) for v in args.variants.split(",")]
    runs += [(args.big_batch, args.big_variant)] if args.big_variant != "none" else []
    for batch, variant in runs:
        try:
            result = train_variant(config, pairs, batch, steps=args.steps, warmup=args.warmup, repeats=args.repeats,
                                   **parse(variant))
        except torch.OutOfMemoryError:
            result = {"images_per_s": float("nan"), "peak_gib": float("nan"), "error": "out of memory"}
        result.update(batch=batch, variant=variant, mfu=result["images_per_s"] * flops / PEAK_FLOPS,
                      ratio=result["images_per_s"] / PORT_IMAGES_PER_S)
        rows.append(result)
        print(f"train batch {batch:4d} {variant:18s} {result['images_per_s']:8.1f} images/s "
              f"({result['ratio']:.2f}x port)  MFU {100 * result['mfu']:.1f}%  peak {result['peak_gib']:.1f} GiB  "
              f"loss {loss_text(result.get('loss', math.nan))}", flush=True)
    draw = data_draw_ms(pairs, 32)
    print(f"drawing a batch of 32 pairs on the GPU: {draw:.3f} ms", flush=True)
    lines = text_of_training(args, rows, flops, parameters, device_name, draw).splitlines()
    sample = None
    if args.sample_batch >= 1:
        sample_variant = parse(args.sample_variant)
        sample = sampling(config, args.sample_batch, args.sample_steps, 3.0, sample_variant["channels_last"],
                          sample_variant["compile"])
        print(f"sampling {args.sample_batch} views, 256 guided steps: {sample['sampling_s_per_view']:.3f} s/view, "
              f"bare forward passes {sample['bare_s_per_view']:.3f} s/view, overhead {100 * sample['overhead']:.1f}%",
              flush=True)
        lines += ["", "| sampling (256 steps, guidance 3, both passes in one batch) | views at once | s/view | "
                  "bare forward passes s/view | overhead |", "|---|---:|---:|---:|---:|",
                  f"| ancestral, {args.sample_variant} | {sample['batch']} | {sample['sampling_s_per_view']:.4f} | "
                  f"{sample['bare_s_per_view']:.4f} | {100 * sample['overhead']:.1f}% |"]
    write_text(args.out, "\n".join(lines) + "\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"flops_per_image": flops, "train": rows, "sampling": sample,
                                         "device": device_name, "data_draw_ms": draw}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
