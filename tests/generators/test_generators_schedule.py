"""The cosine logSNR schedule against a float64 computation written from the formula."""

import math

import numpy as np
import pytest
import torch

from generators.schedule import CosineLogSNRSchedule


def reference_logsnr(t: float, logsnr_min: float, logsnr_max: float) -> float:
    b = math.atan(math.exp(-logsnr_max / 2))
    a = math.atan(math.exp(-logsnr_min / 2)) - b
    return -2 * math.log(math.tan(a * t + b))


@pytest.mark.parametrize("logsnr_min, logsnr_max", [(-20.0, 20.0), (-10.0, 15.0)])
def test_logsnr_matches_float64_formula(logsnr_min, logsnr_max):
    schedule = CosineLogSNRSchedule(logsnr_min, logsnr_max)
    t = np.linspace(0, 1, 101)
    expected = np.array([reference_logsnr(x, logsnr_min, logsnr_max) for x in t])
    got64 = schedule.logsnr(torch.tensor(t, dtype=torch.float64)).numpy()
    got32 = schedule.logsnr(torch.tensor(t, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(got64, expected, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(got32, expected, atol=2e-4 * abs(logsnr_max))
    assert got64[0] == pytest.approx(logsnr_max, abs=1e-9) and got64[-1] == pytest.approx(logsnr_min, abs=1e-9)
    assert np.all(np.diff(got64) < 0), "logSNR must decrease monotonically with t"


def test_alpha_sigma_is_variance_preserving_sigmoid():
    logsnr = torch.linspace(-20, 20, 81, dtype=torch.float64)
    alpha, sigma = CosineLogSNRSchedule.alpha_sigma(logsnr)
    expected_alpha2 = 1 / (1 + np.exp(-logsnr.numpy()))
    np.testing.assert_allclose(alpha.numpy() ** 2, expected_alpha2, rtol=1e-12)
    np.testing.assert_allclose((alpha ** 2 + sigma ** 2).numpy(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(torch.log(alpha ** 2 / sigma ** 2).numpy(), logsnr.numpy(), atol=1e-9)


def test_cosine_schedule_without_clipping_is_nichol_dhariwal():
    # With an unbounded range the schedule is alpha_t = cos(pi t / 2) (Nichol & Dhariwal 2021).
    schedule = CosineLogSNRSchedule(-80.0, 80.0)
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    alpha, _ = schedule.alpha_sigma(schedule.logsnr(t))
    np.testing.assert_allclose(alpha.numpy(), np.cos(np.pi * t.numpy() / 2), rtol=1e-9)
