"""The figures are written as valid, non-trivial PNG files, bounds with +inf fidelity included."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from reports.figures import plot_consistency_vs_fidelity, plot_scores_bar
from reports.tables import summary_table
from scenes.errors import InvalidInputError


@pytest.fixture
def tidy():
    rng = np.random.default_rng(5)
    rows = []
    for method, base in [("ground truth", 30.0), ("noise", 6.0), ("xunet/stochastic", 22.0), ("xunet/naive", 19.0)]:
        for scene in range(4):
            rows.append((method, f"scene{scene}", "consistency_psnr", base + rng.normal()))
            # Ground truth scored against itself has +inf PSNR.
            rows.append((method, f"scene{scene}", "fidelity_psnr",
                         np.inf if method == "ground truth" else base - 3 + rng.normal()))
    return pd.DataFrame(rows, columns=["method", "scene", "metric", "value"])


def _check_png(path):
    assert path.is_file() and path.stat().st_size > 10_000
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[0] > 300 and pixels.shape[1] > 400
    assert pixels.std() > 5  # something is drawn, not a blank canvas


def test_consistency_vs_fidelity(tidy, tmp_path):
    path = plot_consistency_vs_fidelity(summary_table(tidy), tmp_path / "figs" / "scatter.png")
    _check_png(path)


def test_scores_bar(tidy, tmp_path):
    for metric in ["consistency_psnr", "fidelity_psnr"]:
        _check_png(plot_scores_bar(tidy, metric, tmp_path / f"{metric}.png", method_order=["noise"]))


def test_bad_inputs(tidy, tmp_path):
    with pytest.raises(InvalidInputError, match="fidelity_psnr"):
        plot_consistency_vs_fidelity(summary_table(tidy).drop(columns="fidelity_psnr"), tmp_path / "a.png")
    with pytest.raises(InvalidInputError, match="no scores"):
        plot_scores_bar(tidy, "fidelity_ssim", tmp_path / "b.png")
    assert not list(tmp_path.iterdir())
