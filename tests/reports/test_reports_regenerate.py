"""`nvsc report` rebuilds the report from run folders on disk, without torch, and merges several runs."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reports.assemble import ReportConfig, build_report, control_check
from reports.run_folders import collect_run, collect_runs
from reports.tables import summarize
from scenes.errors import InvalidInputError
from tests.reports.chromium_probe import CHROMIUM, images_in_chromium
from tests.reports.run_factory import write_run

ROOT = Path(__file__).resolve().parents[2]
LPIPS_MISSING = "weights missing: nvsc weights fetch lpips-alex"
METHODS = [("ground_truth", 30.0), ("perturbed", 20.0), ("noise", 8.0), ("xunet/stochastic@3", 24.0),
           ("xunet/stochastic@1", 22.0)]


def scores(methods=METHODS, shift=0.0, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for method, base in methods:
        for scene in ("mug-0", "chair-0"):
            rows.append((method, scene, "consistency_psnr", base + shift + rng.normal(), ""))
            rows.append((method, scene, "consistency_lpips", math.nan, LPIPS_MISSING))
            if method != "ground_truth":
                rows.append((method, scene, "fidelity_psnr", base - 5 + rng.normal(), ""))
    return pd.DataFrame(rows, columns=["method", "scene", "metric", "value", "missing"])


def set_scores(methods=METHODS):
    return pd.DataFrame([(m, "fidelity_fid", 200.0 - b, "") for m, b in methods if m != "ground_truth"],
                        columns=["method", "metric", "value", "missing"])


def report_without_torch(tmp_path):
    """`nvsc report` of a hand-made run folder in a fresh interpreter that must not import torch: (its result,
    the tidy scores written, the report folder)."""
    tidy = scores()
    write_run(tmp_path / "runs", tidy, set_scores=set_scores())
    code = ("import sys; from pipeline.cli import main; rc = main(['report', 'runs', '--out', 'report']); "
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchmetrics', 'lpips')); "
            "assert not heavy, heavy; sys.exit(rc)")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    return result, tidy, tmp_path / "report"


def test_nvsc_report_from_a_run_folder_without_torch(tmp_path):
    result, tidy, out = report_without_torch(tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Report page:" in result.stdout
    summary = pd.read_csv(out / "summary.csv", index_col="method")
    assert list(summary.index) == [m for m, _ in METHODS]
    expected = tidy.groupby(["method", "metric"])["value"].mean().unstack()
    for method, _ in METHODS:
        assert summary.loc[method, "consistency_psnr"] == pytest.approx(expected.loc[method, "consistency_psnr"])
    assert summary.loc["noise", "fidelity_fid"] == 192.0
    assert "weights missing: nvsc weights fetch lpips-alex" in (out / "summary.md").read_text()
    assert (out / "summary.tex").is_file() and (out / "scores.parquet").is_file()
    assert (out / "controls.txt").read_text().startswith("Controls in order")
    for name in ("consistency_vs_fidelity.png", "consistency_psnr.png", "figures/consistency_psnr_vs_fidelity_fid.png",
                 "figures/fidelity_psnr_per_scene.png", "figures/consistency_psnr_vs_guidance.png"):
        assert (out / name).is_file(), name
    assert not (out / "figures" / "consistency_lpips_per_scene.png").exists()  # no values at all: no figure
    assert sorted(p.name for p in (out / "grids").iterdir()) == ["chair-0.png", "mug-0.png"]
    assert {p.name for p in (out / "animations").glob("*.gif")} == {"chair-0.gif", "mug-0.gif"}


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs the Debian package)")
def test_the_rebuilt_page_loads_every_image_in_chromium(tmp_path):
    result, _, out = report_without_torch(tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    loaded = images_in_chromium(out / "index.html", tmp_path)
    embedded = len(list((out / "figures").iterdir())) + 2 + 2 + 2  # figures, grids, GIFs
    assert len(loaded) == embedded and all(i["complete"] and i["width"] > 0 for i in loaded)


def test_two_runs_merge_with_labelled_rows(tmp_path):
    write_run(tmp_path / "a" / "runs", scores(METHODS[:4]))
    write_run(tmp_path / "b" / "runs", scores(METHODS[:3] + [("xunet/naive", 15.0)], shift=-1.0, seed=1))
    runs = collect_runs([tmp_path / "a" / "runs", tmp_path / "b" / "runs"])
    assert [run.label for run in runs] == ["a/runs", "b/runs"]
    build_report(runs, tmp_path / "merged", ReportConfig(bootstrap_resamples=200, animations=False))
    summary = pd.read_csv(tmp_path / "merged" / "summary.csv", index_col="method")
    assert list(summary.index) == ["ground_truth [a/runs]", "perturbed [a/runs]", "noise [a/runs]",
                                   "xunet/stochastic@3", "ground_truth [b/runs]", "perturbed [b/runs]",
                                   "noise [b/runs]", "xunet/naive"]
    for run, label in [("a", "noise [a/runs]"), ("b", "noise [b/runs]")]:
        own = pd.read_csv(next((tmp_path / run / "runs" / "ScoreScene").glob("noise-mug-0-*")) / "scores.csv")
        other = pd.read_csv(next((tmp_path / run / "runs" / "ScoreScene").glob("noise-chair-0-*")) / "scores.csv")
        values = pd.concat([own, other]).query("metric == 'consistency_psnr'")["value"]
        assert summary.loc[label, "consistency_psnr"] == pytest.approx(values.mean())
    controls = (tmp_path / "merged" / "controls.txt").read_text()
    assert "consistency_psnr [a/runs]" in controls and "consistency_psnr [b/runs]" in controls
    assert len(list((tmp_path / "merged" / "grids").iterdir())) == 4


def test_a_control_of_one_merged_run_is_labelled_and_checked_with_that_runs_controls(tmp_path):
    write_run(tmp_path / "a" / "runs", scores(METHODS[:4]))
    write_run(tmp_path / "b" / "runs", scores(METHODS[:3] + [("shuffled_cameras", 5.0), ("xunet/naive", 15.0)],
                                              seed=1))
    runs = collect_runs([tmp_path / "a" / "runs", tmp_path / "b" / "runs"])
    build_report(runs, tmp_path / "merged", ReportConfig(bootstrap_resamples=200, animations=False))
    summary = pd.read_csv(tmp_path / "merged" / "summary.csv", index_col="method")
    assert "shuffled_cameras [b/runs]" in summary.index and "xunet/naive" in summary.index
    controls = (tmp_path / "merged" / "controls.txt").read_text()
    b_line = next(line for line in controls.splitlines() if line.startswith("consistency_psnr [b/runs]"))
    assert "shuffled_cameras" in b_line and "worse than ground_truth" in b_line
    assert "Controls not checked" not in controls  # the runs' own methods are no run of their own


def test_controls_out_of_order_are_flagged():
    tidy = scores([("ground_truth", 10.0), ("perturbed", 20.0), ("noise", 8.0)])
    lines = control_check(summarize(tidy, resamples=10))
    assert lines[0].startswith("WARNING") and "consistency_psnr" in lines[0]
    assert "ground_truth not better than perturbed" in lines[1]
    assert "not checked" in lines[2]  # LPIPS has no values: its order cannot be checked


def test_without_a_build_report_the_newest_scores_win(tmp_path):
    root = write_run(tmp_path / "runs", scores(METHODS[:3]), build=False)
    old = next((root / "ScoreScene").glob("noise-mug-0-*"))
    newer = old.with_name(old.name.replace("cccc", "ffff"))
    newer.mkdir()
    frame = pd.read_csv(old / "scores.csv").assign(value=lambda f: f["value"] + 100)
    frame.to_csv(newer / "scores.csv", index=False)
    (newer / "provenance.json").write_text((old / "provenance.json").read_text().replace(
        "2026-11-22T08:00:00", "2026-11-22T09:00:00"))
    run = collect_run(root)
    (chosen,) = [r for r in run.results if (r.method, r.scene) == ("noise", "mug-0")]
    assert chosen.scores_csv == newer / "scores.csv" and len(run.results) == 6


def test_bad_run_folders(tmp_path, capsys):
    from pipeline.cli import main

    with pytest.raises(InvalidInputError, match="does not exist"):
        collect_run(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="no complete ScoreScene"):
        collect_run(tmp_path / "empty")
    root = write_run(tmp_path / "runs", scores(METHODS[:2]))
    views = next((root / "GenerateViews").iterdir())
    (views / "transforms.json").unlink()
    assert main(["report", str(root), "--out", str(tmp_path / "out")]) == 2
    assert "transforms.json: does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_controls_on_a_lower_is_better_score():
    rows = [(m, "s", "consistency_lpips", v, "") for m, v in
            [("ground_truth", 0.1), ("perturbed", 0.3), ("noise", 0.8), ("shuffled_cameras", 0.6)]]
    lines = control_check(summarize(pd.DataFrame(rows, columns=["method", "scene", "metric", "value", "missing"])))
    assert lines[0] == "Controls in order: ground_truth above perturbed above noise on every consistency score checked."
    assert "ground_truth (0.1) < perturbed (0.3) < noise (0.8); shuffled_cameras (0.6) worse" in lines[1]
    tied = [(m, s, "tsed", 0.0, "") for m, s, *_ in rows]
    columns = ["method", "scene", "metric", "value", "missing"]
    lines = control_check(summarize(pd.DataFrame(rows + tied, columns=columns)))
    assert lines[0].startswith("Controls in order") and lines[2] == "tsed: not informative on this run, every " \
        "control scores 0."
    swapped = [(m, s, k, 0.05 if m == "shuffled_cameras" else v, r) for m, s, k, v, r in rows]
    lines = control_check(summarize(pd.DataFrame(swapped, columns=["method", "scene", "metric", "value", "missing"])))
    assert lines[0].startswith("WARNING") and "ground_truth not better than shuffled_cameras" in lines[1]


def test_a_method_that_reads_the_targets_depth_is_never_bold_and_is_named_in_controls(tmp_path):
    methods = METHODS + [("mvdiffusion/joint", 29.0)]
    root = write_run(tmp_path / "runs", scores(methods))
    (views,) = (root / "GenerateViews").glob("mvdiffusion-joint-mug-0-*")
    (views / "privileged.json").write_text(json.dumps({"reads": ["the ground-truth depth of the target views"]}))
    out = tmp_path / "report"
    build_report(collect_runs([root]), out, ReportConfig(animations=False, bootstrap_resamples=100))
    summary = (out / "summary.md").read_text()
    joint_row = next(line for line in summary.splitlines() if line.startswith("| mvdiffusion/joint"))
    stochastic_row = next(line for line in summary.splitlines() if line.startswith("| xunet/stochastic@3"))
    assert "**" not in joint_row and "**" in stochastic_row  # 29 beats 24, yet the image-only model is the best
    assert "mvdiffusion/joint reads the ground-truth depth of the target views: another task" in \
        (out / "controls.txt").read_text()
    assert (out / "paired.csv").is_file()
