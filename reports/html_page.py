"""The report as one self-contained HTML file: summary table, notes, figures and per-scene image grids.

Images are embedded as base64 data URIs, so `index.html` alone can be mailed, archived or opened anywhere,
with no folder of images beside it. Every string that comes from a caller is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import logging
import os
import re
from pathlib import Path
from typing import Sequence

import pandas as pd

from reports.tables import REFERENCE_METHODS, best_cells, formatted_summary
from scenes.errors import InvalidInputError

logger = logging.getLogger(__name__)

#: What the rows of the table mean; printed before the caller's notes.
DEFAULT_NOTES = (
    "ground truth: the real views scored as if generated. Its consistency score is the upper bound: "
    "the most a NeRF without view dependence reproduces of perfectly 3D-consistent views at this resolution.",
    "noise: independent uniform random noise per view. Its consistency score is the lower bound: "
    "views that share no 3D structure at all.",
    "Other rows are generators (and their samplers): consistency = PSNR/SSIM of NeRF renders at held-out "
    "cameras against the held-out generated views; fidelity = PSNR/SSIM of generated views against the real "
    "views at the same cameras. Higher is better for both.",
)
#: MIME type of each image suffix the page can embed.
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
               ".svg": "image/svg+xml"}
_BOLD = re.compile(r"^\*\*(.*)\*\*$")
_SEPARATOR = re.compile(r"^\|?[\s:|-]+\|?$")

_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 70em; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.7em; text-align: right; }
td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; }
img.grid { image-rendering: pixelated; }
figure { margin: 1.5em 0; }
figcaption { color: #555; font-size: 0.9em; }
"""


def _cell_html(text: str) -> str:
    """Escape one table cell, turning a Markdown **bold** cell into <strong>."""
    match = _BOLD.match(text)
    return f"<strong>{html.escape(match.group(1))}</strong>" if match else html.escape(text)


def _markdown_to_frame(markdown: str) -> pd.DataFrame:
    """Cells of a Markdown pipe table (the format of summary.md) as strings; other lines are ignored."""
    lines = [line.strip() for line in markdown.splitlines() if line.strip().startswith("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines
            if not _SEPARATOR.match(line)]
    if len(rows) < 2 or any(len(row) != len(rows[0]) for row in rows):
        raise InvalidInputError("summary_md_table", "is not a Markdown pipe table with a header and rows of "
                                                    "equal length", "pass the text of summary.md or the summary "
                                                                    "DataFrame")
    return pd.DataFrame(rows[1:], columns=rows[0])


def summary_html(summary: str | pd.DataFrame, reference_methods: Sequence[str] = REFERENCE_METHODS) -> str:
    """The summary (Markdown text, or the DataFrame of reports.tables.summary_table) as an HTML <table>."""
    if isinstance(summary, pd.DataFrame):
        text = formatted_summary(summary)
        best = best_cells(summary, reference_methods=reference_methods)
        cells = text.apply(lambda column: column.map(html.escape))
        cells = cells.where(~best, "<strong>" + cells + "</strong>")
        cells.insert(0, html.escape(str(summary.index.name or "method")),
                     [html.escape(str(m)) for m in summary.index])
        cells.columns = [html.escape(str(c)) if i else c for i, c in enumerate(cells.columns)]
    else:
        frame = _markdown_to_frame(summary)
        cells = frame.apply(lambda column: column.map(_cell_html))
        cells.columns = [html.escape(str(c)) for c in frame.columns]
    return cells.to_html(index=False, escape=False, border=0, classes="summary")


def _data_uri(path: Path) -> str:
    return f"data:{IMAGE_TYPES[path.suffix.lower()]};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _check_images(paths: Sequence[Path], what: str) -> list[Path]:
    paths = [Path(p) for p in paths]
    for path in paths:
        if not path.is_file():
            raise InvalidInputError(f"{what} {path}", "does not exist", "draw the image before writing the page")
        if path.suffix.lower() not in IMAGE_TYPES:
            raise InvalidInputError(f"{what} {path}", f"has the suffix {path.suffix!r}",
                                    f"embed one of {sorted(IMAGE_TYPES)}")
    return paths


def write_report_html(out_dir: Path, title: str, summary_md_table: str | pd.DataFrame, figures: list[Path],
                      grids: list[tuple[str, Path]], notes: list[str],
                      default_notes: Sequence[str] = DEFAULT_NOTES) -> Path:
    """Write `out_dir/index.html`: title, summary table (best cells bold), notes (`default_notes`, the meaning of
    each row, then `notes`), the figures, and one image grid per scene under its label. Returns the file's path.

    Images are checked before anything is written."""
    figure_paths = _check_images(figures, "figure")
    grid_paths = _check_images([path for _, path in grids], "image grid")
    table = summary_html(summary_md_table)
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>", f"<style>{_STYLE}</style>", "</head>", "<body>",
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Summary</h2>", table,
        "<p>Mean over scenes. Bold: best value of each column among the evaluated methods "
        f"({html.escape(' and '.join(REFERENCE_METHODS))} are bounds, not candidates).</p>",
        "<h2>How to read it</h2>", "<ul>",
        *(f"<li>{html.escape(str(note))}</li>" for note in (*default_notes, *notes)), "</ul>",
    ]
    if figure_paths:
        parts.append("<h2>Figures</h2>")
        for path in figure_paths:
            name = html.escape(path.stem)
            parts.append(f'<figure><img src="{_data_uri(path)}" alt="{name}">'
                         f"<figcaption>{name}</figcaption></figure>")
    if grid_paths:
        parts.append("<h2>Scenes</h2>")
        for (label, _), path in zip(grids, grid_paths):
            name = html.escape(str(label))
            parts.append(f'<h3>{name}</h3><img class="grid" src="{_data_uri(path)}" alt="{name}">')
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
