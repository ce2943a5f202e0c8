"""Luigi tasks of the nvsc pipeline: each reads its inputs, calls one library function and writes one folder.

    PrepareDataset -> TrainGenerator -> GenerateViews(scene, method) -> FitNeRF(scene, method)
                   -> ScoreScene(scene, method) -> BuildReport
                      GenerateViews(every scene, method) -> ScoreMethodSet(method) (FID, KID)
                      GenerateViews(scene, method) -> ScorePanorama(scene, method) -> BuildReport
                                                                          (source = panorama: no NeRF)

Defaults of every parameter live in `luigi.cfg`. A method is `generator[/sampler][@w]`: a built-in control
(`ground_truth`, the real views: the consistency score's upper bound; `noise`, per-view random images: its lower
bound; `perturbed` and `shuffled_cameras` in between), the trained X-UNet with a sampler (`xunet/stochastic`,
`xunet/naive@1`), MVDiffusion's joint multi-view UNet (`mvdiffusion/joint`), or a generator from a plug-in or a
luigi.cfg `[generator.<name>]` section (see `generators.registry`); those depend on a GeneratorSource task
instead of TrainGenerator.

Run: `luigi --module pipeline.tasks BuildReport --local-scheduler` or `nvsc run`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import luigi
import luigi.configuration

from pipeline.outputs import FolderTarget, signature
from scenes.errors import InvalidInputError

logger = logging.getLogger("nvsc.pipeline")


class InputErrorsWithoutTraceback(logging.Filter):
    """Luigi's worker logs every failed task with its traceback before `on_failure` explains it. Bad input is
    explained by its message alone (file, problem, fix), so that record keeps its line and loses the traceback
    that would bury the message under 25 lines of Luigi's frames; every other failure keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], InvalidInputError):
            record.exc_info, record.exc_text = None, None  # NvscTask.on_failure logs the message itself
        return True


# On Luigi's own logger, so it holds for `nvsc run` and the `luigi` command alike, and in forked workers.
logging.getLogger("luigi-interface").addFilter(InputErrorsWithoutTraceback())

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

    def library_configs(self) -> list[tuple[Callable[[], object], dict[str, str]]]:
        """The library configurations this task builds from its parameters: (builder, {field: parameter} for the
        fields named otherwise than the parameter that sets them)."""
        return []

    def check_parameters(self) -> None:
        """Build `library_configs`, so that a value out of range is refused before anything runs (`nvsc run` calls
        this for every task first), under the name luigi.cfg and the command line give it, not the library's."""
        family = self.get_task_family()
        for build, renames in self.library_configs():
            try:
                build()
            except InvalidInputError as error:
                field = error.what.rpartition(".")[2]
                name = renames.get(field, field)
                if name not in self.param_kwargs:
                    raise
                raise InvalidInputError(f"[{family}] {name}", error.problem, f"{error.fix}; set it in luigi.cfg "
                                        f"or as --{family}-{name.replace('_', '-')}") from None

    def produce(self, folder: Path) -> None:
        """Write the data product into the empty `folder`."""
        raise NotImplementedError

    def run(self):
        self.check_parameters()
        self.check_inputs()
        found = self.output().stamp()  # the folder as this run found it: absent, or one to compute again
        with self.output().claimed():
            # Another run on this output root computed it while this one waited for the lock. Comparing the
            # completions, not complete() alone: a task whose folder exists but whose inputs were redone (a report
            # over rescored scenes) is complete() once they are, yet its own folder is still the old one.
            if self.output().stamp() != found and self.complete():
                logger.info("%s: completed by another run meanwhile; using its output", self.task_id)
                return
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
    """The multi-view dataset in SRN layout: rendered procedurally (objects on an orbit, or panorama rooms), or an
    existing SRN-layout folder, validated."""

    source = luigi.Parameter(description="`procedural` (objects), `panorama` (rooms seen by 8 cameras 45 degrees "
                                         "apart, scenes.panorama), or the path of a dataset in SRN layout "
                                         "(<root>/<category>_<split>/<instance>/{rgb,pose,intrinsics.txt}).")
    categories = luigi.ListParameter(description="Procedural object categories (for panoramas: the objects that "
                                                 "furnish the rooms).")
    train_instances = luigi.IntParameter(description="Procedural training instances per category.")
    val_instances = luigi.IntParameter(description="Procedural validation instances per category.")
    test_instances = luigi.IntParameter(description="Procedural test instances per category.")
    train_views = luigi.IntParameter(description="Views per training instance, spread over the sphere (objects only).")
    test_views = luigi.IntParameter(description="Views per test instance, on a fixed orbit (objects only).")
    image_size = luigi.IntParameter(description="Image width and height in pixels.")
    supersampling = luigi.IntParameter(description="Rendered sources: rays per pixel side (odd); a pixel's colour "
                                                   "averages supersampling^2 rays, its depth is the centre ray's.")
    seed = luigi.IntParameter(description="Seed of the procedural objects and cameras.")

    def label(self) -> str:
        return self.source if self.source in RENDERED_SOURCES else Path(self.source).name

    def dataset_config(self):
        from scenes.dataset import ProceduralDatasetConfig
        from scenes.panorama import PanoramaDatasetConfig

        if self.source == "panorama":
            return PanoramaDatasetConfig(
                categories=tuple(self.categories), train_instances=self.train_instances,
                val_instances=self.val_instances, test_instances=self.test_instances, image_size=self.image_size,
                supersampling=self.supersampling, seed=self.seed)
        return ProceduralDatasetConfig(
            categories=tuple(self.categories), train_instances=self.train_instances,
            val_instances=self.val_instances, test_instances=self.test_instances, train_views=self.train_views,
            test_views=self.test_views, image_size=self.image_size, supersampling=self.supersampling, seed=self.seed)

    def check_inputs(self) -> None:
        from scenes.dataset import validate_dataset

        if self.source not in RENDERED_SOURCES:
            validate_dataset(Path(self.source), image_size=self.image_size, check_test_scene=check_object_cameras)

    def produce(self, folder: Path) -> None:
        from scenes.dataset import generate_dataset
        from scenes.panorama import generate_panorama_dataset

        if self.source in RENDERED_SOURCES:
            render = generate_panorama_dataset if self.source == "panorama" else generate_dataset
            render(self.dataset_config(), folder / "srn")
            root = "srn"  # relative to this folder, which is renamed into place when complete
        else:
            root = str(Path(self.source).resolve())
        (folder / "dataset.json").write_text(json.dumps({"root": root}, indent=2))

    def test_scene_names(self) -> list[str]:
        """Names of the test instances, known before the dataset is rendered (for the report's static DAG)."""
        from scenes.dataset import instance_names
        from scenes.panorama import panorama_instance_names
        from scenes.srn import list_srn_instances

        if self.source == "panorama":
            return panorama_instance_names(self.dataset_config(), "test")
        if self.source == "procedural":
            return instance_names(self.dataset_config(), "test")
        return [path.name for path in list_srn_instances(Path(self.source), "test")]


#: Values of PrepareDataset.source that render a dataset rather than read one.
RENDERED_SOURCES = ("procedural", "panorama")


def check_object_cameras(folder: Path, scene) -> None:
    """Refuse, when the dataset is prepared, a test scene whose cameras give FitNeRF no box around an object
    (optical axes parallel, or a camera that does not see where the others look), unless `[FitNeRF] scene_box`
    sets one: otherwise the run would fail minutes later, in the first fit."""
    from nerf.scene_box import scene_box_from_cameras

    if FitNeRF.scene_box.task_value("FitNeRF", "scene_box"):
        return
    try:
        scene_box_from_cameras(scene.cameras)
    except InvalidInputError as error:
        raise InvalidInputError(f"cameras of test scene {folder}", f"{error.problem}, so the NeRF has no box "
                                "around an object (nvsc's NeRF score is for object-centric captures)",
                                "set the box in the cameras' world coordinates: `scene_box = [[xmin, ymin, zmin], "
                                "[xmax, ymax, zmax]]` under [FitNeRF] in luigi.cfg, or --FitNeRF-scene-box "
                                "'[[-1, -1, -1], [1, 1, 1]]'") from None


def dataset_root(prepare: PrepareDataset) -> Path:
    folder = prepare.output().folder
    return folder / json.loads((folder / "dataset.json").read_text())["root"]


def instance_folder(prepare: PrepareDataset, split: str, name: str) -> Path:
    from scenes.srn import list_srn_instances

    matches = [p for p in list_srn_instances(dataset_root(prepare), split) if p.name == name]
    if not matches:
        raise InvalidInputError("scene", f"no {split} instance named '{name}' in {dataset_root(prepare)}",
                                "pass a name listed under the dataset's *_test folders")
    return matches[0]


def load_instance(prepare: PrepareDataset, split: str, name: str):
    from scenes.srn import read_srn_instance

    return read_srn_instance(instance_folder(prepare, split, name), image_size=prepare.image_size)


def load_depth(prepare: PrepareDataset, folder: Path):
    """Depth [N, S, S] of an SRN instance's views at the dataset's image size (`depth/<view>.npy`)."""
    from generators.multiview_training import resize_depth
    from scenes.srn import read_srn_depth

    return resize_depth(read_srn_depth(folder), prepare.image_size, str(folder / "depth")).numpy()


# ---------------------------------------------------------------------------------------------------- training
#: luigi.cfg section holding one architecture's own training settings, e.g. `[TrainGenerator.mvdiffusion]`.
ARCHITECTURE_SECTION = "TrainGenerator."


class TrainGenerator(NvscTask):
    """A pose-conditioned diffusion model (3DiM's X-UNet, its concat-UNet baseline or MVDiffusion's multi-branch
    UNet) trained on the training split; a checkpoint folder.

    Every architecture trains with the settings of `[TrainGenerator]`, except those its own section
    `[TrainGenerator.<architecture>]` sets (architectures differ in cost per step: the joint model denoises groups
    of views). A value given on the command line (`--TrainGenerator-steps 100`) or by a requiring task wins over
    both. The output folder's name hashes the values in effect, so it does not depend on where they came from.

    Training writes its checkpoints into a work folder beside the output (`.<output name>.train`), so a run that
    is killed continues from its last checkpoint when the same command is run again; the finished checkpoint and
    the TensorBoard logs are then moved into the output folder. For panoramas (rotation-only cameras) the joint
    model takes its correspondences from homographies instead of depth, as MVDiffusion's panorama task does.
    """

    preset = luigi.Parameter(description="Architecture preset (generators.xunet.PRESETS; for mvdiffusion "
                                         "generators.multiview_unet.MULTIVIEW_PRESETS).")
    architecture = luigi.Parameter(description="`xunet` (3DiM), `concat_unet` (the ablation's baseline) or "
                                               "`mvdiffusion` (MVDiffusion's joint multi-view UNet).")
    steps = luigi.IntParameter(description="Optimizer steps.")
    batch_size = luigi.IntParameter(description="View pairs per step; for mvdiffusion, generated views per step "
                                                "(batch_size / (num_views - 1) groups of num_views views).")
    lr = luigi.FloatParameter(description="Peak learning rate of AdamW.")
    warmup_steps = luigi.IntParameter(description="Linear learning-rate warm-up steps.")
    ema_decay = luigi.FloatParameter(description="Decay of the weights' exponential moving average.")
    checkpoint_every = luigi.IntParameter(description="Steps between checkpoints.")
    seed = luigi.IntParameter(description="Seed of initialisation, batches and noise.")
    device = luigi.Parameter(significant=False, description="`auto`, `cpu` or `cuda`.")
    compile = luigi.BoolParameter(significant=False, description="torch.compile the model (GPU speed).")

    @classmethod
    def get_param_values(cls, params, args, kwargs):
        """Luigi's values (arguments, command line, `[TrainGenerator]`), with `[TrainGenerator.<architecture>]`
        taking the place of `[TrainGenerator]` for the parameters that section sets."""
        values = super().get_param_values(params, args, kwargs)
        own = architecture_settings(dict(values)["architecture"], dict(params))
        positional = [name for name, param in params if param.positional][: len(args)]
        given = set(kwargs) | set(positional) | set(command_line_parameters(cls.get_task_family(), params))
        return [(name, own[name] if name in own and name not in given else value) for name, value in values]

    def requires(self):
        return PrepareDataset()

    def label(self) -> str:
        return f"{self.architecture}-{self.preset}"

    def check_inputs(self) -> None:
        from generators.checkpoint import ARCHITECTURES

        if self.architecture not in ARCHITECTURES:
            raise InvalidInputError("TrainGenerator.architecture", f"unknown architecture '{self.architecture}'",
                                    f"use one of: {', '.join(sorted(ARCHITECTURES))}")
        presets = self.presets()
        if self.preset not in presets:
            raise InvalidInputError("TrainGenerator.preset", f"unknown preset '{self.preset}' of {self.architecture}",
                                    f"use one of: {', '.join(sorted(presets))}")

    def presets(self) -> dict:
        from generators.checkpoint import presets_of

        return presets_of(self.architecture)

    def model_config(self):
        from dataclasses import replace

        prepare = self.requires()
        model_config = replace(self.presets()[self.preset], image_size=prepare.image_size)
        if self.architecture == "mvdiffusion" and prepare.source == "panorama":
            model_config = replace(model_config, correspondence="homography")
        return model_config

    def train_config(self):
        from generators.training import TrainConfig

        self.check_inputs()  # a known architecture and preset, which the batch size below depends on
        batch_size = self.batch_size
        if self.architecture == "mvdiffusion":  # as many generated views per step as the pair models' targets
            batch_size = max(1, round(self.batch_size / (self.model_config().num_views - 1)))
        return TrainConfig(steps=self.steps, batch_size=batch_size, lr=self.lr, warmup_steps=self.warmup_steps,
                           ema_decay=self.ema_decay, checkpoint_every=self.checkpoint_every, seed=self.seed,
                           device=self.device, architecture=self.architecture, compile=self.compile)

    def library_configs(self):
        return [(self.train_config, {})]

    def produce(self, folder: Path) -> None:
        import shutil

        from generators.checkpoint import STATE_FILE
        from generators.multiview_training import train_multiview
        from generators.training import train_generator
        from scenes.srn import list_srn_instances, read_srn_instance

        prepare = self.requires()
        paths = list_srn_instances(dataset_root(prepare), "train")
        scenes = [read_srn_instance(path, image_size=prepare.image_size) for path in paths]
        model_config, train_config = self.model_config(), self.train_config()
        work = self.output().folder.parent / f".{self.output().folder.name}.train"
        if self.architecture == "mvdiffusion":
            depths = [load_depth(prepare, path) for path in paths] if model_config.uses_depth else None
            train_multiview(scenes, depths, model_config, train_config, work / "checkpoint",
                            log_dir=work / "tensorboard")
        else:
            train_generator(scenes, model_config, train_config, work / "checkpoint", log_dir=work / "tensorboard")
        # The work checkpoint keeps its resume state until it has left: a checkpoint without one there could
        # only be refused by the next run (generators.training never trains over a finished model).
        for name in ("checkpoint", "tensorboard"):
            if (work / name).exists():
                shutil.move(str(work / name), str(folder / name))
        (folder / "checkpoint" / STATE_FILE).unlink(missing_ok=True)  # the product is the model, not the run
        shutil.rmtree(work)


def architecture_settings(architecture: str, params: dict[str, luigi.Parameter]) -> dict:
    """The parsed values of `[TrainGenerator.<architecture>]` in luigi.cfg ({} without that section).

    Raises `InvalidInputError` for a section of an unknown architecture (a typo would otherwise be ignored) and
    for an option that is not a TrainGenerator parameter."""
    from generators.checkpoint import ARCHITECTURES

    config = luigi.configuration.get_config()
    sections = [name for name in config.sections() if name.startswith(ARCHITECTURE_SECTION)]
    for section in sections:
        if section[len(ARCHITECTURE_SECTION):] not in ARCHITECTURES:
            raise InvalidInputError(f"luigi.cfg [{section}]", "names no architecture",
                                    f"name one of: {', '.join(f'[{ARCHITECTURE_SECTION}{a}]' for a in ARCHITECTURES)}")
    section = ARCHITECTURE_SECTION + architecture
    if section not in sections:
        return {}
    settable = sorted(set(params) - {"architecture"})
    values = {}
    for option in config.options(section):
        if option not in settable:
            raise InvalidInputError(f"luigi.cfg [{section}]", f"sets '{option}', which is not a training setting "
                                    "of one architecture", f"set some of: {', '.join(settable)}")
        try:
            values[option] = params[option].normalize(params[option].parse(config.get(section, option)))
        except ValueError as error:
            raise InvalidInputError(f"luigi.cfg [{section}] {option}", str(error), "give a value of its type, as "
                                    "in [TrainGenerator]") from error
    return values


def command_line_parameters(family: str, params) -> list[str]:
    """Names of the parameters of task `family` given on the command line as `--<family>-<name>`."""
    from luigi.cmdline_parser import CmdlineParser

    parser = CmdlineParser.get_instance()
    if parser is None:
        return []
    # Luigi keeps `--Family-param` as the attribute `Family_param` of its parsed arguments (None when absent).
    return [name for name, _ in params if getattr(parser.known_args, f"{family}_{name}", None) is not None]


# ---------------------------------------------------------------------------------------------------- per scene
class SceneMethodTask(NvscTask):
    """A task about one test scene and one method (`generator` or `generator/sampler`)."""

    scene = luigi.Parameter(description="Name of a test instance of the dataset.")
    method = luigi.Parameter(description="`<generator>[/<sampler>][@<w>]`: a control, `xunet/stochastic`, a plug-in "
                                         "(see generators.registry).")

    def label(self) -> str:
        return f"{self.method.replace('/', '-')}-{self.scene}"


def generator_sections() -> dict[str, dict[str, str]]:
    """luigi.cfg's `[generator.<name>]` sections (see `generators.registry`), as {section: {option: value}}."""
    config = luigi.configuration.get_config()
    return {section: {key: config.get(section, key) for key in config.options(section)}
            for section in config.sections() if section.startswith("generator.")}


@functools.lru_cache(maxsize=8)
def _find_generators(sections: str) -> dict:
    from generators.registry import find_generators

    return find_generators(json.loads(sections))


def known_generators() -> dict:
    """Every generator by name: built-ins, `nvsc.generators` entry points and luigi.cfg sections."""
    # requires() runs many times per task (for hashes and scheduling): look the entry points up once per config.
    return _find_generators(json.dumps(generator_sections(), sort_keys=True))


@functools.lru_cache(maxsize=32)
def folder_fingerprint(root: Path) -> str:
    """Digest of (path, size, mtime) of every file under `root` (or of `root` itself when it is a file): rewriting a
    view or a checkpoint gives the generator new outputs. Taken once per process, so one run sees one state."""
    paths = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()] if root.is_dir() else []
    files = sorted([str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns] for p in paths)
    return hashlib.sha256(json.dumps(files).encode()).hexdigest()


def option_fingerprints(options: dict) -> dict[str, str]:
    """`folder_fingerprint` of every factory option whose value names an existing file or folder (a checkpoint,
    say): replacing those files reruns the generator's views, as rewriting a folder generator's views does."""
    return {key: folder_fingerprint(Path(value)) for key, value in sorted(options.items())
            if isinstance(value, str) and value and Path(value).exists()}


class GeneratorSource(NvscTask):
    """A plug-in or folder generator's definition (factory, options, origin; a digest of a folder's files), recorded so
    that changing it gives its views and everything computed from them new output folders."""

    generator = luigi.Parameter(description="Name of the generator.")
    definition = luigi.Parameter(description="JSON of the generator's definition (generators.registry).")

    def label(self) -> str:
        return self.generator

    def check_inputs(self) -> None:
        folder = json.loads(self.definition).get("folder")
        if folder and not Path(folder).is_dir():
            raise InvalidInputError(folder, f"folder of generated views of generator '{self.generator}' does not "
                                    "exist", f"fix `folder` in luigi.cfg [generator.{self.generator}]")

    def produce(self, folder: Path) -> None:
        (folder / "generator.json").write_text(json.dumps(json.loads(self.definition), indent=2) + "\n")


class GenerateViews(SceneMethodTask):
    """Views of one test scene at its test cameras, from the input view, in `transforms.json` layout.

    The input view is kept as given; every other camera gets a view from the method: a control, the trained
    X-UNet (needs TrainGenerator), a plug-in generator or a folder of views (needs GeneratorSource). A method
    `...@<w>` sets its own guidance weight; `guidance_weight` is the default of the others."""

    input_view = luigi.IntParameter(description="Index of the test view given to the generator.")
    sampling_steps = luigi.IntParameter(description="Denoising steps per view.")
    guidance_weight = luigi.FloatParameter(description="Classifier-free guidance weight w (0 = off) of methods "
                                                       "without `@<w>`.")
    step_rule = luigi.Parameter(description="`ancestral` (3DiM) or `ddim` (deterministic) denoising steps.")
    markovian_window = luigi.IntParameter(description="k of the `markovian` sampler: condition on one of the "
                                                      "last k views.")
    seed = luigi.IntParameter(description="Seed of the sampler's noise and random choices, and of the controls.")
    device = luigi.Parameter(significant=False, description="`auto`, `cpu` or `cuda`.")

    def parsed_method(self):
        from generators.registry import parse_method

        return parse_method(self.method, known_generators())

    def sampling_config(self):
        from generators.denoiser_generator import SamplingConfig

        return SamplingConfig(steps=self.sampling_steps, guidance_weight=self.guidance_weight,
                              step_rule=self.step_rule, markovian_window=self.markovian_window)

    def library_configs(self):
        return [(self.sampling_config, {"steps": "sampling_steps"})]

    def requires(self):
        entry = self.parsed_method().generator
        self.check_parameters()  # a bad step rule or window fails where the DAG is built, before any task runs
        upstream = {"dataset": PrepareDataset()}
        if entry.kind == "trained":  # the built-in architectures, trained by the pipeline under their own name
            upstream["generator"] = TrainGenerator(architecture=entry.name)
        elif entry.kind in ("factory", "folder"):
            definition = entry.definition()
            if entry.kind == "folder":
                definition["files_sha256"] = folder_fingerprint(Path(entry.folder))
            elif fingerprints := option_fingerprints(entry.options):
                definition["files_sha256"] = fingerprints
            upstream["generator"] = GeneratorSource(generator=entry.name,
                                                    definition=json.dumps(definition, sort_keys=True))
        return upstream

    def check_inputs(self) -> None:
        from generators.checkpoint import read_config
        from generators.controls import CONTROLS
        from generators.generate import prepare_generator
        from generators.registry import JOINT_SAMPLERS
        from generators.training import resolve_device

        upstream = self.requires()
        method = self.parsed_method()
        self._truth = load_instance(upstream["dataset"], "test", self.scene)
        checkpoint = upstream["generator"].output().folder / "checkpoint" if method.generator.kind == "trained" \
            else None
        depth = None
        if method.generator.kind == "trained" and method.generator.name in JOINT_SAMPLERS \
                and read_config(checkpoint)["model"].get("correspondence") == "depth":
            depth = load_depth(upstream["dataset"], instance_folder(upstream["dataset"], "test", self.scene))
        # What the generator reads beyond the input view and the target cameras.
        self._privileged = ["the ground-truth depth of the target views"] if depth is not None else []
        self._other = self.other_scene(upstream["dataset"]) if method.generator.kind == "control" and \
            CONTROLS[method.generator.name].needs_other_scene else None
        self._generator = prepare_generator(method, self._truth, self.input_view, self.scene, self.sampling_config(),
                                            checkpoint=checkpoint, device=str(resolve_device(self.device)),
                                            depth=depth, other=self._other)

    def other_scene(self, dataset: PrepareDataset):
        """The test scene after this one (cyclically), whose real views the control `other_scene` reports."""
        names = dataset.test_scene_names()
        if len(names) < 2:
            return None
        return load_instance(dataset, "test", names[(names.index(self.scene) + 1) % len(names)])

    def produce(self, folder: Path) -> None:
        from generators.generate import generate_views
        from scenes.transforms_json import write_transforms

        views = generate_views(self.parsed_method(), self._truth, self.input_view, self._generator, seed=self.seed,
                               other=self._other)
        write_transforms(views, folder)
        if self._privileged:  # the report labels such a method as another task (reports.run_folders.PRIVILEGED)
            (folder / "privileged.json").write_text(json.dumps({"reads": self._privileged}, indent=2) + "\n")


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
    scene_box = luigi.ListParameter(default=[], description="[[xmin, ymin, zmin], [xmax, ymax, zmax]]: the NeRF's "
                                                            "box in the cameras' world coordinates; empty: the "
                                                            "cube every camera sees whole (nerf.scene_box).")
    device = luigi.Parameter(significant=False, description="`auto`, `cpu` or `cuda`.")
    # The box from the cameras is what every fit before the option did: its folders keep their names.
    hash_neutral = {"scene_box": "[]"}

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
                         background=tuple(self.background), seed=self.seed, device=self.device,
                         scene_box=tuple(tuple(corner) for corner in self.scene_box) if self.scene_box else None)
        check_config(config)
        return config

    def library_configs(self):
        return [(self.nerf_config, {})]

    def check_inputs(self) -> None:
        from nerf.protocol import split_indices
        from scenes.transforms_json import read_transforms

        self.nerf_config()
        split_indices(len(read_transforms(self.requires().output().folder)), self.subset_config())

    def complete(self) -> bool:
        # A fit an older nvsc wrote lacks the field's geometry at the held-out cameras: refit it.
        return super().complete() and holds_files(self, ("nerf.json", "geometry.npz"))

    def produce(self, folder: Path) -> None:
        from nerf.export import export_protocol
        from nerf.protocol import run_protocol
        from scenes.transforms_json import read_transforms

        views = read_transforms(self.requires().output().folder)
        export_protocol(run_protocol(views, self.subset_config(), self.nerf_config()), folder)


class ScoreScene(SceneMethodTask):
    """Scores of one scene and method: 3D consistency (NeRF renders against the held-out generated views; TSED of
    the views) and fidelity (generated views against the ground truth), as a tidy CSV with a `missing` column
    (`scores.csv`), with the per-view scores (`per_view.csv`) and TSED's per-pair verdicts (`tsed_pairs.csv`) that
    the error-against-distance figures read.

    Scores whose metric weights are not cached are recorded as missing (or, with `strict_metrics`, stop the run).
    The output folder's name carries which weights were used, so a run after `nvsc weights fetch` computes them."""

    #: Files of a complete output. A folder written before one of them existed is rescored in place (same name).
    OUTPUT_FILES = ("scores.csv", "per_view.csv", "tsed_pairs.csv")

    lpips_net = luigi.Parameter(description="Backbone of LPIPS: `alex` or `vgg`.")
    strict_metrics = luigi.BoolParameter(significant=False,
                                         description="Fail instead of recording scores whose weights are missing.")

    def requires(self):
        return {"views": GenerateViews(scene=self.scene, method=self.method),
                "renders": FitNeRF(scene=self.scene, method=self.method),
                "dataset": PrepareDataset()}

    def scoring_config(self):
        from reports.scoring import ScoringConfig

        return ScoringConfig(lpips_net=self.lpips_net, strict=self.strict_metrics)

    def metric_weights(self) -> list[str]:
        from reports.scoring import scene_weights

        return scene_weights(self.scoring_config())

    def label(self) -> str:
        return f"{super().label()}-{weights_label(self.metric_weights())}"

    def complete(self) -> bool:
        return super().complete() and holds_files(self, self.OUTPUT_FILES) and \
            not (self.strict_metrics and missing_weights(self.metric_weights()))

    def check_inputs(self) -> None:
        self.metric_weights()  # an unknown lpips_net fails here
        if self.strict_metrics:
            require_weights(self.metric_weights())

    def produce(self, folder: Path) -> None:
        from pandas import concat

        from reports.scoring import faithfulness_rows, score_scene
        from scenes.transforms_json import read_transforms

        upstream = self.requires()
        views = read_transforms(upstream["views"].output().folder)
        renders = read_transforms(upstream["renders"].output().folder)
        truth = load_instance(upstream["dataset"], "test", self.scene)
        input_view = upstream["views"].input_view
        tidy, per_view, tsed_pairs = score_scene(views, renders, truth, input_view, method=self.method,
                                                 scene=self.scene, config=self.scoring_config())
        depth = self.true_depth(truth)
        if depth is not None:  # scores against the truth's geometry: the distilled NeRF's, and faithfulness
            tidy = concat([tidy, self.geometry_rows(renders, truth, depth)], ignore_index=True)
            faithful, faithful_per_view = faithfulness_rows(views, truth, depth, input_view, method=self.method,
                                                            scene=self.scene)
            tidy = concat([tidy, faithful], ignore_index=True)
            per_view = concat([per_view, faithful_per_view], ignore_index=True)
        tidy.to_csv(folder / "scores.csv", index=False)
        per_view.to_csv(folder / "per_view.csv", index=False)
        tsed_pairs.to_csv(folder / "tsed_pairs.csv", index=False)

    def true_depth(self, truth):
        """The dataset's depth [N, S, S] of the scene's views in the order of `truth` (None without depth)."""
        from scenes.srn import has_srn_depth

        dataset = self.requires()["dataset"]
        scene_folder = instance_folder(dataset, "test", self.scene)
        return load_depth(dataset, scene_folder) if has_srn_depth(scene_folder) else None

    def geometry_rows(self, renders, truth, depth):
        """The geometry scores of the distilled NeRF against the dataset's depth at the held-out cameras."""
        from reports.scoring import geometry_rows

        return geometry_rows(self.requires()["renders"].output().folder / "geometry.npz",
                             depth[[truth.names.index(n) for n in renders.names]], renders,
                             method=self.method, scene=self.scene)


class ScoreFitSeeds(SceneMethodTask):
    """The NeRF score's noise floor on one scene: the method's views fitted with each of `fit_seeds` (FitNeRF with
    that seed), scored like ScoreScene's consistency and distilled PSNR/SSIM, one row per seed (`fit_seeds.csv`)."""

    fit_seeds = luigi.ListParameter(description="NeRF seeds to fit the same views with.")

    def requires(self):
        return {"views": GenerateViews(scene=self.scene, method=self.method), "dataset": PrepareDataset(),
                **{f"fit{seed}": FitNeRF(scene=self.scene, method=self.method, seed=seed) for seed in self.fit_seeds}}

    def produce(self, folder: Path) -> None:
        from reports.noise_floor import fit_seed_scores
        from scenes.transforms_json import read_transforms

        upstream = self.requires()
        renders = {seed: read_transforms(upstream[f"fit{seed}"].output().folder) for seed in self.fit_seeds}
        scores = fit_seed_scores(read_transforms(upstream["views"].output().folder),
                                 load_instance(upstream["dataset"], "test", self.scene), renders,
                                 method=self.method, scene=self.scene)
        scores.to_csv(folder / "fit_seeds.csv", index=False)


class ScorePanorama(SceneMethodTask):
    """Scores of one panorama scene and method (rotation-only cameras: no parallax, so no NeRF): overlap PSNR,
    rotation-only TSED, loop closure and fidelity, as the tidy CSV of ScoreScene (`scores.csv`), and the per-pair
    table (`per_pair.csv`) for the error-accumulation figures."""

    closed_ring = luigi.BoolParameter(description="The views form a full ring: also score the pair (last, first).",
                                      parsing=luigi.BoolParameter.EXPLICIT_PARSING)

    def requires(self):
        return {"views": GenerateViews(scene=self.scene, method=self.method), "dataset": PrepareDataset()}

    def check_inputs(self) -> None:
        from reports.overlap import check_rotation_only

        self._truth = load_instance(self.requires()["dataset"], "test", self.scene)
        check_rotation_only(self._truth.images, self._truth.cameras, f"cameras of scene '{self.scene}' (set "
                                                                     "--PrepareDataset-source panorama)")

    def produce(self, folder: Path) -> None:
        from reports.panorama_scoring import score_panorama
        from scenes.transforms_json import read_transforms

        upstream = self.requires()["views"]
        views = read_transforms(upstream.output().folder)
        tidy, per_pair = score_panorama(views, self._truth, upstream.input_view, method=self.method,
                                        scene=self.scene, closed=self.closed_ring)
        tidy.to_csv(folder / "scores.csv", index=False)
        per_pair.to_csv(folder / "per_pair.csv", index=False)


class ScoreMethodSet(NvscTask):
    """Set-level fidelity of one method: FID and KID of its generated views over all test scenes against the
    ground-truth views at the same cameras, as a tidy CSV (`method, metric, value, missing`)."""

    method = luigi.Parameter(description="`ground_truth`, `noise` or `<generator>/<sampler>`, e.g. `xunet/stochastic`.")
    max_scenes = luigi.IntParameter(description="Pool only the first N test scenes (0 = all); BuildReport "
                                                "passes its own.")
    kid_subsets = luigi.IntParameter(description="KID: random subsets averaged.")
    kid_subset_size = luigi.IntParameter(description="KID: images per subset (capped by the set sizes).")
    strict_metrics = luigi.BoolParameter(significant=False,
                                         description="Fail instead of recording scores whose weights are missing.")

    def scene_names(self) -> list[str]:
        names = PrepareDataset().test_scene_names()
        return names[: self.max_scenes] if self.max_scenes > 0 else names

    def requires(self):
        return {"dataset": PrepareDataset(),
                "views": [GenerateViews(scene=scene, method=self.method) for scene in self.scene_names()]}

    def scoring_config(self):
        from reports.scoring import ScoringConfig

        return ScoringConfig(strict=self.strict_metrics, kid_subsets=self.kid_subsets,
                             kid_subset_size=self.kid_subset_size)

    def metric_weights(self) -> list[str]:
        from reports.scoring import set_weights

        return set_weights()

    def label(self) -> str:
        return f"{self.method.replace('/', '-')}-{weights_label(self.metric_weights())}"

    def complete(self) -> bool:
        return super().complete() and not (self.strict_metrics and missing_weights(self.metric_weights()))

    def check_inputs(self) -> None:
        if self.strict_metrics:
            require_weights(self.metric_weights())

    def produce(self, folder: Path) -> None:
        from reports.scoring import score_method_set
        from scenes.transforms_json import read_transforms

        upstream = self.requires()
        views = [read_transforms(task.output().folder) for task in upstream["views"]]
        truths = [load_instance(upstream["dataset"], "test", scene) for scene in self.scene_names()]
        input_view = upstream["views"][0].input_view if upstream["views"] else 0
        table = score_method_set(views, truths, input_view, method=self.method, config=self.scoring_config())
        table.to_csv(folder / "set_scores.csv", index=False)


def holds_files(task: NvscTask, names: tuple[str, ...]) -> bool:
    """Whether the task's output folder holds every file in `names` (a folder written by an older nvsc may lack
    one that this version writes)."""
    folder = task.output().folder
    return all((folder / name).is_file() for name in names)


def weights_label(names: list[str]) -> str:
    """`w<hash>` of which metric weights are cached (and their checksums): part of a scoring task's folder name."""
    from reports.weights import identity

    return f"w{identity(names)}"


def missing_weights(names: list[str]) -> list[str]:
    from reports.weights import missing

    return missing(names)


def require_weights(names: list[str]) -> None:
    """Raise `WeightsMissingError` (an InvalidInputError, naming `nvsc weights fetch ...`) unless all are cached."""
    from reports.weights import WeightsMissingError, weights_dir

    absent = missing_weights(names)
    if absent:
        raise WeightsMissingError(absent, weights_dir())


# ---------------------------------------------------------------------------------------------------- report
class BuildReport(NvscTask):
    """Tables, figures, error accumulation and loop closure, turntables, per-scene image grids and one HTML page
    over every test scene and method. Object scenes are scored by ScoreScene (NeRF score, TSED, fidelity); panorama
    rooms (`PrepareDataset.source = panorama`) by ScorePanorama (overlap PSNR, rotation-only TSED, loop closure).

    The same builder runs in `nvsc report RUN_DIR...`, which rebuilds this report from the cached outputs."""

    methods = luigi.ListParameter(description="Rows of the report, in order.")
    max_scenes = luigi.IntParameter(description="Use only the first N test scenes (0 = all).")
    set_scores = luigi.BoolParameter(description="Also score each method over all its scenes (FID, KID).",
                                     parsing=luigi.BoolParameter.EXPLICIT_PARSING)
    # No "%" in descriptions: argparse formats help texts with it (`nvsc run --help` would fail).
    bootstrap_resamples = luigi.IntParameter(description="Bootstrap resamples of the scenes for the 95 percent "
                                                         "intervals.")
    bootstrap_seed = luigi.IntParameter(description="Seed of the bootstrap resampling.")
    animations = luigi.BoolParameter(description="Write a turntable GIF (and MP4 when an encoder is installed) "
                                                 "per scene.", parsing=luigi.BoolParameter.EXPLICIT_PARSING)
    # Defaults here, not only in luigi.cfg: configurations written before the noise floor existed still run.
    noise_floor_methods = luigi.ListParameter(default=[], description="Methods whose views are also fitted with "
                                              "every seed of noise_floor_seeds (ScoreFitSeeds), for the NeRF "
                                              "score's noise floor; empty: none.")
    noise_floor_seeds = luigi.ListParameter(default=[0, 1, 2], description="NeRF seeds of the noise floor (at "
                                                                            "least 2).")

    def scene_names(self) -> list[str]:
        names = PrepareDataset().test_scene_names()
        return names[: self.max_scenes] if self.max_scenes > 0 else names

    def requires(self):
        from reports.assemble import ReportConfig

        if not self.methods:
            raise InvalidInputError("BuildReport.methods", "is empty", "list the report's rows, e.g. "
                                    "--BuildReport-methods '[\"ground_truth\", \"noise\"]'")
        ReportConfig(bootstrap_resamples=self.bootstrap_resamples)  # a bad count fails here, before any work
        score = ScorePanorama if PrepareDataset().source == "panorama" else ScoreScene
        upstream = {(scene, method): score(scene=scene, method=method)
                    for scene in self.scene_names() for method in self.methods}
        if score is ScoreScene and self.noise_floor_methods:
            if len(self.noise_floor_seeds) < 2:
                raise InvalidInputError("BuildReport.noise_floor_seeds", f"{list(self.noise_floor_seeds)}",
                                        "list at least two NeRF seeds, e.g. [0, 1, 2], or no noise_floor_methods")
            upstream.update({("fit_seeds", scene, method): ScoreFitSeeds(scene=scene, method=method,
                                                                        fit_seeds=self.noise_floor_seeds)
                             for scene in self.scene_names() for method in self.noise_floor_methods})
        if self.set_scores:
            # The pooled sets are exactly the report's scenes.
            upstream.update({("set", method): ScoreMethodSet(method=method, max_scenes=self.max_scenes)
                             for method in self.methods})
        return upstream

    def label(self) -> str:
        return f"report-{PrepareDataset().label()}"  # report-procedural, report-panorama: which demo is which

    def complete(self) -> bool:
        # A report built on scoring folders that an older nvsc wrote (without tsed_pairs.csv) lacks the TSED
        # against distance figure: rescore them and rebuild it, in the same folders.
        return super().complete() and all(holds_files(task, task.OUTPUT_FILES) for task in self.requires().values()
                                          if isinstance(task, ScoreScene))

    def produce(self, folder: Path) -> None:
        from reports.assemble import ReportConfig, build_report
        from reports.run_folders import RunResults, result_from_score_folder, set_score_files

        root = Path(nvsc().output_root)
        results, set_csvs, seed_csvs = [], [], []
        for task in self.requires().values():
            if isinstance(task, (ScoreScene, ScorePanorama)):
                results.append(result_from_score_folder(task.output().folder, root))
            elif isinstance(task, ScoreFitSeeds):
                seed_csvs.append(task.output().folder / "fit_seeds.csv")
            else:
                set_csvs += set_score_files(task.output().folder)
        config = ReportConfig(bootstrap_resamples=self.bootstrap_resamples, seed=self.bootstrap_seed,
                              animations=self.animations)
        build_report([RunResults("", root, results, set_csvs, list(self.methods), seed_csvs)], folder, config)
