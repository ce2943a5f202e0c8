"""The GPU benchmark configuration (configs/gpu-objects.cfg, configs/gpu-panorama.cfg): every option it sets is a
parameter Luigi will read (Luigi ignores a misspelt one silently), and the DAG it builds on top of ./luigi.cfg runs
the GPU presets at 64x64 with the demo's methods. The DAG is built in a subprocess, as `nvsc run --config` builds
it, so this test leaves Luigi's global configuration alone."""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
from pathlib import Path

import luigi
import pytest

import pipeline.tasks  # noqa: F401 - registers the task families looked up below
from generators.checkpoint import ARCHITECTURES
from generators.multiview_unet import MULTIVIEW_PRESETS
from generators.xunet import PRESETS
from pipeline.tasks import ARCHITECTURE_SECTION

REPO = Path(__file__).resolve().parents[2]
GPU_CONFIGS = {"objects": REPO / "configs" / "gpu-objects.cfg", "panorama": REPO / "configs" / "gpu-panorama.cfg"}
# Where each task's demo takes its methods from (the GPU benchmark must run the same ones).
DEMO_CONFIGS = {"objects": [REPO / "luigi.cfg"], "panorama": [REPO / "luigi.cfg", REPO / "configs" / "panorama.cfg"]}

# Run in the repository (so ./luigi.cfg gives the defaults, as for `nvsc run`), with one config file on top:
# every task of BuildReport's DAG as [family, {parameter: value as a string}].
WALK = """
import json, sys
import luigi, luigi.configuration
luigi.configuration.add_config_path(sys.argv[1])
from luigi.cmdline_parser import CmdlineParser
import pipeline.tasks
from pipeline.tasks import nvsc

tasks = {}
def walk(task):
    if task.task_id not in tasks:
        tasks[task.task_id] = [task.get_task_family(), task.to_str_params()]
        for upstream in luigi.task.flatten(task.requires()):
            walk(upstream)
with CmdlineParser.global_instance(["BuildReport"]) as parser:
    walk(parser.get_task_obj())
print(json.dumps({"output_root": nvsc().output_root, "tasks": list(tasks.values())}))
"""


def read(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    return parser


def parameters_of(section: str) -> dict[str, luigi.Parameter]:
    """The parameters a luigi.cfg section configures: a task's or config class's, or for
    `[TrainGenerator.<architecture>]` TrainGenerator's less `architecture` (pipeline.tasks.architecture_settings)."""
    if section.startswith(ARCHITECTURE_SECTION):
        assert section[len(ARCHITECTURE_SECTION):] in ARCHITECTURES, f"[{section}] names no architecture"
        return {name: p for name, p in luigi.task_register.Register.get_task_cls("TrainGenerator").get_params()
                if name != "architecture"}
    return dict(luigi.task_register.Register.get_task_cls(section).get_params())


@pytest.mark.parametrize("task", sorted(GPU_CONFIGS))
def test_every_option_of_a_gpu_config_is_a_parameter_with_a_valid_value(task):
    config = read(GPU_CONFIGS[task])
    assert config.sections(), f"{GPU_CONFIGS[task]} is empty or missing"
    for section in config.sections():
        params = parameters_of(section)
        for option, value in config.items(section):
            assert option in params, f"[{section}] {option} is not a parameter: Luigi would ignore it"
            params[option].normalize(params[option].parse(value))  # raises on a value of the wrong type


def dag(task: str) -> tuple[str, list[tuple[str, dict[str, str]]]]:
    env = {key: value for key, value in os.environ.items() if key != "LUIGI_CONFIG_PATH"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, "-c", WALK, str(GPU_CONFIGS[task])], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    walked = json.loads(result.stdout.strip().splitlines()[-1])
    return walked["output_root"], [(family, params) for family, params in walked["tasks"]]


def demo_methods(task: str) -> list[str]:
    methods = None
    for path in DEMO_CONFIGS[task]:  # later files win, as with `nvsc run --config`
        config = read(path)
        if config.has_option("BuildReport", "methods"):
            methods = json.loads(config.get("BuildReport", "methods"))
    # The committed 32-px checkpoint (luigi.cfg [generator.small32]) cannot generate the GPU configs' 64-px views.
    return [method for method in methods if not method.startswith("small32/")]


@pytest.mark.parametrize("task", sorted(GPU_CONFIGS))
def test_a_gpu_config_runs_the_gpu_presets_at_64_px_with_the_demos_methods(task):
    output_root, tasks = dag(task)
    assert output_root == "runs-gpu"
    by_family: dict[str, list[dict[str, str]]] = {}
    for family, params in tasks:
        by_family.setdefault(family, []).append(params)

    (prepare,) = by_family["PrepareDataset"]
    assert prepare["source"] == {"objects": "procedural", "panorama": "panorama"}[task]
    assert int(prepare["image_size"]) == PRESETS["3dim-64"].image_size == MULTIVIEW_PRESETS["mvd-64"].image_size == 64
    trainings = {params["architecture"]: params for params in by_family["TrainGenerator"]}
    assert {name: params["preset"] for name, params in trainings.items()} == {"xunet": "3dim-64",
                                                                              "mvdiffusion": "mvd-64"}
    assert all(params["compile"] == "False" for params in trainings.values())

    (report,) = by_family["BuildReport"]
    methods = json.loads(report["methods"])
    # Every demo row that runs at 64 px, in the demo's order (the GPU configs add the X-UNet's other samplers).
    assert [method for method in methods if method in demo_methods(task)] == demo_methods(task)
    scenes = {params["scene"] for params in by_family["GenerateViews"]}
    assert len(by_family["GenerateViews"]) == len(scenes) * len(methods)
    assert {params["sampling_steps"] for params in by_family["GenerateViews"]} == {"20"}
    if task == "objects":  # 3DiM's NeRF score for every scene and method; none for rotation-only rooms
        assert len(scenes) == 6 and len(by_family["ScoreScene"]) == 6 * len(methods)
        # and the noise floor: the ground truth's views fitted with two more NeRF seeds (luigi.cfg's seeds 0, 1, 2)
        assert len(by_family["FitNeRF"]) == 6 * len(methods) + 6 * 2 and len(by_family["ScoreFitSeeds"]) == 6
    else:
        assert len(scenes) == 4 and "FitNeRF" not in by_family and len(by_family["ScorePanorama"]) == 4 * len(methods)
