"""Where a compiled X-UNet training step goes (GPU): forward FLOPs by layer kind, then GPU kernel time by category
and the kernels that take longest, from `torch.profiler` over real `TrainingRun.train_step` calls.

    python benchmarks/generator_profile.py --preset 3dim-64 --batch 32

It answers what `benchmarks/generator.py`'s images/s cannot: whether a step is bound by launches (kernel time well
below wall time), by matrix products (convolutions, FiLM projections, attention) or by the memory-bound rest
(GroupNorm, SiLU, FiLM's scale and shift, copies), which decides what can make training faster.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.generator import synthetic_scenes, timed_train_config  # noqa: E402
from generators.training import TrainConfig, TrainingRun  # noqa: E402
from generators.view_pairs import DevicePairBatches, ViewPairs  # noqa: E402
from generators.xunet import PRESETS  # noqa: E402

#: Kernel-name fragments of each category (cuDNN/cuBLAS/CUTLASS matrix products, flash attention, inductor's fused
#: Triton kernels, the optimizer's multi-tensor kernels); the rest is "other" (mostly ATen copies).
CATEGORIES = {
    "attention": ("flash", "fmha", "attention", "sdpa", "efficient"),
    "gemm/conv": ("gemm", "sm90", "cutlass", "xmma", "conv", "implicit", "wgrad", "dgrad", "nchw", "nhwc", "nvjet"),
    "optimizer/foreach": ("adam", "foreach", "multi_tensor"),
}


def category(kernel: str) -> str:
    if kernel.startswith("triton_"):  # Inductor names its kernels after the ops they fuse ("convolution", ...)
        return "triton (fused elementwise/norm)"
    low = kernel.lower()
    for name, fragments in CATEGORIES.items():
        if any(fragment in low for fragment in fragments):
            return name
    return "other"


def forward_flops_by_layer(run: TrainingRun, batch: dict, rows: int) -> tuple[float, collections.Counter]:
    """Forward FLOPs per image in all, and per layer name (`conv1`, `proj`, `qkv`, ...: own FLOPs, children's
    excluded); a training step costs about three times the forward (two matrix products per one in backward)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad(), \
            torch.autocast(run.device.type, dtype=torch.bfloat16):
        run.loss(batch, run.draw_noise(batch), slice(0, rows))
    counts = {name: sum(c.values()) for name, c in counter.get_flop_counts().items()}
    by_layer = collections.Counter()
    for name, flops in counts.items():
        descendants = [d for d in counts if d.startswith(name + ".")]
        # The nearest counted descendants (a ModuleList is never called, so it has no entry of its own).
        children = [d for d in descendants if not any(d.startswith(e + ".") for e in descendants)]
        parts = [p for p in name.split(".") if not p.isdigit()]
        if len(parts) > 1:
            by_layer[parts[-1]] += flops - sum(counts[c] for c in children)
    return counter.get_total_flops() / rows, collections.Counter({k: v / rows for k, v in by_layer.items()})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="3dim-64", choices=sorted(PRESETS))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--eager", action="store_true", help="Profile without torch.compile.")
    parser.add_argument("--steps", type=int, default=3, help="Profiled steps (after compilation and the timed ones).")
    parser.add_argument("--top", type=int, default=45, help="Kernels listed.")
    parser.add_argument("--no-graphs", action="store_true",
                        help="Compile without CUDA graphs (copy kernels are then attributed to their operators).")
    parser.add_argument("--timed", type=int, default=10, help="Steps timed before profiling.")
    parser.add_argument("--trace", type=Path, default=None,
                        help="Also write the profiled steps as a Chrome trace (every kernel with its start and end, "
                             "so gaps show; with TORCH_COMPILE_DEBUG=1 Inductor writes the kernels' code beside).")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("benchmarks/generator_profile.py needs a CUDA device")
        return 1
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    torch._dynamo.config.automatic_dynamic_shapes = False
    config = PRESETS[args.preset]
    pairs = DevicePairBatches(ViewPairs(synthetic_scenes(8, 50, config.image_size), config.image_size), device)

    counting = TrainingRun(config, TrainConfig(batch_size=4, precision="bf16", channels_last=False, steps=10 ** 9),
                           device)
    total, by_layer = forward_flops_by_layer(counting, pairs.sample(4, counting.data_generator), 4)
    del counting
    print(f"forward {total / 1e9:.1f} GFLOP per image; by layer:")
    for name, flops in by_layer.most_common():
        if flops > 0:
            print(f"  {name:14s} {flops / 1e9:8.1f} GFLOP  {100 * flops / total:5.1f}%")

    run = TrainingRun(config, timed_train_config(batch_size=args.batch, precision="bf16", channels_last=True,
                                                 compile=not args.eager,
                                                 cuda_graphs=False if args.no_graphs else None), device)
    start = time.perf_counter()
    for _ in range(4):
        run.train_step(pairs.sample(args.batch, run.data_generator))
    torch.cuda.synchronize()
    print(f"warm-up (compilation) {time.perf_counter() - start:.1f} s", flush=True)
    start = time.perf_counter()
    for _ in range(args.timed):
        run.train_step(pairs.sample(args.batch, run.data_generator))
    torch.cuda.synchronize()
    step = (time.perf_counter() - start) / args.timed
    print(f"step {step * 1e3:.1f} ms, {args.batch / step:.1f} images/s", flush=True)

    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU], record_shapes=True) as profiler:
        for _ in range(args.steps):
            run.train_step(pairs.sample(args.batch, run.data_generator))
        torch.cuda.synchronize()
    if args.trace:
        profiler.export_chrome_trace(str(args.trace))
    by_category, by_kernel, calls = collections.Counter(), collections.Counter(), collections.Counter()
    for event in profiler.events():
        # Annotations show up as device events too (Inductor's "## Call CompiledFxGraph ##", the optimizer's
        # "Optimizer.step#AdamW.step"): spans over kernels, not kernels.
        if event.device_type.name != "CUDA" or "#" in event.name:
            continue
        name, microseconds = event.name[:110], event.device_time_total
        by_category[category(name)] += microseconds
        by_kernel[name] += microseconds
        calls[name] += 1
    kernel_total = sum(by_category.values())
    print(f"GPU kernel time per step {kernel_total / args.steps / 1e3:.1f} ms (wall {step * 1e3:.1f} ms)")
    for name, microseconds in by_category.most_common():
        print(f"  {name:35s} {microseconds / args.steps / 1e3:8.2f} ms  {100 * microseconds / kernel_total:5.1f}%")
    print("top kernels (ms per step, calls per step):")
    for name, microseconds in by_kernel.most_common(args.top):
        print(f"  {microseconds / args.steps / 1e3:7.2f} ms  x{calls[name] // args.steps:4d}  {name}")
    if not run.cuda_graphs:  # replayed graphs hide which operator launched a kernel
        print("ATen copy kernels by the operators that launched them (ms per step, kernels per step):")
        for source, (microseconds, count) in copy_sources(profiler).most_common(args.top):
            print(f"  {microseconds / args.steps / 1e3:7.2f} ms  x{count // args.steps:4d}  {source}")
        layouts = convolution_backward_layouts(profiler)
        print("convolution_backward calls by the layout of their gradient, input and weight (per step; "
              "cuDNN copies every argument that is not channels-last first):")
        for key, count in layouts.most_common(args.top):
            print(f"  x{count // args.steps:4d}  {key}")
    return 0


def copy_sources(profiler) -> dict[str, tuple[float, int]]:
    """Time and count of copy kernels per chain of CPU operators above them (innermost first, with the shapes of
    the two innermost): which layer asks for a copy, and of what size, which kernel names alone cannot tell."""
    sources: dict[str, list] = collections.defaultdict(lambda: [0.0, 0])
    for event in profiler.events():
        copies = [k for k in getattr(event, "kernels", []) if "direct_copy" in k.name]
        if event.device_type.name != "CPU" or not copies:
            continue
        chain, parent = [], event
        while parent is not None and len(chain) < 5:
            shapes = [s for s in (parent.input_shapes or []) if s][:3] if len(chain) < 2 else ""
            chain.append(f"{parent.name}{shapes}")
            parent = parent.cpu_parent
        entry = sources[" <- ".join(chain)]
        entry[0] += sum(k.duration for k in copies)
        entry[1] += len(copies)
    return collections.Counter({key: tuple(value) for key, value in sources.items()})


def convolution_backward_layouts(profiler) -> collections.Counter:
    """Calls of aten::convolution_backward by the shape and layout (CL: channels-last, NCHW, or the strides) of
    their gradient, input and weight, read from the strides the profiler records in its trace."""
    with tempfile.TemporaryDirectory() as folder:
        trace = Path(folder) / "trace.json"
        profiler.export_chrome_trace(str(trace))
        events = json.loads(trace.read_text())["traceEvents"]
    layouts = collections.Counter()
    for event in events:
        if event.get("name") != "aten::convolution_backward":
            continue
        args, parts = event.get("args", {}), []
        for label, dims, strides in zip(("grad", "input", "weight"), args.get("Input Dims", []),
                                        args.get("Input Strides", [])):
            layout = strides
            if len(dims) == 4:
                _, c, h, w = dims
                layout = {(c * h * w, 1, w * c, c): "CL", (c * h * w, h * w, w, 1): "NCHW"}.get(tuple(strides), strides)
            parts.append(f"{label} {dims} {layout}")
        layouts[" | ".join(parts)] += 1
    return layouts


if __name__ == "__main__":
    sys.exit(main())
