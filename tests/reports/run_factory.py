"""Run folders laid out as `nvsc run` writes them (task folders, provenance, transforms.json, PNGs, score CSVs),
made from arrays in a test, so the report can be rebuilt from disk without running the pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image


def _task_folder(root: Path, family: str, name: str, parameters: dict, upstream: list[Path],
                 finished: str = "2026-11-22T08:00:00+00:00") -> Path:
    folder = root / family / name
    folder.mkdir(parents=True)
    record = {"task": family, "task_id": f"{family}_{name}", "parameters": parameters,
              "upstream": {f"{p.parent.name}_{p.name}": {"signature": p.name[-12:],
                                                         "output": f"runs/{p.parent.name}/{p.name}"}
                           for p in upstream},
              "finished_utc": finished}
    (folder / "provenance.json").write_text(json.dumps(record))
    return folder


def _write_views(folder: Path, names: list[str], images: np.ndarray) -> None:
    (folder / "images").mkdir()
    frames = []
    for name, image in zip(names, images):
        Image.fromarray(image).save(folder / "images" / f"{name}.png")
        frames.append({"file_path": f"images/{name}.png", "transform_matrix": np.eye(4).tolist()})
    (folder / "transforms.json").write_text(json.dumps({"w": images.shape[2], "h": images.shape[1],
                                                        "frames": frames}))


def write_run(root: Path, scores: pd.DataFrame, views: int = 8, size: int = 16, heldout_every: int = 4,
              set_scores: pd.DataFrame | None = None, build: bool = True, seed: int = 0) -> Path:
    """Write a run folder at `root` holding, per (method, scene) of `scores` (tidy, with `missing`), views
    [views, size, size, 3] whose colour encodes (method, scene, view), NeRF renders at every `heldout_every`-th
    view, the scores as ScoreScene's CSV, and (when `build`) a BuildReport folder naming them all."""
    rng = np.random.default_rng(seed)
    names = [f"{i:06d}" for i in range(views)]
    heldout = names[heldout_every::heldout_every]
    score_folders = []
    methods = list(dict.fromkeys(scores["method"]))
    for method in methods:
        for scene in dict.fromkeys(scores.loc[scores["method"] == method, "scene"]):
            label = f"{method.replace('/', '-')}-{scene}"
            parameters = {"scene": scene, "method": method, "input_view": "0", "guidance_weight": "3.0"}
            gen = _task_folder(root, "GenerateViews", f"{label}-aaaa", parameters, [])
            images = rng.integers(0, 256, (views, size, size, 3), dtype=np.uint8)
            _write_views(gen, names, images)
            fit = _task_folder(root, "FitNeRF", f"{label}-bbbb", {"scene": scene, "method": method}, [gen])
            _write_views(fit, heldout, 255 - images[heldout_every::heldout_every])
            score = _task_folder(root, "ScoreScene", f"{label}-cccc", {"scene": scene, "method": method}, [gen, fit])
            rows = scores[(scores["method"] == method) & (scores["scene"] == scene)]
            rows.to_csv(score / "scores.csv", index=False)
            score_folders.append(score)
    upstream = list(score_folders)
    if set_scores is not None:
        for method in methods:
            folder = _task_folder(root, "ScoreMethodSet", f"{method.replace('/', '-')}-dddd", {"method": method}, [])
            set_scores[set_scores["method"] == method].to_csv(folder / "set_scores.csv", index=False)
            upstream.append(folder)
    if build:
        _task_folder(root, "BuildReport", "report-eeee", {"methods": json.dumps(methods)}, upstream)
    return root
