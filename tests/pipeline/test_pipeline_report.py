"""`nvsc report` on the run folder of a real tiny pipeline gives BuildReport's summary, and merges two runs."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from tests.reports.chromium_probe import CHROMIUM, images_in_chromium

pytestmark = pytest.mark.slow

ROWS = ["ground_truth", "noise", "xunet/stochastic", "xunet/naive"]


def build_report_folder(runner):
    (name,) = runner.folders("BuildReport")
    return runner.workdir / "runs" / "BuildReport" / name


def test_nvsc_report_rebuilds_build_reports_summary(tiny_pipeline):
    built = build_report_folder(tiny_pipeline)
    result = tiny_pipeline("nvsc", "report", "runs", "--out", "rebuilt")
    assert result.returncode == 0, result.stderr[-4000:]
    rebuilt = tiny_pipeline.workdir / "rebuilt"
    for name in ("summary.csv", "summary_ci.csv", "summary.md", "summary.tex", "scores.csv", "controls.txt",
                 "accumulation.csv", "loop_closure.csv"):
        assert (rebuilt / name).read_text() == (built / name).read_text(), name
    pd.testing.assert_frame_equal(pd.read_parquet(rebuilt / "scores.parquet"),
                                  pd.read_parquet(built / "scores.parquet"))
    assert list(pd.read_csv(rebuilt / "summary.csv", index_col=0).index) == ROWS
    assert sorted(p.name for p in (rebuilt / "animations").glob("*.gif")) == \
        sorted(p.name for p in (built / "animations").glob("*.gif"))
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (.ci/run installs the Debian package); the files were compared")
    loaded = images_in_chromium(built / "index.html", tiny_pipeline.workdir)
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
    assert set(curve["method"]) == set(ROWS) - {"ground_truth"}  # the ground truth is not scored against itself
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
    page = (built / "index.html").read_text()
    assert "Error accumulation and loop closure" in page
    assert "<figcaption>fidelity_psnr against the distance from the input view" in page
    assert (built / "figures" / "loop_closure_fidelity_psnr.png").is_file()
