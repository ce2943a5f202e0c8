"""The Luigi task `FitNeRF` through the `luigi` command: its subset parameters, its export, and bad input refused
before anything is written."""

from __future__ import annotations

import json

import pytest

from scenes.transforms_json import read_split_names, read_transforms
from tests.pipeline.conftest import PipelineRunner

pytestmark = pytest.mark.slow  # the `luigi` command in a subprocess renders the tiny dataset first

SCENE = ["--scene", "mug_0002", "--method", "ground_truth"]


def test_fit_nerf_task_exports_the_split_and_refuses_bad_views(tmp_path):
    runner = PipelineRunner(tmp_path)
    result = runner("luigi", "FitNeRF", "--local-scheduler", *SCENE, "--FitNeRF-train-views", "[1, 99]")
    assert result.returncode != 0 and "train_views" in result.stderr and "Fix:" in result.stderr
    assert runner.folders("FitNeRF") == set() and len(runner.folders("GenerateViews")) == 1

    result = runner("luigi", "FitNeRF", "--local-scheduler", *SCENE, "--FitNeRF-train-fraction", "0.5",
                    "--FitNeRF-steps", "20")
    assert result.returncode == 0, result.stderr[-3000:]
    (name,) = runner.folders("FitNeRF")
    folder = tmp_path / "runs" / "FitNeRF" / name
    views = read_transforms(folder / "scene")
    train, heldout = read_split_names(folder / "scene")
    assert len(views) == 8 and len(train) == 4 and views.names[0] in train  # tiny.cfg: 8 test views, input 0
    assert sorted(train + heldout) == sorted(views.names)
    renders = read_transforms(folder)
    assert renders.names == heldout
    summary = json.loads((folder / "nerf.json").read_text())
    assert summary["steps"] == 20 and summary["heldout_views"] == heldout
