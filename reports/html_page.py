"""The report as one self-contained HTML file: summary table, controls, notes, figures, small tables, animations,
image grids.

Images are embedded as base64 data URIs, so `index.html` alone can be mailed, archived or opened anywhere,
with no folder of images beside it. Every string that comes from a caller is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

from reports.tables import SummaryText, higher_is_better
from scenes.errors import InvalidInputError

logger = logging.getLogger(__name__)

#: What the rows of the table mean; printed before the caller's notes.
DEFAULT_NOTES = (
    "ground_truth: the real views scored as if generated: the upper bound of fidelity and of the distilled NeRF's "
    "fidelity, and the consistency a NeRF without view dependence reaches on perfectly 3D-consistent views at this "
    "resolution. It is not an upper bound of the consistency score: blurred or blank views exceed it (see the "
    "degenerate controls).",
    "perturbed: the real views with an independent colour and position change per view; noise: independent "
    "random images per view; shuffled_cameras: the real views under the wrong cameras. They are lower bounds.",
    "Other rows are generators with their sampler (and `@w`, the classifier-free guidance weight): consistency = "
    "scores of NeRF renders at held-out cameras against the held-out generated views, and TSED; fidelity = "
    "generated views against the real views at the same cameras.",
)
#: MIME type of each image suffix the page can embed.
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
               ".svg": "image/svg+xml"}

_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 80em; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: right; }
td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; }
img.pixels { image-rendering: pixelated; }
figure { margin: 1.5em 0; display: inline-block; vertical-align: top; }
div.half { display: flex; flex-wrap: wrap; gap: 1em; }
div.half figure { width: calc(50% - 0.5em); margin: 0.5em 0; }
div.half img { width: 100%; }
figcaption { color: #555; font-size: 0.9em; }
p.warning { color: #a00; font-weight: bold; }
"""


@dataclass
class PageImage:
    """One embedded image with its caption."""

    #: Text under the image.
    caption: str
    #: PNG, JPEG, GIF or SVG file to embed.
    path: Path
    #: Draw enlarged pixels as crisp squares (views and animations), not smoothed.
    pixelated: bool = False
    #: Files beside the page to link under the image (e.g. the MP4 of an animation), by link text.
    links: dict[str, str] = field(default_factory=dict)


@dataclass
class PageSection:
    """A heading, an optional paragraph and its images."""

    #: Section heading.
    heading: str
    #: Images in the order shown.
    images: list[PageImage]
    #: Paragraph under the heading ("" for none).
    text: str = ""
    #: Show the images two to a row, scaled to fit (plots); otherwise each at its own size (views, grids).
    side_by_side: bool = False
    #: Small tables shown above the images (e.g. loop closure per method), each with its index as first column.
    tables: list[pd.DataFrame] = field(default_factory=list)


def summary_html(summary: SummaryText) -> str:
    """The summary as an HTML <table>, best cells in <strong>, each header with its direction."""
    def header(metric: str) -> str:
        try:
            arrow = " \u2191" if higher_is_better(metric) else " \u2193"
        except InvalidInputError:
            arrow = ""
        return html.escape(f"{metric}{arrow}")

    rows = ["<table class=\"summary\">", "<thead><tr><th>method</th>"
            + "".join(f"<th>{header(c)}</th>" for c in summary.cells.columns) + "</tr></thead>", "<tbody>"]
    for method in summary.cells.index:
        cells = []
        for column in summary.cells.columns:
            text = html.escape(str(summary.cells.loc[method, column]))
            bold = summary.best.loc[method, column]
            cells.append(f"<td><strong>{text}</strong></td>" if bold else f"<td>{text}</td>")
        rows.append(f"<tr><td>{html.escape(str(method))}</td>{''.join(cells)}</tr>")
    rows += ["</tbody>", "</table>"]
    return "\n".join(rows)


def frame_html(frame: pd.DataFrame, decimals: int = 2) -> str:
    """A small DataFrame as an HTML <table> (index as the first column), floats rounded, NaN as `-`, every cell
    escaped."""
    def cell(value) -> str:
        if isinstance(value, float) and math.isnan(value):
            return "-"  # no value at this cell (e.g. no view at that distance)
        return f"{value:.{decimals}f}" if isinstance(value, float) else str(value)

    names = [str(name) for name in frame.index.names]
    rows = ["<table>", "<thead><tr>" + "".join(f"<th>{html.escape('/'.join(n for n in names if n != 'None'))}</th>")
            + "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns) + "</tr></thead>", "<tbody>"]
    for index, values in zip(frame.index, frame.itertuples(index=False)):
        label = " / ".join(map(str, index)) if isinstance(index, tuple) else str(index)
        rows.append(f"<tr><td>{html.escape(label)}</td>"
                    + "".join(f"<td>{html.escape(cell(v))}</td>" for v in values) + "</tr>")
    rows += ["</tbody>", "</table>"]
    return "\n".join(rows)


def _data_uri(path: Path) -> str:
    return f"data:{IMAGE_TYPES[path.suffix.lower()]};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _check_images(sections: Sequence[PageSection]) -> None:
    for section in sections:
        for image in section.images:
            path = Path(image.path)
            if not path.is_file():
                raise InvalidInputError(f"image {path}", "does not exist", "draw the image before writing the page")
            if path.suffix.lower() not in IMAGE_TYPES:
                raise InvalidInputError(f"image {path}", f"has the suffix {path.suffix!r}",
                                        f"embed one of {sorted(IMAGE_TYPES)}")


def _section_html(section: PageSection) -> list[str]:
    parts = [f"<h2>{html.escape(section.heading)}</h2>"]
    if section.text:
        parts.append(f"<p>{html.escape(section.text)}</p>")
    parts += [frame_html(table) for table in section.tables]
    parts.append('<div class="half">' if section.side_by_side else "<div>")
    for image in section.images:
        css = ' class="pixels"' if image.pixelated else ""
        links = "".join(f' <a href="{html.escape(href)}">{html.escape(text)}</a>'
                        for text, href in image.links.items())
        parts.append(f'<figure><img{css} src="{_data_uri(Path(image.path))}" alt="{html.escape(image.caption)}">'
                     f"<figcaption>{html.escape(image.caption)}{links}</figcaption></figure>")
    parts.append("</div>")
    return parts


def write_report_html(out_dir: Path, title: str, summary: SummaryText, sections: Sequence[PageSection],
                      notes: Sequence[str] = (), controls: Sequence[str] = (), legend: str = "",
                      default_notes: Sequence[str] = DEFAULT_NOTES) -> Path:
    """Write `out_dir/index.html`: title, summary table and its legend, the controls check (lines starting with
    `WARNING` in red), notes (`default_notes`, then `notes`), then each section. Returns the page's path.

    Images are checked before anything is written."""
    _check_images(sections)
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>", f"<style>{_STYLE}</style>", "</head>", "<body>",
        f"<h1>{html.escape(title)}</h1>", "<h2>Summary</h2>", summary_html(summary),
    ]
    if legend:
        parts.append(f"<p>{html.escape(legend)}</p>")
    if controls:
        parts.append("<h2>Controls</h2>")
        parts += [f'<p class="warning">{html.escape(line)}</p>' if line.startswith("WARNING")
                  else f"<p>{html.escape(line)}</p>" for line in controls]
    all_notes = [*default_notes, *notes]
    if all_notes:
        parts += ["<h2>How to read it</h2>", "<ul>", *(f"<li>{html.escape(str(n))}</li>" for n in all_notes), "</ul>"]
    for section in sections:
        if section.images or section.tables:
            parts += _section_html(section)
    parts += ["</body>", "</html>", ""]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "index.html"
    # Written beside and renamed, so a reader never sees a half-written page.
    partial = out_dir / "index.html.partial"
    partial.write_text("\n".join(parts), encoding="utf-8")
    os.replace(partial, path)
    logger.info("wrote %s", path)
    return path
