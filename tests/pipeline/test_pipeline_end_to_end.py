"""The whole pipeline, really run by Luigi on a tiny configuration: report contents, caching, partial reruns."""

from __future__ import annotations

import math

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

STAGES = ("PrepareDataset", "TrainGenerator", "GenerateViews", "FitNeRF", "ScoreScene", "BuildReport")
ROWS = ["ground_truth", "noise", "blank", "other_scene", "xunet/stochastic", "xunet/naive"]


def report_folder(runner):
    (name,) = runner.folders("BuildReport")
    return runner.workdir / "runs" / "BuildReport" / name


def test_report_has_its_rows_with_numbers_from_the_run(tiny_pipeline):
    report = report_folder(tiny_pipeline)
    summary = pd.read_csv(report / "summary.csv", index_col=0)
    assert list(summary.index) == ROWS
    for method in ROWS:
        assert math.isfinite(summary.loc[method, "consistency_psnr"])
        # SSIM lies in [-1, 1]; the tiny, barely trained generator's views are unrelated to any 3D scene, so the
        # score of its rows sits at 0 and may fall just below it.
        assert -1 <= summary.loc[method, "consistency_ssim"] <= 1
    for method in ROWS[1:]:
        assert math.isfinite(summary.loc[method, "fidelity_psnr"])
    # The upper-bound control must beat the lower-bound one, or the score measures nothing.
    assert summary.loc["ground_truth", "consistency_psnr"] > summary.loc["noise", "consistency_psnr"] + 3
    tidy = pd.read_csv(report / "scores.csv")
    assert set(tidy.columns) >= {"method", "scene", "metric", "value"}
    for name in ("summary.md", "index.html", "consistency_vs_fidelity.png", "consistency_psnr.png"):
        assert (report / name).stat().st_size > 0, name
    assert list((report / "grids").glob("*.png"))
    controls = (report / "controls.txt").read_text()
    assert "Controls in order" in controls
    # The degenerate controls, built by the pipeline: blank views game the consistency score and are exposed by
    # the distilled NeRF's fidelity to the real views; the models are checked against both.
    blank = next(line for line in controls.splitlines() if line.startswith("blank:"))
    assert "exposed by distilled_psnr" in blank and "it games consistency_psnr" in blank, blank
    assert summary.loc["blank", "consistency_psnr"] <= 40.0  # capped (a long fit reaches the cap, not 151 dB)
    assert any(line.startswith("other_scene: exposed by") for line in controls.splitlines())
    assert any(line.startswith(("FLAG xunet/stochastic", "xunet/stochastic: beats")) for line in controls.splitlines())
    assert {"distilled_ssim", "geometry_iou", "geometry_chamfer", "fidelity_sharpness"} <= set(summary.columns)
    assert summary.loc["blank", "geometry_iou"] < summary.loc["ground_truth", "geometry_iou"]
    # Faithfulness to the input: the truth's views near the input camera show what the input shows; blank views
    # and another object's do not.
    for control in ("blank", "other_scene"):
        assert summary.loc[control, "faithfulness_psnr"] < summary.loc["ground_truth", "faithfulness_psnr"] - 3
    assert "noise floor of consistency_psnr (ground_truth, 3 NeRF seeds" in controls
    for name in ("paired.csv", "noise_floor.csv", "degeneracy_flags.csv", "tsed_threshold_curve.csv"):
        assert (report / name).is_file(), name


def test_every_output_has_provenance_and_no_temporary_folders_remain(tiny_pipeline):
    for stage in STAGES:
        folders = tiny_pipeline.folders(stage)
        assert folders, stage
        for name in folders:
            assert (tiny_pipeline.workdir / "runs" / stage / name / "provenance.json").is_file()
    assert not list((tiny_pipeline.workdir / "runs").glob("*/.*tmp*"))


def test_second_run_finds_everything_complete(tiny_pipeline):
    before = {stage: tiny_pipeline.folders(stage) for stage in STAGES}
    result = tiny_pipeline("nvsc", "run", "--config", "tiny.cfg")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Report page:" in result.stdout
    assert "ran successfully" not in result.stderr  # nothing was run, everything was complete
    assert {stage: tiny_pipeline.folders(stage) for stage in STAGES} == before


def test_changing_one_stage_reruns_only_it_and_later_stages(tiny_pipeline):
    before = {stage: tiny_pipeline.folders(stage) for stage in STAGES}
    result = tiny_pipeline("nvsc", "run", "--config", "tiny.cfg", "--FitNeRF-steps", "61")
    assert result.returncode == 0, result.stderr[-4000:]
    after = {stage: tiny_pipeline.folders(stage) for stage in STAGES}
    for stage in ("PrepareDataset", "TrainGenerator", "GenerateViews"):
        assert after[stage] == before[stage], stage
    for stage in ("FitNeRF", "ScoreScene", "BuildReport"):
        assert after[stage] > before[stage], stage
