"""One report folder from the cached results of every (scene, method): tables, figures, image grids, HTML page."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from reports.figures import plot_consistency_vs_fidelity, plot_scores_bar
from reports.html_page import write_report_html
from reports.image_grid import save_image_grid
from reports.scoring import GROUND_TRUTH
from reports.tables import summary_table, write_tables
from scenes.transforms_json import read_transforms

logger = logging.getLogger(__name__)

NOISE = "noise"

NOTES = [
    "consistency_*: 3DiM's 3D-consistency score. A NeRF whose colour depends on position only is fitted on a "
    "subset of each scene's views and rendered at the held-out cameras; the renders are scored against the "
    "method's own held-out views. Views that agree in 3D are reproduced well; inconsistent ones are not.",
    "fidelity_*: the method's views against the ground-truth views at the same cameras (the input view excluded).",
    "ground_truth: the dataset's real views, the consistency score's upper bound (its fidelity is perfect by "
    "definition and not shown). noise: independent random images per view, the score's lower bound.",
]


@dataclass(frozen=True)
class MethodSceneResult:
    """Where the cached results of one scene under one method lie."""

    scene: str
    method: str
    scores_csv: Path
    views_folder: Path
    renders_folder: Path
    input_view: int


def control_check(summary: pd.DataFrame, metric: str = "consistency_psnr") -> str:
    """A sentence saying whether the upper-bound control scores above the lower-bound control, as it must."""
    if GROUND_TRUTH not in summary.index or NOISE not in summary.index or metric not in summary.columns:
        return f"Controls not checked: the report needs both '{GROUND_TRUTH}' and '{NOISE}' rows."
    upper, lower = summary.loc[GROUND_TRUTH, metric], summary.loc[NOISE, metric]
    if upper > lower:
        return f"Controls in order: {metric} of {GROUND_TRUTH} ({upper:.2f}) is above {NOISE} ({lower:.2f})."
    return (f"WARNING: {metric} of {GROUND_TRUTH} ({upper:.2f}) is not above {NOISE} ({lower:.2f}); "
            "the score cannot be trusted on this run (too few NeRF steps or views?).")


def _scene_grid(results: list[MethodSceneResult], path: Path) -> None:
    rows = []
    for result in results:
        views = read_transforms(result.views_folder)
        if not rows:
            rows.append(("input", views.images[[result.input_view]]))
        others = [i for i in range(len(views)) if i != result.input_view]
        rows.append((f"{result.method}: views", views.images[others]))
        rows.append((f"{result.method}: NeRF renders", read_transforms(result.renders_folder).images))
    save_image_grid(rows, path)


def build_report(results: list[MethodSceneResult], methods: list[str], folder: Path) -> Path:
    """Write tables, figures, one image grid per scene and `index.html` into `folder`; return the page's path."""
    tidy = pd.concat([pd.read_csv(result.scores_csv) for result in results], ignore_index=True)
    summary = summary_table(tidy, method_order=methods)
    tables = write_tables(tidy, summary, folder)
    figures = [folder / "consistency_vs_fidelity.png", folder / "consistency_psnr.png"]
    plot_consistency_vs_fidelity(summary, figures[0])
    plot_scores_bar(tidy, "consistency_psnr", figures[1])
    grids = []
    for scene in dict.fromkeys(result.scene for result in results):
        path = folder / "grids" / f"{scene}.png"
        path.parent.mkdir(exist_ok=True)
        _scene_grid([result for result in results if result.scene == scene], path)
        grids.append((scene, path))
    check = control_check(summary)
    logger.info(check)
    (folder / "controls.txt").write_text(check + "\n")
    return write_report_html(folder, "nvsc: 3D consistency of novel-view-synthesis models",
                             tables["summary.md"].read_text(),
                             figures, grids, [check, *NOTES], default_notes=())
