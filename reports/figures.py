"""Figures of the scores: consistency against fidelity per method, and per-method bars with per-scene points.

Figures are drawn on `matplotlib.figure.Figure` objects with the Agg canvas, not through pyplot: nothing global
is switched, no window can open, and figures drawn from several threads do not share state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from reports.tables import check_tidy, score_name, summary_table
from scenes.errors import InvalidInputError

logger = logging.getLogger(__name__)


@dataclass
class FigureStyle:
    """Size and resolution shared by the report's figures."""

    #: Figure size in inches (width, height).
    size: tuple[float, float] = (6.4, 4.8)
    #: Resolution of the PNG; 120 dpi keeps labels sharp at a few hundred kB at most.
    dpi: int = 120


def _unit(metric: str) -> str:
    return " (dB)" if score_name(metric) == "psnr" else ""


def _new_figure(style: FigureStyle) -> Figure:
    figure = Figure(figsize=style.size, dpi=style.dpi)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path, style: FigureStyle) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=style.dpi)
    logger.info("wrote %s", path)
    return path


def plot_consistency_vs_fidelity(summary: pd.DataFrame, path: Path, x_metric: str = "fidelity_psnr",
                                 y_metric: str = "consistency_psnr", style: FigureStyle | None = None) -> Path:
    """One labelled point per method: x = fidelity PSNR, y = consistency PSNR (means over scenes).

    A method whose fidelity is not finite (ground truth scored against itself: +inf dB) has no x; its consistency
    is drawn as a labelled horizontal line instead. Methods without a finite consistency are left out and logged.
    """
    style = style or FigureStyle()
    missing = [c for c in (x_metric, y_metric) if c not in summary.columns]
    if missing:
        raise InvalidInputError("summary", f"lacks the columns {missing} (has {list(summary.columns)})",
                                "pass the table made by reports.tables.summary_table from scores of both stages")
    figure = _new_figure(style)
    axes = figure.add_subplot()
    points = summary[np.isfinite(summary[x_metric]) & np.isfinite(summary[y_metric])]
    lines = summary[~np.isfinite(summary[x_metric]) & np.isfinite(summary[y_metric])]
    skipped = summary.index[~np.isfinite(summary[y_metric])].tolist()
    if skipped:
        logger.warning("no finite %s for %s: left out of %s", y_metric, skipped, path)
    axes.scatter(points[x_metric], points[y_metric], color="tab:blue", zorder=3)
    for method, row in points.iterrows():
        axes.annotate(str(method), (row[x_metric], row[y_metric]), xytext=(4, 4), textcoords="offset points",
                      fontsize=8)
    for method, row in lines.iterrows():
        axes.axhline(row[y_metric], color="0.5", linestyle="--", linewidth=1)
        x_value = "inf" if np.isposinf(row[x_metric]) else "n/a"
        axes.annotate(f"{method} ({x_metric} {x_value})", (0.01, row[y_metric]),
                      xycoords=("axes fraction", "data"), xytext=(0, 3), textcoords="offset points",
                      fontsize=8, color="0.3")
    axes.set_xlabel(f"{x_metric}{_unit(x_metric)}: closer to the real views \u2192")
    axes.set_ylabel(f"{y_metric}{_unit(y_metric)}: more 3D-consistent \u2192")
    axes.set_title("3D consistency against fidelity, mean over scenes")
    axes.grid(True, alpha=0.3)
    return _save(figure, path, style)


def plot_scores_bar(tidy: pd.DataFrame, metric: str, path: Path, method_order: Sequence[str] | None = None,
                    style: FigureStyle | None = None) -> Path:
    """Bar of the mean of `metric` over scenes per method, with each scene's value drawn as a point on it.

    Non-finite values (+inf PSNR of identical images) cannot be drawn: they are left out of the points, and a
    method whose mean is not finite gets its mean written at the foot of its bar instead of a bar.
    """
    style = style or FigureStyle()
    check_tidy(tidy)
    rows = tidy[tidy["metric"] == metric]
    if rows.empty:
        raise InvalidInputError("metric", f"{metric!r} has no scores (metrics: {sorted(tidy['metric'].unique())})",
                                "plot a metric named in the scores table")
    means = summary_table(rows, method_order)[metric]
    figure = _new_figure(style)
    axes = figure.add_subplot()
    positions = np.arange(len(means))
    finite_means = means.where(np.isfinite(means), 0.0)
    axes.bar(positions, finite_means, color="tab:blue", alpha=0.5, width=0.6)
    # A fixed generator keeps the horizontal jitter, and so the PNG, the same from run to run.
    jitter = np.random.default_rng(0)
    for position, method in zip(positions, means.index):
        values = rows.loc[rows["method"] == method, "value"].to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        axes.scatter(position + jitter.uniform(-0.15, 0.15, len(values)), values, color="black", s=12, zorder=3)
        if not np.isfinite(means[method]):
            axes.annotate("inf" if np.isposinf(means[method]) else "n/a", (position, 0), ha="center",
                          va="bottom", xytext=(0, 2), textcoords="offset points", fontsize=8)
    axes.set_xticks(positions)
    axes.set_xticklabels([str(m) for m in means.index], rotation=30, ha="right", fontsize=8)
    axes.set_ylabel(f"{metric}{_unit(metric)}")
    axes.set_title(f"{metric}: mean over scenes (bars) and per scene (points)")
    axes.grid(True, axis="y", alpha=0.3)
    return _save(figure, path, style)
