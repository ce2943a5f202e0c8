"""Error accumulation and loop closure: where along an orbit or a panorama the views of a method go wrong.

Generating views one after another (3DiM's stochastic conditioning, Markovian sampling) can accumulate error with
the distance from the input view and cannot close a loop: the last view generated sits next to the input on the
ring but was made furthest from it. Joint generation (MVDiffusion, Tang et al. 2023) denoises all views together
and is meant to avoid both. These functions return tidy pandas frames (one row per view or pair and metric, columns
`method, scene, ..., metric, value`) for `reports.accumulation_figures`:

- `fidelity_by_distance`: each view's PSNR/SSIM against the ground truth, with its distance from the input view;
- `overlap_by_distance`: each neighbouring pair's overlap PSNR (panoramas), with the pair's distance;
- `tsed_pairs_by_distance`: TSED's verdict on each pair of consecutive views (objects), with its SIFT matches,
  median symmetric epipolar distance and the pair's distance (ScoreScene caches it as `tsed_pairs.csv`);
- `loop_closure`: the last view against the first where the ring closes: overlap PSNR of that pair for panoramas;
  for orbits (parallax: no homography) the last-generated view's fidelity and TSED's verdict on the pair it
  forms with the input view;
- `accumulation_curve`: the mean per method, metric and distance; `distance_table`: those means as a short table,
  one column per distance bucket;
- `fidelity_from_per_view`, `consistency_from_per_view`, `overlap_from_per_pair`, `tsed_from_pairs`: tidy
  frames read back from the pipeline's cached `per_view.csv`, `tsed_pairs.csv` (ScoreScene) and `per_pair.csv`
  (ScorePanorama), for reports rebuilt without recomputing: fidelity and the NeRF consistency score per view,
  overlap PSNR and TSED's per-pair verdicts and statistics per pair;
- `opening_and_closing`: the first- against the last-generated view (or pair) of each ring, from such a frame.

Only the functions that score images import torch (inside them): `nvsc report` reads this module without it.

Distances: `index_distance` counts views along the ring (the shorter way round when the ring is closed),
`angle_deg` is the angle between the viewing directions, and `step` is the view's position in the order the
pipeline's samplers generate the targets (every view but the input, in index order). A pair of views sits at the
mean of its two views' distances (the input view has no step: a pair with it takes the other view's step).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from scenes.errors import InvalidInputError

if TYPE_CHECKING:  # these import torch; the image-scoring functions below import what they use when called
    from reports.tsed import TSEDConfig
    from scenes.cameras import Cameras
    from scenes.scene import MultiViewScene

#: Columns of every per-view or per-pair frame, before the distance columns.
ID_COLUMNS = ["method", "scene"]
DISTANCE_COLUMNS = ["index_distance", "angle_deg", "step"]
#: Columns of the per-pair TSED table of objects (`tsed_pairs_by_distance`, ScoreScene's `tsed_pairs.csv`).
TSED_PAIR_COLUMNS = ID_COLUMNS + ["first", "second"] + DISTANCE_COLUMNS + ["matches", "median_sed", "consistent"]


def view_distances(cameras: Cameras, input_view: int, closed: bool = True) -> pd.DataFrame:
    """One row per view: `view`, `index_distance`, `angle_deg` and `step` (NaN for the input view) from `input_view`."""
    return ring_distances(np.asarray(cameras.c2w), input_view, closed)


def ring_distances(c2w: np.ndarray, input_view: int, closed: bool = True) -> pd.DataFrame:
    """`view_distances` of camera-to-world matrices c2w [N, 4, 4] (OpenGL axes) in ring order."""
    count = len(c2w)
    if not 0 <= input_view < count:
        raise InvalidInputError("input_view", f"{input_view} is not a view index of a {count}-view scene",
                                f"use an index from 0 to {count - 1}")
    index = np.arange(count)
    offset = np.abs(index - input_view)
    distance = np.minimum(offset, count - offset) if closed else offset
    forward = -np.asarray(c2w, dtype=np.float64)[:, :3, 2]  # OpenGL cameras look along -z
    forward /= np.linalg.norm(forward, axis=1, keepdims=True)
    cosine = np.clip(forward @ forward[input_view], -1.0, 1.0)
    targets = [i for i in index if i != input_view]
    step = np.full(count, np.nan)
    step[targets] = np.arange(1, count)
    return pd.DataFrame({"view": index, "index_distance": distance, "angle_deg": np.degrees(np.arccos(cosine)),
                         "step": step})


def _pair_distances(distances: pd.DataFrame, first: int, second: int) -> dict[str, float]:
    """Distance columns of the pair (first, second): the mean over its two views of `distances` (indexed by view;
    NaN, the input view's step, is skipped)."""
    ends = distances.loc[[first, second]]
    return {column: float(ends[column].mean()) for column in DISTANCE_COLUMNS}


def fidelity_by_distance(views: MultiViewScene, truth: MultiViewScene, input_view: int, *, method: str, scene: str,
                         closed: bool = True) -> pd.DataFrame:
    """PSNR and SSIM of every generated view but the input one against the ground truth at its camera, by distance.

    views, truth: the same cameras in the same order. Columns: method, scene, view, index_distance, angle_deg, step,
    metric (`fidelity_psnr`, `fidelity_ssim`), value.
    """
    if len(views) != len(truth) or views.images.shape != truth.images.shape:
        raise InvalidInputError("generated views", f"{views.images.shape} do not match the ground truth "
                                                   f"{truth.images.shape}", "score the views at the scene's cameras")
    import torch

    from reports.metrics import psnr, ssim

    distances = view_distances(truth.cameras, input_view, closed)
    targets = distances[distances["view"] != input_view].reset_index(drop=True)
    index = targets["view"].to_numpy()

    def batch(images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(images[index], dtype=np.float64)).permute(0, 3, 1, 2)

    predictions, references = batch(views.images), batch(truth.images)
    scores = {"fidelity_psnr": psnr(predictions, references), "fidelity_ssim": ssim(predictions, references)}
    frames = [targets.assign(metric=name, value=values.double().numpy()) for name, values in scores.items()]
    return pd.concat(frames, ignore_index=True).assign(method=method, scene=scene)[
        ID_COLUMNS + ["view"] + DISTANCE_COLUMNS + ["metric", "value"]]


def overlap_by_distance(views: MultiViewScene, input_view: int, *, method: str, scene: str,
                        closed: bool = True) -> pd.DataFrame:
    """Overlap PSNR of every neighbouring pair of a panorama's views, placed at the mean distance of its two views.

    Columns: method, scene, first, second, index_distance, angle_deg, step, metric (`overlap_psnr`), value.
    """
    from reports.overlap import overlap_psnr_pairs

    distances = view_distances(views.cameras, input_view, closed).set_index("view")
    rows = [{"first": pair.first, "second": pair.second, **_pair_distances(distances, pair.first, pair.second),
             "metric": "overlap_psnr", "value": pair.psnr}
            for pair in overlap_psnr_pairs(views.images, views.cameras, closed=closed)]
    return pd.DataFrame(rows).assign(method=method, scene=scene)[
        ID_COLUMNS + ["first", "second"] + DISTANCE_COLUMNS + ["metric", "value"]]


def tsed_pairs_by_distance(views: MultiViewScene, input_view: int, *, method: str, scene: str,
                           config: TSEDConfig | None = None, closed: bool = True) -> pd.DataFrame:
    """TSED's verdict on each pair of consecutive views (`reports.tsed.tsed_pairs`: (0, 1), (1, 2), ... (N-2, N-1),
    as TSED scores a trajectory), placed at the mean distance of its two views from the input view.

    Columns (`TSED_PAIR_COLUMNS`): method, scene, first, second, index_distance, angle_deg, step, matches (SIFT
    matches after the ratio test), median_sed (their median symmetric epipolar distance in pixels, NaN without
    matches), consistent (TSED's verdict: at least `min_matches` matches and a median below `max_median_error`).
    The mean of `consistent` is the scene's TSED.
    """
    from reports.tsed import TSEDConfig, tsed_pairs

    distances = view_distances(views.cameras, input_view, closed).set_index("view")
    rows = [{"first": pair.first, "second": pair.second, **_pair_distances(distances, pair.first, pair.second),
             "matches": pair.matches, "median_sed": pair.median_error, "consistent": bool(pair.consistent)}
            for pair in tsed_pairs(np.asarray(views.images), views.cameras, config or TSEDConfig())]
    return pd.DataFrame(rows, columns=TSED_PAIR_COLUMNS[2:]).assign(method=method, scene=scene)[TSED_PAIR_COLUMNS]


def loop_closure(views: MultiViewScene, input_view: int, *, method: str, scene: str, panorama: bool,
                 truth: MultiViewScene | None = None, tsed_config: TSEDConfig | None = None) -> pd.DataFrame:
    """Scores where the ring closes, tidy (method, scene, first, second, metric, value).

    Panorama: `loopclosure_psnr`, the overlap PSNR of the last view against the first (the pair a sequential
    generator makes furthest apart). Orbit: the last-generated view `last` (the highest index but the input's)
    against the ground truth (`loopclosure_psnr`, `loopclosure_ssim`, needs `truth`) and TSED's verdict (1 or 0) on
    the pair (last, input view) under the known cameras (`loopclosure_tsed`).
    """
    from reports.overlap import overlap_psnr_pairs
    from reports.tsed import TSEDConfig, pair_consistency

    tsed_config = tsed_config or TSEDConfig()
    count = len(views)
    if count < 3:
        raise InvalidInputError("views", f"{count} views form no loop", "pass a ring of at least 3 views")
    if panorama:
        (pair,) = overlap_psnr_pairs(views.images, views.cameras, pairs=[(count - 1, 0)])
        rows = [(count - 1, 0, "loopclosure_psnr", pair.psnr)]
    else:
        if truth is None:
            raise InvalidInputError("truth", "loop closure of an orbit scores the last view against the ground truth",
                                    "pass the scene's ground-truth views")
        last = max(i for i in range(count) if i != input_view)
        fidelity = fidelity_by_distance(views, truth, input_view, method=method, scene=scene)
        at_last = fidelity[fidelity["view"] == last].set_index("metric")["value"]
        verdict = pair_consistency(np.asarray(views.images), views.cameras, last, input_view, tsed_config)
        rows = [(last, last, "loopclosure_psnr", float(at_last["fidelity_psnr"])),
                (last, last, "loopclosure_ssim", float(at_last["fidelity_ssim"])),
                (last, input_view, "loopclosure_tsed", float(verdict.consistent))]
    frame = pd.DataFrame(rows, columns=["first", "second", "metric", "value"])
    return frame.assign(method=method, scene=scene)[ID_COLUMNS + ["first", "second", "metric", "value"]]


def accumulation_curve(frame: pd.DataFrame, distance: str = "index_distance") -> pd.DataFrame:
    """Mean, standard deviation and count of `value` per method, metric and `distance` over scenes and views/pairs
    of a frame from `fidelity_by_distance` or `overlap_by_distance` (or several, concatenated)."""
    if distance not in DISTANCE_COLUMNS:
        raise InvalidInputError("distance", f"{distance!r} is not a distance column", f"use one of {DISTANCE_COLUMNS}")
    absent = [c for c in ["method", "metric", "value", distance] if c not in frame.columns]
    if absent:
        raise InvalidInputError("accumulation frame", f"lacks the columns {absent}",
                                "pass a frame from fidelity_by_distance or overlap_by_distance")
    finite = frame[np.isfinite(frame["value"].astype(float))]
    grouped = finite.groupby(["method", "metric", distance], sort=True)["value"]
    return grouped.agg(mean="mean", std="std", count="count").reset_index()


def per_view_from_csv(per_view: pd.DataFrame, kind: str, names: list[str], c2w: np.ndarray, input_view: int, *,
                      closed: bool = True, source: str = "per_view.csv") -> pd.DataFrame:
    """The `kind` rows of ScoreScene's cached `per_view.csv` (columns view, kind, psnr, ssim, method, scene) as a
    tidy by-distance frame: metrics `<kind>_psnr`, `<kind>_ssim`, each view with its distance from the input view.

    kind: `fidelity` (each view but the input against the ground truth) or `consistency` (3DiM's NeRF score: each
    held-out view against the render at its camera of the NeRF fitted on the other views). names: the views' names
    in ring order (the file stems of the GenerateViews folder), c2w [N, 4, 4] their cameras; source: the CSV's
    path, named in errors. Read the CSV with `dtype={"view": str}` (names such as `000001` are not numbers). A CSV
    with no rows of `kind` (the ground truth has no fidelity rows) gives no rows.
    """
    absent = [c for c in ("view", "kind", "psnr", "ssim", "method", "scene") if c not in per_view.columns]
    if absent:
        raise InvalidInputError(source, f"lacks the columns {absent}", "rerun ScoreScene to rewrite it")
    if len(names) != len(c2w):
        raise InvalidInputError("views", f"{len(names)} names for {len(c2w)} cameras", "pass one name per camera")
    distances = ring_distances(c2w, input_view, closed).assign(name=list(names))
    rows = per_view[per_view["kind"] == kind].astype({"view": str})
    unknown = sorted(set(rows["view"]) - set(names))
    if unknown:
        raise InvalidInputError(source, f"names views {unknown[:5]} that the generated views lack",
                                "rerun ScoreScene: its scores belong to other views")
    joined = rows.merge(distances, left_on="view", right_on="name", suffixes=("_name", ""))
    frame = joined.melt(id_vars=ID_COLUMNS + ["view"] + DISTANCE_COLUMNS, value_vars=["psnr", "ssim"],
                        var_name="metric", value_name="value")
    frame["metric"] = f"{kind}_" + frame["metric"]
    return frame.sort_values(["metric", "view"], kind="stable").reset_index(drop=True)[
        ID_COLUMNS + ["view"] + DISTANCE_COLUMNS + ["metric", "value"]]


def fidelity_from_per_view(per_view: pd.DataFrame, names: list[str], c2w: np.ndarray, input_view: int, *,
                           closed: bool = True, source: str = "per_view.csv") -> pd.DataFrame:
    """`fidelity_by_distance`'s frame from ScoreScene's cached `per_view.csv` (`per_view_from_csv`, kind
    `fidelity`), with no image read."""
    return per_view_from_csv(per_view, "fidelity", names, c2w, input_view, closed=closed, source=source)


def consistency_from_per_view(per_view: pd.DataFrame, names: list[str], c2w: np.ndarray, input_view: int, *,
                              closed: bool = True, source: str = "per_view.csv") -> pd.DataFrame:
    """The NeRF consistency score (`consistency_psnr`, `consistency_ssim`) of each held-out view by its distance
    from the input view, from ScoreScene's cached `per_view.csv` (`per_view_from_csv`, kind `consistency`)."""
    return per_view_from_csv(per_view, "consistency", names, c2w, input_view, closed=closed, source=source)


def overlap_from_per_pair(per_pair: pd.DataFrame, source: str = "per_pair.csv") -> pd.DataFrame:
    """`overlap_by_distance`'s frame from ScorePanorama's cached `per_pair.csv` (its `overlap_psnr` column); source:
    the CSV's path, named in errors."""
    columns = ID_COLUMNS + ["first", "second"] + DISTANCE_COLUMNS
    absent = [c for c in columns + ["overlap_psnr"] if c not in per_pair.columns]
    if absent:
        raise InvalidInputError(source, f"lacks the columns {absent}", "rerun ScorePanorama to rewrite it")
    return per_pair[columns].assign(metric="overlap_psnr", value=per_pair["overlap_psnr"].astype(float))


def _verdicts(column: pd.Series, source: str, task: str) -> pd.Series:
    """TSED's verdicts as 1.0 / 0.0 from a CSV column of booleans (`True`/`False`, or 1/0)."""
    if column.dtype == bool:
        return column.astype(float)
    values = column.astype(str).str.strip().str.lower().map({"true": 1.0, "false": 0.0, "1": 1.0, "0": 0.0,
                                                             "1.0": 1.0, "0.0": 0.0})
    if values.isna().any():
        bad = sorted(set(column[values.isna()].astype(str)))[:3]
        raise InvalidInputError(source, f"column `consistent` holds {bad}, not True/False",
                                f"rerun {task} to rewrite it")
    return values


def tsed_from_pairs(pairs: pd.DataFrame, score: str = "tsed", error_column: str = "median_sed",
                    source: str = "tsed_pairs.csv", task: str = "ScoreScene") -> pd.DataFrame:
    """Tidy by-pair frame of TSED's per-pair results: metrics `<score>` (the verdict, 1 consistent or 0: its mean
    over pairs is TSED), `<score>_matches` and `<score>_<error_column>`, each pair at its distance.

    Objects: ScoreScene's `tsed_pairs.csv` (score `tsed`, error `median_sed`, the symmetric epipolar distance).
    Panoramas: ScorePanorama's `per_pair.csv` (score `rotation_tsed`, error `median_transfer_error`, the
    rotation-only homography's transfer error). source: the CSV's path, named in errors; task: the one to rerun.
    """
    columns = ID_COLUMNS + ["first", "second"] + DISTANCE_COLUMNS
    absent = [c for c in columns + ["matches", error_column, "consistent"] if c not in pairs.columns]
    if absent:
        raise InvalidInputError(source, f"lacks the columns {absent}", f"rerun {task} to rewrite it")
    base = pairs[columns]
    statistics = {score: _verdicts(pairs["consistent"], source, task),
                  f"{score}_matches": pairs["matches"].astype(float),
                  f"{score}_{error_column}": pairs[error_column].astype(float)}
    return pd.concat([base.assign(metric=metric, value=values.to_numpy()) for metric, values in statistics.items()],
                     ignore_index=True)


def distance_table(curve: pd.DataFrame, metrics: list[str], order: list[str] | None = None,
                   distance: str = "index_distance") -> pd.DataFrame:
    """Short table of an `accumulation_curve` frame: one row per (metric, method) of `metrics`, one column per
    distance bucket (`d=1`, `d=1.5` for a pair between views 1 and 2 away), each cell the mean there.

    Rows follow `metrics`, then `order` (methods not in it after, in their order in the curve)."""
    rows = curve[curve["metric"].isin(metrics)]
    if rows.empty:
        return pd.DataFrame()
    methods = list(dict.fromkeys([m for m in (order or []) if m in set(rows["method"])] + list(rows["method"])))
    table = rows.pivot_table(index=["metric", "method"], columns=distance, values="mean", aggfunc="first")
    index = [(metric, method) for metric in metrics for method in methods if (metric, method) in table.index]
    table = table.loc[index]
    table.columns = [f"d={value:g}" for value in table.columns]
    table.index.names = ["metric", "method"]
    return table


def opening_and_closing(frame: pd.DataFrame) -> pd.DataFrame:
    """Per method, scene and metric of a by-distance frame: the score of the first-generated view or pair
    (`opening`, the smallest `step`) and of the last-generated one (`closing`, the largest `step`), and where they
    lie (`opening_at`, `closing_at`: view index, or `first-second` for a pair).

    With the input view at index 0 of a ring, both are the input's neighbours: the first view is generated right
    beside the input, the last is where the ring closes back onto it after every other view. A sequential sampler
    that accumulates error scores worse at the closing than at the opening; a joint one scores alike (MVDiffusion,
    Tang et al. 2023, Sec. 1 names loop closure as what autoregressive generation cannot guarantee).
    """
    absent = [c for c in ID_COLUMNS + ["metric", "value", "step"] if c not in frame.columns]
    if absent:
        raise InvalidInputError("accumulation frame", f"lacks the columns {absent}",
                                "pass a frame from fidelity_from_per_view or overlap_from_per_pair")
    rows = []
    for (method, scene, metric), group in frame.groupby(ID_COLUMNS + ["metric"], sort=False):
        group = group[np.isfinite(group["step"].astype(float))]
        if group.empty:
            continue
        ends = group.loc[[group["step"].astype(float).idxmin(), group["step"].astype(float).idxmax()]]
        pairs = "first" in ends.columns and ends["first"].notna().all()
        where = [f"{int(r.first)}-{int(r.second)}" if pairs else str(int(r.view)) for r in ends.itertuples()]
        rows.append({"method": method, "scene": scene, "metric": metric, "opening": float(ends["value"].iloc[0]),
                     "closing": float(ends["value"].iloc[1]), "opening_at": where[0], "closing_at": where[1]})
    return pd.DataFrame(rows, columns=ID_COLUMNS + ["metric", "opening", "closing", "opening_at", "closing_at"])
