"""TSED against its threshold: the share of consistent pairs as the median-error threshold varies.

TSED (`reports.tsed`) counts a pair of neighbouring views as consistent when it has at least `min_matches` SIFT
matches and their median symmetric epipolar distance is below 2 px (Yu et al. 2023). One threshold hides how far
from it the pairs lie: a method at 0.5 px and one at 1.9 px score alike, and one at 2.1 px scores 0. The curve
recomputes the verdict at each threshold from the per-pair match counts and medians the pipeline already caches
(ScoreScene's `tsed_pairs.csv`: columns `matches`, `median_sed`; ScorePanorama's `per_pair.csv` for rotation-only
TSED: `median_transfer_error`), so it needs no images and no SIFT. At the threshold of 2 px with the same
`min_matches` it equals the TSED the pipeline reported.

What TSED cannot see, at any threshold: it measures only the distance of a match to its epipolar line, so any
error *along* the line goes unnoticed. On an orbit around an object (cameras at one height looking at its centre)
the epipolar lines of neighbouring views run nearly horizontal, so a view shifted sideways keeps its pairs
consistent, and a view mirror-flipped left to right does too when the orbit is at the cameras' own height (at the
test orbit's 25 degrees of elevation the lines tilt enough to catch a flip). A generator whose objects slide or
turn the wrong way round can therefore score like the truth; read TSED beside a score that compares with the
real views (fidelity, or the NeRF fitted on the views against the real held-out views).

Only pandas and numpy are imported here (no torch, no OpenCV), so `nvsc report` can draw the curve from cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from scenes.errors import InvalidInputError

#: Median-error thresholds of the curve, in the views' pixels (the paper's 2 px among them).
DEFAULT_THRESHOLDS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
#: `TSEDConfig().min_matches` of the default (`colmap`) matcher, written out so this module needs no torch; pass
#: 10 for files that nvsc's earlier `opencv` matcher wrote.
DEFAULT_MIN_MATCHES = 15
#: Columns of the curve after the grouping columns.
CURVE_COLUMNS = ["threshold_px", "consistent", "pairs", "tsed"]


def tsed_threshold_curve(pairs: pd.DataFrame, thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                         min_matches: int = DEFAULT_MIN_MATCHES, by: Sequence[str] = ("method",),
                         error_column: str = "median_sed", source: str = "tsed_pairs.csv") -> pd.DataFrame:
    """Tidy frame of TSED at each threshold: one row per group of `by` (default: per method, pairs pooled over
    scenes as `ThresholdedSymmetricEpipolarDistance` pools them; pass `("method", "scene")` for per scene) and
    threshold, columns `*by, threshold_px, consistent, pairs, tsed` (tsed = consistent / pairs).

    pairs: one row per pair of views with `matches` and `error_column` (the median error in pixels, NaN for a pair
    without matches), e.g. ScoreScene's `tsed_pairs.csv` files concatenated. A pair is consistent at threshold t
    when it has at least `min_matches` matches and its median is below t, TSED's own rule. source: named in
    errors."""
    absent = [c for c in list(by) + ["matches", error_column] if c not in pairs.columns]
    if absent:
        raise InvalidInputError(source, f"lacks the columns {absent}", "pass TSED's per-pair table (tsed_pairs.csv)")
    thresholds = np.asarray(sorted(set(float(t) for t in thresholds)))
    if len(thresholds) == 0 or not np.all(thresholds > 0):
        raise InvalidInputError("thresholds", f"{list(thresholds)}", "pass positive thresholds in pixels")
    matches = pd.to_numeric(pairs["matches"], errors="coerce").fillna(0).to_numpy(float)
    errors = pd.to_numeric(pairs[error_column], errors="coerce").to_numpy(float)
    enough = matches >= min_matches
    # [P, T]: NaN medians compare False, so pairs without matches are never consistent.
    consistent = enough[:, None] & (errors[:, None] < thresholds[None, :])
    rows = []
    keys = list(by)
    groups = pairs.groupby(keys, sort=False).indices if keys else {(): np.arange(len(pairs))}
    for key, index in groups.items():
        key = key if isinstance(key, tuple) else (key,)
        counts = consistent[index].sum(axis=0)
        for threshold, count in zip(thresholds, counts):
            rows.append((*key, threshold, int(count), len(index), count / len(index)))
    return pd.DataFrame(rows, columns=keys + CURVE_COLUMNS)


def plot_tsed_curve(curve: pd.DataFrame, path: Path, marked_threshold: float = 2.0, style=None) -> Path:
    """One line per method of `tsed_threshold_curve`'s frame (grouped by method): TSED against the threshold on
    a log axis, the paper's 2 px marked, controls dashed; written as a PNG at `path`."""
    from reports.figures import FigureStyle, new_figure, save_figure
    from reports.tables import is_control

    absent = [c for c in ["method"] + CURVE_COLUMNS if c not in curve.columns]
    if absent or curve.empty:
        raise InvalidInputError("TSED curve", f"lacks the columns {absent}" if absent else "has no rows",
                                "pass the frame of tsed_threshold_curve(pairs) (grouped by method)")
    style = style or FigureStyle()
    figure = new_figure(style)
    axes = figure.add_subplot()
    for method, group in curve.groupby("method", sort=False):
        group = group.sort_values("threshold_px")
        axes.plot(group["threshold_px"], group["tsed"], marker="o", label=str(method),
                  linestyle="--" if is_control(str(method)) else "-")
    axes.axvline(marked_threshold, color="0.5", linewidth=0.8, linestyle=":")
    axes.set_xscale("log", base=2)
    axes.set_ylim(-0.02, 1.02)
    axes.set_xlabel("median symmetric epipolar distance threshold (px)")
    axes.set_ylabel("TSED: fraction of consistent pairs, higher is better")
    axes.set_title(f"TSED against its threshold (the paper's {marked_threshold:g} px dotted)")
    axes.legend(fontsize="small")
    return save_figure(figure, path, style)
