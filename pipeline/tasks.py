"""Luigi tasks of the nvsc pipeline: each reads its inputs, calls one library function and writes one folder.

    PrepareDataset -> TrainGenerator -> GenerateViews(scene, method) -> FitNeRF(scene, method)
                   -> ScoreScene(scene, method) -> BuildReport

Defaults of every parameter live in `luigi.cfg`. A method is `generator` or `generator/sampler`: the built-in
controls `ground_truth` (the real views: the consistency score's upper bound) and `noise` (per-view random images:
its lower bound), or a trained generator with a sampler, such as `xunet/stochastic`.

Run: `luigi --module pipeline.tasks BuildReport --local-scheduler` or `nvsc run`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import luigi
import luigi.configuration

from pipeline.outputs import FolderTarget, signature
from scenes.errors import InvalidInputError

logger = logging.getLogger("nvsc.pipeline")

# Every default lives in luigi.cfg. Luigi reads ./luigi.cfg and $LUIGI_CONFIG_PATH; where neither exists (a run
# started from another folder), the project's own luigi.cfg supplies the defaults.
PROJECT_CONFIG = Path(__file__).resolve().parent.parent / "luigi.cfg"
if not Path("luigi.cfg").is_file() and "LUIGI_CONFIG_PATH" not in os.environ and PROJECT_CONFIG.is_file():
    luigi.configuration.add_config_path(str(PROJECT_CONFIG))


class nvsc(luigi.Config):  # noqa: N801 - the section name `[nvsc]` in luigi.cfg
    output_root = luigi.Parameter(description="Folder that holds every task's output folder.")


class NvscTask(luigi.Task):
    """One data product: the folder `<output_root>/<Task>/<label>-<signature>`, complete once it holds provenance."""

    def label(self) -> str:
        """Readable prefix of the output folder's name."""
        return ""

    def output(self) -> FolderTarget:
        name = "-".join(part for part in (self.label(), signature(self)) if part)
        return FolderTarget(str(Path(nvsc().output_root) / self.get_task_family() / name))

    def check_inputs(self) -> None:
        """Raise `InvalidInputError` for bad input; called before anything is written."""

    def produce(self, folder: Path) -> None:
        """Write the data product into the empty `folder`."""
        raise NotImplementedError

    def run(self):
        self.check_inputs()
        with self.output().staging(self) as folder:
            self.produce(folder)

    def on_failure(self, exception):
        # Bad input is explained by its message (file, problem, fix); a traceback would only bury it.
        if isinstance(exception, InvalidInputError):
            logger.error("%s: %s", self.task_id, exception)
            return f"nvsc input error: {exception}"
        return super().on_failure(exception)


# ---------------------------------------------------------------------------------------------------- dataset
class PrepareDataset(NvscTask):
    """The multi-view dataset in SRN layout: rendered procedurally, or an existing SRN-layout folder, validated."""

    source = luigi.Parameter(description="`procedural`, or the path of a dataset in SRN layout "
                                         "(<root>/<category>_<split>/<instance>/{rgb,pose,intrinsics.txt}).")
    categories = luigi.ListParameter(description="Procedural object categories.")
    train_instances = luigi.IntParameter(description="Procedural training instances per category.")
    val_instances = luigi.IntParameter(description="Procedural validation instances per category.")
    test_instances = luigi.IntParameter(description="Procedural test instances per category.")
    train_views = luigi.IntParameter(description="Views per training instance, spread over the sphere.")
    test_views = luigi.IntParameter(description="Views per test instance, on a fixed orbit.")
    image_size = luigi.IntParameter(description="Image width and height in pixels.")
    seed = luigi.IntParameter(description="Seed of the procedural objects and cameras.")

    def label(self) -> str:
        return "procedural" if self.source == "procedural" else Path(self.source).name

    def dataset_config(self):
        from scenes.dataset import ProceduralDatasetConfig

        return ProceduralDatasetConfig(
            categories=tuple(self.categories), train_instances=self.train_instances,
            val_instances=self.val_instances, test_instances=self.test_instances, train_views=self.train_views,
            test_views=self.test_views, image_size=self.image_size, seed=self.seed)

    def check_inputs(self) -> None:
        from scenes.dataset import validate_dataset

        if self.source != "procedural":
            validate_dataset(Path(self.source), image_size=self.image_size)

    def produce(self, folder: Path) -> None:
        from scenes.dataset import generate_dataset

        if self.source == "procedural":
            generate_dataset(self.dataset_config(), folder / "srn")
            root = "srn"  # relative to this folder, which is renamed into place when complete
        else:
            root = str(Path(self.source).resolve())
        (folder / "dataset.json").write_text(json.dumps({"root": root}, indent=2))

    def test_scene_names(self) -> list[str]:
        """Names of the test instances, known before the dataset is rendered (for the report's static DAG)."""
        from scenes.dataset import instance_names
        from scenes.srn import list_srn_instances

        if self.source == "procedural":
            return instance_names(self.dataset_config(), "test")
        return [path.name for path in list_srn_instances(Path(self.source), "test")]


def dataset_root(prepare: PrepareDataset) -> Path:
    folder = prepare.output().folder
    return folder / json.loads((folder / "dataset.json").read_text())["root"]


def load_instance(prepare: PrepareDataset, split: str, name: str):
    from scenes.srn import list_srn_instances, read_srn_instance

    matches = [p for p in list_srn_instances(dataset_root(prepare), split) if p.name == name]
    if not matches:
        raise InvalidInputError("scene", f"no {split} instance named '{name}' in {dataset_root(prepare)}",
                                "pass a name listed under the dataset's *_test folders")
    return read_srn_instance(matches[0], image_size=prepare.image_size)


# ---------------------------------------------------------------------------------------------------- training
class TrainGenerator(NvscTask):
    """A pose-conditioned diffusion model (3DiM's X-UNet) trained on the training split; a checkpoint folder."""

    preset = luigi.Parameter(description="X-UNet architecture preset (see generators.xunet.PRESETS).")
    steps = luigi.IntParameter(description="Optimizer steps.")
    batch_size = luigi.IntParameter(description="View pairs per step.")
    lr = luigi.FloatParameter(description="Peak learning rate of AdamW.")
    warmup_steps = luigi.IntParameter(description="Linear learning-rate warm-up steps.")
    ema_decay = luigi.FloatParameter(description="Decay of the weights' exponential moving average.")
    checkpoint_every = luigi.IntParameter(description="Steps between checkpoints.")
    seed = luigi.IntParameter(description="Seed of initialisation, batches and noise.")
    device = luigi.Parameter(significant=False, description="`auto`, `cpu` or `cuda`.")

    def requires(self):
        return PrepareDataset()

    def label(self) -> str:
        return f"xunet-{self.preset}"

    def check_inputs(self) -> None:
        from generators.xunet import PRESETS

        if self.preset not in PRESETS:
            raise InvalidInputError("TrainGenerator.preset", f"unknown preset '{self.preset}'",
                                    f"use one of: {', '.join(sorted(PRESETS))}")

    def produce(self, folder: Path) -> None:
        from dataclasses import replace

        from generators.training import TrainConfig, train_generator
        from generators.xunet import PRESETS
        from scenes.srn import list_srn_instances, read_srn_instance

        prepare = self.requires()
        scenes = [read_srn_instance(path, image_size=prepare.image_size)
                  for path in list_srn_instances(dataset_root(prepare), "train")]
        model_config = replace(PRESETS[self.preset], image_size=prepare.image_size)
        train_config = TrainConfig(steps=self.steps, batch_size=self.batch_size, lr=self.lr,
                                   warmup_steps=self.warmup_steps, ema_decay=self.ema_decay,
                                   checkpoint_every=self.checkpoint_every, seed=self.seed, device=self.device)
        train_generator(scenes, model_config, train_config, folder / "checkpoint")


# ---------------------------------------------------------------------------------------------------- per scene
class SceneMethodTask(NvscTask):
    """A task about one test scene and one method (`generator` or `generator/sampler`)."""

    scene = luigi.Parameter(description="Name of a test instance of the dataset.")
    method = luigi.Parameter(description="`ground_truth`, `noise` or `<generator>/<sampler>`, e.g. `xunet/stochastic`.")

    def label(self) -> str:
        return f"{self.method.replace('/', '-')}-{self.scene}"


class GenerateViews(SceneMethodTask):
    """Views of one test scene at its test cameras, from the input view, in `transforms.json` layout.

    The input view is kept as given; every other camera gets a generated view."""

    input_view = luigi.IntParameter(description="Index of the test view given to the generator.")
    sampling_steps = luigi.IntParameter(description="Denoising steps per view.")
    guidance_weight = luigi.FloatParameter(description="Classifier-free guidance weight w (0 = off).")
    seed = luigi.IntParameter(description="Seed of the sampler's noise and random choices.")
    device = luigi.Parameter(significant=False, description="`auto`, `cpu` or `cuda`.")

    def requires(self):
        from generators.registry import parse_method

        generator, _ = parse_method(self.method)
        upstream = {"dataset": PrepareDataset()}
        if generator == "xunet":
            upstream["generator"] = TrainGenerator()
        return upstream

    def produce(self, folder: Path) -> None:
        from generators.registry import generate_views
        from scenes.transforms_json import write_transforms

        upstream = self.requires()
        truth = load_instance(upstream["dataset"], "test", self.scene)
        checkpoint = upstream["generator"].output().folder / "checkpoint" if "generator" in upstream else None
        views = generate_views(self.method, truth, self.input_view, checkpoint=checkpoint,
                               steps=self.sampling_steps, guidance_weight=self.guidance_weight, seed=self.seed,
                               device=self.device)
        write_transforms(views, folder)


class FitNeRF(SceneMethodTask):
    """3DiM's protocol: a NeRF without view dependence fitted on a subset of the views, rendered at the held-out
    cameras. The folder holds the renders in `transforms.json` layout, `scene/` (every view, with the split as
    `train_filenames` / `test_filenames`, for `ns-train ... --data`) and `nerf.json` (the fit's summary)."""

    heldout_every = luigi.IntParameter(description="Hold out every k-th view (the input view is kept), unless "
                                                   "train_fraction or train_views is set.")
    train_fraction = luigi.FloatParameter(description="If > 0: train on this fraction of the views (drawn from "
                                                      "seed, the input view always in), unless train_views is set.")
    train_views = luigi.ListParameter(description="If not empty: indices of the training views (the input view "
                                                  "is added).")
    steps = luigi.IntParameter(description="Optimizer steps of the fit (at most, with a time budget).")
    time_budget_s = luigi.FloatParameter(description="If > 0: stop the fit after this many seconds.")
    rays_per_batch = luigi.IntParameter(description="Rays per optimizer step.")
    samples_per_ray = luigi.IntParameter(description="Samples along each ray.")
    background = luigi.ListParameter(description="RGB in [0, 1] behind the object, the colour the views were "
                                                 "composited on (white for nvsc's datasets).")
    seed = luigi.IntParameter(description="Seed of initialisation, ray batches and the train_fraction draw.")
    device = luigi.Parameter(significant=False, description="`auto`, `cpu` or `cuda`.")

    def requires(self):
        return GenerateViews(scene=self.scene, method=self.method)

    def subset_config(self):
        from nerf.protocol import SubsetConfig

        return SubsetConfig(heldout_every=self.heldout_every, train_fraction=self.train_fraction,
                            train_views=tuple(self.train_views), keep_view=self.requires().input_view,
                            seed=self.seed)

    def nerf_config(self):
        from dataclasses import replace

        from nerf.fit import NeRFConfig, check_config

        config = replace(NeRFConfig(), steps=self.steps, time_budget_s=self.time_budget_s,
                         rays_per_batch=self.rays_per_batch, samples_per_ray=self.samples_per_ray,
                         background=tuple(self.background), seed=self.seed, device=self.device)
        check_config(config)
        return config

    def check_inputs(self) -> None:
        from nerf.protocol import split_indices
        from scenes.transforms_json import read_transforms

        self.nerf_config()
        split_indices(len(read_transforms(self.requires().output().folder)), self.subset_config())

    def produce(self, folder: Path) -> None:
        from nerf.export import export_protocol
        from nerf.protocol import run_protocol
        from scenes.transforms_json import read_transforms

        views = read_transforms(self.requires().output().folder)
        export_protocol(run_protocol(views, self.subset_config(), self.nerf_config()), folder)


class ScoreScene(SceneMethodTask):
    """Scores of one scene and method: 3D consistency (NeRF renders against the held-out generated views) and
    fidelity (generated views against the ground truth), as a tidy CSV."""

    def requires(self):
        return {"views": GenerateViews(scene=self.scene, method=self.method),
                "renders": FitNeRF(scene=self.scene, method=self.method),
                "dataset": PrepareDataset()}

    def produce(self, folder: Path) -> None:
        from reports.scoring import score_scene
        from scenes.transforms_json import read_transforms

        upstream = self.requires()
        views = read_transforms(upstream["views"].output().folder)
        renders = read_transforms(upstream["renders"].output().folder)
        truth = load_instance(upstream["dataset"], "test", self.scene)
        input_view = upstream["views"].input_view
        tidy, per_view = score_scene(views, renders, truth, input_view, method=self.method, scene=self.scene)
        tidy.to_csv(folder / "scores.csv", index=False)
        per_view.to_csv(folder / "per_view.csv", index=False)


# ---------------------------------------------------------------------------------------------------- report
class BuildReport(NvscTask):
    """Tables, figures, per-scene image grids and one HTML page over every test scene and method."""

    methods = luigi.ListParameter(description="Rows of the report, in order.")
    max_scenes = luigi.IntParameter(description="Use only the first N test scenes (0 = all).")

    def scene_names(self) -> list[str]:
        names = PrepareDataset().test_scene_names()
        return names[: self.max_scenes] if self.max_scenes > 0 else names

    def requires(self):
        return {(scene, method): ScoreScene(scene=scene, method=method)
                for scene in self.scene_names() for method in self.methods}

    def label(self) -> str:
        return "report"

    def produce(self, folder: Path) -> None:
        from reports.assemble import MethodSceneResult, build_report

        results = []
        for (scene, method), score in self.requires().items():
            upstream = score.requires()
            results.append(MethodSceneResult(
                scene=scene, method=method, scores_csv=score.output().folder / "scores.csv",
                views_folder=upstream["views"].output().folder, renders_folder=upstream["renders"].output().folder,
                input_view=upstream["views"].input_view))
        build_report(results, list(self.methods), folder)
