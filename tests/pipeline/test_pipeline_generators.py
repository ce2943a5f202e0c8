"""Generators nvsc has never seen run through the whole Luigi pipeline: (a) a package outside the repository that
registers a generator through the `nvsc.generators` entry-point group, (b) a folder of pre-generated views; and
(c) a folder that does not match the test scene stops GenerateViews before it writes anything, naming the file."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from scenes.srn import list_srn_instances, read_srn_instance
from scenes.transforms_json import write_transforms
from tests.generators.plugin_package import DISTRIBUTION, VERSION, write_plugin_package
from tests.pipeline.conftest import PipelineRunner

pytestmark = pytest.mark.slow


def summary(result) -> pd.DataFrame:
    """The summary table of the report a successful `nvsc run` printed the folder of."""
    report = re.search(r"nvsc: done\. Output: (.+)", result.stdout).group(1).strip()
    return pd.read_csv(Path(report) / "summary.csv", index_col="method")


def add_generator(runner: PipelineRunner, name: str, folder: Path) -> None:
    with open(runner.workdir / "tiny.cfg", "a") as config:
        config.write(f"\n[generator.{name}]\nfolder = {folder}\n")


def workdir(path: Path) -> PipelineRunner:
    path.mkdir(parents=True)
    return PipelineRunner(path)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A workdir with the tiny dataset, the outside package on the PYTHONPATH of its runs, and a folder holding the
    ground-truth test views in transforms.json layout. The tests share it (and the ground truth's scores)."""
    root = tmp_path_factory.mktemp("generators")
    runner = workdir(root / "work")
    site = write_plugin_package(root / "site")
    runner.env["PYTHONPATH"] = os.pathsep.join([str(site), runner.env.get("PYTHONPATH", "")])
    result = runner("nvsc", "run", "PrepareDataset")
    assert result.returncode == 0, result.stderr[-3000:]
    (dataset,) = runner.folders("PrepareDataset")
    views = root / "views"
    for instance in list_srn_instances(runner.workdir / "runs" / "PrepareDataset" / dataset / "srn", "test"):
        write_transforms(read_srn_instance(instance, image_size=32), views / instance.name)
    return runner, views


def test_an_entry_point_generator_from_an_outside_package_runs_through_the_pipeline(prepared):
    runner, _ = prepared
    method = "copycat/stochastic@0.5"  # a plug-in denoiser, sampled by nvsc's stochastic conditioning
    result = runner("nvsc", "run", "--BuildReport-methods", json.dumps(["ground_truth", method]))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    table = summary(result)
    assert list(table.index) == ["ground_truth", method]
    assert table.loc[method, "consistency_psnr"] > 0 and method in result.stdout  # printed summary
    assert not runner.folders("TrainGenerator")  # a plug-in needs no X-UNet
    records = [json.loads((runner.workdir / "runs" / "GeneratorSource" / name / "generator.json").read_text())
               for name in runner.folders("GeneratorSource")]
    assert {"name": "copycat", "origin": f"entry point of {DISTRIBUTION} {VERSION}"}.items() <= \
        next(r for r in records if r["name"] == "copycat").items()


def test_a_folder_of_views_runs_through_the_pipeline_and_scores_like_its_content(prepared):
    runner, views = prepared
    add_generator(runner, "byov", views)
    result = runner("nvsc", "run", "--BuildReport-methods", '["ground_truth", "byov"]')
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    table = summary(result)
    assert list(table.index) == ["ground_truth", "byov"]
    consistency = [column for column in table.columns if column.startswith("consistency_")]
    assert consistency  # the folder holds the ground truth, so the NeRF sees the same views and scores the same
    pd.testing.assert_series_equal(table.loc["byov", consistency], table.loc["ground_truth", consistency],
                                   check_names=False, rtol=1e-6)


@pytest.mark.parametrize("problem", ["wrong pose", "missing scene"])
def test_a_mismatched_folder_fails_before_generate_views_writes_anything(prepared, tmp_path, problem):
    runner, views = prepared
    bad = tmp_path / "views"
    shutil.copytree(views, bad)
    scene = sorted(p.name for p in bad.iterdir())[0]
    if problem == "wrong pose":
        path = bad / scene / "transforms.json"
        meta = json.loads(path.read_text())
        meta["frames"][3]["transform_matrix"][2][3] += 0.1
        path.write_text(json.dumps(meta))
        expected = [str(path), "frame 3 (images/000003.png)", "matches no requested camera"]
    else:
        shutil.rmtree(bad / scene)
        expected = [str(bad / scene / "transforms.json"), f"holds no views of scene '{scene}'"]
    name = problem.replace(" ", "_")
    add_generator(runner, name, bad)
    before = runner.folders("GenerateViews")
    result = runner("nvsc", "run", "GenerateViews", "--scene", scene, "--method", name)
    assert result.returncode != 0
    for text in expected:
        assert text in result.stderr, result.stderr[-3000:]
    assert runner.folders("GenerateViews") == before
    leftovers = [p for p in (runner.workdir / "runs" / "GenerateViews").glob(f".{name}*")] \
        if (runner.workdir / "runs" / "GenerateViews").is_dir() else []
    assert not leftovers


def test_bad_sampling_options_are_refused_before_any_task_runs(tmp_path):
    runner = workdir(tmp_path / "work")
    for option, value, message in (("--GenerateViews-step-rule", "euler", "unknown step rule 'euler'"),
                                   ("--GenerateViews-markovian-window", "0", "markovian_window: is 0")):
        result = runner("nvsc", "run", "--BuildReport-methods", '["ground_truth", "xunet/markovian"]', option, value)
        assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
    assert not (runner.workdir / "runs").exists()


def test_replacing_a_plug_ins_checkpoint_gives_its_views_new_outputs(tmp_path):
    # Factory options that name files (a checkpoint) enter the generator's definition as a digest of those files,
    # as a folder generator's views do: new weights at the same path must not reuse the old weights' views.
    import luigi

    from pipeline.tasks import GenerateViews, folder_fingerprint

    checkpoint = tmp_path / "model"
    checkpoint.mkdir()
    (checkpoint / "model.safetensors").write_bytes(b"old weights")
    config = luigi.configuration.get_config()
    section = "generator.mine"
    config.add_section(section)
    try:
        config.set(section, "factory", "generators.xunet_generator:XUNetViewGenerator")
        config.set(section, "options", json.dumps({"checkpoint": str(checkpoint), "width": 8}))

        def definition() -> dict:
            folder_fingerprint.cache_clear()  # one run sees one state of the files; each call here is a new run
            task = GenerateViews(scene="mug_0002", method="mine/stochastic")
            return json.loads(task.requires()["generator"].definition)

        before = definition()
        assert set(before["files_sha256"]) == {"checkpoint"}  # `width` names no file
        assert definition() == before
        (checkpoint / "model.safetensors").write_bytes(b"new weights, same path")
        assert definition()["files_sha256"] != before["files_sha256"]
    finally:
        config.remove_section(section)
