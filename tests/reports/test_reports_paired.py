"""Paired comparisons: the sign-flip test against scipy's permutation test, the orientation of the difference,
and the verdicts refused with too few scenes."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from reports.paired import MIN_SCENES, paired_comparison, paired_table, sign_flip_p_value


@pytest.mark.parametrize("n", [3, 6, 9])
def test_sign_flip_p_value_equals_scipys_exact_paired_permutation_test(n):
    rng = np.random.default_rng(n)
    a, b = rng.normal(20, 2, n), rng.normal(19.5, 2, n)
    reference = stats.permutation_test((a, b), lambda x, y: np.mean(x - y), permutation_type="samples",
                                       alternative="two-sided", n_resamples=np.inf).pvalue
    assert sign_flip_p_value(a - b) == pytest.approx(reference, rel=1e-12)


def test_the_smallest_p_value_of_n_scenes_is_two_to_the_one_minus_n():
    for n in (3, 5, 6):
        assert sign_flip_p_value(np.full(n, 0.3)) == pytest.approx(2.0 ** (1 - n))


def test_difference_is_oriented_so_positive_means_a_is_better():
    a, b = np.array([20.0, 21, 22, 23, 24, 25]), np.array([19.0, 20, 21, 22, 23, 24])
    higher = paired_comparison(a, b, "consistency_psnr")
    assert higher["mean_difference"] == 1.0 and higher["verdict"] == "a better"
    lower = paired_comparison(a, b, "fidelity_lpips")  # lower is better: a's larger values make it worse
    assert lower["mean_difference"] == -1.0 and lower["verdict"] == "b better"
    assert higher["ci_low"] == higher["ci_high"] == 1.0  # a constant difference has no spread


def test_fewer_scenes_than_the_minimum_get_no_verdict_and_noise_gets_none_shown():
    assert paired_comparison(np.arange(3.0) + 1, np.arange(3.0), "tsed")["verdict"].startswith("too few scenes")
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, 12)
    shuffled = a + rng.choice([-1, 1], 12) * 0.01
    assert paired_comparison(a, shuffled, "consistency_psnr")["verdict"].startswith("no difference shown")
    assert MIN_SCENES == 6


def test_paired_table_uses_the_scenes_both_methods_have():
    rows = [(m, f"s{i}", "consistency_psnr", v + (1.0 if m == "x" else 0.0), "")
            for m in ("x", "y") for i, v in enumerate([10.0, 12, 9, 14, 11, 13, 10])]
    tidy = pd.DataFrame(rows, columns=["method", "scene", "metric", "value", "missing"])
    tidy = tidy[~((tidy["method"] == "y") & (tidy["scene"] == "s6"))]
    (row,) = paired_table(tidy, [("x", "y")], ["consistency_psnr", "tsed"]).itertuples()
    assert row.scenes == 6 and row.mean_difference == pytest.approx(1.0) and row.verdict == "a better"
