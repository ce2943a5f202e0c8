"""Figures of error accumulation and loop closure (frames of `reports.error_accumulation`).

Drawn like `reports.figures`: on `matplotlib.figure.Figure` objects with the Agg canvas, never through pyplot; each
function writes one PNG and returns its path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from reports.figures import FigureStyle, axis_label, new_figure, save_figure
from reports.tables import is_control
from scenes.errors import InvalidInputError

#: Axis labels of the distance columns.
DISTANCE_LABELS = {"index_distance": "views from the input view", "angle_deg": "angle from the input view (deg)",
                   "step": "generation step"}


def _rows_of(frame: pd.DataFrame, metric: str, frame_name: str) -> pd.DataFrame:
    """The rows of `frame` about `metric`; raises `InvalidInputError` naming the metrics there are if none."""
    rows = frame[frame["metric"] == metric]
    if rows.empty:
        raise InvalidInputError(f"metric {metric!r}", f"has no rows (metrics: {sorted(set(frame['metric']))})",
                                f"plot a metric of the {frame_name} frame")
    return rows


#: Axis labels of per-pair statistics whose name alone gives no (or a wrong) direction: TSED's verdict is 1 or 0 per
#: pair, so its mean at a distance is the fraction of consistent pairs there.
PAIR_LABELS = {
    "tsed": "TSED: fraction of consistent pairs, higher is better",
    "tsed_matches": "SIFT matches per pair",
    "tsed_median_sed": "median symmetric epipolar distance (px), lower is better",
    "rotation_tsed": "rotation-only TSED: fraction of consistent pairs, higher is better",
    "rotation_tsed_matches": "SIFT matches per pair (in the overlap)",
    "rotation_tsed_median_transfer_error": "median transfer error (px), lower is better",
}


#: Range of scores bounded by construction (a fraction of pairs): the +- one standard deviation band is clipped to it.
BOUNDS = {"tsed": (0.0, 1.0), "rotation_tsed": (0.0, 1.0)}


def metric_label(metric: str) -> str:
    """Axis label of a by-distance metric: `PAIR_LABELS`, else `reports.figures.axis_label`."""
    return PAIR_LABELS.get(metric, axis_label(metric))


def _draw_by_distance(axes, rows: pd.DataFrame, distance: str, metric: str) -> None:
    """One line per method (mean, band: +- one standard deviation, clipped to `BOUNDS`) of `accumulation_curve`
    rows; controls dashed."""
    low, high = BOUNDS.get(metric, (-np.inf, np.inf))
    for method, group in rows.groupby("method", sort=False):
        group = group.sort_values(distance)
        x, mean = group[distance].to_numpy(float), group["mean"].to_numpy(float)
        spread = np.nan_to_num(group["std"].to_numpy(float))
        line, = axes.plot(x, mean, marker="o", linestyle="--" if is_control(str(method)) else "-", label=str(method))
        axes.fill_between(x, np.clip(mean - spread, low, high), np.clip(mean + spread, low, high),
                          color=line.get_color(), alpha=0.15, linewidth=0)
    axes.set_xlabel(DISTANCE_LABELS.get(distance, distance))


def plot_error_by_distance(curve: pd.DataFrame, metric: str, path: Path, distance: str = "index_distance",
                           style: FigureStyle = FigureStyle()) -> Path:
    """One line per method: the mean of `metric` (band: +- one standard deviation) against `distance`, from the
    frame of `accumulation_curve`. Controls are drawn dashed."""
    rows = _rows_of(curve, metric, "accumulation")
    figure = new_figure(style)
    axes = figure.add_subplot()
    _draw_by_distance(axes, rows, distance, metric)
    axes.set_ylabel(metric_label(metric))
    axes.set_title(f"{metric} against distance from the input view")
    axes.legend(fontsize="small")
    return save_figure(figure, path, style)


def panels_figure(curve: pd.DataFrame, metrics: list[str], title: str, distance: str = "index_distance",
                  style: FigureStyle = FigureStyle()) -> Figure:
    """One panel per metric of `metrics` side by side (e.g. TSED's verdict, matches and median error), each drawn
    as `plot_error_by_distance` draws one, and the methods' legend in a narrow last panel of its own (eight methods
    leave no free corner in a panel); `title` heads the figure. Every metric needs rows in `curve`
    (`accumulation_curve`'s frame)."""
    rows = [_rows_of(curve, metric, "accumulation") for metric in metrics]
    width, height = style.size
    figure = new_figure(FigureStyle(size=(width * (0.75 * len(metrics) + 0.35), height), dpi=style.dpi))
    grid = figure.add_gridspec(1, len(metrics) + 1, width_ratios=[1.0] * len(metrics) + [0.45])
    for index, (metric, metric_rows) in enumerate(zip(metrics, rows)):
        axes = figure.add_subplot(grid[0, index])
        _draw_by_distance(axes, metric_rows, distance, metric)
        axes.set_title(metric, fontsize="medium")
        axes.set_ylabel(metric_label(metric), fontsize="small")
    legend_axes = figure.add_subplot(grid[0, len(metrics)])
    legend_axes.axis("off")
    legend_axes.legend(*figure.axes[0].get_legend_handles_labels(), loc="center left", fontsize="small",
                       frameon=False)
    figure.suptitle(title)
    return figure


def plot_panels_by_distance(curve: pd.DataFrame, metrics: list[str], path: Path, title: str,
                            distance: str = "index_distance", style: FigureStyle = FigureStyle()) -> Path:
    """`panels_figure` written as a PNG at `path`."""
    return save_figure(panels_figure(curve, metrics, title, distance, style), path, style)


def plot_loop_closure(frame: pd.DataFrame, metric: str, path: Path, style: FigureStyle = FigureStyle()) -> Path:
    """Bars: the mean of a loop-closure `metric` per method over scenes (frame of `loop_closure`, concatenated),
    with one dot per scene."""
    rows = _rows_of(frame, metric, "loop-closure")
    methods = list(dict.fromkeys(rows["method"]))
    figure = new_figure(style)
    axes = figure.add_subplot()
    for position, method in enumerate(methods):
        values = rows.loc[rows["method"] == method, "value"].to_numpy(float)
        finite = values[np.isfinite(values)]
        axes.bar(position, finite.mean() if len(finite) else np.nan, color="0.8" if is_control(method) else "C0")
        axes.plot(np.full(len(finite), position), finite, "k.", markersize=4)
    axes.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
    axes.set_ylabel(axis_label(metric))
    axes.set_title("loop closure: last view against the first")
    return save_figure(figure, path, style)


def plot_opening_and_closing(table: pd.DataFrame, metric: str, path: Path,
                             style: FigureStyle = FigureStyle()) -> Path:
    """Paired bars per method: the mean of `metric` at the first-generated view or pair (`opening`) and at the
    last-generated one (`closing`, where the ring closes onto the input), from `opening_and_closing`'s frame, with
    one dot per scene. A gap between the two bars is error accumulated around the ring."""
    rows = _rows_of(table, metric, "opening-and-closing")
    methods = list(dict.fromkeys(rows["method"]))
    figure = new_figure(style)
    axes = figure.add_subplot()
    width = 0.38
    for offset, column, colour in ((-width / 2, "opening", "C0"), (width / 2, "closing", "C3")):
        for position, method in enumerate(methods):
            values = rows.loc[rows["method"] == method, column].to_numpy(float)
            finite = values[np.isfinite(values)]
            axes.bar(position + offset, finite.mean() if len(finite) else np.nan, width, color=colour,
                     alpha=0.5 if is_control(method) else 1.0, label=column if position == 0 else None)
            axes.plot(np.full(len(finite), position + offset), finite, "k.", markersize=4)
    axes.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
    axes.set_ylabel(axis_label(metric))
    axes.set_title(f"loop closure: {metric} of the first- and last-generated view")
    axes.legend(fontsize="small")
    return save_figure(figure, path, style)
