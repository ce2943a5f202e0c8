"""TSED against its threshold, from per-pair tables; and what TSED cannot see (errors along epipolar lines)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from reports.error_accumulation import tsed_pairs_by_distance
from reports.tsed import TSEDConfig, tsed, tsed_pairs
from reports.tsed_curve import DEFAULT_MIN_MATCHES, plot_tsed_curve, tsed_threshold_curve
from scenes.camera_paths import intrinsics_from_fov, orbit_cameras
from scenes.cameras import Cameras
from scenes.errors import InvalidInputError
from scenes.render import render_mesh
from scenes.scene import MultiViewScene
from scenes.shapes import make_object


def render_chair(size: int, elevation: float, views: int = 9) -> MultiViewScene:
    """The first `views` views of a 24-view orbit (15 degrees apart) around a procedural chair."""
    obj = make_object("chair", np.random.default_rng(0))
    cameras = Cameras(orbit_cameras(24, 2.7, elevation)[:views], intrinsics_from_fov(45.0, size))
    images, _ = render_mesh(obj.mesh, cameras, albedo_fn=obj.albedo_fn)
    return MultiViewScene(images, cameras)


def test_curve_counts_pairs_under_each_threshold():
    pairs = pd.DataFrame({"method": ["a"] * 4 + ["b"] * 2, "scene": ["s", "s", "t", "t", "s", "s"],
                          "matches": [20, 30, 14, 0, 15, 40], "median_sed": [0.4, 1.9, 0.1, np.nan, 2.0, 5.0]})
    curve = tsed_threshold_curve(pairs, thresholds=[0.5, 2.0, 2.5, 8.0])
    table = curve.set_index(["method", "threshold_px"])
    # a: 14 matches never count, nor a pair without matches; b: 2.0 is not below 2.0.
    assert table.loc["a", "consistent"].tolist() == [1, 2, 2, 2] and set(table.loc["a", "pairs"]) == {4}
    assert table.loc["b", "consistent"].tolist() == [0, 0, 1, 2]
    assert table.loc[("a", 2.0), "tsed"] == 0.5 and list(curve.columns) == ["method", "threshold_px", "consistent",
                                                                            "pairs", "tsed"]
    per_scene = tsed_threshold_curve(pairs, thresholds=[2.0], by=("method", "scene")).set_index(["method", "scene"])
    assert per_scene["tsed"].to_dict() == {("a", "s"): 1.0, ("a", "t"): 0.0, ("b", "s"): 0.0}
    # Files written by the earlier matcher are read with its 10 matches.
    assert tsed_threshold_curve(pairs, [0.5], min_matches=10).set_index("method").loc["a", "consistent"] == 2
    with pytest.raises(InvalidInputError, match="lacks the columns \\['median_sed'\\]"):
        tsed_threshold_curve(pairs.drop(columns="median_sed"))
    with pytest.raises(InvalidInputError, match="thresholds"):
        tsed_threshold_curve(pairs, thresholds=[0.0])


def test_curve_at_two_pixels_is_the_reported_tsed(tmp_path):
    assert DEFAULT_MIN_MATCHES == TSEDConfig().min_matches
    views = render_chair(128, 25.0)
    frame = tsed_pairs_by_distance(views, 0, method="truth", scene="chair")
    frame.to_csv(tmp_path / "tsed_pairs.csv", index=False)  # as ScoreScene caches it
    cached = pd.read_csv(tmp_path / "tsed_pairs.csv")
    curve = tsed_threshold_curve(cached).set_index("threshold_px")
    assert curve.loc[2.0, "tsed"] == tsed(views.images, views.cameras) == cached["consistent"].mean()
    assert curve["tsed"].is_monotonic_increasing and curve.loc[8.0, "pairs"] == 8
    noise = tsed_threshold_curve(cached.assign(method="noise", matches=0))
    path = plot_tsed_curve(pd.concat([tsed_threshold_curve(cached), noise]), tmp_path / "curve.png")
    assert Image.open(path).size[0] > 100


def test_tsed_is_blind_to_shifts_along_epipolar_lines():
    """Views shifted sideways by 6 px (of 128) keep their pairs consistent on the orbit, where the epipolar lines
    of neighbours run nearly horizontal."""
    views = render_chair(128, 25.0)
    truth = tsed_pairs(views.images, views.cameras)
    shifted = tsed_pairs(np.roll(views.images, 6, axis=2), views.cameras)  # the background is white: no seam
    assert sum(p.consistent for p in truth) >= 5
    assert sum(p.consistent for p in shifted) >= sum(p.consistent for p in truth) - 1


def test_tsed_is_blind_to_mirror_flips_at_the_cameras_height():
    """Views flipped left to right stay consistent when the orbit is at the cameras' height (epipolar lines
    horizontal); at the test orbit's 25 degrees the lines tilt and the flip is caught."""
    level, raised = render_chair(128, 0.0), render_chair(128, 25.0)
    flipped_level = tsed(level.images[:, :, ::-1].copy(), level.cameras)
    assert flipped_level >= tsed(level.images, level.cameras) - 0.15 and flipped_level >= 0.4
    assert tsed(raised.images[:, :, ::-1].copy(), raised.cameras) < 0.5 * tsed(raised.images, raised.cameras)
