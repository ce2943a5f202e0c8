"""Error against distance from the input view, loop closure, and their figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from generators.controls import perturbed_views
from reports.accumulation_figures import plot_error_by_distance, plot_loop_closure
from reports.error_accumulation import (accumulation_curve, fidelity_by_distance, loop_closure, overlap_by_distance,
                                        view_distances)
from reports.overlap import overlap_psnr_pairs
from reports.tsed import pair_consistency
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
