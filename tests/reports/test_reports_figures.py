"""Figures are valid, non-trivial PNGs; controls become reference marks; the sweep appears only with `@w` rows."""

import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from reports.figures import (plot_consistency_vs_fidelity, plot_distribution, plot_guidance_sweep,
                             sweep_methods)
from reports.tables import summarize
from scenes.errors import InvalidInputError


@pytest.fixture
def tidy():
    rng = np.random.default_rng(5)
    rows = []
    for method, base in [("ground_truth", 30.0), ("noise", 6.0), ("perturbed", 15.0), ("xunet/stochastic@1", 20.0),
                         ("xunet/stochastic@3", 22.0), ("xunet/naive@3", 19.0)]:
        for scene in range(4):
            rows.append((method, f"scene{scene}", "consistency_psnr", base + rng.normal()))
            if method != "ground_truth":  # ground truth has no fidelity rows
                rows.append((method, f"scene{scene}", "fidelity_psnr", base - 3 + rng.normal()))
            # One +inf scene must not break the distribution.
            rows.append((method, f"scene{scene}", "fidelity_ssim", math.inf if scene == 0 else 0.5))
    return pd.DataFrame(rows, columns=["method", "scene", "metric", "value"])


def _pixels(path):
    assert path.is_file()
    with Image.open(path) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("RGB")).astype(float)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 400
    assert pixels.std() > 5  # something is drawn, not a blank canvas
    return pixels


def test_scatter_draws_candidates_and_control_lines(tidy, tmp_path):
    long = summarize(tidy, resamples=200)
    with_controls = _pixels(plot_consistency_vs_fidelity(long, tmp_path / "figs" / "scatter.png"))
    without = _pixels(plot_consistency_vs_fidelity(long[~long.method.isin(["ground_truth", "noise", "perturbed"])],
                                                   tmp_path / "figs" / "candidates.png"))
    # The controls add marks: the two figures differ.
    assert np.abs(with_controls - without).mean() > 0.5


def test_distribution(tidy, tmp_path):
    for metric in ["consistency_psnr", "fidelity_ssim"]:
        _pixels(plot_distribution(tidy, metric, tmp_path / f"{metric}.png", method_order=["noise"]))


def test_guidance_sweep(tidy, tmp_path):
    assert sweep_methods(tidy.method.unique()) == {
        "xunet/stochastic": [(1.0, "xunet/stochastic@1"), (3.0, "xunet/stochastic@3")],
        "xunet/naive": [(3.0, "xunet/naive@3")]}
    # A method without `@w` joins its sweep at the weight it was generated with, when that is known.
    assert sweep_methods(["xunet/naive@1", "xunet/naive", "noise"], {"xunet/naive": 3.0, "noise": 3.0}) == {
        "xunet/naive": [(1.0, "xunet/naive@1"), (3.0, "xunet/naive")]}
    assert sweep_methods(["xunet/naive", "noise"], {"xunet/naive": 3.0}) == {}
    long = summarize(tidy, resamples=200)
    _pixels(plot_guidance_sweep(long, "consistency_psnr", tmp_path / "sweep.png"))
    no_weights = long[~long.method.str.contains("@")]
    assert plot_guidance_sweep(no_weights, "consistency_psnr", tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_bad_inputs(tidy, tmp_path):
    long = summarize(tidy, resamples=10)
    with pytest.raises(InvalidInputError, match="fidelity_lpips"):
        plot_consistency_vs_fidelity(long, tmp_path / "a.png", x_metric="fidelity_lpips")
    with pytest.raises(InvalidInputError, match="no scores"):
        plot_distribution(tidy, "tsed", tmp_path / "b.png")
    assert not list(tmp_path.iterdir())


def test_error_bars_are_never_negative_when_an_interval_misses_its_mean():
    # A percentile interval of few resamples or skewed scores can lie beside the mean; matplotlib refuses
    # negative bar lengths, so those sides are drawn as zero.
    from reports.figures import _error

    rows = pd.DataFrame({"mean": [0.5, 0.5, 0.5], "ci_low": [0.4, 0.6, float("nan")],
                         "ci_high": [0.7, 0.8, float("nan")]})
    np.testing.assert_allclose(_error(rows), [[0.1, 0.0, 0.0], [0.2, 0.3, 0.0]])
