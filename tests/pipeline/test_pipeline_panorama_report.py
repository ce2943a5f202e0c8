"""A panorama run through the real `nvsc run`: BuildReport takes its rows from ScorePanorama (no NeRF is fitted),
checks the controls on overlap PSNR and rotation-only TSED, and shows error accumulation (overlap PSNR and
rotation-only TSED's per-pair verdicts against the distance from the input view) and loop closure; `nvsc report`
rebuilds the same report from the run folder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from tests.pipeline.conftest import PipelineRunner

pytestmark = pytest.mark.slow

PANORAMA_CONFIG = Path(__file__).with_name("panorama.cfg")
#: Controls, MVDiffusion's joint generator and 3DiM's stochastic conditioning, each trained for a few steps.
METHODS = ["ground_truth", "perturbed", "noise", "mvdiffusion/joint", "xunet/stochastic"]


def panorama_runner(tmp_path: Path) -> PipelineRunner:
    runner = PipelineRunner(tmp_path)
    # One training room for the generators; 32 px, a size the tiny presets' attention resolutions divide.
    config = PANORAMA_CONFIG.read_text().replace("train_instances = 0", "train_instances = 1") \
        .replace("image_size = 48", "image_size = 32")
    (tmp_path / "tiny.cfg").write_text(config)
    return runner


def test_panorama_report_through_nvsc_run(tmp_path):
    runner = panorama_runner(tmp_path)
    result = runner("nvsc", "run", "--BuildReport-methods", json.dumps(METHODS), "--BuildReport-set-scores", "false")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    report = Path(re.search(r"nvsc: done\. Output: (.+)", result.stdout).group(1).strip())
    assert runner.folders("FitNeRF") == set() and runner.folders("ScoreScene") == set()
    summary = pd.read_csv(report / "summary.csv", index_col="method")
    assert list(summary.index) == METHODS
    assert {"overlap_psnr", "rotation_tsed", "loopclosure_psnr"} <= set(summary.columns)

    controls = (report / "controls.txt").read_text().splitlines()
    assert controls[0] == "Controls in order: ground_truth above perturbed above noise on every consistency score " \
                          "checked."
    assert controls[1].startswith("overlap_psnr: ground_truth (") and "as they must" in controls[1]
    assert controls[2].startswith("rotation_tsed: ")

    runs = tmp_path / "runs" / "ScorePanorama"
    curve = pd.read_csv(report / "accumulation.csv")
    closure = pd.read_csv(report / "loop_closure.csv")
    for method in METHODS:
        (folder,) = [f for f in runner.folders("ScorePanorama") if f.startswith(method.replace("/", "-") + "-")]
        per_pair = pd.read_csv(runs / folder / "per_pair.csv")
        expected = per_pair.groupby("index_distance")["overlap_psnr"].mean()
        rows = curve[(curve["method"] == method) & (curve["metric"] == "overlap_psnr")].set_index("index_distance")
        pd.testing.assert_series_equal(rows["mean"], expected, check_names=False)
        # Rotation-only TSED per pair: the mean verdict per distance, over pairs whose mean is the scene's score.
        verdicts = per_pair.assign(value=per_pair["consistent"].astype(float))
        rows = curve[(curve["method"] == method) & (curve["metric"] == "rotation_tsed")].set_index("index_distance")
        pd.testing.assert_series_equal(rows["mean"], verdicts.groupby("index_distance")["value"].mean(),
                                       check_names=False)
        # The closing pair (last view, input view 0) is the pair ScorePanorama scored as loop closure from the images.
        scores = pd.read_csv(runs / folder / "scores.csv").set_index("metric")["value"]
        (ends,) = closure[closure["method"] == method].itertuples()
        assert (ends.opening_at, ends.closing_at) == ("0-1", "7-0")
        assert ends.closing == pytest.approx(scores["loopclosure_psnr"])
        assert scores["rotation_tsed"] == verdicts["value"].mean()

    page = (report / "index.html").read_text()
    assert "Controls in order" in page and "Error accumulation and loop closure" in page
    for metric in ("overlap_psnr", "rotation-only TSED"):
        assert f"<figcaption>{metric} against the distance from the input view" in page
    assert (report / "figures" / "accumulation_rotation_tsed.png").is_file()
    table = pd.read_csv(report / "accumulation_by_distance.csv", index_col=["metric", "method"])
    assert list(table.columns) == ["d=0.5", "d=1.5", "d=2.5", "d=3.5"]  # pairs of the 8-view ring
    assert list(table.loc["rotation_tsed"].index) == METHODS
    assert "NeRF render (right" not in page  # the turntables show the views only
    assert {p.name for p in (report / "animations").glob("*.gif")} == {"room_0001.gif"}

    rebuilt = runner("nvsc", "report", "runs", "--out", "rebuilt", "--no-animations")
    assert rebuilt.returncode == 0, rebuilt.stderr[-4000:]
    for name in ("summary.csv", "controls.txt", "accumulation.csv", "accumulation_by_distance.csv", "loop_closure.csv"):
        assert (tmp_path / "rebuilt" / name).read_text() == (report / name).read_text(), name
