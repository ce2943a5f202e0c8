"""benchmarks/ablation.py's table from cached runs: seeds averaged per scene before the paired test over scenes,
per-seed directions counted, sampling noise against scene spread, and a missing seed never averaged away.
Checked against numbers computed here by hand from the scores written into two seed folders."""

import math

import numpy as np
import pandas as pd
import pytest

from benchmarks.ablation import ablation_markdown, mean_over_seeds, noise_table, seed_agreement, seed_scores
from tests.reports.run_factory import write_run

SCENES = [f"mug_{i:04d}" for i in range(6)]
SEEDS = [0, 1]


def psnr(method: str, scene: int, seed: int) -> float:
    """Stochastic leads naive by 1 dB in both seeds; naive leads Markovian by 0.5 dB in seed 0 and trails it by
    0.25 dB in seed 1, so the seed-averaged difference is +0.125 dB and one seed of two has naive ahead."""
    base = 12.0 + scene
    return {"ground_truth": 20.0 + scene, "noise": 9.0,
            "small32/stochastic": base + 1.0 + 0.2 * seed,
            "small32/naive": base + 0.2 * seed,
            "small32/markovian": base + 0.2 * seed + (-0.5 if seed == 0 else 0.25)}[method]


def seed_run(root, seed: int, missing_scene: int | None = None):
    rows = []
    for method in ("ground_truth", "noise", "small32/stochastic", "small32/naive", "small32/markovian"):
        for i, scene in enumerate(SCENES):
            rows.append((method, scene, "consistency_psnr", psnr(method, i, seed), ""))
            tsed_missing = method == "small32/naive" and i == missing_scene
            rows.append((method, scene, "tsed", math.nan if tsed_missing else 0.5, "too few matches" * tsed_missing))
    write_run(root / f"seed-{seed}", pd.DataFrame(rows, columns=["method", "scene", "metric", "value", "missing"]),
              views=4, size=8)


def test_ablation_table_pairs_seed_means_over_scenes(tmp_path):
    for seed in SEEDS:
        seed_run(tmp_path, seed, missing_scene=2 if seed == 1 else None)
    tidy, order = seed_scores(tmp_path, SEEDS)
    assert order == ["ground_truth", "noise", "small32/stochastic", "small32/naive", "small32/markovian"]
    assert sorted(tidy["seed"].unique()) == SEEDS

    averaged = mean_over_seeds(tidy).set_index(["method", "scene", "metric"])
    assert averaged.loc[("small32/stochastic", "mug_0003", "consistency_psnr"), "value"] == pytest.approx(16.1)
    assert (averaged["seeds"] == 2).all()
    # One seed's TSED is missing for naive on scene 2: its seed mean is missing too, with the reason kept.
    naive_tsed = averaged.loc[("small32/naive", "mug_0002", "tsed")]
    assert math.isnan(naive_tsed["value"]) and naive_tsed["missing"] == "too few matches"

    agreement = seed_agreement(tidy, SEEDS, ["consistency_psnr"]).set_index(["method_a", "method_b"])
    assert agreement.loc[("small32/stochastic", "small32/naive"), "seeds_a_ahead"] == "2/2"
    assert agreement.loc[("small32/naive", "small32/markovian"), "seeds_a_ahead"] == "1/2"

    noise = noise_table(tidy, ["small32/stochastic"], ["consistency_psnr"]).iloc[0]
    assert noise["seed_sd"] == pytest.approx(0.2 / math.sqrt(2))  # two seeds 0.2 dB apart
    assert noise["scene_sd"] == pytest.approx(np.std(np.arange(6.0), ddof=1))

    page = ablation_markdown(tmp_path, SEEDS)
    assert "Scenes: 6; sampling seeds: 0, 1" in page
    paired = next(line for line in page.splitlines()
                  if line.startswith("| small32/naive") and "| small32/markovian" in line and "consistency_psnr" in line)
    cells = [cell.strip() for cell in paired.strip("|").split("|")]
    assert float(cells[4]) == pytest.approx(0.125)  # mean over scenes of the seed-averaged differences
    assert cells[-1] == "1/2"


def test_ablation_table_refuses_a_seed_that_did_not_run(tmp_path):
    seed_run(tmp_path, 0)
    from scenes.errors import InvalidInputError
    with pytest.raises(InvalidInputError, match="seed-1"):
        seed_scores(tmp_path, [0, 1])
