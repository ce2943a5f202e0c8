"""Figures of the scores: consistency against fidelity, per-scene distributions, and guidance-weight sweeps.

Figures are drawn on `matplotlib.figure.Figure` objects with the Agg canvas, not through pyplot: nothing global
is switched, no window can open, and figures drawn from several threads do not share state. Every function takes
the long summary of `reports.tables.summarize` (or the tidy per-scene table) and writes one PNG.
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

from reports.tables import check_tidy, higher_is_better, is_control, parse_method, score_name
from scenes.errors import InvalidInputError

logger = logging.getLogger(__name__)


@dataclass
class FigureStyle:
    """Size and resolution shared by the report's figures."""

    #: Figure size in inches (width, height).
    size: tuple[float, float] = (6.4, 4.8)
    #: Resolution of the PNG; 120 dpi keeps labels sharp at a few hundred kB at most.
    dpi: int = 120


def axis_label(metric: str) -> str:
    """`consistency_psnr (dB), higher is better`-style label of a metric axis."""
    unit = " (dB)" if score_name(metric) == "psnr" else ""
    try:
        direction = ", higher is better" if higher_is_better(metric) else ", lower is better"
    except InvalidInputError:
        direction = ""
    return f"{metric}{unit}{direction}"


def new_figure(style: FigureStyle) -> Figure:
    figure = Figure(figsize=style.size, dpi=style.dpi)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: Path, style: FigureStyle) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=style.dpi)
    logger.info("wrote %s", path)
    return path


def _metric_rows(long: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows of one metric of the long summary, indexed by method."""
    if metric not in set(long["metric"]):
        raise InvalidInputError("summary", f"has no metric {metric!r} (metrics: {sorted(set(long['metric']))})",
                                "plot a metric named in the scores table")
    return long[long["metric"] == metric].set_index("method")


def _error(rows: pd.DataFrame) -> np.ndarray | None:
    """[2, N] distances from the mean to the interval ends, or None when no row has an interval."""
    low, high = rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float)
    if not np.isfinite(low).any():
        return None
    mean = rows["mean"].to_numpy(float)
    # A percentile interval need not contain the mean (few scenes, skewed scores); matplotlib refuses negative bars.
    return np.maximum(np.nan_to_num(np.stack([mean - low, high - mean]), nan=0.0), 0.0)


def plot_consistency_vs_fidelity(long: pd.DataFrame, path: Path, x_metric: str = "fidelity_psnr",
                                 y_metric: str = "consistency_psnr", style: FigureStyle | None = None) -> Path:
    """One point per generator x sampler x guidance weight (mean over scenes, bootstrap interval as error bars),
    the controls as grey reference marks: a point where they have a finite fidelity, a labelled horizontal line
    where they have none (ground truth: fidelity against itself is perfect and not scored)."""
    style = style or FigureStyle()
    x_rows, y_rows = _metric_rows(long, x_metric), _metric_rows(long, y_metric)
    table = pd.DataFrame({"x": x_rows["mean"], "y": y_rows["mean"]}).reindex(list(dict.fromkeys(y_rows.index)))
    finite_x, finite_y = np.isfinite(table["x"].astype(float)), np.isfinite(table["y"].astype(float))
    controls = np.array([is_control(m) for m in table.index], dtype=bool)
    figure = new_figure(style)
    axes = figure.add_subplot()
    points = table.index[finite_x & finite_y & ~controls]
    if len(points):
        axes.errorbar(table.loc[points, "x"], table.loc[points, "y"], xerr=_error(x_rows.loc[points]),
                      yerr=_error(y_rows.loc[points]), fmt="o", color="tab:blue", capsize=3, zorder=3)
    for method in points:
        axes.annotate(str(method), (table.loc[method, "x"], table.loc[method, "y"]), xytext=(4, 4),
                      textcoords="offset points", fontsize=8)
    for method in table.index[finite_x & finite_y & controls]:
        axes.scatter([table.loc[method, "x"]], [table.loc[method, "y"]], marker="s", color="0.45", zorder=3)
        axes.annotate(f"{method} (control)", (table.loc[method, "x"], table.loc[method, "y"]), xytext=(4, -10),
                      textcoords="offset points", fontsize=8, color="0.3")
    for method in table.index[~finite_x & finite_y]:
        axes.axhline(table.loc[method, "y"], color="0.5", linestyle="--", linewidth=1)
        axes.annotate(f"{method} ({x_metric} not scored)", (0.01, table.loc[method, "y"]),
                      xycoords=("axes fraction", "data"), xytext=(0, 3), textcoords="offset points", fontsize=8,
                      color="0.3")
    skipped = table.index[~finite_y].tolist()
    if skipped:
        logger.warning("no finite %s for %s: left out of %s", y_metric, skipped, path)
    axes.set_xlabel(axis_label(x_metric))
    axes.set_ylabel(axis_label(y_metric))
    axes.set_title("3D consistency against fidelity (mean over scenes, 95% interval)", fontsize=10)
    axes.grid(True, alpha=0.3)
    return save_figure(figure, path, style)


def plot_distribution(tidy: pd.DataFrame, metric: str, path: Path, method_order: Sequence[str] | None = None,
                      style: FigureStyle | None = None) -> Path:
    """Per-scene distribution of `metric`: one box per method with every scene drawn as a point on it.

    Non-finite values (+inf PSNR of identical images, missing scores) cannot be drawn: they are left out, and a
    method with none left is marked `n/a` on the axis.
    """
    style = style or FigureStyle()
    tidy = check_tidy(tidy)
    rows = tidy[tidy["metric"] == metric]
    if rows.empty:
        raise InvalidInputError("metric", f"{metric!r} has no scores (metrics: {sorted(tidy['metric'].unique())})",
                                "plot a metric named in the scores table")
    methods = list(dict.fromkeys(rows["method"]))
    if method_order is not None:
        methods = [m for m in method_order if m in methods] + [m for m in methods if m not in method_order]
    figure = new_figure(style)
    axes = figure.add_subplot()
    # A fixed generator keeps the horizontal jitter, and so the PNG, the same from run to run.
    jitter = np.random.default_rng(0)
    for position, method in enumerate(methods):
        values = rows.loc[rows["method"] == method, "value"].to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        colour = "0.55" if is_control(method) else "tab:blue"
        if len(values) == 0:
            axes.annotate("n/a", (position, 0.5), xycoords=("data", "axes fraction"), ha="center", fontsize=8)
            continue
        axes.boxplot([values], positions=[position], widths=0.5, showfliers=False,
                     boxprops={"color": colour}, medianprops={"color": colour}, whiskerprops={"color": colour},
                     capprops={"color": colour})
        axes.scatter(position + jitter.uniform(-0.15, 0.15, len(values)), values, color="black", s=12, zorder=3)
    axes.set_xlim(-0.6, len(methods) - 0.4)
    axes.set_xticks(np.arange(len(methods)))
    axes.set_xticklabels([str(m) for m in methods], rotation=30, ha="right", fontsize=8)
    axes.set_ylabel(axis_label(metric))
    axes.set_title(f"{metric} per scene (box: quartiles; grey: controls)", fontsize=10)
    axes.grid(True, axis="y", alpha=0.3)
    return save_figure(figure, path, style)


def sweep_methods(methods: Sequence[str],
                  weights: dict[str, float] | None = None) -> dict[str, list[tuple[float, str]]]:
    """Generators grouped by generator/sampler (and run) with their guidance weights, sorted by w; empty when no
    method names a weight with `@w` (the run is no sweep). A method without `@w` joins its group at the weight it
    was generated with, taken from `weights` (the pipeline's default guidance weight) when given there."""
    if not any(parse_method(m).weight is not None for m in methods):
        return {}
    groups: dict[str, list[tuple[float, str]]] = {}
    for method in methods:
        label = parse_method(method)
        weight = label.weight if label.weight is not None else (weights or {}).get(method)
        if weight is not None and not is_control(method):
            key = label.base + (f" [{label.run}]" if label.run else "")
            groups.setdefault(key, []).append((float(weight), method))
    return {key: sorted(members) for key, members in groups.items()}


def plot_guidance_sweep(long: pd.DataFrame, metric: str, path: Path, weights: dict[str, float] | None = None,
                        style: FigureStyle | None = None) -> Path | None:
    """Score against classifier-free guidance weight w, one line per generator/sampler, with the controls as
    horizontal reference lines. Returns None (and draws nothing) when no method carries `@w`; `weights` places
    methods without `@w` (see sweep_methods)."""
    rows = _metric_rows(long, metric)
    groups = sweep_methods(list(rows.index), weights)
    if not groups:
        return None
    style = style or FigureStyle()
    figure = new_figure(style)
    axes = figure.add_subplot()
    for key, members in groups.items():
        weights = [w for w, _ in members]
        methods = [m for _, m in members]
        axes.errorbar(weights, rows.loc[methods, "mean"].astype(float), yerr=_error(rows.loc[methods]),
                      marker="o", capsize=3, label=key)
    for method in rows.index:
        value = float(rows.loc[method, "mean"])
        if is_control(method) and np.isfinite(value):
            axes.axhline(value, color="0.5", linestyle="--", linewidth=1)
            axes.annotate(str(method), (0.01, value), xycoords=("axes fraction", "data"), xytext=(0, 3),
                          textcoords="offset points", fontsize=8, color="0.3")
    axes.set_xlabel("classifier-free guidance weight w")
    axes.set_ylabel(axis_label(metric))
    axes.set_title(f"{metric} against guidance weight (mean over scenes, 95% interval)", fontsize=10)
    axes.legend(fontsize=8)
    axes.grid(True, alpha=0.3)
    return save_figure(figure, path, style)
