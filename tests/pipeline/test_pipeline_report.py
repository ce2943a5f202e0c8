"""`nvsc report` on the run folder of a real tiny pipeline gives BuildReport's summary, and merges two runs; error
against distance comes from the cached per-view scores and TSED verdicts, and a run scored before `tsed_pairs.csv`
existed is rescored in place."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from tests.pipeline.conftest import PipelineRunner
from tests.reports.chromium_probe import CHROMIUM, images_in_chromium

pytestmark = pytest.mark.slow

ROWS = ["ground_truth", "noise", "blank", "other_scene", "xunet/stochastic", "xunet/naive"]  # tiny.cfg's methods


def build_report_folder(runner):
    (name,) = runner.folders("BuildReport")
    return runner.workdir / "runs" / "BuildReport" / name


def test_nvsc_report_rebuilds_build_reports_summary(tiny_pipeline):
    built = build_report_folder(tiny_pipeline)
    result = tiny_pipeline("nvsc", "report", "runs", "--out", "rebuilt")
    assert result.returncode == 0, result.stderr[-4000:]
    rebuilt = tiny_pipeline.workdir / "rebuilt"
    for name in ("summary.csv", "summary_ci.csv", "summary.md", "summary.tex", "scores.csv", "controls.txt",
                 "accumulation.csv", "accumulation_by_distance.csv", "accumulation_rows.csv", "loop_closure.csv"):
        assert (rebuilt / name).read_text() == (built / name).read_text(), name
    pd.testing.assert_frame_equal(pd.read_parquet(rebuilt / "scores.parquet"),
                                  pd.read_parquet(built / "scores.parquet"))
    assert list(pd.read_csv(rebuilt / "summary.csv", index_col=0).index) == ROWS
    assert sorted(p.name for p in (rebuilt / "animations").glob("*.gif")) == \
        sorted(p.name for p in (built / "animations").glob("*.gif"))


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs the Debian package)")
def test_the_built_report_page_loads_every_image_in_chromium(tiny_pipeline):
    loaded = images_in_chromium(build_report_folder(tiny_pipeline) / "index.html", tiny_pipeline.workdir)
    assert loaded and all(image["complete"] and image["width"] > 0 for image in loaded)


def test_two_runs_merge(tiny_pipeline):
    copy = tiny_pipeline.workdir / "copy" / "runs"
    shutil.copytree(tiny_pipeline.workdir / "runs", copy)
    result = tiny_pipeline("nvsc", "report", "runs", "copy/runs", "--out", "merged", "--no-animations")
    assert result.returncode == 0, result.stderr[-4000:]
    merged = pd.read_csv(tiny_pipeline.workdir / "merged" / "summary.csv", index_col=0)
    single = pd.read_csv(build_report_folder(tiny_pipeline) / "summary.csv", index_col=0)
    # The shortest trailing parts of the two paths that differ label the rows: <workdir>/runs and copy/runs.
    first = f"{tiny_pipeline.workdir.name}/runs"
    assert list(merged.index) == [f"{m} [{first}]" for m in ROWS] + [f"{m} [copy/runs]" for m in ROWS]
    for method in ROWS:
        for label in (f"{method} [{first}]", f"{method} [copy/runs]"):
            pd.testing.assert_series_equal(merged.loc[label], single.loc[method], check_names=False)


def test_report_shows_error_accumulation_from_cached_per_view_scores(tiny_pipeline):
    built = build_report_folder(tiny_pipeline)
    runs = tiny_pipeline.workdir / "runs"
    curve = pd.read_csv(built / "accumulation.csv")
    methods = curve.groupby("metric")["method"].agg(set)
    assert methods["fidelity_psnr"] == set(ROWS) - {"ground_truth"}  # the ground truth is not scored against itself
    assert methods["consistency_psnr"] == methods["tsed"] == set(ROWS)
    for method in ("noise", "xunet/stochastic"):
        (folder,) = [f for f in tiny_pipeline.folders("ScoreScene") if f.startswith(method.replace("/", "-"))]
        per_view = pd.read_csv(runs / "ScoreScene" / folder / "per_view.csv", dtype={"view": str})
        fidelity = per_view[per_view["kind"] == "fidelity"].set_index("view")["psnr"]
        # Reference: 8 views on the orbit, input view 0: views d and 8 - d lie d views from the input.
        rows = curve[(curve["method"] == method) & (curve["metric"] == "fidelity_psnr")].set_index("index_distance")
        for distance in (1, 2, 3, 4):
            views = sorted({f"{distance:06d}", f"{8 - distance:06d}"})
            assert rows.loc[distance, "mean"] == pytest.approx(fidelity[views].mean())
        closure = pd.read_csv(built / "loop_closure.csv", dtype={"opening_at": str, "closing_at": str})
        ends = closure[(closure["method"] == method) & (closure["metric"] == "fidelity_psnr")].iloc[0]
        assert (ends["opening_at"], ends["closing_at"]) == ("1", "7")
        assert ends["closing"] == pytest.approx(fidelity["000007"])
        # TSED's verdicts as ScoreScene cached them: 7 consecutive pairs, their mean the scene's TSED; the report's
        # curve is their mean per pair distance (pair (i, i + 1) at the mean of min(i, 8 - i) and its neighbour's).
        pairs = pd.read_csv(runs / "ScoreScene" / folder / "tsed_pairs.csv")
        assert pairs[["first", "second"]].values.tolist() == [[i, i + 1] for i in range(7)]
        scores = pd.read_csv(runs / "ScoreScene" / folder / "scores.csv").set_index("metric")["value"]
        assert scores["tsed"] == pairs["consistent"].mean()
        ring = [min(i, 8 - i) for i in range(8)]
        assert pairs["index_distance"].tolist() == [(ring[i] + ring[i + 1]) / 2 for i in range(7)]
        verdicts = curve[(curve["method"] == method) & (curve["metric"] == "tsed")].set_index("index_distance")
        expected = pairs.assign(value=pairs["consistent"].astype(float)).groupby("index_distance")["value"].mean()
        pd.testing.assert_series_equal(verdicts["mean"], expected, check_names=False)
        # The NeRF score of each held-out view at its distance.
        nerf = per_view[per_view["kind"] == "consistency"]
        expected = nerf.groupby([ring[int(name)] for name in nerf["view"]])["psnr"].mean()
        rows = curve[(curve["method"] == method) & (curve["metric"] == "consistency_psnr")].set_index("index_distance")
        pd.testing.assert_series_equal(rows["mean"], expected, check_names=False, check_index_type=False)
    page = (built / "index.html").read_text()
    assert "Error accumulation and loop closure" in page
    for metric in ("fidelity_psnr", "NeRF consistency score", "TSED"):
        assert f"<figcaption>{metric} against the distance from the input view" in page
    for name in ("loop_closure_fidelity_psnr.png", "accumulation_consistency.png", "accumulation_tsed.png"):
        assert (built / "figures" / name).is_file(), name


def test_run_scored_without_tsed_pairs_is_rescored_in_place(tiny_pipeline, tmp_path):
    """A ScoreScene folder from before `tsed_pairs.csv` existed: `luigi BuildReport` rescores it and rebuilds the
    report under the same folder names, and the file equals the one the first run wrote."""
    runner = PipelineRunner(tmp_path)
    shutil.copytree(tiny_pipeline.workdir / "runs", tmp_path / "runs")
    (stochastic,) = [f for f in runner.folders("ScoreScene") if f.startswith("xunet-stochastic-")]
    old = tmp_path / "runs" / "ScoreScene" / stochastic / "tsed_pairs.csv"
    written = old.read_text()
    old.unlink()
    before = {task: runner.folders(task) for task in ("ScoreScene", "BuildReport", "FitNeRF")}
    (report,) = before["BuildReport"]
    (fit,) = [f for f in before["FitNeRF"] if f.startswith("xunet-stochastic-")]

    def finished(task: str, name: str) -> str:
        return json.loads((tmp_path / "runs" / task / name / "provenance.json").read_text())["finished_utc"]

    times = {task: finished(task, name) for task, name in (("BuildReport", report), ("FitNeRF", fit))}
    result = runner("luigi", "BuildReport", "--local-scheduler")
    assert result.returncode == 0, result.stderr[-4000:]
    assert {task: runner.folders(task) for task in before} == before
    assert old.read_text() == written
    assert finished("FitNeRF", fit) == times["FitNeRF"] and finished("BuildReport", report) > times["BuildReport"]
    built = build_report_folder(tiny_pipeline)
    for name in ("accumulation.csv", "summary.csv"):
        assert (tmp_path / "runs" / "BuildReport" / report / name).read_text() == (built / name).read_text(), name
