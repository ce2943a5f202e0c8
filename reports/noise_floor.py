"""The NeRF score's noise floor: the same views fitted with several NeRF seeds.

A NeRF fit is a function of its seed (`nerf.fit.NeRFConfig.seed`): initial weights, ray batches and jitter. Two
fits of the same views differ, so a difference between two methods smaller than that spread says nothing. Per
scene, the views of one method are fitted with each seed; per score, the report gives the standard deviation
across seeds (averaged over scenes) and the largest range, beside the differences it must be read against.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # scenes.scene loads torch, which `nvsc report` (this module's noise_floor) must not wait for
    from scenes.scene import MultiViewScene

#: Columns of the per-seed table.
SEED_COLUMNS = ["method", "scene", "fit_seed", "metric", "value"]
#: Columns of the noise-floor summary.
FLOOR_COLUMNS = ["method", "metric", "scenes", "seeds", "mean", "seed_std", "seed_range_max"]


def fit_seed_scores(views: MultiViewScene, truth: MultiViewScene, renders: dict[int, MultiViewScene], *,
                    method: str, scene: str) -> pd.DataFrame:
    """Consistency (renders against the method's held-out views) and distilled (against the real views) PSNR and
    SSIM of one scene, per fit seed (`renders`: seed -> the NeRF's renders at the held-out cameras)."""
    from reports.metrics import per_view_scores  # torch: only the pipeline scores, `nvsc report` reads the table

    rows = []
    for seed, render in renders.items():
        own = views.images[[views.names.index(name) for name in render.names]]
        real = truth.images[[truth.names.index(name) for name in render.names]]
        for kind, targets in (("consistency", own), ("distilled", real)):
            scores = per_view_scores(render.images, targets)
            rows += [(method, scene, seed, f"{kind}_{score}", float(scores[score].mean()))
                     for score in ("psnr", "ssim")]
    return pd.DataFrame(rows, columns=SEED_COLUMNS)


def noise_floor(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Per method and metric: the scenes and seeds, the mean, the standard deviation across seeds (ddof 1, the
    mean over scenes) and the largest range across seeds of any scene."""
    rows = []
    for (method, metric), group in per_seed.groupby(["method", "metric"], sort=False):
        by_scene = group.groupby("scene")["value"]
        rows.append((method, metric, by_scene.ngroups, int(group["fit_seed"].nunique()), float(group["value"].mean()),
                     float(by_scene.std(ddof=1).mean()), float((by_scene.max() - by_scene.min()).max())))
    return pd.DataFrame(rows, columns=FLOOR_COLUMNS)


def noise_floor_lines(floor: pd.DataFrame) -> list[str]:
    """Sentences for `controls.txt`: the noise floor of each score."""
    return [f"noise floor of {row.metric} ({row.method}, {row.seeds} NeRF seeds x {row.scenes} scenes): seed std "
            f"{row.seed_std:.3g}, largest range {row.seed_range_max:.3g}; differences between methods below about "
            f"{2 * row.seed_std:.2g} are within the fits' own noise." for row in floor.itertuples()
            if np.isfinite(row.seed_std)]
