"""The degeneracy check: which scores each degenerate control games, which expose it, and which methods a
degenerate control beats or ties.

A degenerate control (`generators.controls`) is an output a bad generator could produce: blurred truth, blank views,
the input view pasted everywhere, another object's real views, one view repeated. 3DiM's NeRF score rates blurred
and blank views above the truth (they are easy to fit), so a method's score is evidence only where every
degenerate control does worse. The check writes, per run:

- for each degenerate control, the scores on which it does at least as well as the ground truth (it *games* them)
  and those on which it does worse (they *expose* it); a control that no score exposes is a warning;
- that the ground truth beats every degenerate control on the scores that measure 3D consistency and fidelity
  together (`JOINT_SCORES`: the distilled NeRF's SSIM and LPIPS against the real views); `distilled_psnr` is
  reported with its known weakness (it rewards slight blur, like every mean-squared-error score);
- for each method, every score (but the diagnostic sharpness) on which a degenerate control beats or ties it:
  that cell is flagged in the tables (`FLAG_MARK`) and in `controls.txt`, since the score alone cannot show the
  method is better than it;
- the sharpness-matched reference: the consistency of the ground truth blurred to the method's own sharpness
  (interpolated between the blurred-truth controls), and the method's margin over it.

The ground truth has no fidelity rows (its fidelity to itself is perfect by definition); the check gives it the
ideal values (`IDEAL_FIDELITY`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from reports.tables import CONTROLS, FLAG_MARK, PSNR_CAP_DB, higher_is_better, parse_method, score_name, wide
from scenes.errors import InvalidInputError

#: The degenerate controls of `generators.controls` (reports does not import generators; a test keeps them equal).
DEGENERATE = ("blur_0.5", "blur_1", "blur_2", "blank", "input_copied", "repeated_view", "other_scene")
#: The blurred-truth controls and their Gaussian sigma in pixels: the curve of the sharpness-matched reference.
BLURRED = {"blur_0.5": 0.5, "blur_1": 1.0, "blur_2": 2.0}
GROUND_TRUTH = "ground_truth"
#: Scores that claim to measure 3D consistency and fidelity together: the NeRF distilled from the views, against
#: the real views. The ground truth must beat every degenerate control on these.
JOINT_SCORES = ("distilled_ssim", "distilled_lpips")
#: Scores that expose degenerate controls but rank nothing: a real view repeated is as sharp as the truth, yet no
#: better a model; a method is not flagged on these.
DIAGNOSTIC_SCORES = ("fidelity_sharpness",)
#: The ground truth's fidelity to itself, by score (it has no fidelity rows).
IDEAL_FIDELITY = {"psnr": PSNR_CAP_DB, "ssim": 1.0, "lpips": 0.0, "sharpness": 1.0, "fid": 0.0, "kid": 0.0}
#: Consistency scores given a sharpness-matched reference.
MATCHED_SCORES = ("consistency_psnr", "consistency_ssim")


@dataclass
class DegeneracyReport:
    """What the check found: sentences for `controls.txt`, flagged cells and the tables behind them."""

    lines: list[str] = field(default_factory=list)
    #: (row label, metric) of every cell that a degenerate control beats or ties.
    flagged: set[tuple[str, str]] = field(default_factory=set)
    #: One row per flagged cell: method, metric, value, control, control_value.
    flags: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: One row per method and consistency score: sharpness, the matched reference and the margin over it.
    matched: pd.DataFrame = field(default_factory=pd.DataFrame)


def _score_columns(means: pd.DataFrame) -> list[str]:
    columns = []
    for column in means.columns:
        try:
            higher_is_better(column)
        except InvalidInputError:  # a column without a direction is no score to compare
            continue
        columns.append(column)
    return columns


def _value(means: pd.DataFrame, row: str, metric: str) -> float:
    value = float(means.loc[row, metric]) if metric in means.columns else math.nan
    if math.isnan(value) and parse_method(row).base == GROUND_TRUTH and metric.startswith("fidelity_"):
        return IDEAL_FIDELITY.get(score_name(metric).split("_")[0], math.nan)
    return value


def _at_least_as_good(a: float, b: float, metric: str) -> bool:
    """a is at least as good as b on `metric` (ties count: a tie does not separate them)."""
    return a >= b if higher_is_better(metric) else a <= b


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def sharpness_matched_reference(points: list[tuple[float, float]], sharpness: float) -> tuple[float, str]:
    """(reference score, how it was found) at `sharpness` on the curve of (sharpness, score) points of the
    ground truth and its blurred copies: linear interpolation in sharpness; outside the curve, the nearest end,
    said so (the reference is then a bound, not a match)."""
    curve = sorted(p for p in points if np.isfinite(p[0]) and np.isfinite(p[1]))
    if len(curve) < 2 or not np.isfinite(sharpness):
        return math.nan, "no curve"
    xs, ys = np.array([p[0] for p in curve]), np.array([p[1] for p in curve])
    if sharpness < xs[0]:
        return float(ys[0]), f"blurrier than every blurred-truth control: reference of the blurriest ({xs[0]:.2f})"
    if sharpness > xs[-1]:
        return float(ys[-1]), f"sharper than the truth's curve: reference of the sharpest ({xs[-1]:.2f})"
    return float(np.interp(sharpness, xs, ys)), "interpolated"


def _check_run(means: pd.DataFrame, rows: dict[str, str], where: str, report: DegeneracyReport,
               flag_rows: list, matched_rows: list) -> None:
    metrics = _score_columns(means)
    degenerate = [d for d in DEGENERATE if d in rows]
    truth = rows.get(GROUND_TRUTH)
    if not degenerate:
        report.lines.append(f"Degeneracy not checked{where}: the run has none of the degenerate controls "
                            f"({', '.join(DEGENERATE)}).")
        return
    if truth is not None:
        for control in degenerate:
            games, exposes = [], []
            for metric in metrics:
                mine, real = _value(means, rows[control], metric), _value(means, truth, metric)
                if math.isnan(mine) or math.isnan(real):
                    continue
                (games if _at_least_as_good(mine, real, metric) else exposes).append(
                    f"{metric} ({_fmt(mine)} vs {_fmt(real)})")
            if exposes:
                gamed = (f"; it games {', '.join(games)}: those scores alone cannot tell it from real views"
                         if games else "")
                report.lines.append(f"{control}{where}: exposed by {', '.join(exposes)}{gamed}.")
            else:
                report.lines.append(f"WARNING {control}{where}: no score exposes it (it does at least as well as "
                                    f"ground_truth on {', '.join(games) or 'nothing scored'}).")
        for metric in (*JOINT_SCORES, "distilled_psnr"):
            if metric not in metrics:
                continue
            real = _value(means, truth, metric)
            if math.isnan(real):
                report.lines.append(f"{metric}{where}: not checked, ground_truth has no value.")
                continue
            winners = [(d, _value(means, rows[d], metric)) for d in degenerate]
            winners = [(d, v) for d, v in winners if not math.isnan(v) and _at_least_as_good(v, real, metric)]
            if not winners:
                report.lines.append(f"{metric}{where}: ground_truth ({_fmt(real)}) beats every degenerate control.")
            elif metric in JOINT_SCORES:
                report.lines.append(f"WARNING {metric}{where}: ground_truth ({_fmt(real)}) is beaten or tied by "
                                    + ", ".join(f"{d} ({_fmt(v)})" for d, v in winners) + ".")
            else:
                report.lines.append(f"{metric}{where}: " + ", ".join(f"{d} ({_fmt(v)})" for d, v in winners)
                                    + f" at or above ground_truth ({_fmt(real)}): like any mean-squared-error "
                                    "score it rewards slight blur; read distilled_ssim beside it.")
    methods = [label for base, label in rows.items() if base not in CONTROLS]
    for method in methods:
        beaten = []
        for metric in metrics:
            if metric in DIAGNOSTIC_SCORES:
                continue
            mine = _value(means, method, metric)
            if math.isnan(mine):
                continue
            for control in degenerate:
                theirs = _value(means, rows[control], metric)
                if not math.isnan(theirs) and _at_least_as_good(theirs, mine, metric):
                    flag_rows.append((method, metric, mine, control, theirs))
                    report.flagged.add((method, metric))
                    beaten.append((metric, control, theirs))
        if beaten:
            by_metric: dict[str, list[tuple[str, float]]] = {}
            for metric, control, theirs in beaten:
                by_metric.setdefault(metric, []).append((control, theirs))

            def strongest(metric: str, controls: list[tuple[str, float]]) -> str:
                # The control that beats the method by most, and how many others do too: the line stays short.
                controls = sorted(controls, key=lambda c: c[1], reverse=higher_is_better(metric))
                more = f" and {len(controls) - 1} more" if len(controls) > 1 else ""
                return f"{metric} {_fmt(_value(means, method, metric))} (by {controls[0][0]} {_fmt(controls[0][1])}" \
                       f"{more})"

            report.lines.append(f"FLAG {method}{where}: beaten or tied by a degenerate control on " + ", ".join(
                strongest(metric, controls) for metric, controls in by_metric.items()) + ": on these scores it is "
                "not shown to be better than a degenerate output (degeneracy_flags.csv lists every pair).")
        else:
            report.lines.append(f"{method}{where}: beats every degenerate control on every score.")
    if truth is None or "fidelity_sharpness" not in means.columns:
        return
    for metric in MATCHED_SCORES:
        if metric not in means.columns:
            continue
        blurred = [rows[b] for b in BLURRED if b in rows]
        points = [(1.0, _value(means, truth, metric))] + [
            (_value(means, row, "fidelity_sharpness"), _value(means, row, metric)) for row in blurred]
        for method in methods:
            sharp = _value(means, method, "fidelity_sharpness")
            reference, how = sharpness_matched_reference(points, sharp)
            score = _value(means, method, metric)
            matched_rows.append((method, metric, score, sharp, reference, score - reference, how))


def degeneracy_check(long: pd.DataFrame) -> DegeneracyReport:
    """The check on the long summary of one or several merged runs (`reports.tables.summarize`)."""
    means = wide(long)
    report = DegeneracyReport()
    flag_rows, matched_rows = [], []
    runs = list(dict.fromkeys(parse_method(m).run for m in means.index))
    if len(runs) > 1:  # merged runs: controls carry their run's label (reports.assemble.row_labels)
        runs = [run for run in runs if run]
    for run in runs:
        # Merged runs: a method of one run only has no run label; it is checked against every run's controls.
        rows = {parse_method(m).base: m for m in means.index if parse_method(m).run == run or
                (len(runs) > 1 and not parse_method(m).run)}
        _check_run(means, rows, f" [{run}]" if run else "", report, flag_rows, matched_rows)
    report.flags = pd.DataFrame(flag_rows, columns=["method", "metric", "value", "control", "control_value"])
    report.matched = pd.DataFrame(matched_rows, columns=["method", "metric", "value", "sharpness", "reference",
                                                         "margin", "reference_from"])
    for row in report.matched.itertuples():
        if np.isfinite(row.margin):
            report.lines.append(f"{row.method}: {row.metric} {_fmt(row.value)} against {_fmt(row.reference)} of the "
                                f"ground truth blurred to its sharpness {row.sharpness:.2f} ({row.reference_from}): "
                                f"margin {row.margin:+.3g}.")
    return report
