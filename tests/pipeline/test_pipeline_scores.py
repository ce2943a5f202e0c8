"""Scoring tasks through the real `luigi` command: scores recorded as missing without weights, strict mode, and the
same tasks recomputed (and nothing before them) once weights are imported with `nvsc weights import`."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from reports.weights import import_file
from tests.pipeline.conftest import PipelineRunner
from tests.reports.weight_files import make_weight_file

pytestmark = pytest.mark.slow

METHOD = "noise"


def _only(runner: PipelineRunner, task: str):
    folders = runner.folders(task)
    assert len(folders) == 1, folders
    return runner.workdir / "runs" / task / folders.pop()


def test_scores_missing_then_strict_then_present(tmp_path):
    runner = PipelineRunner(tmp_path)
    runner.env["NVSC_WEIGHTS_DIR"] = str(tmp_path / "weights")
    score = ("luigi", "ScoreScene", "--scene", "mug_0002", "--method", METHOD, "--local-scheduler")
    result = runner(*score)
    assert result.returncode == 0, result.stderr[-4000:]
    score_set = ("luigi", "ScoreMethodSet", "--method", METHOD, "--local-scheduler")
    assert runner(*score_set).returncode == 0

    tidy = pd.read_csv(_only(runner, "ScoreScene") / "scores.csv", keep_default_na=False, na_values=[""])
    assert list(tidy.columns) == ["method", "scene", "metric", "value", "missing"]
    lpips = tidy[tidy["metric"].str.endswith("_lpips")]
    assert len(lpips) == 3 and lpips["value"].isna().all()  # consistency, distilled and fidelity
    assert set(lpips["missing"]) == {"weights missing: nvsc weights fetch alexnet lpips-alex"}
    others = tidy[~tidy["metric"].str.endswith("_lpips")]
    assert others["value"].notna().all() and others["missing"].isna().all()
    assert "tsed" in set(tidy["metric"])
    sets = pd.read_csv(_only(runner, "ScoreMethodSet") / "set_scores.csv")
    assert sets["metric"].tolist() == ["fidelity_fid", "fidelity_kid"] and sets["value"].isna().all()
    assert set(sets["missing"]) == {"weights missing: nvsc weights fetch inception-v3-fid"}

    strict = runner("nvsc", "run", "ScoreScene", "--scene", "mug_0002", "--method", METHOD, "--strict-metrics")
    assert strict.returncode != 0
    assert "nvsc weights fetch alexnet lpips-alex" in strict.stdout + strict.stderr

    before = {task: runner.folders(task) for task in ("FitNeRF", "GenerateViews", "ScoreScene", "ScoreMethodSet")}
    for name in ("alexnet", "lpips-alex", "inception-v3-fid"):  # what `nvsc weights import FILE` does
        import_file(make_weight_file(name, tmp_path / "downloads"), cache=tmp_path / "weights")
    assert runner(*score).returncode == 0
    assert runner(*score_set).returncode == 0
    after = {task: runner.folders(task) for task in before}
    assert after["FitNeRF"] == before["FitNeRF"] and after["GenerateViews"] == before["GenerateViews"]
    (new_scores,) = after["ScoreScene"] - before["ScoreScene"]
    (new_sets,) = after["ScoreMethodSet"] - before["ScoreMethodSet"]
    tidy = pd.read_csv(runner.workdir / "runs" / "ScoreScene" / new_scores / "scores.csv",
                       keep_default_na=False, na_values=[""])
    assert tidy["missing"].isna().all() and all(math.isfinite(v) for v in tidy["value"])
    sets = pd.read_csv(runner.workdir / "runs" / "ScoreMethodSet" / new_sets / "set_scores.csv")
    values = sets.set_index("metric")["value"]
    assert sets["missing"].isna().all() and values["fidelity_fid"] > 0 and math.isfinite(values["fidelity_kid"])
