"""Turntable animations: the cameras of one scene in orbit order, each frame a labelled grid with one row per
method (its generated view beside the NeRF render at that camera) under a ground-truth row.

The NeRF is fitted on a subset of the views and rendered only at the held-out cameras (3DiM's protocol), so a
frame at a fitted camera shows a grey cell in the render column. GIF is always written (Pillow); MP4 only when
PyAV with an H.264 or MPEG-4 encoder is installed, since nothing may be downloaded at run time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from reports.image_grid import GridLayout, render_image_grid
from scenes.errors import InvalidInputError

logger = logging.getLogger(__name__)

#: Colour of a cell with no image at that camera (a render at a camera the NeRF was fitted on).
PLACEHOLDER = 160


@dataclass
class TurntableRow:
    """One row of the animation: views by camera name; a camera absent from a dict gets a grey cell."""

    #: Row label, e.g. the method.
    label: str
    #: Generated (or real) view per camera name, uint8 or float [H, W, 3].
    views: dict[str, np.ndarray]
    #: NeRF render per held-out camera name, uint8 or float [H, W, 3]; None for a row without a render column.
    renders: dict[str, np.ndarray] | None = None


def _uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    return np.round(np.clip(image.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def turntable_frames(rows: list[TurntableRow], cameras: list[str],
                     scale: int = 2) -> tuple[list[np.ndarray], GridLayout]:
    """One uint8 image [H', W', 3] per camera in `cameras` (the orbit order), and where the cells lie in them
    (the same in every frame)."""
    if not rows or not cameras:
        raise InvalidInputError("turntable", "has no rows or no cameras", "pass at least one row and one camera")
    shapes = {np.shape(image) for row in rows for image in row.views.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3:
        raise InvalidInputError("turntable views", f"have shapes {sorted(shapes)}", "give views of one [H, W, 3] size")
    blank = np.full(next(iter(shapes)), PLACEHOLDER, np.uint8)
    frames, layout = [], None
    for camera in cameras:
        grid_rows = []
        for row in rows:
            cells = [_uint8(row.views.get(camera, blank))]
            if row.renders is not None:
                cells.append(_uint8(row.renders.get(camera, blank)))
            # The label stays the same in every frame, so the cells do not move from frame to frame.
            grid_rows.append((row.label, np.stack(cells)))
        image, layout = render_image_grid(grid_rows, max_columns=2, scale=scale)
        frames.append(image)
    return frames, layout


def mp4_available() -> str | None:
    """Name of an MP4 video encoder PyAV provides here, or None."""
    try:
        import av
    except ImportError:
        return None
    return next((codec for codec in ("libx264", "h264", "mpeg4") if codec in av.codecs_available), None)


def write_gif(frames: list[np.ndarray], path: Path, frame_ms: int = 300) -> Path:
    """Write frames (uint8 [H, W, 3], one size) as a looping GIF."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=frame_ms, loop=0,
                   optimize=False)
    logger.info("wrote %s", path)
    return path


def write_mp4(frames: list[np.ndarray], path: Path, frame_ms: int = 300) -> Path | None:
    """Write frames as MP4 through PyAV when an encoder is available; None (and nothing written) otherwise."""
    codec = mp4_available()
    if codec is None:
        logger.info("no MP4 encoder (PyAV with libx264/mpeg4): %s not written", path)
        return None
    import av

    # H.264 with yuv420p needs even sides: pad the bottom/right edge with white.
    height, width = frames[0].shape[:2]
    even_h, even_w = height + height % 2, width + width % 2
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(1000, frame_ms))
        stream.width, stream.height, stream.pix_fmt = even_w, even_h, "yuv420p"
        for frame in frames:
            padded = np.full((even_h, even_w, 3), 255, np.uint8)
            padded[:height, :width] = frame
            for packet in stream.encode(av.VideoFrame.from_ndarray(padded, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    logger.info("wrote %s", path)
    return path


def write_turntable(rows: list[TurntableRow], cameras: list[str], path_stem: Path, scale: int = 2,
                    frame_ms: int = 300, mp4: bool = True) -> dict[str, Path]:
    """Write `<path_stem>.gif` (and `.mp4` when possible and `mp4`); returns the paths by suffix."""
    frames, _ = turntable_frames(rows, cameras, scale)
    path_stem = Path(path_stem)
    written = {"gif": write_gif(frames, path_stem.with_suffix(".gif"), frame_ms)}
    if mp4:
        video = write_mp4(frames, path_stem.with_suffix(".mp4"), frame_ms)
        if video is not None:
            written["mp4"] = video
    return written
