"""Compiled training step of an X-UNet preset under several compiler and library settings, side by side (GPU).

    python benchmarks/generator_variants.py --preset 3dim-64 --batch 32 \
        base cdl:cudnn.benchmark_limit=0 pointwise:max_autotune_pointwise=1

Each variant is `name` or `name:key=value,key=value`: an Inductor setting (`torch._inductor.config`, dotted paths
such as `triton.multi_kernel` included), a cuDNN one (`cudnn.benchmark_limit`), or `code=DIR`, which runs the
variant on the nvsc in DIR (a checkout of another revision, from after this script was added: it runs DIR's copy of
this script), so that a change of the code is measured against the code before it:

    git worktree add /tmp/before HEAD~1
    python benchmarks/generator_variants.py before:code=/tmp/before now

Compiling 3dim-64 takes minutes, so every variant compiles at the same time in a process of its own (its own
Inductor cache, so no variant reuses another's kernels); then they take turns, one at a time on the GPU, to time
their steps. The table gives each variant's images/s and its ratio to the first variant, measured in the same run
on the same machine.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """`name:key=value,...` -> (name, {key: value})."""
    name, _, rest = text.partition(":")
    settings = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key or not name:
            raise SystemExit(f"variant {text!r}: expected name or name:key=value,key=value")
        settings[key] = value
    return name, settings


#: The setting that names another source tree instead of a compiler or library setting.
CODE = "code"


def _resolve(key: str, value: str) -> tuple[object, str, object]:
    """(object holding the setting, its attribute name, value typed like the setting's current one)."""
    import torch
    import torch._inductor.config as inductor_config
    owner, path = (torch.backends.cudnn, key[len("cudnn."):]) if key.startswith("cudnn.") else (inductor_config, key)
    *parents, last = path.split(".")
    for part in parents:
        owner = getattr(owner, part, None)
    if owner is None or not hasattr(owner, last):
        raise SystemExit(f"unknown setting {key!r}: use a name of torch._inductor.config or cudnn.benchmark_limit")
    current = getattr(owner, last)
    try:
        if isinstance(current, bool):
            if value.lower() not in ("0", "1", "true", "false"):
                raise ValueError(value)
            typed = value.lower() in ("1", "true")
        else:
            typed = type(current)(value) if isinstance(current, (int, float)) else value
    except ValueError:
        raise SystemExit(f"setting {key}={value!r}: expected a {type(current).__name__}") from None
    return owner, last, typed


def apply_setting(key: str, value: str) -> None:
    """Set an Inductor (`torch._inductor.config`) or cuDNN (`cudnn.*`) setting from its text, typed like the
    setting's current value; an unknown key or a value of the wrong type is an error that names it."""
    owner, name, typed = _resolve(key, value)
    setattr(owner, name, typed)


def run_variant(args, name: str, settings: dict[str, str], folder: Path, count: int) -> dict:
    """One variant in this process: compile, wait until every variant has, then time with the GPU to itself."""
    import torch

    from benchmarks.generator import synthetic_scenes, timed_train_config
    from generators.training import TrainingRun
    from generators.view_pairs import DevicePairBatches, ViewPairs
    from generators.xunet import PRESETS

    for key, value in settings.items():
        apply_setting(key, value)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch._dynamo.config.automatic_dynamic_shapes = False
    config = PRESETS[args.preset]
    pairs = DevicePairBatches(ViewPairs(synthetic_scenes(8, 50, config.image_size), config.image_size), device)
    compile_ = device.type == "cuda" and not args.eager
    run = TrainingRun(config, timed_train_config(batch_size=args.batch, precision="bf16", channels_last=compile_,
                                                 compile=compile_), device)
    losses = []

    def steps(number: int) -> float:
        sync()
        start, loss = time.perf_counter(), torch.tensor(math.nan)
        for _ in range(number):
            loss = run.train_step(pairs.sample(args.batch, run.data_generator))
        sync()
        losses.append(float(loss))
        return time.perf_counter() - start

    compile_s = steps(args.warmup)
    (folder / f"{name}.ready").touch()
    while len(list(folder.glob("*.ready"))) + len(list(folder.glob("*.failed"))) < count:
        time.sleep(1)
    with open(folder / "gpu.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the GPU to this variant alone while it is timed
        steps(2)
        best = min(steps(args.steps) / args.steps for _ in range(args.repeats))
    return {"name": name, "settings": settings, "compile_s": compile_s, "step_ms": 1e3 * best,
            "images_per_s": args.batch / best, "loss": losses[-1]}


def table(rows: list[dict]) -> str:
    from benchmarks.generator import loss_text

    lines = ["| variant | settings | warm-up (compilation) | ms per step | images/s | last loss | ratio to the first |",
             "|---|---|---:|---:|---:|---|---:|"]
    first = rows[0].get("images_per_s")
    for row in rows:
        settings = ", ".join(f"`{k}={v}`" for k, v in row["settings"].items()) or "(defaults)"
        if "error" in row:
            lines.append(f"| {row['name']} | {settings} | {row['error']} | - | - | - | - |")
            continue
        ratio = f"{row['images_per_s'] / first:.3f}x" if first else "-"
        lines.append(f"| {row['name']} | {settings} | {row['compile_s']:.0f} s | {row['step_ms']:.2f} | "
                     f"{row['images_per_s']:.1f} | {loss_text(row.get('loss', math.nan))} | {ratio} |")
    return "\n".join(lines)


def main() -> int:
    from generators.xunet import PRESETS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="+", help="name or name:key=value,... (the first is the reference)")
    parser.add_argument("--preset", default="3dim-64", choices=sorted(PRESETS))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30, help="Timed steps per repeat.")
    parser.add_argument("--repeats", type=int, default=2, help="Timed repeats; the fastest counts.")
    parser.add_argument("--warmup", type=int, default=4, help="Untimed steps first (compilation happens here).")
    parser.add_argument("--compile-limit", type=float, default=480.0,
                        help="Seconds a variant may take to compile before it is stopped and reported as such.")
    parser.add_argument("--device", default="cuda", help="cpu smoke-tests the script (eager, --preset tiny)")
    parser.add_argument("--eager", action="store_true", help="Without torch.compile (the settings then do little).")
    parser.add_argument("--child", nargs=3, metavar=("FOLDER", "COUNT", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    parsed = [parse_variant(v) for v in args.variants]
    for _, settings in parsed:  # unknown or mistyped settings fail here, before anything runs
        for key, value in settings.items():
            if key != CODE:
                _resolve(key, value)
            elif not (Path(value) / "benchmarks" / "generator_variants.py").is_file():
                raise SystemExit(f"code={value}: no benchmarks/generator_variants.py there; use a checkout of nvsc "
                                 "from after this script was added (git worktree add DIR REVISION)")

    if args.child:
        folder, count, text = Path(args.child[0]), int(args.child[1]), args.child[2]
        name, settings = parse_variant(text)
        try:
            row = run_variant(args, name, settings, folder, count)
        except BaseException as error:
            (folder / f"{name}.failed").write_text(f"{type(error).__name__}: {error}")
            raise
        (folder / f"{name}.json").write_text(json.dumps(row))
        return 0

    if len({name for name, _ in parsed}) != len(parsed):
        raise SystemExit("variant names must differ")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        common = ["--preset", args.preset, "--batch", str(args.batch), "--steps", str(args.steps), "--repeats",
                  str(args.repeats), "--warmup", str(args.warmup), "--device", args.device] + ["--eager"] * args.eager
        children = {}
        for name, settings in parsed:
            env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(folder / f"inductor-{name}"))
            root = Path(settings.get(CODE, Path(__file__).resolve().parent.parent))
            script = root / "benchmarks" / Path(__file__).name
            text = ":".join([name, ",".join(f"{k}={v}" for k, v in settings.items() if k != CODE)])
            children[name] = subprocess.Popen([sys.executable, str(script), *common, "--child", tmp,
                                               str(len(parsed)), text, text], env=env)
        start = time.monotonic()
        while any(child.poll() is None for child in children.values()):
            late = time.monotonic() - start > args.compile_limit
            for name, child in children.items():
                ready, failed = folder / f"{name}.ready", folder / f"{name}.failed"
                if late and child.poll() is None and not ready.exists():
                    child.kill()
                    failed.write_text(f"compilation over {args.compile_limit:.0f} s")
                elif child.poll() is not None and not ready.exists() and not failed.exists():
                    # Died before it could say so (e.g. on importing its code): the others wait for every variant.
                    failed.write_text(f"exited with code {child.returncode} before compiling (its error is above)")
            time.sleep(1)
        for name, settings in parsed:
            result, failed = folder / f"{name}.json", folder / f"{name}.failed"
            rows.append(dict(json.loads(result.read_text()), settings=settings) if result.exists() else
                        {"name": name, "settings": settings,
                         "error": failed.read_text().splitlines()[-1] if failed.exists() else "no result"})
    print(table(rows))
    return 0 if all("error" not in row for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
