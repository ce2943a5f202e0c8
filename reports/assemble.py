"""One report folder from the cached results of one or several runs: tables, figures, error accumulation and loop
closure, animations, image grids, the controls check and `index.html`. `BuildReport` (in the pipeline) and
`nvsc report` (from run folders) both call `build_report`, so a rebuilt report is the pipeline's report.

When several runs are merged, a method that appears in more than one, and every control, is labelled `method [run]`.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from reports.accumulation_figures import plot_error_by_distance, plot_opening_and_closing, plot_panels_by_distance
from reports.animation import TurntableRow, write_turntable
from reports.degeneracy import degeneracy_check
from reports.noise_floor import noise_floor, noise_floor_lines
from reports.paired import MIN_SCENES, paired_table
from reports.tsed_curve import plot_tsed_curve, tsed_threshold_curve
from reports.error_accumulation import (accumulation_curve, consistency_from_per_view, distance_table,
                                        fidelity_from_per_view, opening_and_closing, overlap_from_per_pair,
                                        tsed_from_pairs)
from reports.figures import plot_consistency_vs_fidelity, plot_distribution, plot_guidance_sweep, sweep_methods
from reports.html_page import PageImage, PageSection, write_report_html
from reports.image_grid import save_image_grid
from reports.run_folders import MethodSceneResult, RunResults, read_cameras, read_views
from reports.tables import (BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CONTROLS, FID_MIN_IMAGES, check_set_scores,
                            check_tidy, higher_is_better, is_control, legend, parse_method, summarize, summary_text,
                            wide, write_tables)
from scenes.errors import InvalidInputError

logger = logging.getLogger(__name__)

#: Controls that must order as upper > middle > lower on every consistency score (a score is only believed beside
#: controls that pin its range: reports/benchmarks/peers.md).
CONTROL_ORDER = ("ground_truth", "perturbed", "noise")
#: Further lower bound, checked against the upper bound only.
SHUFFLED = "shuffled_cameras"
#: Consistency scores of panoramas (rotation-only cameras: no NeRF), checked against the controls like the others.
PANORAMA_CONSISTENCY = ("overlap_psnr", "rotation_tsed")
#: (x, y) pairs drawn as consistency-against-fidelity figures when both metrics are in the run.
SCATTER_PAIRS = (("fidelity_psnr", "consistency_psnr"), ("fidelity_fid", "consistency_psnr"),
                 ("fidelity_psnr", "tsed"), ("fidelity_psnr", "overlap_psnr"))
#: Per-view or per-pair scores drawn one per figure against the distance from the input view, in this order when
#: present; the first present is also drawn against the generation step and at the loop's two ends.
ACCUMULATION_METRICS = ("overlap_psnr", "fidelity_psnr", "fidelity_ssim")
#: Consistency scores drawn against the distance as one figure of panels each: file stem -> (name, metrics,
#: caption).
ACCUMULATION_PANELS = {
    "consistency": ("NeRF consistency score", ("consistency_psnr", "consistency_ssim"),
                    "3DiM's NeRF score of each held-out view (the NeRF fitted on the method's other views, rendered "
                    "at the view's camera, against the view)"),
    "tsed": ("TSED", ("tsed", "tsed_matches", "tsed_median_sed"),
             "TSED per pair of consecutive views: the verdict (its mean is the fraction of consistent pairs), SIFT "
             "matches and their median symmetric epipolar distance; a pair at the mean distance of its two views"),
    "rotation_tsed": ("rotation-only TSED", ("rotation_tsed", "rotation_tsed_matches",
                                             "rotation_tsed_median_transfer_error"),
                      "rotation-only TSED per pair of neighbouring views: the verdict (its mean is the fraction of "
                      "consistent pairs), SIFT matches in the overlap and their median transfer error; a pair at "
                      "the mean distance of its two views"),
}
#: Scores in the tables of means per method and distance bucket (`accumulation_by_distance.csv`), when present:
#: per view (integer distances) and per pair of views (halfway between its views' distances), one table each.
DISTANCE_TABLE_METRICS = (("consistency_psnr", "fidelity_psnr"), ("tsed", "overlap_psnr", "rotation_tsed"))
#: ScoreScene's per-pair TSED file, which folders written by older versions of nvsc lack.
TSED_PAIRS = "tsed_pairs.csv"
#: Metrics drawn against the guidance weight when the run has `@w` methods.
SWEEP_METRICS = ("consistency_psnr", "tsed", "fidelity_psnr", "fidelity_fid")

NOTES = [
    "consistency_*: 3DiM's 3D-consistency score (Watson et al. 2023, Sec. 5.2). A NeRF whose colour depends on "
    "position only is fitted on a subset of each scene's views and rendered at the held-out cameras; the renders "
    "are scored against the method's own held-out views. tsed (Yu et al. 2023): fraction of neighbouring view "
    "pairs whose SIFT matches obey the cameras' epipolar geometry.",
    "fidelity_*: the method's views against the ground-truth views at the same cameras (the input view excluded); "
    "fidelity_fid and fidelity_kid compare the distribution of all scenes' views with the real ones; "
    "fidelity_sharpness is the share of the truth's detail the views keep (1: as much; below 1: blurred, blank or "
    "noisy).",
    "What the consistency score cannot show: views that are easy to fit score high on it, so blurred and blank "
    "views beat the real ones (a NeRF reproduces white views exactly), and another object's real views score "
    "like the truth. distilled_*: the NeRF fitted on the method's views, rendered at the held-out cameras, against "
    "the real views there: one 3D model judged against reality, which blank views and wrong objects lose; its "
    "SSIM (and LPIPS) also penalise blur, its PSNR slightly rewards it. Every PSNR is capped at 40 dB. The "
    "degenerate controls (blur_<sigma px>, blank, input_copied, repeated_view, other_scene) are scored like any "
    "method: a cell marked \u2020 is one a degenerate control beats or ties (controls.txt says which).",
]
PANORAMA_NOTE = (
    "Panoramas (cameras that only rotate about one centre: no parallax, so no NeRF score): overlap_psnr is "
    "MVDiffusion's consistency score (Tang et al. 2023, Sec. 4.1), the PSNR of each view against its neighbour "
    "warped by the rotation's homography, on their overlap; rotation_tsed is TSED with the rotation-only epipolar "
    "constraint; loopclosure_psnr is the overlap PSNR of the last view against the first, where the ring closes.")
ACCUMULATION_NOTE = (
    "Error accumulation: per-view scores (objects: fidelity to the ground truth and the NeRF consistency score of "
    "each held-out view) and per-pair scores (TSED's verdict on a pair of views, its matches and median error; "
    "panoramas: overlap PSNR and rotation-only TSED) against the distance from the input view along the ring (a "
    "pair at the mean distance of its two views). Samplers that generate one view after another (3DiM's "
    "stochastic conditioning, Markovian) can drift with distance and fail to close the loop; joint generation "
    "(MVDiffusion) denoises all views together. Loop closure compares the first-generated view with the "
    "last-generated one: with the input at index 0 both neighbour the input.")


#: Fewest bootstrap resamples accepted: a percentile interval of fewer is noise.
MIN_BOOTSTRAP_RESAMPLES = 100


@dataclass
class ReportConfig:
    """How the report is built (the pipeline's `[BuildReport]` section sets these)."""

    #: Title of the HTML page.
    title: str = "nvsc: 3D consistency of novel-view-synthesis models"
    #: Bootstrap resamples of the scenes for the 95% intervals.
    bootstrap_resamples: int = BOOTSTRAP_RESAMPLES
    #: Seed of the bootstrap resampling.
    seed: int = BOOTSTRAP_SEED
    #: Coverage of the bootstrap intervals.
    confidence: float = 0.95
    #: Write a turntable animation per scene.
    animations: bool = True
    #: Also write MP4 beside each GIF when an encoder is installed.
    mp4: bool = True
    #: Views per row of an image grid.
    max_grid_columns: int = 12

    def __post_init__(self):
        if not isinstance(self.bootstrap_resamples, int) or self.bootstrap_resamples < MIN_BOOTSTRAP_RESAMPLES:
            raise InvalidInputError("bootstrap_resamples", f"{self.bootstrap_resamples!r} resamples cannot give a "
                                    "percentile interval", f"use at least {MIN_BOOTSTRAP_RESAMPLES} (the default is "
                                    f"{BOOTSTRAP_RESAMPLES})")


def row_labels(runs: list[RunResults]) -> dict[tuple[str, str], str]:
    """Row label per (run label, method): `method`, or `method [run]` when the method is in several runs, and for
    every control when runs are merged (a control is a reference of its own run: its checks compare it with that
    run's other controls)."""
    runs_of: dict[str, set[str]] = {}
    for run in runs:
        for result in run.results:
            runs_of.setdefault(result.method, set()).add(run.label)

    def labelled(method: str) -> bool:
        return len(runs_of[method]) > 1 or (len(runs) > 1 and is_control(method))

    return {(run.label, result.method): f"{result.method} [{run.label}]" if labelled(result.method) else result.method
            for run in runs for result in run.results}


def merged_scores(runs: list[RunResults]) -> tuple[pd.DataFrame, pd.DataFrame | None, list[str]]:
    """(tidy per-scene scores, set-level scores or None, row order) of all runs, rows relabelled apart."""
    labels = row_labels(runs)
    tidy_parts, set_parts, order = [], [], []
    for run in runs:
        for result in run.results:
            scores = check_tidy(pd.read_csv(result.scores_csv, keep_default_na=True))
            tidy_parts.append(scores.assign(method=labels[(run.label, result.method)], run=run.label))
        for path in run.set_score_csvs:
            scores = check_set_scores(pd.read_csv(path))
            scores = scores[scores["method"].map(lambda m: (run.label, m) in labels).astype(bool)]  # this report's
            set_parts.append(scores.assign(method=[labels[(run.label, m)] for m in scores["method"]], run=run.label))
        methods = list(dict.fromkeys(r.method for r in run.results))
        ranked = [m for m in run.method_order if m in methods] + [m for m in methods if m not in run.method_order]
        order += [labels[(run.label, m)] for m in ranked]
    tidy = pd.concat(tidy_parts, ignore_index=True)
    set_scores = pd.concat(set_parts, ignore_index=True) if set_parts else None
    return tidy, set_scores, list(dict.fromkeys(order))


def few_images_lines(set_scores: pd.DataFrame | None) -> list[str]:
    """A line per method whose FID/KID came from fewer than `FID_MIN_IMAGES` images (set scores that record it)."""
    if set_scores is None or "images" not in set_scores.columns:
        return []
    counts = set_scores.dropna(subset=["images"]).groupby("method", sort=False)["images"].min()
    return [f"fidelity_fid {method}: over {int(n)} images, fewer than {FID_MIN_IMAGES}: FID is biased upward at "
            "this size, so compare it only between sets of the same size (KID is unbiased, but spread widely)."
            for method, n in counts.items() if n < FID_MIN_IMAGES]


def _consistency_metrics(metrics: list[str]) -> list[str]:
    return [m for m in metrics if m.startswith("consistency_") or m == "tsed" or m in PANORAMA_CONSISTENCY]


def control_check(long: pd.DataFrame) -> list[str]:
    """Sentences saying whether the controls order as they must on each consistency score: ground truth above
    perturbed above noise (and above shuffled cameras), per run. The first line is the verdict; lines of a
    failed check start with `WARNING`."""
    means = wide(long)
    runs = list(dict.fromkeys(parse_method(m).run for m in means.index))
    if len(runs) > 1:  # merged runs: unlabelled rows are methods of one run only, never controls (row_labels)
        runs = [run for run in runs if run]
    lines, failed, checked, chains = [], [], 0, []
    for run in runs:
        rows = {parse_method(m).base: m for m in means.index if parse_method(m).run == run}
        where = f" [{run}]" if run else ""
        chain = [c for c in CONTROL_ORDER if c in rows]
        if len(chain) < 2:
            lines.append(f"Controls not checked{where}: the run needs at least two of {', '.join(CONTROL_ORDER)}.")
            continue
        chains.append(" above ".join(chain))
        for metric in _consistency_metrics(list(means.columns)):
            pairs = list(zip(chain, chain[1:])) + ([("ground_truth", SHUFFLED)] if SHUFFLED in rows and
                                                   "ground_truth" in rows else [])
            values = {c: float(means.loc[rows[c], metric]) for c in {*chain, *(p[1] for p in pairs)}}
            better = higher_is_better(metric)
            shown = f"{chain[0]} ({values[chain[0]]:.3g})" + "".join(
                f" {'=' if values[a] == values[b] else '>' if better else '<'} {b} ({values[b]:.3g})"
                for a, b in zip(chain, chain[1:]))
            if any(math.isnan(v) for v in values.values()):
                lines.append(f"{metric}{where}: not checked, a control has no value.")
                continue
            if len(set(values.values())) == 1:
                # Every control ties (TSED finds no SIFT matches on tiny views): the score separates nothing
                # here, which is no evidence of a wrong order either.
                lines.append(f"{metric}{where}: not informative on this run, every control scores "
                             f"{next(iter(values.values())):.3g}.")
                continue
            # A tie is no reversed order: a bounded score at its floor (TSED 0 when small views give SIFT no
            # matches) cannot separate two weak controls, which the line says; only a reversal is a failure.
            tied = [(a, b) for a, b in pairs if values[a] == values[b]]
            wrong = [(a, b) for a, b in pairs
                     if (a, b) not in tied and not (values[a] > values[b] if better else values[a] < values[b])]
            checked += 1
            shuffled = f"; {SHUFFLED} ({values[SHUFFLED]:.3g}) worse than ground_truth" if SHUFFLED in values else ""
            ties = "".join(f"; {a} ties {b} ({values[a]:.3g}): the score does not separate them on this run"
                           for a, b in tied)
            if wrong:
                failed.append(f"{metric}{where}")
                reasons = ", ".join(f"{a} not better than {b}" for a, b in wrong)
                hint = "too few or too small views?" if metric in PANORAMA_CONSISTENCY else \
                    "too few NeRF steps or views?"
                lines.append(f"WARNING {metric}{where}: controls out of order ({reasons}; {shown}); the score "
                             f"cannot be trusted on this run ({hint}).")
            else:
                lines.append(f"{metric}{where}: {shown}{shuffled}, as they must"
                             f" ({'higher' if better else 'lower'} is better){ties}.")
    if not checked:
        verdict = "Controls not checked: no consistency score has values for the controls."
    elif failed:
        verdict = f"WARNING: controls out of order on {', '.join(failed)}."
    else:
        verdict = f"Controls in order: {' / '.join(dict.fromkeys(chains))} on every consistency score checked."
    return [verdict, *lines]


def _scene_grid(results: list[MethodSceneResult], labels: dict[str, str], path: Path, max_columns: int) -> Path:
    rows = []
    for result in results:
        names, views = read_views(result.views_folder)
        if not rows:
            rows.append(("input", views[[result.input_view]]))
        others = [i for i in range(len(names)) if i != result.input_view]
        rows.append((f"{labels[result.method]}: views", views[others]))
        if result.renders_folder is not None:  # panoramas have no NeRF
            rows.append((f"{labels[result.method]}: NeRF renders", read_views(result.renders_folder)[1]))
    return save_image_grid(rows, path, max_columns=max_columns)


def _scene_turntable(results: list[MethodSceneResult], labels: dict[str, str], stem: Path,
                     mp4: bool) -> dict[str, Path]:
    rows, cameras = [], []
    for result in results:
        names, views = read_views(result.views_folder)
        cameras = cameras or names
        rendered = None
        if result.renders_folder is not None:  # panoramas have no NeRF: the views only
            render_names, renders = read_views(result.renders_folder)
            rendered = dict(zip(render_names, renders))
        rows.append(TurntableRow(labels[result.method], dict(zip(names, views)), rendered))
    return write_turntable(rows, cameras, stem, mp4=mp4)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in text).strip("-") or "run"


#: Headline figures keep short names at the top of the report folder (scripts and tests open them by name);
#: the others go under `figures/`.
HEADLINE = {"consistency_psnr_vs_fidelity_psnr": "consistency_vs_fidelity.png",
            "consistency_psnr_per_scene": "consistency_psnr.png"}


def _figure_path(folder: Path, name: str) -> Path:
    return folder / HEADLINE[name] if name in HEADLINE else folder / "figures" / f"{name}.png"


def _figures(tidy: pd.DataFrame, long: pd.DataFrame, order: list[str], weights: dict[str, float],
             folder: Path) -> list[PageImage]:
    metrics = list(dict.fromkeys(long["metric"]))
    finite = {m for m in metrics if long.loc[long["metric"] == m, "mean"].astype(float).notna().any()}
    figures = []
    for x, y in SCATTER_PAIRS:
        if x in finite and y in finite:
            path = plot_consistency_vs_fidelity(long, _figure_path(folder, f"{y}_vs_{x}"), x, y)
            figures.append(PageImage(f"{y} against {x}", path))
    drawable = tidy.loc[np.isfinite(tidy["value"].to_numpy(float)), "metric"]
    for metric in dict.fromkeys(drawable):  # a score missing everywhere (no weights) has nothing to draw
        path = plot_distribution(tidy, metric, _figure_path(folder, f"{metric}_per_scene"), order)
        figures.append(PageImage(f"{metric} per scene", path))
    if sweep_methods(order, weights):
        for metric in (m for m in SWEEP_METRICS if m in finite):
            path = plot_guidance_sweep(long, metric, _figure_path(folder, f"{metric}_vs_guidance"), weights)
            figures.append(PageImage(f"{metric} against guidance weight", path))
    return figures


def accumulation_frame(runs: list[RunResults], labels: dict[tuple[str, str], str]) -> tuple[pd.DataFrame, list[str]]:
    """(frame, notes): per-view scores (objects, from `per_view.csv`: fidelity and the NeRF consistency score) and
    per-pair scores (TSED, from `tsed_pairs.csv`; panoramas: overlap PSNR and rotation-only TSED, from
    `per_pair.csv`) of every run with their distances from the input view, rows labelled as in the report; the
    frame is empty when no run cached them. A ScoreScene folder written before `tsed_pairs.csv` existed gives no
    TSED rows; `notes` then says which and how to add them."""
    frames, lacking, objects = [], [], 0
    for run in runs:
        for result in run.results:
            label = labels[(run.label, result.method)]
            if result.panorama:
                per_pair = pd.read_csv(result.per_pair_csv)
                parts = [overlap_from_per_pair(per_pair, str(result.per_pair_csv)),
                         tsed_from_pairs(per_pair, "rotation_tsed", "median_transfer_error",
                                         str(result.per_pair_csv), "ScorePanorama")]
            else:
                objects += 1
                parts = []
                if result.per_view_csv is not None:
                    names, c2w = read_cameras(result.views_folder)
                    per_view = pd.read_csv(result.per_view_csv, dtype={"view": str})
                    parts += [read(per_view, names, c2w, result.input_view, source=str(result.per_view_csv))
                              for read in (fidelity_from_per_view, consistency_from_per_view)]
                if result.tsed_pairs_csv is not None:
                    pairs = pd.read_csv(result.tsed_pairs_csv)
                    parts.append(tsed_from_pairs(pairs, source=str(result.tsed_pairs_csv)))
                else:
                    lacking.append(result.scores_csv.parent)
            frames += [part.assign(method=label, scene=result.scene) for part in parts]
    frames = [frame for frame in frames if not frame.empty]
    notes = []
    if lacking:
        note = (f"TSED against distance leaves out {len(lacking)} of {objects} (scene, method) results: their "
                f"ScoreScene folders (e.g. {min(lacking)}) lack {TSED_PAIRS}, which older versions of nvsc did not "
                "write; run `nvsc run` again with the same settings to rescore them in place (nothing upstream "
                "reruns) and rebuild the report.")
        logger.warning(note)
        notes.append(note)
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), notes


def _in_order(frame: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    return frame.iloc[np.argsort(frame["method"].map(order.index).to_numpy(), kind="stable")]


def loop_closure_table(closure: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Mean over scenes per method and metric of the first- and last-generated view's score, and the change."""
    table = _in_order(closure, order).groupby(["method", "metric"], sort=False).agg(
        opening=("opening", "mean"), closing=("closing", "mean"), scenes=("scene", "nunique"),
        opening_at=("opening_at", "first"), closing_at=("closing_at", "first"))
    table.insert(2, "closing - opening", table["closing"] - table["opening"])
    return table


def _accumulation_section(frame: pd.DataFrame, order: list[str], folder: Path, notes: list[str]) -> PageSection:
    """Figures of score against distance and generation step, the table of means per distance bucket, the
    loop-closure table and figure; their CSVs, and the rows they come from (`accumulation_rows.csv`). `notes`
    (e.g. results left out) are added to the section's text."""
    frame = _in_order(frame, order)
    # Every view's and pair's score with all three distances (index, angle, generation step), for other groupings.
    frame.to_csv(folder / "accumulation_rows.csv", index=False)
    curve = accumulation_curve(frame, "index_distance")
    curve.to_csv(folder / "accumulation.csv", index=False)
    drawn_curve = _in_order(curve, order)  # the figures list methods in the report's order
    # Loop closure for the scores whose first and last generated view (or pair) are the ring's two ends.
    closure = opening_and_closing(frame[frame["metric"].isin(ACCUMULATION_METRICS)])
    closure.to_csv(folder / "loop_closure.csv", index=False)
    present = set(curve["metric"])
    metrics = [m for m in ACCUMULATION_METRICS if m in present]
    images = []
    for stem, (name, panel_metrics, caption) in ACCUMULATION_PANELS.items():
        drawn = [m for m in panel_metrics if m in present]
        if drawn:
            path = plot_panels_by_distance(drawn_curve, drawn,
                                           folder / "figures" / f"accumulation_{stem}.png",
                                           f"{name} against distance from the input view")
            images.append(PageImage(f"{name} against the distance from the input view: {caption} (mean over "
                                    "scenes, band: one standard deviation)", path))
    for metric in metrics:
        path = plot_error_by_distance(drawn_curve, metric,
                                      folder / "figures" / f"accumulation_{metric}.png")
        where = "pairs of neighbours, at the mean distance of their two views" if metric == "overlap_psnr" else \
            "views along the ring"
        images.append(PageImage(f"{metric} against the distance from the input view ({where}; mean over scenes, "
                                "band: one standard deviation)", path))
    if metrics:
        by_step = _in_order(accumulation_curve(frame, "step"), order)
        path = plot_error_by_distance(by_step, metrics[0],
                                      folder / "figures" / f"accumulation_{metrics[0]}_by_step.png", distance="step")
        images.append(PageImage(f"{metrics[0]} against the generation step (targets are generated in index order)",
                                path))
        if metrics[0] in set(closure["metric"]):
            path = plot_opening_and_closing(closure, metrics[0],
                                            folder / "figures" / f"loop_closure_{metrics[0]}.png")
            images.append(PageImage(f"loop closure: {metrics[0]} of the first- and the last-generated view", path))
    by_distance = [distance_table(curve, [m for m in group if m in present], order) for group in DISTANCE_TABLE_METRICS]
    by_distance = [table for table in by_distance if not table.empty]
    if by_distance:
        combined = pd.concat(by_distance)
        combined[sorted(combined.columns, key=lambda column: float(column[2:]))].to_csv(
            folder / "accumulation_by_distance.csv")
    closure_table = loop_closure_table(closure, order) if not closure.empty else pd.DataFrame()
    tables = [*by_distance, *([closure_table] if not closure_table.empty else [])]
    text = ("Tables of d=...: the mean of each score per method at each distance d from the input view, in views "
            "along the ring (per view; per pair of views, halfway between its two views' distances, so d=0.5 holds "
            "the pairs with the input view; tsed and rotation_tsed there are the fractions of consistent pairs). "
            "Loop closure: each method's score at the first-generated view (opening) and at the last-generated one "
            "(closing, where the ring closes onto the input view); a negative change (a higher-is-better score) is "
            "error accumulated around the ring.")
    return PageSection("Error accumulation and loop closure", images, " ".join([text, *notes]), side_by_side=True,
                       tables=tables)


#: Scores compared method against method on the same scenes, when present.
PAIRED_METRICS = ("consistency_psnr", "consistency_ssim", "distilled_psnr", "distilled_ssim", "distilled_lpips",
                  "fidelity_psnr", "fidelity_ssim", "faithfulness_psnr", "tsed", "overlap_psnr", "rotation_tsed")


def _tsed_curve(runs: list[RunResults], labels: dict[tuple[str, str], str], order: list[str],
                folder: Path) -> PageImage | None:
    """TSED against its median-error threshold per method (`reports.tsed_curve`), from the cached per-pair
    tables: `tsed_threshold_curve.csv` and its figure (None without per-pair tables)."""
    parts = [pd.read_csv(r.tsed_pairs_csv).assign(method=labels[(run.label, r.method)])
             for run in runs for r in run.results if r.tsed_pairs_csv is not None]
    if not parts:
        return None
    curve = tsed_threshold_curve(pd.concat(parts, ignore_index=True))
    curve = curve.iloc[np.argsort(curve["method"].map(lambda m: order.index(m) if m in order else len(order))
                                  .to_numpy(), kind="stable")]
    curve.to_csv(folder / "tsed_threshold_curve.csv", index=False)
    path = plot_tsed_curve(curve, folder / "figures" / "tsed_threshold_curve.png")
    return PageImage("TSED against its threshold: the share of neighbouring pairs with at least 15 matches whose "
                     "median epipolar error is below the threshold (the paper's 2 px marked)", path)


def _noise_floor(runs: list[RunResults], labels: dict[tuple[str, str], str], folder: Path) -> list[str]:
    """`noise_floor.csv` and its sentences, from the runs' per-seed NeRF scores (none: no lines)."""
    parts = []
    for run in runs:
        for path in run.fit_seed_csvs:
            if not Path(path).is_file():
                continue
            table = pd.read_csv(path)
            parts.append(table.assign(method=[labels.get((run.label, m), m) for m in table["method"]]))
    if not parts:
        return []
    floor = noise_floor(pd.concat(parts, ignore_index=True))
    floor.to_csv(folder / "noise_floor.csv", index=False)
    return noise_floor_lines(floor)


def _paired_section(tidy: pd.DataFrame, order: list[str], config: ReportConfig, folder: Path) -> PageSection | None:
    """Every pair of evaluated methods (not controls) compared scene by scene (`reports.paired`); `paired.csv`."""
    methods = [m for m in order if not is_control(m)]
    pairs = [(a, b) for i, a in enumerate(methods) for b in methods[i + 1:]]
    metrics = [m for m in PAIRED_METRICS if m in set(tidy["metric"])]
    table = paired_table(tidy, pairs, metrics, config.bootstrap_resamples, config.seed, config.confidence)
    if table.empty:
        return None
    table.to_csv(folder / "paired.csv", index=False)
    shown = table.assign(difference=[f"{row.mean_difference:+.3g} [{row.ci_low:+.3g}, {row.ci_high:+.3g}]"
                                     for row in table.itertuples()],
                         p=[f"{p:.2g}" for p in table["p_value"]])
    shown = shown.set_index(["method_a", "method_b", "metric"])[["scenes", "difference", "p", "verdict"]]
    text = (f"Method a against method b on the same scenes: the mean of the per-scene differences (positive: a "
            f"better, in the score's units) with its {config.confidence:.0%} paired bootstrap interval, and the "
            "two-sided p-value of the sign-flip permutation test. With n scenes the smallest p-value is 2^(1-n), "
            f"so fewer than {MIN_SCENES} scenes give no verdict: rerun with more test scenes "
            "(--PrepareDataset-test-instances) before claiming a difference.")
    return PageSection("Paired comparisons", [], text, tables=[shown])


def build_report(runs: list[RunResults], folder: Path, config: ReportConfig | None = None) -> Path:
    """Write tables, figures, per-scene grids and animations, `controls.txt`, `sources.json` and `index.html` into
    `folder`; return the page's path. Scores are read from the runs' cached CSVs, views and renders from their
    folders: nothing is recomputed."""
    config = config or ReportConfig()
    folder = Path(folder)
    tidy, set_scores, order = merged_scores(runs)
    labels = row_labels(runs)
    accumulation, accumulation_notes = accumulation_frame(runs, labels)  # read and checked before any writing
    long = summarize(tidy, set_scores, order, config.bootstrap_resamples, config.seed, config.confidence)
    degeneracy = degeneracy_check(long)
    privileged = {labels[(run.label, r.method)]: r.privileged for run in runs for r in run.results if r.privileged}
    # Never bold: controls pin the range; a method that reads more than the input view solves another task.
    not_candidates = (*CONTROLS, *(parse_method(label).base for label in privileged))
    write_tables(tidy, long, folder, set_scores, resamples=config.bootstrap_resamples, confidence=config.confidence,
                 flagged=degeneracy.flagged, controls=not_candidates)
    weights = {labels[(run.label, r.method)]: r.guidance_weight for run in runs for r in run.results
               if r.guidance_weight is not None}
    figures = _figures(tidy, long, order, weights, folder)
    accumulation_section = (_accumulation_section(accumulation, order, folder, accumulation_notes)
                            if not accumulation.empty else None)
    paired_section = _paired_section(tidy, order, config, folder)
    curve_figure = _tsed_curve(runs, labels, order, folder)
    if curve_figure is not None:
        figures.append(curve_figure)
    grids, animations = [], []
    work = [(run, scene) for run in runs for scene in dict.fromkeys(r.scene for r in run.results)]
    for run, scene in tqdm(work, desc="report: scenes", unit="scene", disable=len(work) < 3):
        results = sorted((r for r in run.results if r.scene == scene),
                         key=lambda r: order.index(labels[(run.label, r.method)]))
        run_labels = {r.method: labels[(run.label, r.method)] for r in results}
        name = f"{_slug(run.label)}--{scene}" if run.label else scene
        caption = f"{scene} [{run.label}]" if run.label else scene
        grid = _scene_grid(results, run_labels, folder / "grids" / f"{name}.png", config.max_grid_columns)
        grids.append(PageImage(caption, grid, pixelated=True))
        if config.animations:
            written = _scene_turntable(results, run_labels, folder / "animations" / name, config.mp4)
            links = {"MP4": written["mp4"].relative_to(folder).as_posix()} if "mp4" in written else {}
            what = ("its view" if all(r.renders_folder is None for r in results) else
                    "its view (left) and the NeRF render (right; grey at the cameras the NeRF was fitted on)")
            animations.append(PageImage(f"{caption}: turntable; per method, {what}", written["gif"], True, links))
    floor_lines = _noise_floor(runs, labels, folder)
    controls = control_check(long) + degeneracy.lines + floor_lines + few_images_lines(set_scores) + [
        f"{label} reads {', '.join(reads)}: another task than image-only novel-view synthesis, never marked best "
        "against the methods that read only the input view." for label, reads in privileged.items()]
    degeneracy.flags.to_csv(folder / "degeneracy_flags.csv", index=False)
    if not degeneracy.matched.empty:
        degeneracy.matched.to_csv(folder / "sharpness_matched.csv", index=False)
    for line in controls:
        (logger.warning if line.startswith("WARNING") else logger.info)(line)
    (folder / "controls.txt").write_text("\n".join(controls) + "\n")
    sources = [{"label": run.label, "root": str(run.root),
                "scores": [str(r.scores_csv) for r in run.results],
                "set_scores": [str(p) for p in run.set_score_csvs]} for run in runs]
    (folder / "sources.json").write_text(json.dumps(sources, indent=2))
    panorama = any(r.panorama for run in runs for r in run.results)
    sections = [*([paired_section] if paired_section is not None else []),
                PageSection("Figures", figures, side_by_side=True),
                *([accumulation_section] if accumulation_section is not None else []),
                PageSection("Turntables", animations),
                PageSection("Scenes", grids, "Per scene: the input view, then each method's views and (objects) the "
                                             "NeRF renders at its held-out cameras.")]
    notes = [*NOTES, *([PANORAMA_NOTE] if panorama else []),
             *([ACCUMULATION_NOTE] if accumulation_section is not None else accumulation_notes)]
    return write_report_html(folder, config.title, summary_text(long, controls=not_candidates,
                                                                flagged=degeneracy.flagged),
                             sections, notes, controls, legend(config.bootstrap_resamples, config.confidence))
