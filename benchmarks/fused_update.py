"""The update after a training step's backward pass, eager against one pass (GPU), on an X-UNet preset's parameters.

    python benchmarks/fused_update.py --preset 3dim-64

Eager is what training did before (`clip_grad_norm_`, fused AdamW, `update_ema`: four passes over the parameters);
one pass is `generators.fused_update.ClippedAdamWEMA` (the gradient norm, then one kernel). Both update their own
copy of the same weights with the same gradients, timed in turns in one run; the table gives milliseconds per
update on the GPU, the bandwidth that is on the bytes an update must move (read weight, gradient twice, moments and
EMA; write weight, moments and EMA: 10 float32 values per parameter), and the ratio.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from generators.checkpoint import build_model  # noqa: E402
from generators.fused_update import ClippedAdamWEMA  # noqa: E402
from generators.training import update_ema  # noqa: E402
from generators.xunet import PRESETS  # noqa: E402


def gpu_ms(update, count: int, repeats: int) -> float:
    """GPU milliseconds per call: the fastest of `repeats` runs of `count` calls. The GPU first sleeps while the
    host queues the calls, so the events time the kernels back to back, as in training, where the host queues the
    update while the GPU still runs the backward pass."""
    best = float("inf")
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(2 * 10 ** 9)  # about a second: longer than the host takes to queue the calls
        start.record()
        for _ in range(count):
            update()
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) / count)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="3dim-64", choices=sorted(PRESETS))
    parser.add_argument("--architecture", default="xunet")
    parser.add_argument("--count", type=int, default=20, help="Updates per timed run.")
    parser.add_argument("--repeats", type=int, default=3, help="Timed runs per variant; the fastest counts.")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/fused_update.py needs a CUDA device")
    torch.manual_seed(0)
    # Channels-last, as compiled training keeps the weights.
    model = build_model(args.architecture, PRESETS[args.preset]).cuda().to(memory_format=torch.channels_last)
    runs = {}
    for name in ("eager", "one pass"):
        weights = copy.deepcopy(model)
        ema = copy.deepcopy(weights).requires_grad_(False)
        for p in weights.parameters():
            p.grad = torch.empty_like(p).normal_()
        optimizer = torch.optim.AdamW(weights.parameters(), lr=1e-4, fused=True)
        fused = ClippedAdamWEMA(weights, ema, optimizer, max_norm=1.0)
        if fused.reason:
            raise SystemExit(f"the one-pass update does not run here: {fused.reason}")

        def eager(weights=weights, ema=ema, optimizer=optimizer):
            torch.nn.utils.clip_grad_norm_(weights.parameters(), 1.0)
            optimizer.step()
            update_ema(ema, weights, 0.999)

        runs[name] = eager if name == "eager" else (lambda fused=fused: fused.step(0.999))
    for update in runs.values():  # warm-up: state, kernels compiled, address tables built
        for _ in range(3):
            update()
    torch.cuda.synchronize()
    times = {name: gpu_ms(update, args.count, args.repeats) for name, update in runs.items()}
    parameters = sum(p.numel() for p in model.parameters())
    gigabytes = 10 * 4 * parameters / 1e9
    print(f"{args.preset}: {parameters / 1e6:.1f}M parameters in {len(list(model.parameters()))} tensors on "
          f"{torch.cuda.get_device_name()}, torch {torch.__version__}\n")
    print("| update | GPU ms per update | GB/s (10 float32 per parameter) | ratio to eager |")
    print("|---|---:|---:|---:|")
    for name, ms in times.items():
        print(f"| {name} | {ms:.3f} | {gigabytes / ms * 1e3:.0f} | {times['eager'] / ms:.2f}x |")


if __name__ == "__main__":
    main()
