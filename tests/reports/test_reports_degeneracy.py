"""The degeneracy check: degenerate controls exposed or warned about, methods flagged where a degenerate control
beats or ties them, and the sharpness-matched reference."""

import numpy as np
import pandas as pd
import pytest

from generators.controls import BLUR_SIGMAS, degenerate_controls
from reports.degeneracy import BLURRED, DEGENERATE, degeneracy_check, sharpness_matched_reference
from reports.tables import CONTROLS, FLAG_MARK, summarize, summary_text

#: Means measured on the demo's test mug (32 px, 450 NeRF steps): consistency / distilled PSNR, distilled SSIM,
#: fidelity PSNR, fidelity sharpness.
MEASURED = {
    "ground_truth": (20.67, 20.67, 0.862, np.nan, np.nan),
    "blur_0.5": (24.05, 21.26, 0.851, 27.07, 0.80),
    "blur_1": (26.78, 18.43, 0.688, 19.07, 0.57),
    "blur_2": (27.86, 16.28, 0.491, 16.36, 0.45),
    "blank": (40.00, 9.48, 0.123, 9.69, 0.00),
    "input_copied": (12.44, 11.83, 0.237, 10.93, 0.90),
    "other_scene": (18.87, 9.70, 0.063, 9.52, 0.86),
    "repeated_view": (12.02, 11.44, 0.332, 12.37, 0.98),
}
METRICS = ("consistency_psnr", "distilled_psnr", "distilled_ssim", "fidelity_psnr", "fidelity_sharpness")


def long_summary(rows: dict[str, tuple]) -> pd.DataFrame:
    """Two scenes per method, the second 0.1 above the first, so every mean is the value + 0.05."""
    records = [(method, scene, metric, value + 0.1 * scene) for method, values in rows.items()
               for metric, value in zip(METRICS, values) if not np.isnan(value) for scene in (0, 1)]
    tidy = pd.DataFrame(records, columns=["method", "scene", "metric", "value"]).assign(missing="")
    tidy["scene"] = "s" + tidy["scene"].astype(str)
    return summarize(tidy, resamples=100)


def test_the_names_agree_with_the_generators_controls():
    assert set(DEGENERATE) == set(degenerate_controls()) and set(DEGENERATE) <= set(CONTROLS)
    assert set(BLURRED.values()) == set(map(float, BLUR_SIGMAS))


def test_every_degenerate_control_is_exposed_and_the_truth_wins_the_joint_score():
    report = degeneracy_check(long_summary(MEASURED))
    text = "\n".join(report.lines)
    for control in DEGENERATE:
        (line,) = [line for line in report.lines if line.startswith(f"{control}:")]
        assert "exposed by" in line and "distilled_ssim" in line, line
    assert "it games consistency_psnr" in next(line for line in report.lines if line.startswith("blank:"))
    assert "distilled_ssim: ground_truth (0.912) beats every degenerate control." in text
    # Slight blur beats the truth on the distilled PSNR; the line says so without a warning.
    assert "distilled_psnr: blur_0.5 (21.3) at or above ground_truth (20.7)" in text
    assert "WARNING" not in text


def test_a_control_no_score_exposes_is_a_warning():
    rows = {**MEASURED, "blank": MEASURED["ground_truth"][:3] + (40.0, 1.0)}
    text = "\n".join(degeneracy_check(long_summary(rows)).lines)
    assert "WARNING blank: no score exposes it" in text
    assert "WARNING distilled_ssim: ground_truth (0.912) is beaten or tied by blank (0.912)" in text


def test_a_method_beaten_by_a_degenerate_control_is_flagged_in_the_table():
    # A blurry model: sharpness 0.5, consistency 27, distilled fidelity 17: blank beats it on consistency and
    # blur_0.5 on everything, so every cell but the diagnostic sharpness is flagged.
    rows = {**MEASURED, "xunet/stochastic": (27.0, 17.0, 0.5, 17.0, 0.5), "good/model": (41, 25, 0.95, 30, 0.95)}
    long = long_summary(rows)
    report = degeneracy_check(long)
    assert {("xunet/stochastic", m) for m in METRICS if m != "fidelity_sharpness"} <= report.flagged
    assert set(report.flags.loc[report.flags["method"] == "xunet/stochastic", "control"]) >= {"blank", "blur_0.5"}
    assert not any(method == "good/model" for method, _ in report.flagged)
    assert any(line.startswith("FLAG xunet/stochastic:") for line in report.lines)
    assert "good/model: beats every degenerate control on every score." in report.lines
    cells = summary_text(long, flagged=report.flagged).cells
    assert cells.loc["xunet/stochastic", "consistency_psnr"].endswith(FLAG_MARK)
    assert not cells.loc["good/model", "consistency_psnr"].endswith(FLAG_MARK)


def test_sharpness_matched_reference_interpolates_the_blurred_truths():
    points = [(1.0, 20.0), (0.8, 24.0), (0.6, 26.0), (0.4, 28.0)]
    assert sharpness_matched_reference(points, 0.7) == (pytest.approx(25.0), "interpolated")
    assert sharpness_matched_reference(points, 1.0)[0] == 20.0
    value, how = sharpness_matched_reference(points, 0.1)
    assert value == 28.0 and how.startswith("blurrier than every")
    rows = {**MEASURED, "xunet/stochastic": (25.0, 17.0, 0.5, 17.0, 0.685)}
    matched = degeneracy_check(long_summary(rows)).matched
    (psnr_row,) = matched[(matched["method"] == "xunet/stochastic") & (matched["metric"] == "consistency_psnr")
                          ].itertuples()
    # The truth blurred to sharpness 0.735 (between blur_1 at 0.62 and blur_0.5 at 0.85) would score
    # about 25.5 on consistency; the model's 25.05 is below it.
    expected = np.interp(0.735, [0.62, 0.85, 1.0], [26.83, 24.1, 20.72])
    assert psnr_row.reference == pytest.approx(expected, abs=1e-6) and psnr_row.margin < 0
