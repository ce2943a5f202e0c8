"""How `make demo` should use a small CPU: one Luigi worker with every core, or N workers with cores / N threads each.

    python benchmarks/demo_workers.py [--workers 2] [--repeats 1]

Runs the demo's two kinds of heavy tasks, each in its own process as Luigi's workers run them, on a tiny procedural
dataset: NeRF fits (3DiM's protocol on a test scene's real views and on noise, the cheapest and the dearest fit)
and trainings of both architectures (the tiny X-UNet and the tiny joint model, a few dozen steps). The same jobs
run once one after another with all cores (`--workers 1`, OpenMP spinning: pipeline/__init__.py's choice for one
worker) and once N at a time with cores / N threads each and passive waits (its choice for N workers). Prints the
wall-clock ratio one-worker / N-workers per kind of job (> 1: the workers are faster) and the load average, since
other processes on a shared machine change the answer. CPU only; ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the packages, not this folder's nerf.py, answer `import nerf`
FIT_JOBS = ["fit:ground_truth:0", "fit:noise:0", "fit:ground_truth:1", "fit:noise:1"]
TRAIN_JOBS = ["train:xunet", "train:mvdiffusion"]


def run_job(job: str, data: Path) -> None:
    """One job in this process (torch is imported here, after the parent set the thread variables)."""
    import dataclasses

    import numpy as np

    from generators.controls import noise_views
    from scenes.srn import list_srn_instances, read_srn_depth, read_srn_instance

    kind, *args = job.split(":")
    if kind == "fit":
        from nerf.fit import NeRFConfig
        from nerf.protocol import SubsetConfig, run_protocol

        truth = read_srn_instance(list_srn_instances(data, "test")[int(args[1])], image_size=32)
        views = truth if args[0] == "ground_truth" else dataclasses.replace(
            truth, images=np.asarray(noise_views(truth.cameras, 0), dtype=np.float32))
        run_protocol(views, SubsetConfig(heldout_every=4, keep_view=0), NeRFConfig(device="cpu"))
        return
    from generators.multiview_training import resize_depth, train_multiview
    from generators.multiview_unet import MULTIVIEW_PRESETS
    from generators.training import TrainConfig, train_generator
    from generators.xunet import PRESETS

    paths = list_srn_instances(data, "train")
    scenes = [read_srn_instance(path, image_size=32) for path in paths]
    out = Path(tempfile.mkdtemp())
    if args[0] == "xunet":
        config = TrainConfig(steps=60, batch_size=16, warmup_steps=10, checkpoint_every=1000, device="cpu")
        train_generator(scenes, PRESETS["tiny"], config, out)
    else:
        config = TrainConfig(steps=60, batch_size=2, warmup_steps=10, checkpoint_every=1000, device="cpu",
                             architecture="mvdiffusion")
        depths = [resize_depth(read_srn_depth(path), 32, str(path)).numpy() for path in paths]
        train_multiview(scenes, depths, MULTIVIEW_PRESETS["tiny"], config, out)


def timed_batch(jobs: list[str], data: Path, workers: int, cores: int) -> float:
    """Wall seconds to run `jobs`, `workers` at a time, each process with cores // workers threads."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(max(1, cores // workers))}
    if workers > 1:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    else:
        env.pop("OMP_WAIT_POLICY", None)

    def one(job: str) -> None:
        subprocess.run([sys.executable, __file__, "--job", job, "--data", str(data)], env=env, check=True,
                       capture_output=True)

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, jobs))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="N of the N-worker setting (default 2).")
    parser.add_argument("--repeats", type=int, default=1, help="Alternating repeats of both settings.")
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        run_job(args.job, args.data)
        return

    from scenes.dataset import ProceduralDatasetConfig, generate_dataset

    data = Path(tempfile.mkdtemp()) / "srn"
    generate_dataset(ProceduralDatasetConfig(categories=("mug", "chair"), train_instances=2, val_instances=0,
                                             test_instances=1, train_views=8, test_views=16, image_size=32), data)
    cores = os.cpu_count() or 1
    rows = []
    for name, jobs in (("NeRF fits (2 real, 2 noise)", FIT_JOBS), ("trainings (X-UNet, joint), 60 steps", TRAIN_JOBS)):
        one, many = [], []
        for _ in range(args.repeats):
            one.append(timed_batch(jobs, data, 1, cores))
            many.append(timed_batch(jobs, data, args.workers, cores))
        rows.append((name, min(one) / min(many)))
    load = os.getloadavg()[0]
    print(f"\n{cores} cores; 1 worker x {cores} threads against {args.workers} workers x "
          f"{max(1, cores // args.workers)} threads; load average (1 min) at the end {load:.2f}\n")
    print("| jobs | wall time 1 worker / wall time N workers |")
    print("|---|---|")
    for name, ratio in rows:
        print(f"| {name} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
