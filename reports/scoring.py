"""The scores of one scene under one method: 3D consistency (3DiM's NeRF score) and fidelity to the ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd

from reports.metrics import per_view_scores
from scenes.errors import InvalidInputError
from scenes.scene import MultiViewScene

#: The method whose views *are* the ground truth: its fidelity is trivially perfect, so it is not reported.
GROUND_TRUTH = "ground_truth"


def _views_named(scene: MultiViewScene, names: list[str], what: str) -> np.ndarray:
    index = {name: i for i, name in enumerate(scene.names)}
    missing = [name for name in names if name not in index]
    if missing:
        raise InvalidInputError(what, f"has no views named {missing[:5]}",
                                "rerun the task that produced it; its view names must match")
    return scene.images[[index[name] for name in names]]


def score_scene(views: MultiViewScene, renders: MultiViewScene, truth: MultiViewScene, input_view: int, *,
                method: str, scene: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-scene means (tidy: method, scene, metric, value) and per-view scores of one scene and method.

    consistency_*: NeRF renders at the held-out cameras against the method's own views there (3DiM Sec. 5.2:
    a NeRF without view dependence reproduces held-out views only as far as the views agree in 3D).
    fidelity_*: the method's views against the ground truth at every camera but the input one.
    """
    parts = [per_view_scores(renders.images, _views_named(views, renders.names, "generated views"),
                             renders.names).assign(kind="consistency")]
    if method != GROUND_TRUTH:
        others = [name for i, name in enumerate(truth.names) if i != input_view]
        parts.append(per_view_scores(_views_named(views, others, "generated views"),
                                     _views_named(truth, others, "ground truth"), others).assign(kind="fidelity"))
    per_view = pd.concat(parts, ignore_index=True).assign(method=method, scene=scene)
    metrics = [column for column in per_view.columns if column not in ("view", "kind", "method", "scene")]
    tidy = (per_view.groupby("kind")[metrics].mean().reset_index()
            .melt(id_vars="kind", var_name="score", value_name="value"))
    tidy = pd.DataFrame({"method": method, "scene": scene, "metric": tidy["kind"] + "_" + tidy["score"],
                         "value": tidy["value"]})
    return tidy, per_view
