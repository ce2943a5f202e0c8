"""3DiM's sampler ablation through nvsc's own pipeline: stochastic conditioning against naive and Markovian
sampling of one checkpoint, over several test scenes and several sampling seeds, with paired intervals.

    python benchmarks/ablation.py run   --seeds 0 1 2 [--workers 12] [--root runs-ablation] [-- luigi overrides]
    python benchmarks/ablation.py table --seeds 0 1 2 [--root runs-ablation]

`run` runs `nvsc run --config configs/ablation-small32.cfg` once per sampling seed (`--GenerateViews-seed S`, each
into its own output root `<root>/seed-S`, so every seed is a complete run that `nvsc report` also reads), then
prints the table; `table` prints it from the cached runs without recomputing anything.

The statistics. The unit of resampling is the scene: seeds of one scene share its object and cameras, so they are
not independent samples of the method's behaviour. Each (method, scene, score) is first averaged over the seeds;
the paired comparison (`reports.paired`: percentile bootstrap of the mean per-scene difference, exact sign-flip
test) then runs over scenes. Beside it: in how many seeds the direction holds when each seed is compared alone, and
the sampling noise (the spread of one scene's score across seeds) against the spread across scenes, so a reader can
see whether more seeds or more scenes would sharpen the answer. The degeneracy check (`reports.degeneracy`) flags
every model cell that a degenerate control beats or ties, as the pipeline's own report does.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reports.degeneracy import degeneracy_check  # noqa: E402
from reports.paired import paired_table  # noqa: E402
from reports.run_folders import collect_run  # noqa: E402
from reports.tables import FLAG_MARK, summarize, summary_markdown, summary_text  # noqa: E402

CONFIG = "configs/ablation-small32.cfg"
#: The samplers compared, as the config names them: (a, b) reads "a against b".
PAIRS = [("small32/stochastic", "small32/naive"), ("small32/stochastic", "small32/markovian"),
         ("small32/naive", "small32/markovian")]
#: Scores of the tables: 3DiM's NeRF score, the ones degenerate views cannot win, TSED and the geometry.
METRICS = ["consistency_psnr", "consistency_ssim", "distilled_psnr", "distilled_ssim", "fidelity_psnr",
           "fidelity_ssim", "fidelity_sharpness", "faithfulness_psnr", "tsed", "geometry_iou", "geometry_depth_l1"]


def run_seeds(root: Path, seeds: list[int], workers: int, overrides: list[str]) -> None:
    """One `nvsc run` per seed, each into `<root>/seed-S` (log beside it); stops at the first that fails."""
    root.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        start = time.time()
        log = root / f"seed-{seed}.log"
        command = [sys.executable, "-m", "pipeline.cli", "run", "--workers", str(workers), "--config", CONFIG,
                   "--nvsc-output-root", str(root / f"seed-{seed}"), "--GenerateViews-seed", str(seed), *overrides]
        with log.open("w") as out:
            status = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode
        print(f"ablation: seed {seed} finished with status {status} after {time.time() - start:.0f} s ({log})",
              flush=True)
        if status != 0:
            sys.exit(f"ablation: `{' '.join(command)}` failed; the end of {log} says why")


def seed_scores(root: Path, seeds: list[int]) -> tuple[pd.DataFrame, list[str]]:
    """Tidy per-scene scores of every seed's run (`method, scene, metric, value, missing, seed`), and the
    methods in the order of the runs' reports."""
    frames, order = [], []
    for seed in seeds:
        run = collect_run(root / f"seed-{seed}")
        order = order or run.method_order
        for result in run.results:
            frame = pd.read_csv(result.scores_csv)
            frame["seed"] = seed
            frames.append(frame)
    tidy = pd.concat(frames, ignore_index=True)
    if "missing" not in tidy:
        tidy["missing"] = ""
    tidy["missing"] = tidy["missing"].fillna("")
    return tidy, order


def mean_over_seeds(tidy: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, scene, metric): the mean over seeds, missing where any seed is (nothing averaged out)."""
    grouped = tidy.groupby(["method", "scene", "metric"], sort=False)
    means = grouped["value"].agg(lambda values: values.mean(skipna=False)).rename("value")
    missing = grouped["missing"].agg(lambda reasons: next((r for r in reasons if r), ""))
    counts = grouped["seed"].nunique().rename("seeds")
    return pd.concat([means, missing, counts], axis=1).reset_index()


def seed_agreement(tidy: pd.DataFrame, seeds: list[int], metrics: list[str]) -> pd.DataFrame:
    """Per pair and score: in how many seeds, each compared alone over the scenes, `a` is ahead."""
    rows = {}
    for seed in seeds:
        table = paired_table(tidy[tidy["seed"] == seed], PAIRS, metrics)
        for row in table.itertuples():
            key = (row.method_a, row.method_b, row.metric)
            rows.setdefault(key, []).append(row.mean_difference)
    def count(ds: list[float]) -> str:
        ties = sum(d == 0 for d in ds)
        return f"{sum(d > 0 for d in ds)}/{len(ds)}" + (f" ({ties} tied)" if ties else "")
    return pd.DataFrame([(*key, count(ds)) for key, ds in rows.items()],
                        columns=["method_a", "method_b", "metric", "seeds_a_ahead"])


def noise_table(tidy: pd.DataFrame, methods: list[str], metrics: list[str]) -> pd.DataFrame:
    """Sampling noise against scene spread: the mean over scenes of the standard deviation across seeds, and the
    standard deviation across scenes of the seed means."""
    rows = []
    for method in methods:
        for metric in metrics:
            part = tidy[(tidy["method"] == method) & (tidy["metric"] == metric)]
            if part.empty or part["value"].isna().any():
                continue
            by_scene = part.groupby("scene")["value"]
            rows.append({"method": method, "metric": metric, "seed_sd": by_scene.std(ddof=1).mean(),
                         "scene_sd": by_scene.mean().std(ddof=1)})
    return pd.DataFrame(rows)


def ablation_markdown(root: Path, seeds: list[int]) -> str:
    tidy, order = seed_scores(root, seeds)
    averaged = mean_over_seeds(tidy)
    scenes = averaged["scene"].nunique()
    long = summarize(averaged[["method", "scene", "metric", "value", "missing"]], method_order=order)
    flags = degeneracy_check(long)
    models = list(dict.fromkeys(m for pair in PAIRS for m in pair))
    paired = paired_table(averaged[["method", "scene", "metric", "value", "missing"]], PAIRS, METRICS)
    agreement = seed_agreement(tidy, seeds, METRICS)
    paired = paired.merge(agreement, on=["method_a", "method_b", "metric"], how="left")
    noise = noise_table(tidy, models, METRICS)
    parts = [
        f"Scenes: {scenes}; sampling seeds: {', '.join(map(str, seeds))} (each scene's score averaged over them).",
        "",
        "### Scores (mean over scenes, 95% bootstrap interval over scenes)",
        "",
        # The pipeline's own report table (reports.tables), on the scores of this ablation.
        summary_markdown(summary_text(long[long["metric"].isin(METRICS)], flagged=flags.flagged)),
        "",
        f"{FLAG_MARK}: a degenerate control (blur, blank, input copied, one view repeated, another object) beats or "
        "ties the method on this score, so the score alone cannot show the method is better than that control.",
        "",
        "### Paired comparisons over scenes (difference > 0: method_a better)",
        "",
        paired.to_markdown(index=False, floatfmt=".3g"),
        "",
        "### Sampling noise (sd of a scene's score across seeds) against scene spread (sd of the seed means)",
        "",
        noise.to_markdown(index=False, floatfmt=".3g") if len(noise) else "(one seed: no sampling noise measured)",
    ]
    flagged_lines = [f"- {method} {metric} {group['value'].iloc[0]:.3g}: " +
                     ", ".join(f"{row.control} {row.control_value:.3g}" for row in group.itertuples())
                     for (method, metric), group in flags.flags.groupby(["method", "metric"], sort=False)
                     if method in models]
    if flagged_lines:
        parts += ["", "### Flagged cells (method, score: the controls that beat or tie it)", "", *flagged_lines]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["run", "table"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--root", type=Path, default=Path("runs-ablation"))
    parser.add_argument("--workers", type=int, default=2)
    # Everything after `--` goes to every `nvsc run` as it is (luigi overrides such as --FitNeRF-steps 300).
    argv = sys.argv[1:] if argv is None else argv
    overrides = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if args.command == "run":
        run_seeds(args.root, args.seeds, args.workers, overrides)
    elif overrides:
        parser.error("overrides apply to `run` only: `table` reads the cached runs")
    print(ablation_markdown(args.root, args.seeds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
