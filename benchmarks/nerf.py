"""Hash encoding + MLP throughput, side by side in one run: nerfstudio's torch `HashEncoding`, our torch backend,
our Triton backend. Prints a Markdown table (points/s and the ratio to nerfstudio's) on stdout.

The workload is ANCHORS.md's: 16 levels, 2^19 entries per level, 2 features (resolutions 16..1024, nerfstudio's
defaults), then an MLP with two hidden layers of 64; a training step is forward + backward + Adam over table and
MLP. Run on a CUDA device: `python benchmarks/nerf.py`.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import statistics
import sys
from pathlib import Path

# `python benchmarks/nerf.py` puts benchmarks/ first on sys.path, where this file would shadow the `nerf`
# package; the repository root takes its place.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import torch  # noqa: E402 (after the sys.path fix above)
from nerfstudio.field_components.encodings import HashEncoding  # noqa: E402
from torch import nn  # noqa: E402

from nerf.encoding import TorchHashEncoding, triton_import_error  # noqa: E402

ENCODING_KWARGS = dict(num_levels=16, min_res=16, max_res=1024, log2_hashmap_size=19, features_per_level=2)


def make_encodings() -> dict[str, nn.Module]:
    """Name -> encoding module, in table order; the Triton one only where triton imports."""
    encodings = {"nerfstudio HashEncoding (torch)": HashEncoding(implementation="torch", **ENCODING_KWARGS),
                 "nvsc torch": TorchHashEncoding(**ENCODING_KWARGS)}
    if triton_import_error() is None:
        from nerf.triton_hash import TritonHashEncoding

        encodings["nvsc triton"] = TritonHashEncoding(**ENCODING_KWARGS)
    return encodings


def make_mlp(encoded_dim: int) -> nn.Module:
    """Two hidden layers of 64, output 1 + 15 (density and geometry features, as nerfstudio's density MLP)."""
    return nn.Sequential(nn.Linear(encoded_dim, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 16))


def time_per_call(fn, warmup: int, repeats: int, calls: int) -> float:
    """Median over `repeats` of the mean seconds per call of `fn`, timed with CUDA events after `warmup` calls."""
    for _ in range(warmup):  # includes Triton's compilation and the caching allocator's first allocations
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1000.0 / calls)
    return statistics.median(times)


def measure(encoding: nn.Module, num_points: int, train: bool, args) -> float:
    """Points per second of one training step (forward + backward + Adam) or of one forward pass."""
    torch.manual_seed(0)
    encoding = encoding.cuda()
    mlp = make_mlp(encoding.get_out_dim()).cuda()
    positions = torch.rand(num_points, 3, device="cuda")  # [P, 3] in [0, 1]
    target = torch.rand(num_points, 16, device="cuda")  # [P, 16]
    optimizer = torch.optim.Adam(list(encoding.parameters()) + list(mlp.parameters()), lr=1e-2, eps=1e-15)

    def train_step():
        loss = torch.nn.functional.mse_loss(mlp(encoding(positions)), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def forward():
        mlp(encoding(positions))

    seconds = time_per_call(train_step if train else forward, args.warmup, args.repeats, args.calls)
    return num_points / seconds


def encoding_milliseconds(encoding: nn.Module, num_points: int, backward: bool, args) -> float:
    """Milliseconds of the encoding alone: forward, or forward + backward into the table."""
    encoding = encoding.cuda()
    positions = torch.rand(num_points, 3, device="cuda")
    upstream = torch.randn(num_points, encoding.get_out_dim(), device="cuda")

    def forward_backward():
        encoding(positions).backward(upstream)  # a contiguous [P, L * F] gradient, as nn.Linear's backward gives
        encoding.hash_table.grad = None

    @torch.no_grad()
    def forward():
        encoding(positions)

    return 1e3 * time_per_call(forward_backward if backward else forward, args.warmup, args.repeats, args.calls)


def print_breakdown(encodings: dict[str, nn.Module], args) -> None:
    """Where a 2^20-point step spends its time, and the Triton kernels' launch shapes against each other."""
    num_points = 2**20
    print()
    print(f"Breakdown at 2^{num_points.bit_length() - 1} points (ms per call):")
    print()
    print("| implementation | encoding forward | encoding forward + backward |")
    print("|---|---:|---:|")
    for name, encoding in encodings.items():
        print(f"| {name} | {encoding_milliseconds(encoding, num_points, False, args):.2f} | "
              f"{encoding_milliseconds(encoding, num_points, True, args):.2f} |")
    mlp = make_mlp(2 * ENCODING_KWARGS["num_levels"]).cuda()
    encoded = torch.rand(num_points, 2 * ENCODING_KWARGS["num_levels"], device="cuda", requires_grad=True)
    target = torch.rand(num_points, 16, device="cuda")

    def mlp_step():
        torch.nn.functional.mse_loss(mlp(encoded), target).backward()
        encoded.grad = None
        mlp.zero_grad(set_to_none=True)

    print(f"\nMLP forward + backward alone (input gradient included): "
          f"{1e3 * time_per_call(mlp_step, args.warmup, args.repeats, args.calls):.2f} ms")
    table = torch.zeros(ENCODING_KWARGS["num_levels"] * 2**ENCODING_KWARGS["log2_hashmap_size"], 2, device="cuda",
                        requires_grad=True)
    table.grad = torch.randn_like(table)
    optimizer = torch.optim.Adam([table] + list(mlp.parameters()), lr=1e-2, eps=1e-15)
    for parameter in mlp.parameters():
        parameter.grad = torch.randn_like(parameter)
    print(f"Adam step over table and MLP alone: "
          f"{1e3 * time_per_call(optimizer.step, args.warmup, args.repeats, args.calls):.2f} ms")
    if "nvsc triton" not in encodings:
        return
    triton_encoding = encodings["nvsc triton"]
    print()
    print("Triton launch shapes (points per program, layout of the encoded output):")
    print()
    print("| block | layout | encoding fwd+bwd (ms) | fwd+bwd+Adam (M points/s) |")
    print("|---:|---|---:|---:|")
    for block in (128, 256, 512):
        for feature_major in (True, False):
            triton_encoding.block_points, triton_encoding.feature_major = block, feature_major
            layout = "[L*F, P]" if feature_major else "[P, L*F]"
            try:
                milliseconds = encoding_milliseconds(triton_encoding, num_points, True, args)
                rate = measure(triton_encoding, num_points, True, args)
            except Exception as error:  # one launch shape failing to compile must not hide the others
                print(f"| {block} | {layout} | failed: {type(error).__name__}: {str(error).splitlines()[0][:120]} | |")
                continue
            print(f"| {block} | {layout} | {milliseconds:.2f} | {rate / 1e6:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description="Hash encoding + MLP throughput, nerfstudio against nvsc.")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls before timing")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is reported")
    parser.add_argument("--calls", type=int, default=5, help="calls per timed repeat")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time the encoding and the MLP alone, and sweep the Triton launch shapes")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/nerf.py needs a CUDA device")

    columns = [("fwd+bwd+Adam, 2^18 points", 2**18, True), ("fwd+bwd+Adam, 2^20 points", 2**20, True),
               ("forward, 2^20 points", 2**20, False)]
    encodings = make_encodings()
    results: dict[str, list[float] | str] = {}
    for name, encoding in encodings.items():
        try:
            results[name] = [measure(encoding, points, train, args) for _, points, train in columns]
        except Exception as error:  # a backend failing on this machine still leaves the others' rows
            results[name] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"

    triton_version = "absent" if triton_import_error() is not None else importlib.metadata.version("triton")
    print(f"Device: {torch.cuda.get_device_name()}; torch {torch.__version__} (CUDA {torch.version.cuda}); triton "
          f"{triton_version}; {datetime.date.today().isoformat()}")
    print(f"Encoding: {ENCODING_KWARGS}; MLP {2 * ENCODING_KWARGS['num_levels']}-64-64-16; Adam over table and "
          f"MLP. Median of {args.repeats} repeats x {args.calls} calls after {args.warmup} warm-up calls.")
    print()
    print("| implementation | " + " | ".join(f"{title} (M points/s) | ratio" for title, _, _ in columns) + " |")
    print("|---|" + "---:|---:|" * len(columns))
    baseline = results["nerfstudio HashEncoding (torch)"]
    for name, rates in results.items():
        if isinstance(rates, str):
            print(f"| {name} | failed: {rates} |")
            continue
        cells = " | ".join(f"{rate / 1e6:.1f} | {rate / base:.1f}x" for rate, base in zip(rates, baseline))
        print(f"| {name} | {cells} |")
    if args.breakdown:
        print_breakdown(encodings, args)


if __name__ == "__main__":
    main()
