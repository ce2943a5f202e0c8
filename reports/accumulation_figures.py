"""Figures of error accumulation and loop closure (frames of `reports.error_accumulation`).

Drawn like `reports.figures`: on `matplotlib.figure.Figure` objects with the Agg canvas, never through pyplot; each
function writes one PNG and returns its path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

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


def plot_error_by_distance(curve: pd.DataFrame, metric: str, path: Path, distance: str = "index_distance",
                           style: FigureStyle = FigureStyle()) -> Path:
    """One line per method: the mean of `metric` (band: +- one standard deviation) against `distance`, from the
    frame of `accumulation_curve`. Controls are drawn dashed."""
    rows = _rows_of(curve, metric, "accumulation")
    figure = new_figure(style)
    axes = figure.add_subplot()
    for method, group in rows.groupby("method", sort=False):
        group = group.sort_values(distance)
        x, mean = group[distance].to_numpy(float), group["mean"].to_numpy(float)
        spread = np.nan_to_num(group["std"].to_numpy(float))
        line, = axes.plot(x, mean, marker="o", linestyle="--" if is_control(str(method)) else "-", label=str(method))
        axes.fill_between(x, mean - spread, mean + spread, color=line.get_color(), alpha=0.15, linewidth=0)
    axes.set_xlabel(DISTANCE_LABELS.get(distance, distance))
    axes.set_ylabel(axis_label(metric))
    axes.set_title(f"{metric} against distance from the input view")
    axes.legend(fontsize="small")
    return save_figure(figure, path, style)


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
