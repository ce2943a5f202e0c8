"""Summaries over scenes: means, bootstrap intervals against direct computations, best cells by direction with
controls excluded, missing cells with their reason, and the CSV/Parquet/Markdown/LaTeX files."""

import math

import numpy as np
import pandas as pd
import pytest

from reports.tables import (DIRECTIONS, MethodLabel, best_cells, bootstrap_interval, higher_is_better, parse_method,
                            summarize, summary_latex, summary_markdown, summary_table, summary_text, wide,
                            write_tables)
from scenes.errors import InvalidInputError

WEIGHTS_MISSING = "weights missing: nvsc weights fetch lpips-alex"


@pytest.fixture
def tidy():
    """Controls and three candidates x three scenes; LPIPS missing everywhere (no weights), one NaN scene."""
    rng = np.random.default_rng(3)
    rows = []
    for method, base in [("ground_truth", 30.0), ("perturbed", 20.0), ("noise", 5.0), ("xunet/stochastic@3", 22.0),
                         ("xunet/stochastic@1", 21.0), ("xunet/naive", 18.0)]:
        for scene in ["s0", "s1", "s2"]:
            rows.append((method, scene, "consistency_psnr", base + rng.normal(), ""))
            rows.append((method, scene, "consistency_lpips", math.nan, WEIGHTS_MISSING))
            rows.append((method, scene, "tsed", base / 40 + 0.01 * rng.normal(), ""))
            if method != "ground_truth":
                fidelity = math.nan if (method, scene) == ("xunet/naive", "s1") else base - 2 + rng.normal()
                rows.append((method, scene, "fidelity_psnr", fidelity, ""))
    return pd.DataFrame(rows, columns=["method", "scene", "metric", "value", "missing"])


@pytest.fixture
def set_scores():
    """FID per method (lower is better): the naive sampler has the best one."""
    fid = {"perturbed": 40.0, "noise": 300.0, "xunet/stochastic@3": 60.0, "xunet/stochastic@1": 70.0,
           "xunet/naive": 55.0}
    return pd.DataFrame([(m, "fidelity_fid", v, "") for m, v in fid.items()],
                        columns=["method", "metric", "value", "missing"])


def test_bootstrap_matches_a_direct_computation():
    values = np.random.default_rng(1).normal(10.0, 2.0, size=7)
    low, high = bootstrap_interval(values, resamples=4000, seed=5)
    # The same resampling written out as a loop over resamples, in float64.
    rng = np.random.default_rng(5)
    indices = rng.integers(0, 7, size=(4000, 7))
    means = np.array([np.mean([values[i] for i in row]) for row in indices])
    assert (low, high) == pytest.approx((np.percentile(means, 2.5), np.percentile(means, 97.5)), abs=1e-12)
    assert low < values.mean() < high


def test_bootstrap_agrees_with_the_normal_interval_for_many_scenes():
    values = np.random.default_rng(2).normal(0.0, 1.0, size=400)
    low, high = bootstrap_interval(values)
    half = 1.959964 * values.std(ddof=1) / np.sqrt(len(values))
    assert low == pytest.approx(values.mean() - half, abs=0.1 * half)
    assert high == pytest.approx(values.mean() + half, abs=0.1 * half)
    assert bootstrap_interval(np.array([3.0])) == (3.0, 3.0)
    assert all(math.isnan(v) for v in bootstrap_interval(np.array([1.0, np.inf])))


def test_summary_means_intervals_and_missing(tidy, set_scores):
    long = summarize(tidy, set_scores, method_order=["xunet/naive"], resamples=2000, seed=0)
    means = wide(long)
    assert means.index[0] == "xunet/naive"
    assert list(means.columns) == ["consistency_psnr", "consistency_lpips", "tsed", "fidelity_psnr", "fidelity_fid"]
    row = long[(long.method == "xunet/stochastic@3") & (long.metric == "consistency_psnr")].iloc[0]
    values = tidy[(tidy.method == "xunet/stochastic@3") & (tidy.metric == "consistency_psnr")]["value"].to_numpy()
    assert row["mean"] == pytest.approx(values.sum() / 3, abs=1e-12)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(bootstrap_interval(values, 2000, 0))
    lpips = long[long.metric == "consistency_lpips"]
    assert lpips["mean"].isna().all() and (lpips["missing"] == WEIGHTS_MISSING).all()
    naive = long[(long.method == "xunet/naive") & (long.metric == "fidelity_psnr")].iloc[0]
    assert math.isnan(naive["mean"]) and naive["missing"] == "no value for s1"
    fid = long[long.metric == "fidelity_fid"].set_index("method")
    assert fid.loc["noise", "mean"] == 300.0 and math.isnan(fid.loc["noise", "ci_low"])
    # summary_table keeps its means frame with the scene count.
    assert summary_table(tidy).loc["noise", "scenes"] == 3


def test_best_cells_follow_direction_and_skip_controls(tidy, set_scores):
    means = wide(summarize(tidy, set_scores, resamples=10))
    best = best_cells(means)
    assert best.loc["xunet/stochastic@3", "consistency_psnr"] and best["consistency_psnr"].sum() == 1
    assert best.loc["xunet/naive", "fidelity_fid"] and best["fidelity_fid"].sum() == 1  # lower is better
    assert not best.loc[["ground_truth", "perturbed", "noise"]].any().any()  # perturbed FID 40 is not best
    assert not best["consistency_lpips"].any()  # NaN is never best
    flipped = best_cells(means, {**DIRECTIONS, "fid": True})
    assert flipped.loc["xunet/stochastic@1", "fidelity_fid"]
    with pytest.raises(InvalidInputError, match="fake_error"):
        best_cells(means.assign(fake_error=1.0), DIRECTIONS)


def test_best_cells_mark_ties_but_not_a_column_where_every_method_ties(tidy, set_scores):
    means = wide(summarize(tidy, set_scores, resamples=10))
    candidates = [m for m in means.index if m not in ("ground_truth", "perturbed", "noise")]
    top, other = candidates[0], candidates[1:]
    tied = means.assign(tsed=0.0)  # e.g. no method has a consistent pair: nothing to single out
    tied.loc[top, "consistency_psnr"] = tied.loc[other[0], "consistency_psnr"] = 99.0
    best = best_cells(tied)
    assert not best["tsed"].any()
    assert best.loc[[top, other[0]], "consistency_psnr"].all() and best["consistency_psnr"].sum() == 2


def test_directions_agree_with_the_metric_registry():
    from reports.metrics import HIGHER_IS_BETTER

    for score, higher in HIGHER_IS_BETTER.items():
        assert higher_is_better(score, DIRECTIONS) == higher, score


def test_method_labels():
    assert parse_method("xunet/stochastic@3 [a/runs]") == MethodLabel("xunet/stochastic", 3.0, "a/runs")
    assert parse_method("xunet/naive") == MethodLabel("xunet/naive", None, "")
    assert parse_method("ground_truth [b]") == MethodLabel("ground_truth", None, "b")


def test_markdown_and_latex_cells(tidy, set_scores):
    long = summarize(tidy, set_scores, resamples=500)
    text = summary_text(long)
    markdown = summary_markdown(text)
    lines = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
             for line in markdown.splitlines()[2:]}
    row = long.set_index(["method", "metric"]).loc[("xunet/stochastic@3", "consistency_psnr")]
    assert lines["xunet/stochastic@3"][1] == f"**{row['mean']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]**"
    assert lines["xunet/naive"][2] == f"n/a ({WEIGHTS_MISSING})"
    assert lines["xunet/naive"][4] == "n/a (no value for s1)"
    assert lines["xunet/naive"][5] == "**55.00**"
    assert lines["ground_truth"][4] == "-"  # fidelity of the real views to themselves does not apply
    assert "consistency_psnr \u2191" in markdown and "fidelity_fid \u2193" in markdown
    one_scene = summary_text(summarize(tidy[tidy.scene == "s0"], resamples=50))
    value = tidy[(tidy.scene == "s0") & (tidy.method == "noise") & (tidy.metric == "consistency_psnr")]["value"]
    assert one_scene.cells.loc["noise", "consistency_psnr"] == f"{value.item():.2f}"  # no interval from one scene
    latex = summary_latex(text)
    assert latex.count(r"\toprule") == latex.count(r"\bottomrule") == 1 and latex.count(r"\midrule") == 2
    assert r"\textbf{55.00}" in latex and r"xunet/stochastic@3" in latex and r"ground\_truth" in latex
    assert r"consistency\_psnr $\uparrow$" in latex and "_" not in latex.replace(r"\_", "")


def test_write_tables(tidy, set_scores, tmp_path):
    long = summarize(tidy, set_scores, resamples=200)
    paths = write_tables(tidy, long, tmp_path, set_scores)
    assert set(paths) == {"scores.csv", "scores.parquet", "set_scores.csv", "summary.csv", "summary_ci.csv",
                          "summary.md", "summary.tex"}
    from_csv = pd.read_csv(paths["scores.csv"], keep_default_na=False, na_values=[""])
    pd.testing.assert_frame_equal(pd.read_parquet(paths["scores.parquet"]), tidy)
    pd.testing.assert_frame_equal(from_csv[["method", "scene", "metric", "value"]],
                                  tidy[["method", "scene", "metric", "value"]])
    written = pd.read_csv(paths["summary.csv"], index_col="method")
    pd.testing.assert_frame_equal(written.drop(columns="scenes"), wide(long), check_dtype=False)
    pd.testing.assert_frame_equal(pd.read_csv(paths["summary_ci.csv"], keep_default_na=False, na_values=[""])
                                  .fillna({"missing": ""}), long, check_dtype=False)


def test_bad_tables_are_rejected_before_writing(tidy, tmp_path):
    with pytest.raises(InvalidInputError, match="value"):
        summarize(tidy.drop(columns="value"))
    with pytest.raises(InvalidInputError, match="repeated"):
        summarize(pd.concat([tidy, tidy.iloc[:1]]))
    with pytest.raises(InvalidInputError, match="set-level"):
        summarize(tidy, pd.DataFrame({"method": ["noise"], "value": [1.0]}))
    long = summarize(tidy.assign(metric=tidy.metric.replace("tsed", "fake_error")), resamples=10)
    with pytest.raises(InvalidInputError, match="fake_error"):
        write_tables(tidy, long, tmp_path / "tables")
    assert not (tmp_path / "tables").exists()
