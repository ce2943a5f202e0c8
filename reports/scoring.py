"""The scores of one method: per scene, 3D consistency (3DiM's NeRF score, TSED), the distilled NeRF's fidelity to
the real views and the views' fidelity to the ground truth; per set of scenes, FID and KID against the ground truth.

What each can show: 3DiM's consistency score alone is won by views that are easy to fit (blurred, blank: a NeRF
reproduces white views exactly), so it is read beside `distilled_*` (the same NeRF against the *real* held-out
views: blur, blank views and another object all lose there; its PSNR still rewards slight blur, its SSIM and LPIPS
do not) and `fidelity_sharpness` (how much of the truth's detail the views keep).

Scores that need network weights (LPIPS, FID, KID) are recorded as missing, with the command that gets the
weights, when the weights are not in the cache; with `ScoringConfig.strict` that is an error instead.
Tidy tables: per scene `method, scene, metric, value, missing`; per set `method, metric, value, missing`.
`missing` is empty, or why the value is NaN.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from reports import weights
from reports.error_accumulation import tsed_pairs_by_distance
from reports.faithfulness import FaithfulnessConfig, faithfulness_per_view, nearest_views
from reports.metrics import per_view_scores, sharpness
from reports.tables import FID_MIN_IMAGES
from reports.tsed import TSEDConfig
from scenes.errors import InvalidInputError
from scenes.scene import MultiViewScene

logger = logging.getLogger(__name__)

#: The method whose views *are* the ground truth: its fidelity is trivially perfect, so it is not reported.
GROUND_TRUTH = "ground_truth"
#: Columns of the per-scene and the per-set tidy tables.
SCENE_COLUMNS = ["method", "scene", "metric", "value", "missing"]
SET_COLUMNS = ["method", "metric", "value", "missing", "images"]


@dataclass(frozen=True)
class ScoringConfig:
    """How the scores are computed."""

    #: Backbone of LPIPS: `alex` (the usual one) or `vgg`.
    lpips_net: str = "alex"
    #: Cache folder of metric weights; None: `reports.weights.weights_dir()` ($NVSC_WEIGHTS_DIR or the default).
    weights_dir: Path | None = None
    #: Raise `WeightsMissingError` instead of recording a score as missing.
    strict: bool = False
    #: Thresholds of TSED.
    tsed: TSEDConfig = field(default_factory=TSEDConfig)
    #: KID: random subsets averaged, and images per subset (capped by the set sizes).
    kid_subsets: int = 100
    kid_subset_size: int = 1000

    def cache(self) -> Path:
        """The weights cache folder this configuration reads."""
        return Path(self.weights_dir) if self.weights_dir is not None else weights.weights_dir()


def scene_weights(config: ScoringConfig) -> list[str]:
    """Weight files the per-scene scores read (LPIPS)."""
    from reports.lpips_score import weights_needed

    return weights_needed(config.lpips_net)


def set_weights() -> list[str]:
    """Weight files the per-set scores read (Inception for FID and KID)."""
    from reports.fid import INCEPTION_WEIGHTS

    return [INCEPTION_WEIGHTS]


def absent_weights(names: list[str], config: ScoringConfig) -> str:
    """`""` when `names` are all cached, else the reason recorded in `missing` (or the error when strict)."""
    absent = weights.missing(names, config.cache())
    if absent and config.strict:
        raise weights.WeightsMissingError(absent, config.cache())
    if absent:
        logger.warning("%s; those scores are recorded as missing", weights.missing_reason(absent))
    return weights.missing_reason(absent) if absent else ""


def _views_named(scene: MultiViewScene, names: list[str], what: str) -> np.ndarray:
    index = {name: i for i, name in enumerate(scene.names)}
    absent = [name for name in names if name not in index]
    if absent:
        raise InvalidInputError(what, f"has no views named {absent[:5]}",
                                "rerun the task that produced it; its view names must match")
    return scene.images[[index[name] for name in names]]


def _lpips_scorer(config: ScoringConfig):
    from reports.lpips_score import cached_lpips, lpips_distance

    return partial(lpips_distance, network=cached_lpips(config.lpips_net, str(config.cache())))


def score_scene(views: MultiViewScene, renders: MultiViewScene, truth: MultiViewScene, input_view: int, *,
                method: str, scene: str, config: ScoringConfig = ScoringConfig()
                ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per-scene means (tidy: method, scene, metric, value, missing), per-view scores and TSED's per-pair table
    (`reports.error_accumulation.tsed_pairs_by_distance`: verdict, matches, median error and the pair's distance
    from the input view) of one scene and method.

    consistency_*: NeRF renders at the held-out cameras against the method's own views there (3DiM Sec. 5.2:
    a NeRF without view dependence reproduces held-out views only as far as the views agree in 3D).
    distilled_*: the same renders against the real views at those cameras (the NeRF distilled from the method's
    views as a 3D model of the object; for the ground truth it equals consistency_*).
    fidelity_*: the method's views against the ground truth at every camera but the input one, and their
    sharpness (the share of the truth's detail they keep, `reports.metrics.sharpness`).
    tsed: the method's own views, neighbour against neighbour, under the scene's cameras (Yu et al. 2023).
    """
    lpips_missing = absent_weights(scene_weights(config), config)
    extra = {} if lpips_missing else {"lpips": _lpips_scorer(config)}
    parts = [per_view_scores(renders.images, _views_named(views, renders.names, "generated views"),
                             renders.names, extra).assign(kind="consistency"),
             per_view_scores(renders.images, _views_named(truth, renders.names, "ground truth"),
                             renders.names, extra).assign(kind="distilled")]
    if method != GROUND_TRUTH:
        others = [name for i, name in enumerate(truth.names) if i != input_view]
        parts.append(per_view_scores(_views_named(views, others, "generated views"),
                                     _views_named(truth, others, "ground truth"), others,
                                     {**extra, "sharpness": sharpness}).assign(kind="fidelity"))
    per_view = pd.concat(parts, ignore_index=True)
    if lpips_missing:
        per_view["lpips"] = np.nan
    per_view = per_view.assign(method=method, scene=scene)
    metrics = [column for column in per_view.columns if column not in ("view", "kind", "method", "scene")]
    means = (per_view.groupby("kind", sort=False)[metrics].mean().reset_index()
             .melt(id_vars="kind", var_name="score", value_name="value"))
    # Sharpness is a fidelity score only: its empty cells in the other kinds are no missing scores.
    means = means[~((means["score"] == "sharpness") & (means["kind"] != "fidelity"))].reset_index(drop=True)
    rows = pd.DataFrame({"metric": means["kind"] + "_" + means["score"], "value": means["value"]})
    rows["missing"] = np.where(means["score"] == "lpips", lpips_missing, "")
    pairs = tsed_pairs_by_distance(views, input_view, method=method, scene=scene, config=config.tsed)
    rows.loc[len(rows)] = ["tsed", float(pairs["consistent"].mean()), ""]  # TSED: the consistent pairs' fraction
    tidy = rows.assign(method=method, scene=scene)[SCENE_COLUMNS]
    return tidy, per_view, pairs


def geometry_rows(geometry_file: Path, true_depth: np.ndarray, renders: MultiViewScene, *, method: str,
                  scene: str) -> pd.DataFrame:
    """Tidy rows `geometry_<score>` (`reports.geometry`) of the NeRF's surface saved in `geometry_file`
    (`nerf.export`) against the true depth [M, H, W] at the renders' (held-out) cameras."""
    from reports.geometry import geometry_scores

    with np.load(geometry_file) as saved:
        names, points, opacity = list(saved["names"]), saved["points"], saved["opacity"]
    if names != list(renders.names):
        raise InvalidInputError(geometry_file, f"holds views {names[:4]}, the renders are {renders.names[:4]}",
                                "rerun FitNeRF: its geometry and renders come from one fit")
    scores = geometry_scores(points, opacity, true_depth, renders.cameras)
    missing = {k: "the NeRF renders no surface" for k, v in scores.items() if np.isnan(v)}
    return pd.DataFrame({"method": method, "scene": scene, "metric": [f"geometry_{k}" for k in scores],
                         "value": list(scores.values()), "missing": [missing.get(k, "") for k in scores]}
                        )[SCENE_COLUMNS]


def faithfulness_rows(views: MultiViewScene, truth: MultiViewScene, true_depth: np.ndarray, input_view: int, *,
                      method: str, scene: str, config: FaithfulnessConfig = FaithfulnessConfig()
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tidy row `faithfulness_psnr` (`reports.faithfulness`: the views at the cameras nearest the input against the
    input view carried there through the true depth [N, H, W] of every truth view), and its per-view rows
    (kind `faithfulness`: view, psnr, coverage) for `per_view.csv`."""
    targets = nearest_views(truth.cameras, input_view, config.nearest)
    names = [truth.names[i] for i in targets]
    scores = faithfulness_per_view(_views_named(views, names, "generated views"), targets,
                                   truth.images[input_view], true_depth, truth.cameras, input_view, config)
    per_view = pd.DataFrame(scores).assign(view=names, kind="faithfulness", method=method, scene=scene)
    seen = per_view["psnr"].dropna()
    value = float(seen.mean()) if len(seen) else np.nan
    missing = "" if len(seen) else f"the input view sees none of the object at views {names}"
    tidy = pd.DataFrame([{"method": method, "scene": scene, "metric": "faithfulness_psnr", "value": value,
                          "missing": missing}])[SCENE_COLUMNS]
    return tidy, per_view


def _stack(scenes: list[MultiViewScene], truths: list[MultiViewScene], input_view: int
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Generated and real views [N, 3, H, W] at every camera but the input one, over all scenes."""
    generated, real = [], []
    for views, truth in zip(scenes, truths, strict=True):
        others = [name for i, name in enumerate(truth.names) if i != input_view]
        generated.append(_views_named(views, others, "generated views"))
        real.append(_views_named(truth, others, "ground truth"))
    def batch(images):
        return torch.from_numpy(np.concatenate(images)).permute(0, 3, 1, 2).float()
    return batch(generated), batch(real)


def score_method_set(scenes: list[MultiViewScene], truths: list[MultiViewScene], input_view: int, *, method: str,
                     config: ScoringConfig = ScoringConfig()) -> pd.DataFrame:
    """FID and KID of one method's views over all scenes against the ground-truth views at the same cameras (the
    input view excluded); tidy: method, metric, value, missing. No rows for the ground truth (FID 0 by definition)."""
    if method == GROUND_TRUTH:
        return pd.DataFrame(columns=SET_COLUMNS)
    generated, real = _stack(scenes, truths, input_view)
    if len(generated) < 2:
        raise InvalidInputError(f"views of {method}", f"{len(generated)} generated view over {len(scenes)} scenes",
                                "FID and KID need at least two views: use more test views or scenes")
    reason = absent_weights(set_weights(), config)
    if reason:
        values = {"fidelity_fid": np.nan, "fidelity_kid": np.nan}
    else:
        from reports.fid import cached_inception, frechet_distance, inception_features, kernel_inception_distance

        extractor = cached_inception(str(config.cache()))
        fake_features = inception_features(generated, extractor, progress=True)
        real_features = inception_features(real, extractor, progress=True)
        kid, _ = kernel_inception_distance(fake_features, real_features, config.kid_subsets, config.kid_subset_size)
        values = {"fidelity_fid": frechet_distance(fake_features, real_features), "fidelity_kid": kid}
    if len(generated) < FID_MIN_IMAGES:
        logger.warning("FID and KID of %s over %d images: fewer than %d, so FID is biased upward and comparable only "
                       "with sets of the same size", method, len(generated), FID_MIN_IMAGES)
    return pd.DataFrame({"method": method, "metric": list(values), "value": list(values.values()),
                         "missing": reason, "images": len(generated)})[SET_COLUMNS]
