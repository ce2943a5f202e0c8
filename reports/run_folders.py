"""Find the cached results of pipeline runs on disk, so a report can be rebuilt without recomputing anything.

A run folder is the output root of `nvsc run` (`runs/` by default), holding one folder per task output::

    <run>/ScoreScene/<method>-<scene>-<hash>/{scores.csv, per_view.csv, tsed_pairs.csv, provenance.json}
    <run>/GenerateViews/<...>/{transforms.json, images/, provenance.json}     the method's views
    <run>/FitNeRF/<...>/{transforms.json, images/, provenance.json}           NeRF renders at held-out cameras
    <run>/ScorePanorama/<method>-<scene>-<hash>/{scores.csv, per_pair.csv, provenance.json}   panoramas (no NeRF)
    <run>/BuildReport/report-<hash>/provenance.json                           which of the above one report used

Each `provenance.json` names the task's parameters and its upstream output folders, which is all that is needed
to tie the scores of one (scene, method) to its views and renders. Upstream paths are resolved inside the run
folder by `<Task>/<folder name>`, so a run folder that was moved or copied still reads.

Nothing here imports torch, luigi or the pipeline: `nvsc report` reads CSVs and PNGs only.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from reports.tables import SET_COLUMNS
from scenes.errors import InvalidInputError

logger = logging.getLogger(__name__)

PROVENANCE = "provenance.json"
#: A views folder's record of what its generator read beyond the input view (written by GenerateViews).
PRIVILEGED = "privileged.json"
#: ScoreFitSeeds' table of per-seed NeRF scores.
FIT_SEEDS = "fit_seeds.csv"


@dataclass(frozen=True)
class MethodSceneResult:
    """Where the cached results of one scene under one method lie."""

    #: Test scene (instance) name.
    scene: str
    #: Method as the pipeline ran it (`ground_truth`, `xunet/stochastic@3`, ...).
    method: str
    #: Tidy per-scene scores: `method, scene, metric, value[, missing]`.
    scores_csv: Path
    #: The method's views of the scene, `transforms.json` layout.
    views_folder: Path
    #: NeRF renders at the held-out cameras, `transforms.json` layout; None for a panorama (no NeRF is fitted).
    renders_folder: Path | None
    #: Index of the view given to the generator.
    input_view: int
    #: Classifier-free guidance weight the views were generated with (GenerateViews' parameter), when recorded.
    guidance_weight: float | None = None
    #: ScoreScene's per-view scores (`view, kind, psnr, ssim, ...`), when the run wrote them.
    per_view_csv: Path | None = None
    #: ScorePanorama's per-pair table (overlap PSNR by distance from the input view); set for panoramas only.
    per_pair_csv: Path | None = None
    #: ScoreScene's per-pair TSED table (verdict, matches, median error by distance), when the run wrote it (runs
    #: of an nvsc older than the file lack it). Panoramas keep theirs in `per_pair_csv`.
    tsed_pairs_csv: Path | None = None
    #: What the generator read beyond the input view and the target cameras (`PRIVILEGED` in its views folder),
    #: e.g. the targets' ground-truth depth: such a method solves another task than image-only NVS.
    privileged: tuple[str, ...] = ()

    @property
    def panorama(self) -> bool:
        """Whether the scene was scored as a panorama (rotation-only cameras: overlap scores, no NeRF)."""
        return self.per_pair_csv is not None


@dataclass
class RunResults:
    """Everything one report needs from one run."""

    #: Label that tells this run apart from the others of a merged report ("" for a single run).
    label: str
    #: The run's output root.
    root: Path
    #: One entry per (scene, method).
    results: list[MethodSceneResult]
    #: Set-level score tables (`method, metric, value[, missing]`), e.g. FID/KID per method.
    set_score_csvs: list[Path] = field(default_factory=list)
    #: Rows in the order the run's report listed them (methods not named come after).
    method_order: list[str] = field(default_factory=list)
    #: Per-seed NeRF scores of the same views (`fit_seeds.csv` of ScoreFitSeeds), for the noise floor.
    fit_seed_csvs: list[Path] = field(default_factory=list)


def read_provenance(folder: Path) -> dict:
    """The provenance record of a task output folder."""
    path = Path(folder) / PROVENANCE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidInputError(path, "does not exist: the folder is not a complete task output",
                                "point at a folder written by `nvsc run`") from None
    except json.JSONDecodeError as error:
        raise InvalidInputError(path, f"is not valid JSON ({error})", "rerun the task that wrote it") from None


def _parameter_list(text) -> list[str]:
    """A luigi ListParameter as serialised in provenance (`'["a", "b"]'`), as a list."""
    return list(json.loads(text)) if isinstance(text, str) else list(text)


def _upstream_folders(provenance: dict, root: Path) -> dict[str, list[Path]]:
    """Upstream output folders by task family, resolved inside `root`."""
    folders: dict[str, list[Path]] = {}
    for entry in provenance.get("upstream", {}).values():
        recorded = Path(entry["output"])
        folders.setdefault(recorded.parent.name, []).append(root / recorded.parent.name / recorded.name)
    return folders


#: Task families whose folders hold one (scene, method)'s scores: objects (NeRF score) and panoramas.
SCORE_FAMILIES = ("ScoreScene", "ScorePanorama")


def result_from_score_folder(score_folder: Path, root: Path) -> MethodSceneResult:
    """Tie one ScoreScene or ScorePanorama output folder to the views (and NeRF renders) it scored, through its
    provenance."""
    score_folder = Path(score_folder)
    provenance = read_provenance(score_folder)
    parameters = provenance.get("parameters", {})
    upstream = _upstream_folders(provenance, Path(root))
    panorama = provenance.get("task") == "ScorePanorama"
    families = ("GenerateViews",) if panorama else ("GenerateViews", "FitNeRF")
    for family in families:
        if len(upstream.get(family, [])) != 1:
            raise InvalidInputError(score_folder / PROVENANCE, f"names {len(upstream.get(family, []))} {family} "
                                                               "folders, not one", "rerun the scoring task")
    views = upstream["GenerateViews"][0]
    renders = None if panorama else upstream["FitNeRF"][0]
    scores = score_folder / "scores.csv"
    per_pair = score_folder / "per_pair.csv" if panorama else None
    required = [scores, views / "transforms.json"] + [p for p in (per_pair,) if p is not None] + \
        ([renders / "transforms.json"] if renders is not None else [])
    for path in required:
        if not path.is_file():
            raise InvalidInputError(path, "does not exist", "copy the whole run folder, or rerun `nvsc run` on it")
    per_view, tsed_pairs = score_folder / "per_view.csv", score_folder / "tsed_pairs.csv"
    generation = read_provenance(views).get("parameters", {})
    privileged = json.loads((views / PRIVILEGED).read_text())["reads"] if (views / PRIVILEGED).is_file() else []
    weight = generation.get("guidance_weight")
    return MethodSceneResult(scene=str(parameters["scene"]), method=str(parameters["method"]), scores_csv=scores,
                             views_folder=views, renders_folder=renders,
                             input_view=int(generation.get("input_view", 0)),
                             guidance_weight=float(weight) if weight is not None else None,
                             per_view_csv=per_view if per_view.is_file() else None, per_pair_csv=per_pair,
                             tsed_pairs_csv=tsed_pairs if tsed_pairs.is_file() else None,
                             privileged=tuple(privileged))


def set_score_files(folder: Path) -> list[Path]:
    """The CSVs in a task output folder that hold set-level scores (columns `method, metric, value`, no scene)."""
    found = []
    for path in sorted(Path(folder).glob("*.csv")):
        columns = set(pd.read_csv(path, nrows=0).columns)
        if set(SET_COLUMNS) <= columns and "scene" not in columns:
            found.append(path)
    return found


def _complete(folder: Path) -> list[Path]:
    """Complete task outputs in `folder` (temporary folders start with `.` and hold no provenance)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and (p / PROVENANCE).is_file())


def _finished(folder: Path) -> str:
    return str(read_provenance(folder).get("finished_utc", ""))


def collect_run(run_dir: Path, label: str = "") -> RunResults:
    """Results of one run: a run's output root, or one BuildReport folder in it.

    From an output root, the newest BuildReport (by finish time) says which ScoreScene folders form the run, and in
    which order its methods go; without one, every complete ScoreScene folder is taken, and where a (scene,
    method) was scored more than once (runs with other parameters) the newest wins, with a warning.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InvalidInputError(f"run folder {run_dir}", "does not exist",
                                "pass the output root of `nvsc run` (`runs/` by default) or a BuildReport folder")
    build: Path | None = None
    if (run_dir / PROVENANCE).is_file() and read_provenance(run_dir).get("task") == "BuildReport":
        build, root = run_dir, run_dir.parent.parent
    else:
        root = run_dir
        builds = _complete(run_dir / "BuildReport")
        if builds:
            build = max(builds, key=_finished)
            if len(builds) > 1:
                logger.info("%s: %d reports; using the newest, %s", run_dir, len(builds), build.name)
    if build is not None:
        provenance = read_provenance(build)
        upstream = _upstream_folders(provenance, root)
        score_folders = [folder for family in SCORE_FAMILIES for folder in upstream.pop(family, [])]
        seed_csvs = [folder / FIT_SEEDS for folder in upstream.pop("ScoreFitSeeds", [])]
        set_csvs = [path for folders in upstream.values() for folder in folders for path in set_score_files(folder)]
        order = _parameter_list(provenance.get("parameters", {}).get("methods", "[]"))
    else:
        score_folders = [folder for family in SCORE_FAMILIES for folder in _complete(root / family)]
        set_csvs = []
        for family in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in
                             (*SCORE_FAMILIES, "GenerateViews", "FitNeRF", "BuildReport", "PrepareDataset",
                              "TrainGenerator", "ScoreFitSeeds")):
            for folder in _complete(family):
                set_csvs += set_score_files(folder)
        order = []
        seed_csvs = [folder / FIT_SEEDS for folder in _complete(root / "ScoreFitSeeds")]
    if not score_folders:
        raise InvalidInputError(f"run folder {run_dir}", "holds no complete ScoreScene or ScorePanorama outputs",
                                "run `nvsc run` first, and pass its output root (`runs/` by default)")
    newest: dict[tuple[str, str], tuple[str, MethodSceneResult]] = {}
    for folder in score_folders:
        result = result_from_score_folder(folder, root)
        key = (result.scene, result.method)
        if key in newest:
            logger.warning("%s: %s on %s was scored more than once; using the newest", run_dir, *key[::-1])
        if key not in newest or _finished(folder) > newest[key][0]:
            newest[key] = (_finished(folder), result)
    return RunResults(label=label, root=root, results=[result for _, result in newest.values()],
                      set_score_csvs=set_csvs, method_order=order, fit_seed_csvs=seed_csvs)


def run_labels(run_dirs: list[Path]) -> list[str]:
    """Shortest trailing parts of the resolved paths that tell the runs apart (`a/runs`, `b/runs`)."""
    paths = [Path(p).resolve() for p in run_dirs]
    if len(set(paths)) != len(paths):
        raise InvalidInputError("run folders", "name the same folder twice", "pass each run folder once")
    if len(paths) == 1:
        return [""]
    for depth in range(1, max(len(p.parts) for p in paths) + 1):
        labels = ["/".join(p.parts[-depth:]) for p in paths]
        if len(set(labels)) == len(labels):
            return labels
    return [str(p) for p in paths]


def collect_runs(run_dirs: list[Path]) -> list[RunResults]:
    """Results of every run folder, each labelled apart from the others (no label when there is one)."""
    if not run_dirs:
        raise InvalidInputError("run folders", "none given", "pass at least one output root of `nvsc run`")
    return [collect_run(path, label) for path, label in zip(run_dirs, run_labels(run_dirs))]


def read_views(folder: Path) -> tuple[list[str], np.ndarray]:
    """Names and images uint8 [N, H, W, 3] of a `transforms.json` folder (name = file stem), read without torch."""
    path = Path(folder) / "transforms.json"
    try:
        frames = json.loads(path.read_text())["frames"]
        files = [Path(folder) / frame["file_path"] for frame in frames]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InvalidInputError(path, f"cannot be read as transforms.json ({error})",
                                "rerun the task that wrote the folder") from None
    images = []
    for file in files:
        try:
            with Image.open(file) as image:
                images.append(np.asarray(image.convert("RGB")))
        except OSError as error:
            raise InvalidInputError(file, f"cannot be read as an image ({error})", "rerun the task that wrote it") \
                from None
    return [file.stem for file in files], np.stack(images)


def read_cameras(folder: Path) -> tuple[list[str], np.ndarray]:
    """Names (file stems) and camera-to-world matrices c2w [N, 4, 4] of a `transforms.json` folder, in its frame
    order (the ring order of the pipeline's views), read without torch."""
    path = Path(folder) / "transforms.json"
    try:
        frames = json.loads(path.read_text())["frames"]
        names = [Path(frame["file_path"]).stem for frame in frames]
        c2w = np.asarray([frame["transform_matrix"] for frame in frames], dtype=np.float64)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InvalidInputError(path, f"cannot be read as transforms.json ({error})",
                                "rerun the task that wrote the folder") from None
    if c2w.shape != (len(names), 4, 4):
        raise InvalidInputError(path, f"holds camera matrices of shape {list(c2w.shape)}",
                                "rerun the task that wrote the folder: each frame needs a 4 x 4 transform_matrix")
    return names, c2w
