"""3DiM's protocol: the three ways to choose the training subset, the input view always kept, the fit on it, and
the export that nerfstudio's own data parser reads back."""

import json
from pathlib import Path

import numpy as np
import pytest
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

from nerf.export import SCENE_DIR, SUMMARY_FILE, export_protocol
from nerf.protocol import SubsetConfig, heldout_indices, run_protocol, split_indices
from scenes.errors import InvalidInputError
from scenes.transforms_json import read_split_names, read_transforms
from tests.nerf.test_nerf_fit import TINY
from tests.nerf.test_nerf_toyscene import make_toy_scene


def test_heldout_every_keeps_the_input_view_for_training():
    np.testing.assert_array_equal(heldout_indices(20, 4), [2, 6, 10, 14, 18])
    np.testing.assert_array_equal(heldout_indices(7, 2), [1, 3, 5])
    np.testing.assert_array_equal(heldout_indices(9, 5), [2, 7])
    np.testing.assert_array_equal(heldout_indices(10, 4, keep_view=3), [1, 5, 9])
    for every in range(2, 9):
        for num_views in range(every // 2 + 1, 30):
            for keep in (0, num_views - 1) if num_views >= every else (0,):
                indices = heldout_indices(num_views, every, keep)
                assert keep not in indices and indices.max() < num_views and len(indices) < num_views
                assert len(indices) in (num_views // every, num_views // every + 1)
    for num_views, every in [(20, 1), (20, 0), (2, 4)]:
        with pytest.raises(InvalidInputError, match="heldout_every"):
            heldout_indices(num_views, every)


def test_fraction_draws_from_the_seed_and_keeps_the_input_view():
    train, heldout = split_indices(20, SubsetConfig(train_fraction=0.25, keep_view=7, seed=3))
    assert len(train) == 5 and 7 in train and len(heldout) == 15
    np.testing.assert_array_equal(np.sort(np.concatenate([train, heldout])), np.arange(20))
    again, _ = split_indices(20, SubsetConfig(train_fraction=0.25, keep_view=7, seed=3))
    np.testing.assert_array_equal(train, again)
    draws = {tuple(split_indices(20, SubsetConfig(train_fraction=0.25, seed=seed))[0]) for seed in range(5)}
    assert len(draws) > 1 and all(0 in draw for draw in draws)
    with pytest.raises(InvalidInputError, match="train_fraction"):
        split_indices(20, SubsetConfig(train_fraction=1.0))


def test_explicit_views_win_and_gain_the_input_view():
    subset = SubsetConfig(heldout_every=2, train_fraction=0.5, train_views=(5, 1, 3), keep_view=2)
    train, heldout = split_indices(8, subset)
    np.testing.assert_array_equal(train, [1, 2, 3, 5])
    np.testing.assert_array_equal(heldout, [0, 4, 6, 7])
    for bad in [(1, 8), (-1,), (0.5,)]:
        with pytest.raises(InvalidInputError, match="train_views"):
            split_indices(8, SubsetConfig(train_views=bad))
    with pytest.raises(InvalidInputError, match="holds none out"):
        split_indices(3, SubsetConfig(train_views=(1, 2)))
    with pytest.raises(InvalidInputError, match="keep_view"):
        split_indices(3, SubsetConfig(keep_view=3))


@pytest.fixture(scope="module")
def protocol_result():
    scene = make_toy_scene(size=8, num_views=6)
    return scene, run_protocol(scene, SubsetConfig(heldout_every=3), TINY)


def test_run_protocol_fits_the_subset_and_renders_the_heldout_cameras(protocol_result):
    scene, result = protocol_result
    assert result.train.names == [scene.names[i] for i in (0, 2, 3, 5)]
    assert result.heldout.names == result.renders.names == [scene.names[i] for i in (1, 4)]
    np.testing.assert_array_equal(result.heldout.images, scene.images[[1, 4]])
    np.testing.assert_array_equal(result.renders.cameras.c2w, scene.cameras.c2w[[1, 4]])
    assert result.renders.images.shape == (2, 8, 8, 3) and result.renders.images.dtype == np.float32
    assert result.fitted.steps == TINY.steps


def test_export_is_read_back_by_nvsc_and_by_nerfstudio(protocol_result, tmp_path):
    scene, result = protocol_result
    export_protocol(result, tmp_path)
    renders = read_transforms(tmp_path)
    assert renders.names == result.renders.names
    np.testing.assert_allclose(renders.images, result.renders.images, atol=0.5 / 255 + 1e-6)  # 8-bit PNGs
    views = read_transforms(tmp_path / SCENE_DIR)
    assert views.names == scene.names
    assert read_split_names(tmp_path / SCENE_DIR) == (result.train.names, result.heldout.names)
    parser = NerfstudioDataParserConfig(data=tmp_path / SCENE_DIR, orientation_method="none", center_method="none",
                                        auto_scale_poses=False).setup()
    for split, names in (("train", result.train.names), ("test", result.heldout.names)):
        outputs = parser.get_dataparser_outputs(split=split)
        assert [Path(f).stem for f in outputs.image_filenames] == names
        index = [scene.names.index(name) for name in names]
        np.testing.assert_allclose(outputs.cameras.camera_to_worlds.numpy(), scene.cameras.c2w[index, :3, :4],
                                   atol=1e-6)
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert summary["heldout_views"] == result.heldout.names and summary["steps"] == TINY.steps
    assert summary["config"]["field"]["num_levels"] == TINY.field.num_levels
    with pytest.raises(InvalidInputError, match="already exists"):
        export_protocol(result, tmp_path)
