"""Labelled image grids for the report: one row per kind of view (input, ground truth, generated, NeRF renders).

Views are enlarged by whole-pixel repetition (nearest neighbour), so every pixel of a 32 x 32 view stays a
crisp square and the grid shows exactly the values that were scored, not an interpolation of them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from scenes.errors import InvalidInputError

logger = logging.getLogger(__name__)

#: Page colour: margins, gaps and the padding of rows with fewer views.
BACKGROUND = (255, 255, 255)
#: Colour of the row labels.
LABEL_COLOUR = (0, 0, 0)


@dataclass(frozen=True)
class GridLayout:
    """Where each cell lies in the grid image, in pixels."""

    #: Number of rows (one per labelled entry).
    rows: int
    #: Number of view columns (the most views in a row, capped by max_columns).
    columns: int
    #: Width of the left margin that holds the labels.
    label_width: int
    #: Size of one enlarged view.
    cell_width: int
    #: Size of one enlarged view.
    cell_height: int
    #: Height of a row: the cell height, or the label's height when that is taller.
    row_height: int
    #: White space between cells, between rows and around the grid.
    gap: int

    def cell_origin(self, row: int, column: int) -> tuple[int, int]:
        """(x, y) of the top-left pixel of the view at (row, column)."""
        x = self.gap + self.label_width + self.gap + column * (self.cell_width + self.gap)
        y = self.gap + row * (self.row_height + self.gap)
        return x, y

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the whole grid image."""
        width = self.gap + self.label_width + self.gap + self.columns * (self.cell_width + self.gap)
        height = self.gap + self.rows * (self.row_height + self.gap)
        return width, height


def _to_uint8(views: np.ndarray, label: str) -> np.ndarray:
    """[N, H, W, 3] float in [0, 1] or uint8 -> uint8 [N, H, W, 3]."""
    views = np.asarray(views)
    if views.ndim != 4 or views.shape[-1] != 3 or len(views) == 0:
        raise InvalidInputError(f"image grid row {label!r}", f"shape {list(views.shape)} is not [N, H, W, 3] "
                                                             "with N >= 1", "pass a non-empty stack of RGB views")
    if views.dtype == np.uint8:
        return views
    return np.round(np.clip(views.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def _wrap(label: str, font: ImageFont.ImageFont, draw: ImageDraw.ImageDraw, max_width: int) -> str:
    """Break `label` at spaces into lines no wider than max_width pixels (a single long word stays whole)."""
    lines: list[str] = []
    for word in label.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= max_width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return "\n".join(lines) or label


def render_image_grid(rows: list[tuple[str, np.ndarray]], max_columns: int = 12, scale: int = 2,
                      max_label_width: int = 160, gap: int = 4) -> tuple[np.ndarray, GridLayout]:
    """Draw the grid in memory: -> (image uint8 [height, width, 3], layout of its cells).

    Rows are `(label, views [N, H, W, 3])`, all views of one size. A row with more than max_columns views shows
    the first max_columns and says so in its label; a row with fewer is padded with white.
    """
    if not rows:
        raise InvalidInputError("image grid rows", "the list is empty", "pass at least one (label, views) row")
    if max_columns < 1 or scale < 1:
        raise InvalidInputError("max_columns and scale", f"got {max_columns} and {scale}",
                                "use whole numbers of at least 1")
    labelled = [(str(label), _to_uint8(views, str(label))) for label, views in rows]
    view_shapes = {views.shape[1:3] for _, views in labelled}
    if len(view_shapes) != 1:
        raise InvalidInputError("image grid rows", f"views of several sizes {sorted(view_shapes)}",
                                "resize every row to one resolution before drawing the grid")
    height, width = view_shapes.pop()
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    texts = []
    for label, views in labelled:
        if len(views) > max_columns:
            logger.info("image grid row %r: showing %d of %d views", label, max_columns, len(views))
            label = f"{label} (first {max_columns} of {len(views)})"
        texts.append(_wrap(label, font, measure, max_label_width))
    boxes = [measure.multiline_textbbox((0, 0), text, font=font) for text in texts]
    layout = GridLayout(rows=len(labelled), columns=min(max_columns, max(len(v) for _, v in labelled)),
                        label_width=max(box[2] for box in boxes), cell_width=width * scale,
                        cell_height=height * scale,
                        row_height=max(height * scale, max(box[3] for box in boxes)), gap=gap)
    canvas = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for row, ((_, views), text, box) in enumerate(zip(labelled, texts, boxes)):
        _, top = layout.cell_origin(row, 0)
        draw.multiline_text((gap, top + (layout.row_height - box[3]) // 2), text, fill=LABEL_COLOUR, font=font)
        for column, view in enumerate(views[:max_columns]):
            enlarged = view.repeat(scale, axis=0).repeat(scale, axis=1)  # [H * scale, W * scale, 3]
            canvas.paste(Image.fromarray(enlarged), layout.cell_origin(row, column))
    return np.asarray(canvas), layout


def save_image_grid(rows: list[tuple[str, np.ndarray]], path: Path, max_columns: int = 12,
                    scale: int = 2) -> Path:
    """Draw the labelled grid of `rows` (see render_image_grid) and write it as a PNG at `path`."""
    image, _ = render_image_grid(rows, max_columns=max_columns, scale=scale)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="PNG")
    logger.info("wrote %s", path)
    return path
