"""The scores of one method on one panorama (rotation-only cameras, no parallax, so no NeRF score), in the tidy
per-scene table of `reports.scoring` (`method, scene, metric, value, missing`):

- `overlap_psnr`: MVDiffusion's overlap PSNR over the neighbouring pairs of the ring (`reports.overlap`);
- `rotation_tsed`: TSED with the rotation-only constraint over the same pairs (`reports.rotation_tsed`);
- `loopclosure_psnr`: the overlap PSNR of the last view against the first, where the ring closes;
- `fidelity_psnr`, `fidelity_ssim`: the views against the ground truth at every camera but the input one (not for
  the ground truth itself, whose fidelity is perfect by definition).

The per-pair table (one row per neighbouring pair: overlap PSNR, SIFT matches, median transfer error, verdict, and
the pair's distance from the input view) is what the error-accumulation figures read.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reports.error_accumulation import fidelity_by_distance, loop_closure, overlap_by_distance
from reports.rotation_tsed import rotation_tsed_pairs
from reports.scoring import GROUND_TRUTH, SCENE_COLUMNS
from reports.tsed import TSEDConfig
from scenes.errors import InvalidInputError
from scenes.scene import MultiViewScene


def score_panorama(views: MultiViewScene, truth: MultiViewScene, input_view: int, *, method: str, scene: str,
                   tsed_config: TSEDConfig = TSEDConfig(), closed: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(tidy per-scene scores, per-pair table) of a method's views of one panorama; views and truth share cameras."""
    if views.names != truth.names or not np.allclose(views.cameras.c2w, truth.cameras.c2w, atol=1e-6):
        raise InvalidInputError("generated views", "their names or cameras differ from the ground truth's",
                                "rerun GenerateViews for this scene: the views must be at the panorama's cameras")
    per_pair = overlap_by_distance(views, input_view, method=method, scene=scene, closed=closed)
    verdicts = rotation_tsed_pairs(views.images, views.cameras, tsed_config, closed)
    per_pair = per_pair.drop(columns=["metric"]).rename(columns={"value": "overlap_psnr"}).assign(
        matches=[pair.matches for pair in verdicts], median_transfer_error=[pair.median_error for pair in verdicts],
        consistent=[pair.consistent for pair in verdicts])
    values = {"overlap_psnr": float(per_pair["overlap_psnr"].mean()),
              "rotation_tsed": float(per_pair["consistent"].mean())}
    closure = loop_closure(views, input_view, method=method, scene=scene, panorama=True)
    values.update(closure.set_index("metric")["value"].to_dict())
    if method != GROUND_TRUTH:
        fidelity = fidelity_by_distance(views, truth, input_view, method=method, scene=scene, closed=closed)
        values.update(fidelity.groupby("metric", sort=False)["value"].mean().to_dict())
    tidy = pd.DataFrame({"method": method, "scene": scene, "metric": list(values), "value": list(values.values()),
                         "missing": ""})
    return tidy[SCENE_COLUMNS], per_pair
