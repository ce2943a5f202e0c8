"""The X-UNet's cross-attention block, compiled forward and backward, in two forms side by side (GPU).

    python benchmarks/cross_attention.py

`AttnBlock(cross=True)` (one attention call on keys and values with the halves of the rows swapped) against
`TwoCallsOnSlices`, the form it replaced (each half of the queries attends to a slice of the other half's keys and
values, two calls). Both compute the same function of the same weights (tests/generators/test_generators_layouts.py
checks the reference against the block in float64). Shapes are `3dim-64`'s attention levels at batch 32 (64
frames), bf16 autocast on channels-last input, compiled as training compiles the model; the table gives GPU
milliseconds per forward and backward pass (input and weight gradients) and the ratio.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.fused_update import gpu_ms  # noqa: E402
from generators.xunet import AttnBlock  # noqa: E402

#: (frames, channels, resolution) of `3dim-64`'s attention levels at batch 32.
SHAPES = [(64, 256, 32), (64, 256, 16), (64, 512, 8)]


class TwoCallsOnSlices(AttnBlock):
    """Cross-attention as two calls: the conditioning frames' queries on the target frames' keys and values (slices
    of the rows), and back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames, channels, height, width = x.shape
        tokens = self.norm(x).permute(0, 2, 3, 1).reshape(-1, channels)
        q, k, v = (t.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)
                   for t in self.qkv(tokens).unflatten(0, (frames, -1)).chunk(3, dim=-1))
        half = frames // 2
        attended = torch.cat([F.scaled_dot_product_attention(q[:half], k[half:], v[half:]),
                              F.scaled_dot_product_attention(q[half:], k[:half], v[:half])])
        out = self.out(attended.transpose(1, 2).reshape(-1, channels))
        return (x + out.view(frames, height, width, channels).permute(0, 3, 1, 2)) / math.sqrt(2.0)


def forward_backward(block: AttnBlock, x: torch.Tensor, grad: torch.Tensor):
    """A function that runs a compiled forward and backward pass of `block` on x and returns the output and the
    gradients of x and of every weight."""
    compiled = torch.compile(block, options={"force_layout_optimization": True})

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = compiled(x)
        return out, torch.autograd.grad(out, [x, *block.parameters()], grad)
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20, help="Passes per timed run.")
    parser.add_argument("--repeats", type=int, default=3, help="Timed runs per form; the fastest counts.")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/cross_attention.py needs a CUDA device")
    torch.backends.cudnn.benchmark = True
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, bf16, compiled forward + backward\n")
    print("| frames x channels x resolution | two calls on slices, GPU ms | one call, swapped keys and values, GPU ms "
          "| ratio | max difference of output / input gradient |")
    print("|---|---:|---:|---:|---|")
    for frames, channels, resolution in SHAPES:
        torch.manual_seed(0)
        one_call = AttnBlock(channels, 4, cross=True).cuda()
        torch.nn.init.normal_(one_call.out.weight, std=0.02)  # zero-initialised: random, so that attention shows
        two_calls = TwoCallsOnSlices(channels, 4, cross=True).cuda()
        two_calls.load_state_dict(one_call.state_dict())
        x = torch.randn(frames, channels, resolution, resolution, device="cuda")
        x = x.to(memory_format=torch.channels_last).requires_grad_()
        grad = torch.randn_like(x)
        steps = {name: forward_backward(block, x, grad) for name, block in (("two", two_calls), ("one", one_call))}
        results = {name: step() for name, step in steps.items()}  # compiles; then the timed passes reuse it
        torch.cuda.synchronize()
        times = {name: gpu_ms(step, args.count, args.repeats) for name, step in steps.items()}
        (out_two, grads_two), (out_one, grads_one) = results["two"], results["one"]
        difference = (f"{(out_one - out_two).abs().max().item():.1e} / "
                      f"{(grads_one[0] - grads_two[0]).abs().max().item():.1e}")
        print(f"| {frames} x {channels} x {resolution}x{resolution} | {times['two']:.3f} | {times['one']:.3f} | "
              f"{times['two'] / times['one']:.2f}x | {difference} |", flush=True)


if __name__ == "__main__":
    main()
