"""MVDiffusion's joint generator as a built-in method of the object pipeline: TrainGenerator trains the multi-branch
UNet on N-view groups with the dataset's depth, GenerateViews generates every test view jointly, and the report
scores it beside the ground truth."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scenes.transforms_json import read_transforms
from tests.pipeline.conftest import PipelineRunner

pytestmark = pytest.mark.slow


def test_mvdiffusion_runs_through_the_pipeline(tmp_path):
    runner = PipelineRunner(tmp_path)
    methods = ["ground_truth", "mvdiffusion/joint"]
    result = runner("nvsc", "run", "--BuildReport-methods", json.dumps(methods), "--BuildReport-set-scores", "false",
                    "--BuildReport-animations", "false")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    report = re.search(r"nvsc: done\. Output: (.+)", result.stdout).group(1).strip()
    table = pd.read_csv(Path(report) / "summary.csv", index_col="method")
    assert list(table.index) == methods and np.isfinite(table.loc["mvdiffusion/joint", "consistency_psnr"])

    (trained,) = runner.folders("TrainGenerator")
    config = json.loads((tmp_path / "runs" / "TrainGenerator" / trained / "checkpoint" / "config.json").read_text())
    assert config["architecture"] == "mvdiffusion" and config["model"]["correspondence"] == "depth"
    (generated,) = [name for name in runner.folders("GenerateViews") if name.startswith("mvdiffusion-joint")]
    views = read_transforms(tmp_path / "runs" / "GenerateViews" / generated)
    (truth,) = [name for name in runner.folders("GenerateViews") if name.startswith("ground_truth")]
    truth = read_transforms(tmp_path / "runs" / "GenerateViews" / truth)
    assert len(views) == len(truth) == 8
    np.testing.assert_array_equal(views.images[0], truth.images[0])  # the input view is kept as given
    assert np.abs(views.images[1:] - truth.images[1:]).mean() > 1e-3  # the others are generated
