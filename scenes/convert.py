"""Conversion between the SRN ShapeNet layout and nerfstudio's `transforms.json`.

Both readers return cameras in one convention (OpenGL axes), so a conversion is a read followed by a write; the
axis change SRN needs (OpenCV axes) happens inside the SRN reader and writer only.
"""

from __future__ import annotations

from pathlib import Path

from scenes.srn import read_srn_instance, write_srn_instance
from scenes.transforms_json import read_transforms, write_transforms


def srn_to_transforms(srn_instance: Path, out_folder: Path) -> None:
    """Write one SRN instance folder as `out_folder/transforms.json` + `out_folder/images/` (names kept)."""
    write_transforms(read_srn_instance(Path(srn_instance)), Path(out_folder))


def transforms_to_srn(folder: Path, out_instance: Path) -> None:
    """Write a `transforms.json` folder as one SRN instance (needs fl_x == fl_y: SRN stores one focal length)."""
    write_srn_instance(read_transforms(Path(folder)), Path(out_instance))
