"""Paired comparisons of methods over the same scenes: the per-scene difference of a score, its bootstrap
interval and a sign-flip permutation test.

Two methods scored on the same scenes differ by much less than the scenes differ from one another, so their
separate intervals overlap even when one method wins on every scene. The paired test works on the per-scene
differences d_i = a_i - b_i (oriented so that d > 0 means `a` is better): the percentile bootstrap interval of
mean(d) (scenes resampled, as `reports.tables.bootstrap_interval`) and the two-sided p-value of the sign-flip
test (under "no difference" each d_i is as likely to be -d_i; exact over all 2^n sign patterns for n <= 16
scenes, else a seeded Monte Carlo of `resamples` patterns; Good 2005, Sec. 3.6).

With n scenes the smallest possible p-value is 2^(1-n): 3 scenes can never reach 0.05, which is why a comparison
of fewer than `MIN_SCENES` scenes is marked rather than given a verdict.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from reports.tables import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, bootstrap_interval, check_tidy, higher_is_better

#: Fewest scenes for a verdict: 6 is the least whose sign-flip test can reach p < 0.05 (2^(1-6) = 0.031).
MIN_SCENES = 6
#: Scenes up to which the sign-flip test enumerates every sign pattern.
EXACT_UP_TO = 16
#: Columns of the paired table.
PAIRED_COLUMNS = ["method_a", "method_b", "metric", "scenes", "mean_difference", "ci_low", "ci_high", "p_value",
                  "verdict"]


def sign_flip_p_value(differences: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                      seed: int = BOOTSTRAP_SEED) -> float:
    """Two-sided p-value of mean(differences [n]) under random signs: the share of sign patterns whose |mean| is
    at least the observed one (the observed pattern included, so p > 0)."""
    d = np.asarray(differences, dtype=np.float64)
    if len(d) == 0 or not np.isfinite(d).all():
        return math.nan
    observed = abs(d.mean())
    if len(d) <= EXACT_UP_TO:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(d))))  # [2^n, n]
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(resamples, len(d)))
        signs[0] = 1.0  # the observed pattern
    means = np.abs(signs @ d) / len(d)
    # A relative tolerance keeps patterns equal to the observed mean up to rounding on the side of "as extreme".
    return float(np.mean(means >= observed * (1 - 1e-12)))


def paired_comparison(a: np.ndarray, b: np.ndarray, metric: str, resamples: int = BOOTSTRAP_RESAMPLES,
                      seed: int = BOOTSTRAP_SEED, confidence: float = 0.95) -> dict:
    """The paired comparison of a [n] and b [n] (one value per scene, same scene order) on `metric`."""
    sign = 1.0 if higher_is_better(metric) else -1.0
    d = sign * (np.asarray(a, np.float64) - np.asarray(b, np.float64))
    low, high = bootstrap_interval(d, resamples, seed, confidence)
    p = sign_flip_p_value(d, resamples, seed)
    if len(d) < MIN_SCENES:
        verdict = f"too few scenes ({len(d)} < {MIN_SCENES}) for a verdict"
    elif not math.isfinite(p):
        verdict = "not compared (missing values)"
    elif p < 1 - confidence:
        verdict = "a better" if d.mean() > 0 else "b better"
    else:
        verdict = f"no difference shown (p = {p:.2g})"
    return {"scenes": len(d), "mean_difference": float(d.mean()) if len(d) else math.nan, "ci_low": low,
            "ci_high": high, "p_value": p, "verdict": verdict}


def paired_table(tidy: pd.DataFrame, pairs: list[tuple[str, str]], metrics: list[str],
                 resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                 confidence: float = 0.95) -> pd.DataFrame:
    """One row per (pair, metric) of the tidy per-scene scores, on the scenes both methods have; mean_difference
    and its interval are in the metric's units, positive when method_a is better."""
    tidy = check_tidy(tidy)
    values = tidy.pivot_table(index=["method", "metric"], columns="scene", values="value", aggfunc="first")
    rows = []
    for a, b in pairs:
        for metric in metrics:
            if (a, metric) not in values.index or (b, metric) not in values.index:
                continue
            both = pd.concat([values.loc[(a, metric)], values.loc[(b, metric)]], axis=1).dropna()
            rows.append({"method_a": a, "method_b": b, "metric": metric,
                         **paired_comparison(both.iloc[:, 0].to_numpy(), both.iloc[:, 1].to_numpy(), metric,
                                             resamples, seed, confidence)})
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)
