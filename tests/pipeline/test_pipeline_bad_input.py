"""Bad input stops the pipeline with one message naming the thing and the fix, before anything is written;
a rerun after the fix goes on from what was already complete."""

from __future__ import annotations

import numpy as np
import pytest

from scenes.dataset import ProceduralDatasetConfig, generate_dataset
from tests.pipeline.conftest import PipelineRunner

pytestmark = pytest.mark.slow


@pytest.fixture
def external_dataset(tmp_path):
    config = ProceduralDatasetConfig(categories=("mug",), train_instances=1, val_instances=0, test_instances=1,
                                     train_views=4, test_views=8, image_size=32)
    root = tmp_path / "my_dataset"
    generate_dataset(config, root)
    return root


def test_malformed_pose_is_named_and_nothing_is_written(tmp_path, external_dataset):
    runner = PipelineRunner(tmp_path)
    pose = external_dataset / "mug_test" / "mug_0001" / "pose" / "000003.txt"
    good = pose.read_text()
    pose.write_text("1 0 0\n0 1 0\n")
    result = runner("nvsc", "run", "PrepareDataset", "--PrepareDataset-source", str(external_dataset))
    assert result.returncode != 0
    assert "000003.txt" in result.stderr and "Fix:" in result.stderr
    # One message, not Luigi's traceback of its worker frames before it.
    assert "Traceback" not in result.stderr
    # nvsc's own luigi.cfg gives Luigi nothing to warn about, so a warning that matters is not lost among them.
    assert "Warning" not in result.stderr, result.stderr[:2000]
    assert runner.folders("PrepareDataset") == set()

    pose.write_text(good)
    result = runner("nvsc", "run", "PrepareDataset", "--PrepareDataset-source", str(external_dataset))
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(runner.folders("PrepareDataset")) == 1


def test_unknown_sampler_is_refused_before_any_task_runs(tmp_path):
    runner = PipelineRunner(tmp_path)
    result = runner("nvsc", "run", "--BuildReport-methods", '["ground_truth", "xunet/bogus"]')
    assert result.returncode == 2
    assert "unknown sampler 'bogus'" in result.stderr and "xunet/stochastic" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_rerun_after_a_failure_keeps_completed_tasks(tmp_path):
    runner = PipelineRunner(tmp_path)
    # A wrong image size for the ground-truth views fails GenerateViews after the dataset is complete...
    result = runner("luigi", "ScoreScene", "--local-scheduler", "--scene", "mug_0002", "--method", "ground_truth",
                    "--GenerateViews-input-view", "99")
    assert result.returncode != 0 and "input_view" in result.stderr
    dataset = runner.folders("PrepareDataset")
    assert len(dataset) == 1 and runner.folders("GenerateViews") == set()
    # ...and the fixed rerun reuses the dataset instead of rendering it again.
    result = runner("luigi", "ScoreScene", "--local-scheduler", "--scene", "mug_0002", "--method", "ground_truth")
    assert result.returncode == 0, result.stderr[-3000:]
    assert runner.folders("PrepareDataset") == dataset
    assert len(runner.folders("ScoreScene")) == 1


@pytest.mark.parametrize("arguments, message", [
    (("run", "NoSuchTask"), "nvsc has no task 'NoSuchTask'. Fix: name one of BuildReport, FitNeRF"),
    (("run", "--BuildReport-methods", "notjson"), "the value given for methods cannot be parsed"),
    (("run", "--BuildReport-methods", "[]"), "BuildReport.methods: is empty"),
    (("run", "--BuildReport-bootstrap-resamples", "5"), "5 resamples cannot give a percentile interval"),
    (("foo",), "unknown command 'foo'"),
])
def test_bad_command_lines_get_one_message_before_any_task_runs(tmp_path, arguments, message):
    result = PipelineRunner(tmp_path)("nvsc", *arguments)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_help_lists_every_tasks_options(tmp_path):
    # argparse formats help texts with %: a Luigi parameter's description with a bare % broke `--help`.
    result = PipelineRunner(tmp_path)("nvsc", "run", "--help-all")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--BuildReport-bootstrap-resamples" in result.stdout and "--TrainGenerator-steps" in result.stdout


def test_strict_metrics_without_weights_stops_before_any_task_runs(tmp_path):
    # A finished report would not run its scores again, so the weights are checked before anything runs.
    runner = PipelineRunner(tmp_path)
    runner.env["NVSC_WEIGHTS_DIR"] = str(tmp_path / "no-weights")
    result = runner("nvsc", "run", "--strict-metrics")
    assert result.returncode == 2 and "nvsc weights fetch" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_report_into_a_file_is_refused(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    result = PipelineRunner(tmp_path)("nvsc", "report", "runs", "--out", "afile")
    assert result.returncode == 2 and "--out: afile is a file" in result.stderr


def test_an_interrupt_says_what_is_kept_instead_of_a_traceback(monkeypatch, capsys):
    import pipeline.cli as cli

    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "run", interrupted)
    assert cli.main(["run"]) == 130
    assert "interrupted. What was complete is kept" in capsys.readouterr().err


def test_cameras_that_look_at_no_common_point_are_refused_when_the_dataset_is_prepared(tmp_path, external_dataset):
    # A forward-facing capture (parallel optical axes) used to pass PrepareDataset and fail in the first FitNeRF,
    # with advice to set a field no option reached.
    for index, pose in enumerate(sorted((external_dataset / "mug_test" / "mug_0001" / "pose").glob("*.txt"))):
        c2w = np.eye(4)
        c2w[0, 3], c2w[2, 3] = 0.1 * index, -2.0
        pose.write_text(" ".join(f"{v:g}" for v in c2w.ravel()))
    runner = PipelineRunner(tmp_path)
    result = runner("nvsc", "run", "PrepareDataset", "--PrepareDataset-source", str(external_dataset))
    assert result.returncode != 0
    assert "cameras of test scene" in result.stderr and "mug_0001" in result.stderr
    assert "--FitNeRF-scene-box" in result.stderr and "Traceback" not in result.stderr
    assert runner.folders("PrepareDataset") == set()
    # The remedy the message names is reachable from the command line (and so from luigi.cfg).
    result = runner("nvsc", "run", "PrepareDataset", "--PrepareDataset-source", str(external_dataset),
                    "--FitNeRF-scene-box", "[[-1, -1, -1], [1, 1, 1]]")
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(runner.folders("PrepareDataset")) == 1
