"""Summary tables: per-method means over scenes, written as CSV and as Markdown with the best cells in bold.

The input is the tidy per-scene table the pipeline collects: one row per (method, scene, metric) with columns
`method, scene, metric, value`. A metric name is `<stage>_<score>` (`consistency_psnr`, `fidelity_ssim`); the
part after the first `_` is a key of `reports.metrics.HIGHER_IS_BETTER`, which says which direction is better.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import pandas as pd

from reports.metrics import HIGHER_IS_BETTER
from scenes.errors import InvalidInputError

logger = logging.getLogger(__name__)

#: Columns of the tidy per-scene table.
TIDY_COLUMNS = ("method", "scene", "metric", "value")
#: Rows that bound the scores rather than compete: the real views (upper bound of the consistency score) and
#: per-view noise (its lower bound). They would win or lose every column, so they are not candidates for bold.
REFERENCE_METHODS = ("ground truth", "noise")
#: Decimals shown per score; scores not listed get DEFAULT_DECIMALS.
DECIMALS = {"psnr": 2, "ssim": 3}
#: Decimals for scores without an entry in DECIMALS.
DEFAULT_DECIMALS = 3
#: How a missing mean (no value, or a NaN among the scenes) is shown.
MISSING = "n/a"


def score_name(metric: str) -> str:
    """`consistency_psnr` -> `psnr`: the score a metric column holds (the whole name when it has no `_`)."""
    return metric.split("_", 1)[1] if "_" in metric else metric


def is_reference(method: str, reference_methods: Sequence[str] = REFERENCE_METHODS) -> bool:
    """Whether `method` names one of the bound rows, ignoring case and `_` versus space."""
    def key(name: str) -> str:
        return " ".join(str(name).replace("_", " ").lower().split())
    return key(method) in {key(name) for name in reference_methods}


def check_tidy(tidy: pd.DataFrame) -> None:
    """Raise InvalidInputError unless `tidy` has the tidy columns, numeric values and one row per key."""
    missing = [c for c in TIDY_COLUMNS if c not in tidy.columns]
    if missing:
        raise InvalidInputError("scores table", f"lacks the columns {missing} (has {list(tidy.columns)})",
                                f"give one row per method, scene and metric with columns {list(TIDY_COLUMNS)}")
    if not pd.api.types.is_numeric_dtype(tidy["value"]):
        raise InvalidInputError("scores table", f"column `value` has dtype {tidy['value'].dtype}",
                                "store the scores as numbers")
    duplicated = tidy.duplicated(subset=["method", "scene", "metric"])
    if duplicated.any():
        first = tidy.loc[duplicated, ["method", "scene", "metric"]].iloc[0].tolist()
        raise InvalidInputError("scores table", f"{int(duplicated.sum())} repeated (method, scene, metric) rows, "
                                                f"first {first}", "keep one value per method, scene and metric")


def summary_table(tidy: pd.DataFrame, method_order: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean of each metric over scenes, one row per method (index `method`), plus the column `scenes`.

    Metric columns keep the order in which they first appear in `tidy`. Rows follow `method_order` (methods it
    does not name come after, in order of appearance). A NaN among a method's scenes makes its mean NaN, so a
    failed scene is shown as missing rather than silently left out of the average.
    """
    check_tidy(tidy)
    metrics = list(dict.fromkeys(tidy["metric"]))
    methods = list(dict.fromkeys(tidy["method"]))
    if method_order is not None:
        absent = [m for m in method_order if m not in methods]
        if absent:
            logger.info("method_order names methods without scores, left out of the summary: %s", absent)
        methods = [m for m in method_order if m in methods] + [m for m in methods if m not in method_order]
    grouped = tidy.groupby(["method", "metric"], sort=False)["value"]
    means = grouped.apply(lambda values: values.mean(skipna=False)).unstack("metric")
    summary = means.reindex(index=methods, columns=metrics).astype(float)
    summary["scenes"] = tidy.groupby("method", sort=False)["scene"].nunique().reindex(methods).astype(int)
    summary.index.name = "method"
    summary.columns.name = None
    return summary


def metric_columns(summary: pd.DataFrame) -> list[str]:
    """The score columns of a summary (every column but `scenes`)."""
    return [c for c in summary.columns if c != "scenes"]


def best_cells(summary: pd.DataFrame, higher_is_better: dict[str, bool] | None = None,
               reference_methods: Sequence[str] = REFERENCE_METHODS) -> pd.DataFrame:
    """Boolean frame shaped like `summary`: True where a cell holds the best value of its column.

    The best is the maximum or minimum by the score's direction, among the methods not in `reference_methods`
    (among all methods when every row is a reference); ties are all marked; NaN is never best.
    """
    directions = HIGHER_IS_BETTER if higher_is_better is None else higher_is_better
    unknown = [c for c in metric_columns(summary) if score_name(c) not in directions]
    if unknown:
        raise InvalidInputError("summary columns", f"{unknown} end in no score with a known direction "
                                                   f"(known: {sorted(directions)})",
                                "name metrics `<stage>_<score>` with a score registered in reports.metrics.METRICS, "
                                "or pass higher_is_better")
    candidates = [m for m in summary.index if not is_reference(m, reference_methods)] or list(summary.index)
    best = pd.DataFrame(False, index=summary.index, columns=summary.columns)
    for column in metric_columns(summary):
        values = summary.loc[candidates, column].astype(float)
        if values.isna().all():
            continue
        target = values.max() if directions[score_name(column)] else values.min()
        best.loc[candidates, column] = (values == target).to_numpy()
    return best


def format_value(value: float, column: str) -> str:
    """A summary cell as text: the score's decimals, `n/a` for NaN, counts as integers."""
    if column == "scenes":
        return str(int(value))
    if pd.isna(value):
        return MISSING
    return f"{float(value):.{DECIMALS.get(score_name(column), DEFAULT_DECIMALS)}f}"


def formatted_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """Every cell of `summary` as display text (same index and columns)."""
    return pd.DataFrame({c: [format_value(v, c) for v in summary[c]] for c in summary.columns},
                        index=summary.index)


def summary_markdown(summary: pd.DataFrame, higher_is_better: dict[str, bool] | None = None,
                     reference_methods: Sequence[str] = REFERENCE_METHODS) -> str:
    """The summary as a Markdown pipe table, best cell of each score column in **bold**."""
    best = best_cells(summary, higher_is_better, reference_methods)
    text = formatted_summary(summary)
    text = text.where(~best, "**" + text + "**")
    # Cells are already formatted: stop tabulate from re-parsing "30.10" into 30.1.
    align = ("left",) + ("right",) * len(text.columns)
    return text.to_markdown(disable_numparse=True, colalign=align)


def write_tables(tidy: pd.DataFrame, summary: pd.DataFrame, out_dir: Path,
                 higher_is_better: dict[str, bool] | None = None,
                 reference_methods: Sequence[str] = REFERENCE_METHODS) -> dict[str, Path]:
    """Write `scores.csv` (the tidy table), `summary.csv` and `summary.md` into `out_dir`.

    Returns the paths by file name. Everything is checked before the first file is written.
    """
    check_tidy(tidy)
    markdown = summary_markdown(summary, higher_is_better, reference_methods)
    legend = ("Mean over scenes. Bold: best value of each column among the evaluated methods; "
              f"{' and '.join(reference_methods)} are bounds, not candidates. {MISSING}: no value.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in ("scores.csv", "summary.csv", "summary.md")}
    tidy.to_csv(paths["scores.csv"], index=False)
    summary.to_csv(paths["summary.csv"])
    paths["summary.md"].write_text(markdown + "\n\n" + legend + "\n", encoding="utf-8")
    logger.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths
