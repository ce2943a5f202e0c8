"""Error against distance from the input view, loop closure, and their figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from generators.controls import perturbed_views
from reports.accumulation_figures import (panels_figure, plot_error_by_distance, plot_loop_closure,
                                          plot_panels_by_distance)
from reports.error_accumulation import (accumulation_curve, consistency_from_per_view, distance_table,
                                        fidelity_by_distance, loop_closure, overlap_by_distance, tsed_from_pairs,
                                        tsed_pairs_by_distance, view_distances)
from reports.overlap import overlap_psnr_pairs
from reports.tsed import pair_consistency, tsed_pairs
from scenes.camera_paths import intrinsics_from_fov, orbit_cameras
from scenes.cameras import Cameras
from scenes.errors import InvalidInputError
from scenes.scene import MultiViewScene
from tests.reports.test_reports_panorama_scores import render_room


@pytest.fixture(scope="module")
def room() -> MultiViewScene:
    return render_room(32, seed=1)


def drifting(truth: MultiViewScene, input_view: int, seed: int = 0) -> MultiViewScene:
    """Views whose noise grows with the ring distance from the input view (a model that accumulates error)."""
    rng = np.random.default_rng(seed)
    distance = view_distances(truth.cameras, input_view)["index_distance"].to_numpy()
    noise = rng.normal(size=truth.images.shape) * (0.03 * distance)[:, None, None, None]
    return MultiViewScene(np.clip(truth.images + noise, 0, 1), truth.cameras, truth.names)


def test_view_distances_on_rings():
    cameras = Cameras(orbit_cameras(8, 2.7, 0.0), intrinsics_from_fov(45.0, 8))
    frame = view_distances(cameras, 2)
    assert frame["index_distance"].tolist() == [2, 1, 0, 1, 2, 3, 4, 3]
    np.testing.assert_allclose(frame["angle_deg"], 45.0 * frame["index_distance"], atol=1e-6)
    assert np.isnan(frame["step"][2])  # the input view is not generated
    assert frame["step"].drop(index=2).tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert view_distances(cameras, 2, closed=False)["index_distance"].tolist() == [2, 1, 0, 1, 2, 3, 4, 5]
    with pytest.raises(InvalidInputError, match="input_view.*8 is not a view index"):
        view_distances(cameras, 8)


def test_fidelity_grows_worse_with_distance(room):
    views = drifting(room, 0)
    frame = fidelity_by_distance(views, room, 0, method="drift", scene="room")
    assert set(frame["view"]) == set(range(1, 8)) and set(frame["metric"]) == {"fidelity_psnr", "fidelity_ssim"}
    row = frame[(frame["view"] == 5) & (frame["metric"] == "fidelity_psnr")]
    mse = np.mean((views.images[5].astype(np.float64) - room.images[5].astype(np.float64)) ** 2)
    assert row["value"].item() == pytest.approx(-10 * np.log10(mse))
    curve = accumulation_curve(frame)
    psnr_curve = curve[curve["metric"] == "fidelity_psnr"].set_index("index_distance")["mean"]
    assert list(psnr_curve.index) == [1, 2, 3, 4] and psnr_curve.is_monotonic_decreasing
    assert curve.loc[curve["index_distance"] == 4, "count"].tolist() == [1, 1]  # one view opposite the input


def test_overlap_by_distance_and_loop_closure(room):
    views = drifting(room, 0, seed=1)
    frame = overlap_by_distance(views, 0, method="drift", scene="room")
    pairs = overlap_psnr_pairs(views.images, views.cameras)
    assert frame[["first", "second"]].values.tolist() == [[p.first, p.second] for p in pairs]
    np.testing.assert_allclose(frame["value"], [p.psnr for p in pairs])
    assert frame["index_distance"].tolist() == [0.5, 1.5, 2.5, 3.5, 3.5, 2.5, 1.5, 0.5]
    closure = loop_closure(views, 0, method="drift", scene="room", panorama=True)
    assert closure[["first", "second", "metric"]].values.tolist() == [[7, 0, "loopclosure_psnr"]]
    assert closure["value"].item() == pytest.approx(pairs[-1].psnr)


def test_orbit_loop_closure_scores_the_last_view(room):
    orbit = Cameras(orbit_cameras(6, 2.7, 25.0), intrinsics_from_fov(45.0, 32))
    truth = MultiViewScene(room.images[:6], orbit)  # images need not match the cameras for these checks
    views = MultiViewScene(perturbed_views(truth, 3), orbit)
    closure = loop_closure(views, 0, method="perturbed", scene="s", panorama=False, truth=truth)
    values = closure.set_index("metric")["value"]
    assert closure["first"].tolist() == [5, 5, 5] and closure["second"].tolist() == [5, 5, 0]
    fidelity = fidelity_by_distance(views, truth, 0, method="perturbed", scene="s")
    assert values["loopclosure_psnr"] == fidelity.query("view == 5 and metric == 'fidelity_psnr'")["value"].item()
    assert values["loopclosure_tsed"] == float(pair_consistency(views.images, orbit, 5, 0).consistent)
    with pytest.raises(InvalidInputError, match="truth"):
        loop_closure(views, 0, method="perturbed", scene="s", panorama=False)


def test_figures_are_written(room, tmp_path):
    frames = [fidelity_by_distance(drifting(room, 0, seed), room, 0, method=method, scene=f"s{seed}")
              for seed, method in [(0, "drift"), (1, "drift"), (2, "perturbed")]]
    curve = accumulation_curve(pd.concat(frames))
    path = plot_error_by_distance(curve, "fidelity_psnr", tmp_path / "accumulation.png")
    assert Image.open(path).size[0] > 300
    closures = pd.concat([loop_closure(drifting(room, 0, s), 0, method=m, scene=f"s{s}", panorama=True)
                          for s, m in [(0, "drift"), (1, "ground_truth")]])
    assert Image.open(plot_loop_closure(closures, "loopclosure_psnr", tmp_path / "loop.png")).size[1] > 200
    with pytest.raises(InvalidInputError, match="'lpips'.*has no rows"):
        plot_error_by_distance(curve, "lpips", tmp_path / "x.png")


def test_consistency_per_held_out_view_against_hand_computed_distances():
    """Held-out views 0, 3, 4, 6 of an 8-view ring with the input at view 2: distances 2, 1, 2, 4."""
    c2w = orbit_cameras(8, 2.7, 0.0)
    names = [f"{i:06d}" for i in range(8)]
    per_view = pd.DataFrame({"view": ["000003", "000000", "000004", "000006", "000001"],
                             "kind": ["consistency"] * 4 + ["fidelity"],
                             "psnr": [21.0, 24.0, 19.0, 15.0, 99.0], "ssim": [0.8, 0.9, 0.7, 0.5, 0.99],
                             "lpips": np.nan, "method": "m", "scene": "s"})
    frame = consistency_from_per_view(per_view, names, c2w, 2)
    assert set(frame["metric"]) == {"consistency_psnr", "consistency_ssim"}
    psnr = frame[frame["metric"] == "consistency_psnr"].set_index("view")
    assert psnr["value"].to_dict() == {0: 24.0, 3: 21.0, 4: 19.0, 6: 15.0}  # `view`: the index in ring order
    assert psnr["index_distance"].to_dict() == {0: 2, 3: 1, 4: 2, 6: 4}
    np.testing.assert_allclose(psnr["angle_deg"], 45.0 * psnr["index_distance"], atol=1e-6)
    assert psnr["step"].to_dict() == {0: 1, 3: 3, 4: 4, 6: 6}  # targets 0 1 3 4 5 6 7 generated in this order
    curve = accumulation_curve(frame).query("metric == 'consistency_psnr'").set_index("index_distance")
    assert curve["mean"].to_dict() == {1: 21.0, 2: (24.0 + 19.0) / 2, 4: 15.0}
    with pytest.raises(InvalidInputError, match="names views \\['000009'\\]"):
        consistency_from_per_view(per_view.assign(view="000009"), names, c2w, 2)


def test_tsed_pairs_by_distance_holds_tseds_verdicts(room):
    views = drifting(room, 0, seed=3)
    frame = tsed_pairs_by_distance(views, 0, method="drift", scene="room")
    reference = tsed_pairs(views.images, views.cameras)
    assert frame[["first", "second"]].values.tolist() == [[p.first, p.second] for p in reference]
    assert frame["matches"].tolist() == [p.matches for p in reference]
    assert frame["consistent"].tolist() == [p.consistent for p in reference]
    # Pairs (i, i + 1) of an 8-view ring, input 0: view distances 0 1 2 3 4 3 2 1, a pair at the mean of its two.
    assert frame["index_distance"].tolist() == [0.5, 1.5, 2.5, 3.5, 3.5, 2.5, 1.5]
    assert frame["step"].tolist() == [1.0, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5]


def test_tsed_from_cached_pairs_against_direct_means(tmp_path):
    pairs = pd.DataFrame({"method": "m", "scene": "s", "first": [0, 1, 2, 7], "second": [1, 2, 3, 0],
                          "index_distance": [0.5, 1.5, 2.5, 0.5], "angle_deg": [22.5, 67.5, 112.5, 22.5],
                          "step": [1.0, 1.5, 2.5, 7.0], "overlap_psnr": [25.0, 24.0, 22.0, 18.0],
                          "matches": [30, 12, 4, 0], "median_transfer_error": [0.5, 1.5, 3.0, np.nan],
                          "consistent": [True, True, False, False]})
    pairs.to_csv(tmp_path / "per_pair.csv", index=False)
    back = pd.read_csv(tmp_path / "per_pair.csv")
    frame = tsed_from_pairs(back, "rotation_tsed", "median_transfer_error", "per_pair.csv", "ScorePanorama")
    assert set(frame["metric"]) == {"rotation_tsed", "rotation_tsed_matches", "rotation_tsed_median_transfer_error"}
    curve = accumulation_curve(frame).set_index(["metric", "index_distance"])["mean"]
    assert curve[("rotation_tsed", 0.5)] == 0.5 and curve[("rotation_tsed", 1.5)] == 1.0
    assert curve[("rotation_tsed_matches", 0.5)] == 15.0
    assert curve[("rotation_tsed_median_transfer_error", 0.5)] == 0.5  # the pair without matches has no error
    assert frame.query("metric == 'rotation_tsed'")["value"].mean() == pairs["consistent"].mean()  # the TSED
    with pytest.raises(InvalidInputError, match="per_pair.csv: column `consistent` holds \\['maybe'\\].*ScorePanorama"):
        tsed_from_pairs(back.assign(consistent="maybe"), "rotation_tsed", "median_transfer_error", "per_pair.csv",
                        "ScorePanorama")
    with pytest.raises(InvalidInputError, match="tsed_pairs.csv: lacks the columns \\['median_sed'\\]"):
        tsed_from_pairs(back)


def test_distance_table_holds_the_curve_means():
    curve = pd.DataFrame({"method": ["b", "a", "a", "b", "a"], "metric": ["tsed", "tsed", "tsed", "tsed", "other"],
                          "index_distance": [0.5, 0.5, 1.5, 1.5, 0.5], "mean": [0.0, 1.0, 0.25, 0.75, 9.0],
                          "std": np.nan, "count": 1})
    table = distance_table(curve, ["tsed"], order=["a", "b"])
    assert list(table.columns) == ["d=0.5", "d=1.5"]
    assert table.index.tolist() == [("tsed", "a"), ("tsed", "b")]
    assert table.values.tolist() == [[1.0, 0.25], [0.0, 0.75]]
    assert distance_table(curve, ["absent"]).empty


def test_panel_figure_draws_every_method_and_dashes_controls(tmp_path):
    rows = [(method, metric, d, value + d, 0.1, 2) for method, value in [("noise", 0.0), ("mvdiffusion/joint", 1.0),
                                                                        ("xunet/stochastic", 2.0)]
            for metric in ("tsed", "tsed_matches") for d in (0.5, 1.5)]
    curve = pd.DataFrame(rows, columns=["method", "metric", "index_distance", "mean", "std", "count"])
    figure = panels_figure(curve, ["tsed", "tsed_matches"], "TSED")
    first, second, legend = figure.axes
    assert [t.get_text() for t in legend.get_legend().get_texts()] == ["noise", "mvdiffusion/joint", "xunet/stochastic"]
    assert [line.get_linestyle() for line in second.get_lines()] == ["--", "-", "-"]
    np.testing.assert_allclose(second.get_lines()[1].get_ydata(), [1.5, 2.5])
    assert "fraction of consistent pairs" in first.get_ylabel()
    path = plot_panels_by_distance(curve, ["tsed", "tsed_matches"], tmp_path / "tsed.png", "TSED")
    assert Image.open(path).size[0] > Image.open(plot_error_by_distance(curve, "tsed", tmp_path / "one.png")).size[0]
