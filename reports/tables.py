"""Score tables: the tidy per-scene scores, and summaries over scenes (mean and 95% bootstrap interval) as CSV,
Markdown and LaTeX (booktabs), the best cell of each column in bold.

Inputs are the CSVs the pipeline caches:

- per scene: one row per (method, scene, metric), columns `method, scene, metric, value` and optionally `missing`
  (empty, or why the score is absent, e.g. `weights missing: nvsc weights fetch lpips-alex`; the value is NaN then);
- per method (set-level scores such as FID/KID over all scenes' views): columns `method, metric, value[, missing]`.

A metric is named `<stage>_<score>` (`consistency_psnr`, `fidelity_fid`) or just `<score>` (`tsed`); the score
decides the direction. This module stays free of torch so that `nvsc report` starts in a fraction of a second: it
keeps its own table of directions, which a test holds equal to `reports.metrics.HIGHER_IS_BETTER`.
"""

from __future__ import annotations

import logging
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from scenes.errors import InvalidInputError

logger = logging.getLogger(__name__)

#: Columns of the tidy per-scene table.
TIDY_COLUMNS = ("method", "scene", "metric", "value")
#: Columns of a set-level table (one value per method, over all scenes).
SET_COLUMNS = ("method", "metric", "value")
#: The built-in controls: they pin the range of each score (ground truth above, the others below) and are
#: never candidates for the best cell, which they would win or lose by construction.
CONTROLS = ("ground_truth", "noise", "perturbed", "shuffled_cameras", "blur_0.5", "blur_1", "blur_2", "blank",
            "input_copied", "repeated_view", "other_scene")
#: Direction of every score nvsc reports (True: higher is better). `reports.metrics.HIGHER_IS_BETTER` is the
#: authority; this copy lets tables be built without importing torch, and a test keeps the two equal.
DIRECTIONS: dict[str, bool] = {"psnr": True, "ssim": True, "lpips": False, "sharpness": True, "iou": True,
                               "depth_l1": False, "chamfer": False, "fscore": True, "fid": False, "kid": False,
                               "tsed": True}
#: Decimals shown per score; scores not listed get DEFAULT_DECIMALS.
DECIMALS = {"psnr": 2, "ssim": 3, "lpips": 3, "sharpness": 2, "fid": 2, "kid": 4, "tsed": 3}
#: Decimals for scores without an entry in DECIMALS.
DEFAULT_DECIMALS = 3
#: How a missing cell is shown; a recorded reason follows in brackets.
MISSING = "n/a"
#: Marks a cell that a degenerate control beats or ties (`reports.degeneracy`).
FLAG_MARK = "\u2020"
#: A cell whose score does not apply to the method (fidelity of the ground truth to itself).
NOT_SCORED = "-"
#: Every PSNR nvsc reports is capped here (`reports.metrics.psnr`). Above it two views differ by less than a
#: fortieth of a grey level on average, invisible; uncapped, identical views give +inf and one blank scene (a NeRF
#: reproduces white views exactly: 151 dB measured) outweighs every other scene of a mean.
PSNR_CAP_DB = 40.0
#: Fewest images per set for FID to be compared across sets: below about 2000 its bias (it falls as the set grows)
#: is as large as the differences between models (Chong & Forsyth 2020); KID is unbiased but its spread is large.
FID_MIN_IMAGES = 2000
#: Bootstrap defaults: resamples and seed (the interval is reproducible from run to run).
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
#: `generator/sampler@w [run]`: guidance weight after `@`, run label in brackets (only when runs are merged).
_METHOD = re.compile(r"^(?P<base>.*?)(?:@(?P<weight>[-+0-9.eE]+))?(?: \[(?P<run>[^\]]*)\])?$")


# ------------------------------------------------------------------------------------------------ names
@dataclass(frozen=True)
class MethodLabel:
    """A row label taken apart: `xunet/stochastic@3 [run-a]` -> base `xunet/stochastic`, weight 3.0, run `run-a`."""

    #: The generator/sampler or control, without guidance weight or run.
    base: str
    #: Classifier-free guidance weight given with `@w`; None when the label has none.
    weight: float | None
    #: Label of the run the row comes from when several runs are merged; "" otherwise.
    run: str


def parse_method(label: str) -> MethodLabel:
    """Split a row label into base method, guidance weight and run label (see MethodLabel)."""
    match = _METHOD.match(str(label))
    weight = match.group("weight")
    try:
        value = float(weight) if weight is not None else None
    except ValueError:  # `@abc` is not a weight: keep the whole text as the base
        return MethodLabel(str(label), None, match.group("run") or "")
    return MethodLabel(match.group("base"), value, match.group("run") or "")


def _normalised(name: str) -> str:
    return "_".join(str(name).replace(" ", "_").lower().split())


def is_control(label: str, controls: Sequence[str] = CONTROLS) -> bool:
    """Whether a row label names a control (ignoring case, `_` versus space, a guidance weight and a run label)."""
    return _normalised(parse_method(label).base) in {_normalised(c) for c in controls}


def score_name(metric: str) -> str:
    """`consistency_psnr` -> `psnr`: the score a metric column holds (the whole name when it has no `_`)."""
    return metric.split("_", 1)[1] if "_" in metric else metric


def registered_directions() -> dict[str, bool]:
    """DIRECTIONS, updated with `reports.metrics.HIGHER_IS_BETTER` when that module is already loaded.

    It is not imported here: it loads torch, which `nvsc report` must not wait for."""
    metrics = sys.modules.get("reports.metrics")
    return {**DIRECTIONS, **dict(getattr(metrics, "HIGHER_IS_BETTER", {}))}


def higher_is_better(metric: str, directions: dict[str, bool] | None = None) -> bool:
    """Direction of a metric column: by its score name, then by the score's first word (`lpips_vgg` -> `lpips`)."""
    directions = registered_directions() if directions is None else directions
    for key in (metric, score_name(metric), score_name(metric).split("_")[0]):
        if key in directions:
            return bool(directions[key])
    raise InvalidInputError(f"metric {metric!r}", f"ends in no score with a known direction (known: "
                                                  f"{sorted(directions)})",
                            "name metrics `<stage>_<score>` with a score registered in reports.metrics, "
                            "or pass higher_is_better")


# ------------------------------------------------------------------------------------------------ tidy tables
def _check_columns(table: pd.DataFrame, columns: Sequence[str], what: str, key: list[str]) -> pd.DataFrame:
    absent = [c for c in columns if c not in table.columns]
    if absent:
        raise InvalidInputError(what, f"lacks the columns {absent} (has {list(table.columns)})",
                                f"give one row per {', '.join(key)} with columns {list(columns)} (and `missing`)")
    table = table.copy()
    table["value"] = pd.to_numeric(table["value"], errors="coerce") if table["value"].dtype == object \
        else table["value"]
    if not pd.api.types.is_numeric_dtype(table["value"]):
        raise InvalidInputError(what, f"column `value` has dtype {table['value'].dtype}", "store the scores as numbers")
    table["missing"] = table["missing"].fillna("").astype(str) if "missing" in table.columns else ""
    duplicated = table.duplicated(subset=key)
    if duplicated.any():
        first = table.loc[duplicated, key].iloc[0].tolist()
        raise InvalidInputError(what, f"{int(duplicated.sum())} repeated ({', '.join(key)}) rows, first {first}",
                                f"keep one value per {', '.join(key)}")
    return table


def check_tidy(tidy: pd.DataFrame) -> pd.DataFrame:
    """The per-scene table with its columns checked and a `missing` column ("" where none was recorded)."""
    return _check_columns(tidy, TIDY_COLUMNS, "scores table", ["method", "scene", "metric"])


def check_set_scores(table: pd.DataFrame) -> pd.DataFrame:
    """The set-level table with its columns checked and a `missing` column."""
    return _check_columns(table, SET_COLUMNS, "set-level scores table", ["method", "metric"])


# ------------------------------------------------------------------------------------------------ summaries
def bootstrap_interval(values: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                       confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of values [n] (Efron & Tibshirani 1993, Sec. 13.3).

    Scenes are resampled with replacement `resamples` times from a generator seeded with `seed`, so every cell of
    a table draws the same scene indices (the intervals of two methods are paired) and a rerun gives the same
    numbers. One scene gives the point itself; non-finite values give (NaN, NaN).
    """
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0 or not np.isfinite(values).all():
        return math.nan, math.nan
    indices = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    means = values[indices].mean(axis=1)  # [resamples]
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def _reason(rows: pd.DataFrame) -> str:
    reasons = [r for r in dict.fromkeys(rows["missing"]) if r]
    if reasons:
        return "; ".join(reasons)
    if "scene" in rows.columns:
        absent = rows.loc[rows["value"].isna(), "scene"].astype(str).tolist()
        if absent:
            return f"no value for {', '.join(absent[:3])}" + (" ..." if len(absent) > 3 else "")
    return "no value"


def summarize(tidy: pd.DataFrame, set_scores: pd.DataFrame | None = None, method_order: Sequence[str] | None = None,
              resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
              confidence: float = 0.95) -> pd.DataFrame:
    """Long summary: one row per (method, metric) with `mean, ci_low, ci_high, scenes, missing`.

    Per-scene metrics: mean over scenes and its bootstrap interval. A NaN among a method's scenes makes the cell
    missing (a failed scene is not silently averaged out), with the recorded reason. Set-level metrics (one value
    per method) have no interval. Rows follow `method_order`, then order of appearance; metrics keep order of
    appearance, per-scene before set-level.
    """
    tidy = check_tidy(tidy)
    set_scores = check_set_scores(set_scores) if set_scores is not None and len(set_scores) else None
    rows = []
    for (method, metric), group in tidy.groupby(["method", "metric"], sort=False):
        values = group["value"].to_numpy(dtype=np.float64)
        complete = not np.isnan(values).any()
        low, high = bootstrap_interval(values, resamples, seed, confidence) if complete else (math.nan, math.nan)
        rows.append((method, metric, values.mean() if complete else math.nan, low, high, len(values),
                     "" if complete else _reason(group)))
    if set_scores is not None:
        for row in set_scores.itertuples():
            missing = "" if not math.isnan(row.value) else (row.missing or "no value")
            rows.append((row.method, row.metric, row.value, math.nan, math.nan, 0, missing))
    long = pd.DataFrame(rows, columns=["method", "metric", "mean", "ci_low", "ci_high", "scenes", "missing"])
    methods = list(dict.fromkeys(long["method"]))
    if method_order is not None:
        methods = [m for m in method_order if m in methods] + [m for m in methods if m not in method_order]
    metrics = list(dict.fromkeys(long["metric"]))
    long["method"] = pd.Categorical(long["method"], methods, ordered=True)
    long["metric"] = pd.Categorical(long["metric"], metrics, ordered=True)
    long = long.sort_values(["method", "metric"]).reset_index(drop=True)
    long["method"], long["metric"] = long["method"].astype(str), long["metric"].astype(str)
    return long


def wide(long: pd.DataFrame, field: str = "mean") -> pd.DataFrame:
    """One `field` of the long summary as a method x metric frame (index `method`), in the long summary's order."""
    methods, metrics = list(dict.fromkeys(long["method"])), list(dict.fromkeys(long["metric"]))
    frame = long.pivot(index="method", columns="metric", values=field).reindex(index=methods, columns=metrics)
    frame.index.name, frame.columns.name = "method", None
    return frame


def summary_table(tidy: pd.DataFrame, method_order: Sequence[str] | None = None,
                  set_scores: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean of each metric over scenes, one row per method (index `method`), plus the column `scenes`."""
    long = summarize(tidy, set_scores, method_order, resamples=1)
    summary = wide(long).astype(float)
    scenes = check_tidy(tidy).groupby("method", sort=False)["scene"].nunique()
    summary["scenes"] = scenes.reindex(summary.index).fillna(0).astype(int)
    return summary


def metric_columns(summary: pd.DataFrame) -> list[str]:
    """The score columns of a summary (every column but `scenes`)."""
    return [c for c in summary.columns if c != "scenes"]


def best_cells(summary: pd.DataFrame, directions: dict[str, bool] | None = None,
               controls: Sequence[str] = CONTROLS) -> pd.DataFrame:
    """Boolean frame shaped like `summary` (means): True where a cell holds the best value of its column.

    The best is the maximum or minimum by the score's direction among the methods that are not controls (among
    all rows when every row is a control); ties for the best are all marked, but a column where every candidate
    holds the same value has no best (bold on every row would single nothing out); NaN is never best.
    """
    columns = metric_columns(summary)
    signs = {c: higher_is_better(c, directions) for c in columns}  # raises before anything is marked
    candidates = [m for m in summary.index if not is_control(m, controls)] or list(summary.index)
    best = pd.DataFrame(False, index=summary.index, columns=summary.columns)
    for column in columns:
        values = summary.loc[candidates, column].astype(float)
        if values.isna().all() or (len(values.dropna()) > 1 and values.dropna().nunique() == 1):
            continue
        target = values.max() if signs[column] else values.min()
        best.loc[candidates, column] = (values == target).to_numpy()
    return best


# ------------------------------------------------------------------------------------------------ formatting
def format_value(value: float, column: str) -> str:
    """A number as text with the score's decimals, `inf` for infinities, `n/a` for NaN."""
    if column == "scenes":
        return str(int(value))
    if pd.isna(value):
        return MISSING
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{float(value):.{DECIMALS.get(score_name(column).split('_')[0], DEFAULT_DECIMALS)}f}"


@dataclass
class SummaryText:
    """A summary ready to print: display text per cell and where the best cells are (same index and columns)."""

    #: `mean [low, high]`, `mean` (no interval), or `n/a (reason)`; index `method`, one column per metric.
    cells: pd.DataFrame
    #: True where the cell is the best of its column among the candidates.
    best: pd.DataFrame


def summary_text(long: pd.DataFrame, directions: dict[str, bool] | None = None,
                 controls: Sequence[str] = CONTROLS, flagged: frozenset | set = frozenset()) -> SummaryText:
    """Display text of the long summary: mean with its bootstrap interval, or the reason a cell is missing; cells
    (method, metric) in `flagged` end in FLAG_MARK."""
    means = wide(long)
    best = best_cells(means, directions, controls)
    # A cell with no rows at all is a score that does not apply (fidelity of the ground truth to itself).
    cells = pd.DataFrame(NOT_SCORED, index=means.index, columns=means.columns, dtype=object)
    for row in long.itertuples():
        if row.missing or pd.isna(row.mean):
            text = f"{MISSING} ({row.missing})" if row.missing else MISSING
        else:
            text = format_value(row.mean, row.metric)
            # One scene has no spread to resample: its interval would only repeat the mean.
            if row.scenes >= 2 and np.isfinite(row.ci_low) and np.isfinite(row.ci_high):
                text += f" [{format_value(row.ci_low, row.metric)}, {format_value(row.ci_high, row.metric)}]"
            if (row.method, row.metric) in flagged:
                text += f" {FLAG_MARK}"
        cells.loc[row.method, row.metric] = text
    return SummaryText(cells, best)


def _arrow(metric: str, directions: dict[str, bool] | None) -> str:
    return "\u2191" if higher_is_better(metric, directions) else "\u2193"


def summary_markdown(text: SummaryText, directions: dict[str, bool] | None = None) -> str:
    """A Markdown pipe table, best cells in **bold**, each header with its direction (up: higher is better)."""
    cells = text.cells.where(~text.best, "**" + text.cells + "**")
    cells.columns = [f"{c} {_arrow(c, directions)}" for c in cells.columns]
    cells.index.name = "method"
    align = ("left",) + ("right",) * len(cells.columns)
    # Cells are already text: stop tabulate from re-parsing "30.10" into 30.1.
    return cells.to_markdown(disable_numparse=True, colalign=align)


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in plain text."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def summary_latex(text: SummaryText, directions: dict[str, bool] | None = None, caption: str = "") -> str:
    """A booktabs `tabular` (needs `\\usepackage{booktabs}`), best cells in `\\textbf`, controls after a rule."""
    columns = list(text.cells.columns)
    arrows = {c: r"$\uparrow$" if higher_is_better(c, directions) else r"$\downarrow$" for c in columns}
    header = " & ".join(["method"] + [f"{latex_escape(c)} {arrows[c]}" for c in columns])
    lines = [f"% {latex_escape(caption)}" if caption else "% nvsc summary", r"\begin{tabular}{l" + "r" * len(columns)
             + "}", r"\toprule", header + r" \\", r"\midrule"]
    methods = list(text.cells.index)
    ordered = [m for m in methods if is_control(m)] + [m for m in methods if not is_control(m)]
    for i, method in enumerate(ordered):
        if i and is_control(ordered[i - 1]) and not is_control(method):
            lines.append(r"\midrule")
        cells = [latex_escape(text.cells.loc[method, c]) for c in columns]
        cells = [rf"\textbf{{{cell}}}" if text.best.loc[method, c] else cell for cell, c in zip(cells, columns)]
        lines.append(" & ".join([latex_escape(method)] + cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


def legend(resamples: int = BOOTSTRAP_RESAMPLES, confidence: float = 0.95) -> str:
    """The sentence that says how to read the tables."""
    return (f"Mean over scenes [{confidence:.0%} percentile bootstrap interval over scenes, {resamples} resamples]; "
            "set-level scores (FID, KID) are one value over all scenes' views. \u2191: higher is better, "
            "\u2193: lower is better. Bold: best of each column among the evaluated methods; the controls "
            f"({', '.join(CONTROLS)}) pin the range and are not candidates, unless every row is a control. "
            "Methods that read more than the input view (the joint model reads the targets' ground-truth depth on "
            "objects) solve another task and are not candidates either. "
            f"{FLAG_MARK}: a degenerate control (blurred, blank, copied, repeated or another object's views) does at "
            "least as well on this score, so it alone does not show the method is better (controls.txt). "
            f"{MISSING} (reason): no value; "
            f"{NOT_SCORED}: does not apply.")


def write_tables(tidy: pd.DataFrame, long: pd.DataFrame, out_dir: Path, set_scores: pd.DataFrame | None = None,
                 directions: dict[str, bool] | None = None, resamples: int = BOOTSTRAP_RESAMPLES,
                 confidence: float = 0.95, flagged: frozenset | set = frozenset(),
                 controls: Sequence[str] = CONTROLS) -> dict[str, Path]:
    """Write the tidy scores (`scores.csv`, `scores.parquet`, `set_scores.csv` when given), the means
    (`summary.csv`, method x metric), the long summary with intervals (`summary_ci.csv`), `summary.md` and
    `summary.tex` into `out_dir`. Returns the paths by file name; everything is checked before the first write."""
    tidy = check_tidy(tidy)
    text = summary_text(long, directions, controls, flagged)
    markdown, latex = summary_markdown(text, directions), summary_latex(text, directions, legend(resamples))
    means = wide(long)
    means["scenes"] = long.groupby("method", sort=False)["scenes"].max().reindex(means.index).astype(int)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = ["scores.csv", "scores.parquet", "summary.csv", "summary_ci.csv", "summary.md", "summary.tex"]
    paths = {name: out_dir / name for name in names}
    tidy.to_csv(paths["scores.csv"], index=False)
    tidy.to_parquet(paths["scores.parquet"], index=False)
    if set_scores is not None and len(set_scores):
        paths["set_scores.csv"] = out_dir / "set_scores.csv"
        check_set_scores(set_scores).to_csv(paths["set_scores.csv"], index=False)
    means.to_csv(paths["summary.csv"])
    long.to_csv(paths["summary_ci.csv"], index=False)
    paths["summary.md"].write_text(markdown + "\n\n" + legend(resamples, confidence) + "\n", encoding="utf-8")
    paths["summary.tex"].write_text(latex, encoding="utf-8")
    logger.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths
