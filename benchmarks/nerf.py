"""NeRF benchmarks, each side by side with nerfstudio's pure-torch `HashEncoding` in the same run (GPU).

(a) Throughput (default): hash encoding + MLP forward + backward + Adam, points/s, for nerfstudio's torch
    `HashEncoding` and our backends, with the same MLP (32-64-64-16) in float32 and in bfloat16. The workload is
    reports/benchmarks/peers.md's: 16 levels, 2^19 entries per level, 2 features, resolutions 16..1024.
    With `--cuda-graphs` every step is a captured CUDA graph, as our fits' steps are on a GPU (`nerf/train_step.py`):
    the bf16 Triton row is then our default GPU step.
(b) Fitting (`--fit`): a procedural object seen by 50 cameras at 64x64 and 128x128, 40 views to fit and 10 held
    out; held-out PSNR after fits of 2, 5 and 10 s of wall time, for our default fit (CUDA graph steps), the same
    with eager steps, and the same field on nerfstudio's torch encoding (float32 and bfloat16 MLP; eager, as it
    cannot be captured). Then the milliseconds of one training step on the fitted field and occupancy grid: CUDA
    graph with the kept samples compacted, CUDA graph evaluating every sample (masked), and the eager step.

Run on a CUDA device: `python benchmarks/nerf.py --breakdown --fit`. Prints Markdown tables on stdout.
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

import numpy as np  # noqa: E402 (after the sys.path fix above)
import torch  # noqa: E402
from nerfstudio.field_components.encodings import HashEncoding  # noqa: E402
from torch import nn  # noqa: E402

from nerf.encoding import triton_import_error  # noqa: E402
from nerf.hash_grid import TorchHashEncoding  # noqa: E402

ENCODING_KWARGS = dict(num_levels=16, min_res=16, max_res=1024, log2_hashmap_size=19, features_per_level=2)
PEER = "nerfstudio HashEncoding (torch), fp32 MLP"


def make_rows(args) -> dict[str, tuple[nn.Module, bool]]:
    """Row name -> (encoding module, MLP in bfloat16), in table order; Triton rows only where triton imports.

    Every row has the same MLP; bfloat16 rows run it under autocast (and our Triton encoding then writes its
    output in bfloat16, which the first layer reads without a cast).
    """
    rows = {PEER: (HashEncoding(implementation="torch", **ENCODING_KWARGS), False),
            "nerfstudio HashEncoding (torch), bf16 MLP": (HashEncoding(implementation="torch", **ENCODING_KWARGS),
                                                          True),
            "nvsc torch, fp32 MLP": (TorchHashEncoding(**ENCODING_KWARGS), False)}
    if triton_import_error() is None:
        from nerf.triton_hash import TritonHashEncoding

        rows["nvsc triton, fp32 MLP"] = (TritonHashEncoding(**ENCODING_KWARGS), False)
        bf16 = TritonHashEncoding(**ENCODING_KWARGS)
        bf16.out_dtype = torch.bfloat16
        rows["nvsc triton, bf16 MLP (graph: our default GPU step)" if args.cuda_graphs else
             "nvsc triton, bf16 MLP (eager; our default GPU step is its graph, --cuda-graphs)"] = (bf16, True)
    return rows


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


def measure(encoding: nn.Module, bf16: bool, num_points: int, train: bool, args) -> float:
    """Points per second of one training step (forward + backward + Adam) or of one forward pass."""
    torch.manual_seed(0)
    encoding = encoding.cuda()
    mlp = make_mlp(encoding.get_out_dim()).cuda()
    positions = torch.rand(num_points, 3, device="cuda")  # [P, 3] in [0, 1]
    target = torch.rand(num_points, 16, device="cuda")  # [P, 16]
    optimizer = torch.optim.Adam(list(encoding.parameters()) + list(mlp.parameters()), lr=1e-2, eps=1e-15,
                                 fused=args.fused_adam, capturable=args.cuda_graphs)

    def predict():
        # A captured graph cannot reuse autocast's cached casts between replays (torch's CUDA graph notes).
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16, cache_enabled=not args.cuda_graphs):
            return mlp(encoding(positions)).float()

    def train_step():
        loss = torch.nn.functional.mse_loss(predict(), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def forward():
        predict()

    step = train_step if train else forward
    seconds = time_per_call(captured(step) if args.cuda_graphs else step, args.warmup, args.repeats, args.calls)
    return num_points / seconds


def captured(step):
    """`step` recorded once as a CUDA graph (after warm-up calls on a side stream, as torch's whole-network
    capture recipe does) and replayed: one launch per step instead of one per kernel. Inputs, parameters and
    gradients live at fixed addresses, so every replay computes a fresh step on the same tensors."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay


def encoding_milliseconds(encoding: nn.Module, num_points: int, backward: bool, args) -> float:
    """Milliseconds of the encoding alone: forward, or forward + backward into the table."""
    encoding = encoding.cuda()
    positions = torch.rand(num_points, 3, device="cuda")
    upstream = torch.randn(num_points, encoding.get_out_dim(), device="cuda")

    def forward_backward():
        encoded = encoding(positions)
        encoded.backward(upstream.to(encoded.dtype))  # a contiguous [P, L * F] gradient, as nn.Linear's gives
        encoding.hash_table.grad = None

    @torch.no_grad()
    def forward():
        encoding(positions)

    return 1e3 * time_per_call(forward_backward if backward else forward, args.warmup, args.repeats, args.calls)


def print_breakdown(rows: dict[str, tuple[nn.Module, bool]], args) -> None:
    """Where a 2^20-point step spends its time, and the Triton kernels' launch shapes against each other."""
    num_points = 2**20
    print()
    print(f"Breakdown at 2^{num_points.bit_length() - 1} points (ms per call):")
    print()
    print("| implementation | encoding forward | encoding forward + backward |")
    print("|---|---:|---:|")
    seen = set()
    for name, (encoding, _) in rows.items():
        key = (type(encoding).__name__, str(getattr(encoding, "out_dtype", "")))
        if key in seen:
            continue
        seen.add(key)
        print(f"| {name.split(',')[0]} (output {getattr(encoding, 'out_dtype', torch.float32)}) | "
              f"{encoding_milliseconds(encoding, num_points, False, args):.2f} | "
              f"{encoding_milliseconds(encoding, num_points, True, args):.2f} |")
    mlp = make_mlp(2 * ENCODING_KWARGS["num_levels"]).cuda()
    target = torch.rand(num_points, 16, device="cuda")
    print()
    for bf16 in (False, True):
        encoded = torch.rand(num_points, 2 * ENCODING_KWARGS["num_levels"], device="cuda",
                             dtype=torch.bfloat16 if bf16 else torch.float32, requires_grad=True)

        def mlp_step():
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                out = mlp(encoded)
            torch.nn.functional.mse_loss(out.float(), target).backward()
            encoded.grad = None
            mlp.zero_grad(set_to_none=True)

        print(f"MLP forward + backward alone ({'bf16' if bf16 else 'fp32'}, input gradient included): "
              f"{1e3 * time_per_call(mlp_step, args.warmup, args.repeats, args.calls):.2f} ms")
    table = torch.zeros(ENCODING_KWARGS["num_levels"] * 2**ENCODING_KWARGS["log2_hashmap_size"], 2, device="cuda",
                        requires_grad=True)
    table.grad = torch.randn_like(table)
    optimizer = torch.optim.Adam([table] + list(mlp.parameters()), lr=1e-2, eps=1e-15)
    for parameter in mlp.parameters():
        parameter.grad = torch.randn_like(parameter)
    print(f"Adam step over table and MLP alone: "
          f"{1e3 * time_per_call(optimizer.step, args.warmup, args.repeats, args.calls):.2f} ms")
    if "nvsc triton, fp32 MLP" not in rows:
        return
    triton_encoding = rows["nvsc triton, fp32 MLP"][0]
    print()
    print("Triton launch shapes (points per program, layout of the encoded output; fp32 output and MLP):")
    print()
    print("| block | layout | encoding fwd+bwd (ms) | fwd+bwd+Adam (M points/s) |")
    print("|---:|---|---:|---:|")
    for block in (128, 256, 512):
        for feature_major in (True, False):
            triton_encoding.block_points, triton_encoding.feature_major = block, feature_major
            layout = "[L*F, P]" if feature_major else "[P, L*F]"
            try:
                milliseconds = encoding_milliseconds(triton_encoding, num_points, True, args)
                rate = measure(triton_encoding, False, num_points, True, args)
            except Exception as error:  # one launch shape failing to compile must not hide the others
                print(f"| {block} | {layout} | failed: {type(error).__name__}: {str(error).splitlines()[0][:120]} | |")
                continue
            print(f"| {block} | {layout} | {milliseconds:.2f} | {rate / 1e6:.1f} |")
    triton_encoding.block_points, triton_encoding.feature_major = 256, True


def throughput_table(args) -> None:
    """Benchmark (a): the main table."""
    columns = [("fwd+bwd+Adam, 2^18 points", 2**18, True), ("fwd+bwd+Adam, 2^20 points", 2**20, True),
               ("forward, 2^20 points", 2**20, False)]
    rows = make_rows(args)
    results: dict[str, list[float] | str] = {}
    for name, (encoding, bf16) in rows.items():
        try:
            results[name] = [measure(encoding, bf16, points, train, args) for _, points, train in columns]
        except Exception as error:  # a backend failing on this machine still leaves the others' rows
            results[name] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
            if args.cuda_graphs:  # a step that cannot be captured (nerfstudio's copies host tensors) runs eagerly
                eager = argparse.Namespace(**{**vars(args), "cuda_graphs": False})
                results[f"{name} [eager: {results.pop(name)[:60]}...]"] = [
                    measure(encoding, bf16, points, train, eager) for _, points, train in columns]
    print(f"Encoding: {ENCODING_KWARGS}; MLP {2 * ENCODING_KWARGS['num_levels']}-64-64-16 in every row; "
          f"{'fused' if args.fused_adam else 'foreach (default)'} Adam over table and MLP in every row"
          f"{', each step replayed as a CUDA graph' if args.cuda_graphs else ''}. Median of "
          f"{args.repeats} repeats x {args.calls} calls after {args.warmup} warm-up calls.")
    print()
    print("| implementation | " + " | ".join(f"{title} (M points/s) | ratio" for title, _, _ in columns) + " |")
    print("|---|" + "---:|---:|" * len(columns))
    baseline = next(rates for name, rates in results.items() if name.startswith(PEER))
    baseline = baseline if not isinstance(baseline, str) else [float("nan")] * len(columns)
    for name, rates in results.items():
        if isinstance(rates, str):
            print(f"| {name} | failed: {rates} |")
            continue
        cells = " | ".join(f"{rate / 1e6:.1f} | {rate / base:.1f}x" for rate, base in zip(rates, baseline))
        print(f"| {name} | {cells} |")
    if args.breakdown:
        print_breakdown(rows, args)


def benchmark_scene(size: int, category: str, num_views: int = 50, seed: int = 0, supersample: int = 4):
    """A procedural object (as the dataset makes them) seen from `num_views` cameras over the upper sphere, each
    pixel the mean of supersample^2 rays (anti-aliased, as a renderer or a generative model gives them)."""
    from scenes.camera_paths import intrinsics_from_fov, sphere_cameras
    from scenes.cameras import Cameras
    from scenes.render import render_mesh
    from scenes.scene import MultiViewScene
    from scenes.shapes import make_object

    rng = np.random.default_rng(seed)
    item = make_object(category, rng)
    c2w = sphere_cameras(num_views, 2.7, rng)  # the dataset's camera distance and field of view
    fine, _ = render_mesh(item.mesh, Cameras(c2w, intrinsics_from_fov(45.0, size * supersample)),
                          albedo_fn=item.albedo_fn)
    images = fine.reshape(num_views, size, supersample, size, supersample, 3).mean(axis=(2, 4))
    return MultiViewScene(images, Cameras(c2w, intrinsics_from_fov(45.0, size)))


def fit_config(seconds: float, backend: str, mlp_precision: str, cuda_graphs: bool, size: int, args):
    """The GPU fit of the benchmark: a larger field, batch and learning-rate schedule than the CPU defaults.

    The finest grid resolution defaults to twice the image size: the box spans about the image's width, so that is
    two cells per pixel (a sweep at 64x64, 10 s: 30.1 dB at 128, 29.1 at 256, 29.4 at 512 with lr 2e-2).
    """
    from nerf.field import FieldConfig
    from nerf.fit import NeRFConfig
    from nerf.occupancy import OccupancyConfig

    field = FieldConfig(num_levels=16, log2_hashmap_size=19, base_resolution=16, hidden_dim=64, backend=backend,
                        max_resolution=args.max_resolution or 2 * size, mlp_precision=mlp_precision)
    return NeRFConfig(field=field, steps=1_000_000, time_budget_s=seconds, rays_per_batch=8192, samples_per_ray=64,
                      lr=args.lr, lr_final_factor=0.1, occupancy=OccupancyConfig(resolution=64), device=args.device,
                      eval_chunk=65536, cuda_graphs=cuda_graphs)


#: Variants of the fitting benchmark: (name, encoding backend, MLP precision, CUDA graph steps). nerfstudio's
#: torch encoding copies host tensors in every pass, which a CUDA graph capture forbids: its fits run eagerly.
FIT_METHODS = (("nvsc default (CUDA graph steps, triton encoding, bf16 MLP)", "auto", "auto", True),
               ("nvsc, eager steps (cuda_graphs=False)", "auto", "auto", False),
               ("nerfstudio torch HashEncoding, bf16 MLP (eager)", "nerfstudio", "bfloat16", False),
               ("nerfstudio torch HashEncoding, fp32 MLP (eager)", "nerfstudio", "float32", False))


def fitting_table(args) -> None:
    """Benchmark (b): held-out PSNR against wall time of the fit, per image size, method and budget."""
    from nerf.protocol import SubsetConfig, run_protocol

    print()
    print(f"Fitting a procedural {args.category}: 50 views, every 5th held out (40 fitted, 10 scored). Field: 16 "
          f"levels x 2^19 x 2, resolutions 16..{args.max_resolution or '2 x image size'}, MLPs 64 wide; 8192 rays x "
          f"64 samples per step, occupancy grid 64^3; fused Adam, lr {args.lr:g} decaying to a tenth of it over the "
          f"budget. Seconds = optimisation wall time (rendering the held-out views not included). One fit per cell, "
          f"seed 0.")
    print()
    print("| views | method | " + " | ".join(f"{b:g} s: PSNR (steps)" for b in args.budgets) + " |")
    print("|---|---|" + "---:|" * len(args.budgets))
    subset = SubsetConfig(heldout_every=5)
    step_times = []
    for size in args.sizes:
        scene = benchmark_scene(size, args.category)
        for name, backend, precision, graphs in [FIT_METHODS[i] for i in args.methods]:
            # An untimed short fit first: Triton compiles its kernels and the allocator warms up.
            run_protocol(scene, subset, fit_config(0.5, backend, precision, graphs, size, args))
            cells = []
            for budget in args.budgets:
                result = run_protocol(scene, subset, fit_config(budget, backend, precision, graphs, size, args))
                error = np.mean((result.renders.images.astype(np.float64) - result.heldout.images) ** 2)
                dropped = f", {result.fitted.dropped_rays} rays dropped" if result.fitted.dropped_rays else ""
                cells.append(f"{-10 * np.log10(error):.2f} dB ({result.fitted.steps}{dropped})")
            print(f"| {size}x{size} | {name} | " + " | ".join(cells) + " |", flush=True)
            if graphs and args.device == "cuda":
                step_times.append((size, *step_milliseconds(result.fitted, result.train)))
    if not step_times:
        return
    print()
    print("One training step on the field and occupancy grid of the last fit of the default row (ms per step, mean "
          "of 50 after 3 untimed; the optimiser state restarts):")
    print()
    print("| views | samples kept by the grid | graph, kept samples compacted | graph, every sample evaluated "
          "(masked) | eager step |")
    print("|---|---:|---:|---:|---:|")
    for size, fraction, capacity, times in step_times:
        print(f"| {size}x{size} | {fraction:.1%} (buffer {capacity:.1%}) | "
              + " | ".join(f"{times[name]:.2f}" for name in ("compacted", "masked", "eager")) + " |")


def step_milliseconds(fitted, train, steps: int = 50) -> tuple[float, float, dict[str, float]]:
    """Milliseconds per training step on a fitted field and grid, as a CUDA graph with the kept samples compacted
    into the buffer a fit would size, as a CUDA graph evaluating every sample, and eagerly; and the fractions of
    the samples kept and held by the compacted buffer."""
    import time

    from nerf.fit import make_optimizer, scene_rays
    from nerf.train_step import TrainStep, sample_capacity

    config, device = fitted.config, fitted.device
    origins, directions = scene_rays(train.cameras, device)
    pixels = torch.as_tensor(train.images, device=device).reshape(-1, 3)
    total = config.rays_per_batch * config.samples_per_ray
    times, kept, capacity = {}, 0, total
    for name, graphs in (("compacted", True), ("masked", True), ("eager", False)):
        generator = torch.Generator(device=device).manual_seed(1)
        trainer = TrainStep(fitted.field, make_optimizer(fitted.field, config, graphs), origins, directions, pixels,
                            config, generator, fitted.occupancy, static=graphs, graph=graphs)
        kept = trainer.kept_by_next_step()
        if name == "compacted":
            capacity = trainer.capacity = sample_capacity(kept, total)
        for _ in range(3):  # the first captures the graph
            trainer.run()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            trainer.run()
        torch.cuda.synchronize()
        times[name] = 1e3 * (time.perf_counter() - start) / steps
    return kept / total, capacity / total, times


def main() -> None:
    parser = argparse.ArgumentParser(description="NeRF benchmarks, nerfstudio's torch hash encoding against nvsc.")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls before timing")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is reported")
    parser.add_argument("--calls", type=int, default=5, help="calls per timed repeat")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time the encoding and the MLP alone, and sweep the Triton launch shapes")
    parser.add_argument("--fused-adam", action="store_true",
                        help="every row of (a) steps torch's fused Adam (one kernel; what the fits use on a GPU)")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="every row of (a) replays its step as a captured CUDA graph, as the default GPU fit "
                             "does (nerfstudio's rows cannot be captured and run eagerly)")
    parser.add_argument("--fit", action="store_true", help="also run the fitting benchmark (b)")
    parser.add_argument("--fit-only", action="store_true", help="run the fitting benchmark (b) only")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="image sizes of the fitting benchmark")
    parser.add_argument("--budgets", type=float, nargs="+", default=[2.0, 5.0, 10.0], help="seconds per fit")
    parser.add_argument("--category", default="mug", help="procedural object category of the fitting benchmark")
    parser.add_argument("--device", default="cuda", help="device of the fitting benchmark (cpu: a smoke test)")
    parser.add_argument("--max-resolution", type=int, default=0,
                        help="finest grid resolution of the fits (0: twice the image size)")
    parser.add_argument("--lr", type=float, default=1e-2, help="initial learning rate of the fits")
    parser.add_argument("--methods", type=int, nargs="+", default=list(range(len(FIT_METHODS))),
                        help="indices into FIT_METHODS of the fitting benchmark's rows")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("benchmarks/nerf.py needs a CUDA device")
    if args.device == "cuda":
        triton_version = "absent" if triton_import_error() is not None else importlib.metadata.version("triton")
        print(f"Device: {torch.cuda.get_device_name()}; torch {torch.__version__} (CUDA {torch.version.cuda}); "
              f"triton {triton_version}; {datetime.date.today().isoformat()}")
    if not args.fit_only:
        throughput_table(args)
    if args.fit or args.fit_only:
        fitting_table(args)


if __name__ == "__main__":
    main()
