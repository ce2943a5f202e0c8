"""Per-scene and per-set scoring: the tidy tables, scores recorded as missing without weights, strict mode, and the
values with (random) weights equal to the scores computed directly."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
import torch
import trimesh

from reports.fid import cached_inception, frechet_distance, inception_features, kernel_inception_distance
from reports.lpips_score import cached_lpips, lpips_distance
from reports.metrics import PSNR_CAP_DB
from reports.scoring import SCENE_COLUMNS, SET_COLUMNS, ScoringConfig, score_method_set, score_scene
from reports.tsed import tsed, tsed_pairs
from reports.weights import WeightsMissingError
from scenes.cameras import Cameras, Intrinsics, look_at
from scenes.render import render_mesh
from scenes.scene import MultiViewScene
from tests.reports.weight_files import random_weights_cache

INPUT_VIEW = 0
HELDOUT = ["000001", "000003"]


def _scene(seed: int) -> tuple[MultiViewScene, MultiViewScene, MultiViewScene]:
    """Ground truth (4 views of a textured box, 32 x 32), a method's noisy views of it, and 'renders' at the
    held-out views (the views plus a little more noise)."""
    rng = np.random.default_rng(seed)
    grid = rng.random((12, 12, 12, 3))
    c2w = np.stack([look_at(np.array([2.2 * np.cos(a), 2.2 * np.sin(a), 1.0])) for a in np.radians(range(0, 40, 10))])
    cameras = Cameras(c2w, Intrinsics(40.0, 40.0, 16.0, 16.0, 32, 32))
    mesh = trimesh.creation.box(extents=(1.0, 0.8, 0.6))
    images, _ = render_mesh(mesh, cameras, albedo_fn=lambda p, f: grid[tuple(np.clip(((p + 0.6) / 1.2 * 12)
                                                                                   .astype(int), 0, 11).T)])
    truth = MultiViewScene(images, cameras)
    noisy = np.clip(images + rng.normal(scale=0.1, size=images.shape), 0, 1)
    noisy[INPUT_VIEW] = images[INPUT_VIEW]
    views = MultiViewScene(noisy, cameras)
    held = [truth.names.index(name) for name in HELDOUT]
    renders = MultiViewScene(np.clip(noisy[held] + rng.normal(scale=0.05, size=noisy[held].shape), 0, 1),
                             cameras[held], HELDOUT)
    return views, renders, truth


@pytest.fixture(scope="module")
def scenes():
    return [_scene(seed) for seed in (0, 1)]


def _value(tidy: pd.DataFrame, metric: str) -> float:
    (value,) = tidy.loc[tidy["metric"] == metric, "value"]
    return float(value)


def test_without_weights_lpips_is_missing_and_the_rest_is_scored(scenes, tmp_path):
    views, renders, truth = scenes[0]
    tidy, per_view, pairs = score_scene(views, renders, truth, INPUT_VIEW, method="xunet/stochastic@3", scene="s0",
                                        config=ScoringConfig(weights_dir=tmp_path))
    assert list(tidy.columns) == SCENE_COLUMNS
    assert tidy["metric"].tolist() == ["consistency_psnr", "distilled_psnr", "fidelity_psnr", "consistency_ssim",
                                       "distilled_ssim", "fidelity_ssim", "fidelity_sharpness", "consistency_lpips",
                                       "distilled_lpips", "fidelity_lpips", "tsed"]
    lpips_rows = tidy[tidy["metric"].str.endswith("lpips")]
    assert lpips_rows["value"].isna().all()
    assert set(lpips_rows["missing"]) == {"weights missing: nvsc weights fetch alexnet lpips-alex"}
    scored = tidy[~tidy["metric"].str.endswith("lpips")]
    assert (scored["missing"] == "").all() and scored["value"].notna().all()
    assert _value(tidy, "tsed") == tsed(views.images, views.cameras)
    consistency = per_view[per_view["kind"] == "consistency"]
    assert consistency["view"].tolist() == HELDOUT and consistency["lpips"].isna().all()
    assert _value(tidy, "consistency_psnr") == pytest.approx(consistency["psnr"].mean())
    # The distilled NeRF against the real views at the held-out cameras (float64 reference, per view, then mean).
    real = truth.images[[truth.names.index(name) for name in HELDOUT]].astype(np.float64)
    errors = ((renders.images.astype(np.float64) - real) ** 2).mean(axis=(1, 2, 3))
    assert _value(tidy, "distilled_psnr") == pytest.approx(np.mean(-10 * np.log10(errors)), abs=1e-5)
    assert 0 < _value(tidy, "fidelity_sharpness") <= 1
    # TSED's per-pair table: the verdicts of tsed_pairs, consecutive pairs at the mean of their views' distances
    # (4 views on an open arc read as a ring of 4: view i lies min(i, 4 - i) views from the input view 0).
    reference = tsed_pairs(views.images, views.cameras)
    assert pairs[["first", "second"]].values.tolist() == [[0, 1], [1, 2], [2, 3]]
    assert pairs["matches"].tolist() == [p.matches for p in reference]
    assert pairs["consistent"].tolist() == [p.consistent for p in reference]
    np.testing.assert_array_equal(pairs["median_sed"], [p.median_error for p in reference])
    assert pairs["index_distance"].tolist() == [0.5, 1.5, 1.5] and pairs["step"].tolist() == [1.0, 1.5, 2.5]
    assert _value(tidy, "tsed") == pairs["consistent"].mean()


def test_missing_reason_survives_a_csv_round_trip(scenes, tmp_path):
    views, renders, truth = scenes[0]
    tidy, *_ = score_scene(views, renders, truth, INPUT_VIEW, method="noise", scene="s0",
                           config=ScoringConfig(weights_dir=tmp_path))
    tidy.to_csv(tmp_path / "scores.csv", index=False)
    back = pd.read_csv(tmp_path / "scores.csv", keep_default_na=False, na_values=[""])
    assert back["missing"].fillna("").tolist() == tidy["missing"].tolist()


def test_strict_mode_refuses_missing_weights(scenes, tmp_path):
    views, renders, truth = scenes[0]
    with pytest.raises(WeightsMissingError, match="nvsc weights fetch alexnet lpips-alex"):
        score_scene(views, renders, truth, INPUT_VIEW, method="noise", scene="s0",
                    config=ScoringConfig(weights_dir=tmp_path, strict=True))
    with pytest.raises(WeightsMissingError, match="nvsc weights fetch inception-v3-fid"):
        score_method_set([s[0] for s in scenes], [s[2] for s in scenes], INPUT_VIEW, method="noise",
                         config=ScoringConfig(weights_dir=tmp_path, strict=True))


def test_with_weights_lpips_equals_the_direct_computation(scenes):
    cache = random_weights_cache()
    views, renders, truth = scenes[0]
    tidy, *_ = score_scene(views, renders, truth, INPUT_VIEW, method="noise", scene="s0",
                           config=ScoringConfig(weights_dir=cache))
    assert (tidy["missing"] == "").all()
    as_batch = lambda images: torch.from_numpy(images).permute(0, 3, 1, 2)  # noqa: E731
    network = cached_lpips("alex", str(cache))
    expected = lpips_distance(as_batch(renders.images), as_batch(views.images[[1, 3]]), network).mean()
    assert _value(tidy, "consistency_lpips") == pytest.approx(float(expected), rel=1e-9)


def test_ground_truth_has_no_fidelity_rows(scenes, tmp_path):
    _, _, truth = scenes[0]
    renders = truth.subset([1, 3])
    tidy, *_ = score_scene(truth, renders, truth, INPUT_VIEW, method="ground_truth", scene="s0",
                           config=ScoringConfig(weights_dir=tmp_path))
    assert not tidy["metric"].str.startswith("fidelity").any()
    assert _value(tidy, "consistency_psnr") == PSNR_CAP_DB  # identical views: capped, not +inf
    assert _value(tidy, "distilled_psnr") == _value(tidy, "consistency_psnr")
    assert score_method_set([truth], [truth], INPUT_VIEW, method="ground_truth").empty


def test_set_scores_without_and_with_weights(scenes, tmp_path):
    views, truths = [s[0] for s in scenes], [s[2] for s in scenes]
    missing = score_method_set(views, truths, INPUT_VIEW, method="xunet/naive",
                               config=ScoringConfig(weights_dir=tmp_path))
    assert list(missing.columns) == SET_COLUMNS
    assert missing["metric"].tolist() == ["fidelity_fid", "fidelity_kid"] and missing["value"].isna().all()
    assert set(missing["missing"]) == {"weights missing: nvsc weights fetch inception-v3-fid"}

    cache = random_weights_cache()
    scored = score_method_set(views, truths, INPUT_VIEW, method="xunet/naive",
                              config=ScoringConfig(weights_dir=cache, kid_subsets=4))
    # The sets: 3 non-input views per scene, 2 scenes.
    def as_batch(scenes):
        return torch.from_numpy(np.concatenate([s.images[1:] for s in scenes])).permute(0, 3, 1, 2)
    extractor = cached_inception(str(cache))
    fake, real = inception_features(as_batch(views), extractor), inception_features(as_batch(truths), extractor)
    assert len(fake) == 6
    assert scored["value"].tolist() == pytest.approx([frechet_distance(fake, real),
                                                      kernel_inception_distance(fake, real, subsets=4)[0]], rel=1e-9)
    assert (scored["missing"] == "").all()
