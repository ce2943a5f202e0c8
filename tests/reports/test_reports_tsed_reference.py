"""TSED against its authors' rule (Yu et al. 2023's scripts: COLMAP's exhaustive matcher, then compute_sed.py and
eval_consistency.py): the library's verdicts on rendered views against an independent float64 re-computation of
that rule on the same keypoints and descriptors; the rule's parts on hand-made descriptors; the settings."""

from __future__ import annotations

import numpy as np
import pytest

from reports.tsed import (COLMAP_EDGE_THRESHOLD, COLMAP_FIRST_OCTAVE, COLMAP_MAX_NUM_FEATURES,
                          COLMAP_MAX_NUM_ORIENTATIONS, COLMAP_NUM_OCTAVES, COLMAP_OCTAVE_RESOLUTION,
                          COLMAP_PEAK_THRESHOLD, Features, TSEDConfig, best_matches_one_way, descriptor_angles,
                          judge_pair, match_descriptors, root_sift_uint8, sift_features, tsed_pairs)
from scenes.camera_paths import intrinsics_from_fov, orbit_cameras
from scenes.cameras import Cameras
from scenes.errors import InvalidInputError
from scenes.render import render_mesh
from scenes.shapes import make_object

#: The reference's thresholds, written out here rather than read from the library.
RATIO, MAX_ANGLE, MIN_MATCHES, MAX_MEDIAN_SED = 0.8, 0.7, 15, 2.0


# ---- an independent re-computation of the reference's rule, in float64 ---------------------------------------

def reference_one_way(descriptors_a: np.ndarray, descriptors_b: np.ndarray, ratio: float, max_angle: float
                      ) -> dict[int, int]:
    """COLMAP's one-way brute-force matching, row by row: the angle between unit descriptors (uint8 / 512), the
    nearest and second-nearest, rejected when the nearest is beyond `max_angle` or not below `ratio` times the
    second (a second of pi / 2 when b has one descriptor)."""
    unit_a = descriptors_a.astype(np.float64) / 512.0
    unit_b = descriptors_b.astype(np.float64) / 512.0
    matches = {}
    for i, row in enumerate(unit_a):
        angles = [float(np.arccos(min(float(np.dot(row, other)), 1.0))) for other in unit_b]
        order = sorted(range(len(angles)), key=lambda j: (angles[j], j))
        if not order:
            continue
        best = angles[order[0]]
        second = angles[order[1]] if len(order) > 1 else np.pi / 2
        if best <= max_angle and best < ratio * second:
            matches[i] = order[0]
    return matches


def reference_matches(features_a: Features, features_b: Features, ratio: float = RATIO, max_angle: float = MAX_ANGLE,
                      cross_check: bool = True) -> set[tuple[int, int]]:
    forward = reference_one_way(features_a.descriptors, features_b.descriptors, ratio, max_angle)
    if not cross_check:
        return set(forward.items())
    backward = reference_one_way(features_b.descriptors, features_a.descriptors, ratio, max_angle)
    return {(i, j) for i, j in forward.items() if backward.get(j) == i}


def projection_matrix(c2w: np.ndarray, cameras: Cameras) -> np.ndarray:
    """P [3, 4] = K [R | t] of an OpenGL camera-to-world matrix, for pixels with centres at i + 0.5."""
    k = cameras.intrinsics
    opencv_c2w = c2w.copy()
    opencv_c2w[:3, 1:3] *= -1.0  # y up, z back -> y down, z forward
    w2c = np.linalg.inv(opencv_c2w)
    intrinsic = np.array([[k.fx, 0.0, k.cx], [0.0, k.fy, k.cy], [0.0, 0.0, 1.0]])
    return intrinsic @ w2c[:3]


def reference_fundamental(cameras: Cameras, a: int, b: int) -> np.ndarray:
    """F = [e']_x P' P^+ (Hartley & Zisserman, eq. 9.1), with e' = P' C the image of a's centre in b."""
    p_a, p_b = projection_matrix(cameras.c2w[a], cameras), projection_matrix(cameras.c2w[b], cameras)
    epipole = p_b @ np.append(cameras.c2w[a][:3, 3], 1.0)
    cross = np.array([[0.0, -epipole[2], epipole[1]], [epipole[2], 0.0, -epipole[0]], [-epipole[1], epipole[0], 0.0]])
    return cross @ p_b @ np.linalg.pinv(p_a)


def reference_verdict(points_a: np.ndarray, points_b: np.ndarray, fundamental: np.ndarray) -> tuple[int, float, bool]:
    """(matches, median SED, consistent) as compute_sed.py and eval_consistency.py decide, with COLMAP's dropping
    of pairs under 15 matches: each SED the mean of the two point-to-epipolar-line distances."""
    if len(points_a) < MIN_MATCHES:  # COLMAP wrote no matches: n_matches 0, never consistent
        return len(points_a), float("nan"), False
    distances = []
    for x_a, x_b in zip(points_a, points_b):
        h_a, h_b = np.append(x_a, 1.0), np.append(x_b, 1.0)
        line_b, line_a = fundamental @ h_a, fundamental.T @ h_b
        distances.append(0.5 * (abs(h_b @ line_b) / np.hypot(*line_b[:2]) + abs(h_a @ line_a) / np.hypot(*line_a[:2])))
    median = float(np.median(distances))
    return len(points_a), median, median < MAX_MEDIAN_SED


# ---- rendered views -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=[128, 256])
def orbit_views(request):
    """Views 0..7 of the test orbit (24 views, 15 degrees apart) of two procedural objects at 128 and 256 px."""
    size = request.param
    cameras = Cameras(orbit_cameras(24, 2.7, 25.0)[:8], intrinsics_from_fov(45.0, size))
    scenes = []
    for category in ("chair", "mug"):
        obj = make_object(category, np.random.default_rng(0))
        images, _ = render_mesh(obj.mesh, cameras, albedo_fn=obj.albedo_fn)
        scenes.append(images)
    return size, scenes, cameras


def test_verdicts_equal_a_float64_recomputation_of_the_reference_rule(orbit_views):
    size, scenes, cameras = orbit_views
    # The chair's views also under cameras 12 degrees too high: the same matches, far from their epipolar lines.
    wrong = Cameras(orbit_cameras(24, 2.7, 37.0)[:8], cameras.intrinsics)
    verdicts = []
    for images, cameras in [(scenes[0], cameras), (scenes[1], cameras), (scenes[0], wrong)]:
        features = [sift_features(image) for image in images]  # no upsampling at 128 px and above
        library = tsed_pairs(images, cameras)
        for pair in library:
            a, b = features[pair.first], features[pair.second]
            found = match_descriptors(a, b)
            expected = reference_matches(a, b)
            assert {tuple(m) for m in found} == expected, (size, pair)
            index = np.array(sorted(expected), dtype=int).reshape(-1, 2)
            fundamental = reference_fundamental(cameras, pair.first, pair.second)
            count, median, consistent = reference_verdict(a.points[index[:, 0]], b.points[index[:, 1]], fundamental)
            assert pair.matches == count and pair.consistent == consistent, (size, pair, count, median)
            if count >= MIN_MATCHES:
                assert pair.median_error == pytest.approx(median, rel=1e-9, abs=1e-12)
            verdicts.append("consistent" if consistent else "few" if count < MIN_MATCHES else "far")
    # The views give every part of the rule something to decide.
    assert len(verdicts) == 21 and {"consistent", "few", "far"} <= set(verdicts), verdicts


def test_the_recomputation_tells_another_rule_apart(orbit_views):
    """The check above can fail: nvsc's earlier ratio (0.75), or no cross-check, changes the match sets."""
    _, scenes, _ = orbit_views
    features = [sift_features(image) for image in scenes[0]]
    differ_ratio = differ_cross = 0
    for a, b in zip(features, features[1:]):
        expected = reference_matches(a, b)
        differ_ratio += {tuple(m) for m in match_descriptors(a, b, TSEDConfig(ratio=0.75))} != expected
        differ_cross += {tuple(m) for m in match_descriptors(a, b, TSEDConfig(cross_check=False))} != expected
    assert differ_ratio >= 1 and differ_cross >= 1


# ---- the rule's parts on hand-made descriptors ----------------------------------------------------------------

def stored(vector: np.ndarray) -> np.ndarray:
    """A non-negative vector as COLMAP stores a descriptor: unit length, times 512, rounded to uint8."""
    vector = np.asarray(vector, dtype=np.float64)
    return np.round(512.0 * vector / np.linalg.norm(vector)).astype(np.uint8)


def block(start: int, width: int = 32, extra: dict[int, float] | None = None) -> np.ndarray:
    """Ones on dimensions start..start+width-1 (each 90 once stored), plus `extra` weights."""
    vector = np.zeros(128)
    vector[start:start + width] = 1.0
    for index, weight in (extra or {}).items():
        vector[index] += weight
    return vector


def features(*vectors) -> Features:
    descriptors = np.stack([stored(v) for v in vectors])
    return Features(np.zeros((len(vectors), 2)), descriptors, np.ones(len(vectors)))


def test_cross_check_keeps_only_mutual_best_matches():
    x = block(0)
    near_x = block(0, extra={i: 0.8 for i in range(32, 40)})  # about 0.5 rad from x
    views_a = features(x, near_x)
    views_b = features(x, block(64))  # b1 shares nothing with a (pi / 2 away)
    angles = descriptor_angles(views_a.descriptors, views_b.descriptors)
    assert angles[0, 0] < 1e-3 and 0.3 < angles[1, 0] < 0.6 and angles[:, 1] == pytest.approx(np.pi / 2)
    # One way, both a0 and a1 find b0 (ratio against pi / 2 passes); back, b0 finds a0 only.
    assert sorted(map(tuple, match_descriptors(views_a, views_b, TSEDConfig(cross_check=False)))) == [(0, 0), (1, 0)]
    assert sorted(map(tuple, match_descriptors(views_a, views_b))) == [(0, 0)]
    assert reference_matches(views_a, views_b) == {(0, 0)}


def test_ratio_test_and_distance_cap_on_angles():
    # Rows: best 0.3, second 0.5 -> 0.6 ratio kept; best 0.45, second 0.5 -> 0.9 rejected; a tie rejected;
    # best 0.72 (over the 0.7 cap) with a far second rejected; a lone column counts pi / 2 as the second.
    distances = np.array([[0.3, 0.5, 1.5], [0.5, 0.45, 1.5], [0.4, 0.4, 1.5], [1.5, 0.72, 1.5]])
    assert best_matches_one_way(distances, 0.8, 0.7).tolist() == [0, -1, -1, -1]
    assert best_matches_one_way(distances, 0.8, 0.75).tolist() == [0, -1, -1, 1]
    lone = np.array([[1.2], [1.3]])  # 0.8 x pi / 2 = 1.257
    assert best_matches_one_way(lone, 0.8, 1.5).tolist() == [0, -1]
    # The same through descriptors: the cap is on the angle between RootSIFT descriptors, not an L2 distance.
    x = block(0, width=16)
    beyond = block(0, width=16, extra={i: 1.0 for i in range(16, 35)})  # about 0.85 rad from x
    assert descriptor_angles(stored(x)[None], stored(beyond)[None])[0, 0] > 0.7
    assert len(match_descriptors(features(x), features(beyond, block(64)))) == 0
    assert len(match_descriptors(features(x), features(beyond, block(64)), TSEDConfig(max_distance=1.0))) == 1


def test_a_pair_needs_15_matches():
    cameras = Cameras(orbit_cameras(24, 2.7, 25.0)[:2], intrinsics_from_fov(45.0, 128))
    points, _ = cameras.project(np.random.default_rng(0).uniform(-0.4, 0.4, (15, 3)))
    fourteen = judge_pair(0, 1, points[0][:14], points[1][:14], cameras)
    fifteen = judge_pair(0, 1, points[0], points[1], cameras)
    assert fourteen.matches == 14 and fourteen.median_error < 1e-6 and not fourteen.consistent
    assert fifteen.matches == 15 and fifteen.consistent
    # The paper's 10 still applies to the earlier matcher, and to a config that asks for it.
    assert judge_pair(0, 1, points[0][:10], points[1][:10], cameras, TSEDConfig(matcher="opencv")).consistent
    assert judge_pair(0, 1, points[0][:10], points[1][:10], cameras, TSEDConfig(min_matches=10)).consistent
    # 15 hand-made descriptors, each matching its own copy, are 15 matches.
    vectors = [block(8 * i, width=8) for i in range(15)]
    assert len(match_descriptors(features(*vectors), features(*vectors))) == 15


def test_root_sift_as_colmap_stores_it():
    raw = np.random.default_rng(0).integers(0, 160, size=(5, 128)).astype(np.float32)
    root = root_sift_uint8(raw)
    unit = np.sqrt(raw / raw.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0)  # L1 then sqrt: unit L2 norm already
    np.testing.assert_array_equal(root, np.clip(np.round(512 * unit), 0, 255).astype(np.uint8))


# ---- the settings are the reference's -------------------------------------------------------------------------

def test_default_settings_are_the_references():
    config = TSEDConfig()
    assert (config.matcher, config.ratio, config.max_distance, config.cross_check, config.min_matches,
            config.max_median_error) == ("colmap", 0.8, 0.7, True, 15, 2.0)
    assert (COLMAP_OCTAVE_RESOLUTION, COLMAP_FIRST_OCTAVE, COLMAP_NUM_OCTAVES, COLMAP_MAX_NUM_ORIENTATIONS,
            COLMAP_MAX_NUM_FEATURES) == (3, -1, 4, 2, 8192)
    assert COLMAP_PEAK_THRESHOLD == pytest.approx(0.02 / 3) and COLMAP_EDGE_THRESHOLD == 30.0
    legacy = TSEDConfig(matcher="opencv")
    assert (legacy.ratio, legacy.max_distance, legacy.cross_check, legacy.min_matches) == (0.75, np.inf, False, 10)
    assert TSEDConfig(matcher="opencv", cross_check=True).cross_check is True  # a value passed wins
    assert TSEDConfig().describe().startswith("matcher=colmap, min_matches=15, max_median_error=2.0, ratio=0.8")
    with pytest.raises(InvalidInputError, match="TSED matcher"):
        TSEDConfig(matcher="superglue")


def test_default_settings_match_pycolmap():
    """Where pycolmap is installed (it is not a dependency), its defaults are the ones the library copies."""
    pycolmap = pytest.importorskip("pycolmap")
    extraction, matching = pycolmap.SiftExtractionOptions(), pycolmap.SiftMatchingOptions()
    config = TSEDConfig()
    assert (matching.max_ratio, matching.max_distance, matching.cross_check) == (config.ratio, config.max_distance,
                                                                                 config.cross_check)
    assert pycolmap.TwoViewGeometryOptions().min_num_inliers == config.min_matches
    assert (extraction.first_octave, extraction.num_octaves, extraction.octave_resolution,
            extraction.max_num_orientations, extraction.max_num_features) == (
        COLMAP_FIRST_OCTAVE, COLMAP_NUM_OCTAVES, COLMAP_OCTAVE_RESOLUTION, COLMAP_MAX_NUM_ORIENTATIONS,
        COLMAP_MAX_NUM_FEATURES)
    assert extraction.peak_threshold == pytest.approx(COLMAP_PEAK_THRESHOLD)
    assert str(extraction.normalization).endswith("L1_ROOT") and not extraction.domain_size_pooling
