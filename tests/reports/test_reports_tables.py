"""Summary means, best-cell marking by direction, and the files written."""

import numpy as np
import pandas as pd
import pytest

from reports.tables import best_cells, summary_markdown, summary_table, write_tables
from scenes.errors import InvalidInputError

DIRECTIONS = {"psnr": True, "ssim": True, "error": False}


@pytest.fixture
def tidy():
    """Three methods x three scenes; `fake_error` is a lower-is-better score; `xunet/naive` has a NaN scene."""
    rng = np.random.default_rng(3)
    rows = []
    for method, base in [("ground truth", 30.0), ("noise", 5.0), ("xunet/stochastic", 20.0), ("xunet/naive", 18.0)]:
        for scene in ["s0", "s1", "s2"]:
            rows.append((method, scene, "consistency_psnr", base + rng.normal()))
            rows.append((method, scene, "consistency_ssim", base / 40 + 0.01 * rng.normal()))
            rows.append((method, scene, "fake_error", 1.0 / base + 0.001 * rng.random()))
            fidelity = np.nan if (method, scene) == ("xunet/naive", "s1") else base - 2 + rng.normal()
            rows.append((method, scene, "fidelity_psnr", fidelity))
    return pd.DataFrame(rows, columns=["method", "scene", "metric", "value"])


def test_summary_means_and_order(tidy):
    order = ["xunet/stochastic", "noise", "ground truth"]
    summary = summary_table(tidy, method_order=order)
    assert summary.index.tolist() == order + ["xunet/naive"]
    assert summary.columns.tolist() == ["consistency_psnr", "consistency_ssim", "fake_error", "fidelity_psnr",
                                        "scenes"]
    for method in order:
        for metric in ["consistency_psnr", "fake_error"]:
            values = tidy[(tidy.method == method) & (tidy.metric == metric)]["value"].to_numpy()
            assert summary.loc[method, metric] == pytest.approx(values.sum() / 3)
    assert (summary["scenes"] == 3).all()
    assert np.isnan(summary.loc["xunet/naive", "fidelity_psnr"])


def test_best_cell_respects_direction(tidy):
    summary = summary_table(tidy)
    best = best_cells(summary, DIRECTIONS)
    # Among the evaluated methods, stochastic has the higher PSNR and the lower (fake) error.
    assert best.loc["xunet/stochastic", "consistency_psnr"] and not best.loc["xunet/naive", "consistency_psnr"]
    assert best.loc["xunet/stochastic", "fake_error"] and not best.loc["xunet/naive", "fake_error"]
    # Flipping the direction flips the mark.
    flipped = best_cells(summary, {**DIRECTIONS, "error": True})
    assert flipped.loc["xunet/naive", "fake_error"] and not flipped.loc["xunet/stochastic", "fake_error"]
    # Bounds are never candidates unless there is nothing else.
    assert not best.loc[["ground truth", "noise"]].any().any()
    renamed = summary.rename(index={"ground truth": "Ground_Truth"})
    assert not best_cells(renamed, DIRECTIONS).loc[["Ground_Truth", "noise"]].any().any()
    only_bounds = best_cells(summary.loc[["ground truth", "noise"]], DIRECTIONS)
    assert only_bounds.loc["ground truth", "consistency_psnr"] and only_bounds.loc["ground truth", "fake_error"]
    assert best_cells(summary.loc[["ground truth", "noise"]], {**DIRECTIONS, "error": True}).loc["noise", "fake_error"]
    assert not best["scenes"].any()


def test_markdown_bold_decimals_and_missing(tidy):
    summary = summary_table(tidy)
    markdown = summary_markdown(summary, DIRECTIONS)
    lines = {line.split("|")[1].strip(): line for line in markdown.splitlines()[2:]}
    stochastic = [c.strip() for c in lines["xunet/stochastic"].strip("|").split("|")]
    naive = [c.strip() for c in lines["xunet/naive"].strip("|").split("|")]
    assert stochastic[1] == f"**{summary.loc['xunet/stochastic', 'consistency_psnr']:.2f}**"
    assert stochastic[2] == f"**{summary.loc['xunet/stochastic', 'consistency_ssim']:.3f}**"
    assert stochastic[3].startswith("**")
    assert naive[1] == f"{summary.loc['xunet/naive', 'consistency_psnr']:.2f}"
    assert naive[4] == "n/a" and naive[5] == "3"
    # NaN is never best: stochastic holds the only finite fidelity among the candidates.
    assert stochastic[4].startswith("**")


def test_unknown_direction_is_rejected_before_writing(tidy, tmp_path):
    summary = summary_table(tidy)
    with pytest.raises(InvalidInputError, match="fake_error"):
        write_tables(tidy, summary, tmp_path / "tables")
    assert not (tmp_path / "tables").exists()


def test_write_tables(tidy, tmp_path):
    summary = summary_table(tidy)
    paths = write_tables(tidy, summary, tmp_path, higher_is_better=DIRECTIONS)
    assert set(paths) == {"scores.csv", "summary.csv", "summary.md"}
    pd.testing.assert_frame_equal(pd.read_csv(paths["scores.csv"]), tidy)
    written = pd.read_csv(paths["summary.csv"], index_col="method")
    pd.testing.assert_frame_equal(written, summary, check_dtype=False)
    assert "**" in paths["summary.md"].read_text()


def test_bad_tidy_tables_are_rejected(tidy):
    with pytest.raises(InvalidInputError, match="value"):
        summary_table(tidy.drop(columns="value"))
    with pytest.raises(InvalidInputError, match="repeated"):
        summary_table(pd.concat([tidy, tidy.iloc[:1]]))
