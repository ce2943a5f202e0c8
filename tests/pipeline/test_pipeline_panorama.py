"""Panorama scenes through the real `luigi` command: PrepareDataset renders rooms, ScorePanorama scores the
controls (ground truth above noise), and object scenes are refused with the fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.pipeline.conftest import PipelineRunner

PANORAMA_CONFIG = Path(__file__).with_name("panorama.cfg")


def scores(runner: PipelineRunner, method: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    (folder,) = [f for f in runner.folders("ScorePanorama") if f.startswith(method)]
    root = runner.workdir / "runs" / "ScorePanorama" / folder
    return (pd.read_csv(root / "scores.csv", keep_default_na=False, na_values=[""]), pd.read_csv(root / "per_pair.csv"))


def test_panorama_controls_through_luigi(tmp_path):
    runner = PipelineRunner(tmp_path)
    shutil.copy(PANORAMA_CONFIG, tmp_path / "tiny.cfg")
    for method in ("ground_truth", "noise"):
        result = runner("luigi", "ScorePanorama", "--scene", "room_0000", "--method", method, "--local-scheduler")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-4000:]
    assert runner.folders("PrepareDataset") == {f for f in runner.folders("PrepareDataset") if f.startswith("panorama-")}
    truth, truth_pairs = scores(runner, "ground_truth")
    noise, _ = scores(runner, "noise")
    assert list(truth.columns) == ["method", "scene", "metric", "value", "missing"]
    assert truth["metric"].tolist() == ["overlap_psnr", "rotation_tsed", "loopclosure_psnr"]
    assert noise["metric"].tolist() == ["overlap_psnr", "rotation_tsed", "loopclosure_psnr", "fidelity_psnr",
                                        "fidelity_ssim"]
    assert truth["missing"].isna().all() and set(noise["scene"]) == {"room_0000"}
    value = {name: frame.set_index("metric")["value"] for name, frame in (("truth", truth), ("noise", noise))}
    assert value["truth"]["overlap_psnr"] > value["noise"]["overlap_psnr"] + 8
    assert value["truth"]["rotation_tsed"] >= value["noise"]["rotation_tsed"] == 0.0
    assert len(truth_pairs) == 8
    assert truth_pairs["overlap_psnr"].mean() == pytest.approx(value["truth"]["overlap_psnr"], rel=1e-12)

    (tmp_path / "tiny.cfg").write_text((tmp_path / "tiny.cfg").read_text().replace("source = panorama",
                                                                                   "source = procedural"))
    refused = runner("luigi", "ScorePanorama", "--scene", "chair_0000", "--method", "noise", "--local-scheduler")
    assert refused.returncode != 0
    assert "parallax" in refused.stdout + refused.stderr and "--PrepareDataset-source panorama" in \
        refused.stdout + refused.stderr
