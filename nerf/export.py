"""A fitted scene of the consistency protocol as folders nerfstudio reads, plus a summary of the fit::

    <folder>/transforms.json, images/         the NeRF's renders at the held-out cameras (held-out views' names)
    <folder>/scene/transforms.json, images/   every view of the scene, `train_filenames` = the views the NeRF was
                                              fitted on, `test_filenames` = the held-out ones
    <folder>/nerf.json                        the split, the fit's configuration, steps, seconds and backend
    <folder>/geometry.npz                     the field's expected surface points [M, H, W, 3] and opacity [M, H, W]
                                              at the held-out cameras (`names`: the held-out views' names)

So `ns-train nerfacto --data <folder>/scene` refits the same split with another method, and `<folder>` itself is
an ordinary view folder of nvsc (the scores compare it with the held-out views).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from nerf.protocol import ProtocolResult
from scenes.errors import InvalidInputError
from scenes.transforms_json import write_transforms

SCENE_DIR = "scene"
SUMMARY_FILE = "nerf.json"
GEOMETRY_FILE = "geometry.npz"


def export_protocol(result: ProtocolResult, folder: Path) -> None:
    """Write `result` into `folder` (created if missing; it must not already hold an export)."""
    folder = Path(folder)
    taken = [folder / name for name in (SCENE_DIR, SUMMARY_FILE, GEOMETRY_FILE) if (folder / name).exists()]
    if taken:
        raise InvalidInputError(taken[0], "already exists; refusing to mix two fits in one folder",
                                "export to a new folder, or delete the old one first")
    write_transforms(result.renders, folder)
    write_transforms(result.scene, folder / SCENE_DIR, train_names=result.train.names, test_names=result.heldout.names)
    fitted = result.fitted
    summary = {"train_views": result.train.names, "heldout_views": result.heldout.names,
               "backend": fitted.field.backend, "device": str(fitted.device), "steps": fitted.steps,
               "seconds": fitted.seconds, "final_loss": fitted.final_loss,
               "scene_box": fitted.field.aabb.tolist(), "config": dataclasses.asdict(fitted.config)}
    (folder / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    if result.surface_points is not None:
        np.savez_compressed(folder / GEOMETRY_FILE, points=result.surface_points, opacity=result.opacity,
                            names=np.array(result.heldout.names))

