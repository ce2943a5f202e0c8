"""The NeRF score's noise floor: per-seed scores of the same views, summarised against a direct computation."""

import numpy as np
import pandas as pd
import pytest

from reports.noise_floor import SEED_COLUMNS, fit_seed_scores, noise_floor, noise_floor_lines
from scenes.cameras import Cameras, Intrinsics, look_at
from scenes.scene import MultiViewScene


def test_noise_floor_is_the_mean_over_scenes_of_the_seed_std():
    values = {"a": [20.0, 20.5, 21.0], "b": [18.0, 18.0, 18.3]}
    rows = [("ground_truth", scene, seed, "consistency_psnr", v) for scene, vs in values.items()
            for seed, v in enumerate(vs)]
    floor = noise_floor(pd.DataFrame(rows, columns=SEED_COLUMNS))
    (row,) = floor.itertuples()
    assert row.scenes == 2 and row.seeds == 3
    assert row.seed_std == pytest.approx(np.mean([np.std(values["a"], ddof=1), np.std(values["b"], ddof=1)]))
    assert row.seed_range_max == pytest.approx(1.0) and row.mean == pytest.approx(np.mean(sum(values.values(), [])))
    (line,) = noise_floor_lines(floor)
    assert line.startswith("noise floor of consistency_psnr (ground_truth, 3 NeRF seeds x 2 scenes)")


def test_fit_seed_scores_score_each_seeds_renders_against_the_views_and_the_truth():
    rng = np.random.default_rng(0)
    cameras = Cameras(np.stack([look_at(np.array([2.0, 0.0, 0.5 * i])) for i in range(3)]),
                      Intrinsics(16, 16, 8, 8, 16, 16))
    truth = MultiViewScene(rng.random((3, 16, 16, 3)), cameras)
    views = MultiViewScene(np.clip(truth.images + 0.05, 0, 1), cameras)
    renders = {seed: MultiViewScene(np.clip(truth.images[[1]] + 0.02 * (seed + 1), 0, 1), cameras[[1]],
                                    [truth.names[1]]) for seed in (0, 1)}
    table = fit_seed_scores(views, truth, renders, method="ground_truth", scene="s")
    assert set(table["metric"]) == {"consistency_psnr", "consistency_ssim", "distilled_psnr", "distilled_ssim"}
    distilled = table[(table["metric"] == "distilled_psnr")].set_index("fit_seed")["value"]
    error = ((np.clip(truth.images[1] + 0.02, 0, 1).astype(np.float64) - truth.images[1]) ** 2).mean()
    assert distilled[0] == pytest.approx(-10 * np.log10(error), abs=1e-4) and distilled[0] > distilled[1]
