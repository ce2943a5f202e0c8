"""The HTML page parses, holds the summary table with bold best cells, and embeds every image as a data URI."""

import base64
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from reports.html_page import write_report_html
from reports.tables import summary_markdown, summary_table
from scenes.errors import InvalidInputError


class _Collector(HTMLParser):
    """Tags, image sources and cell texts of a page."""

    def __init__(self):
        super().__init__()
        self.tags, self.images, self.cells, self.strong, self.text = [], [], [], [], []
        self._in = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])
            self._in.pop()

    def handle_endtag(self, tag):
        if self._in and self._in[-1] == tag:
            self._in.pop()

    def handle_data(self, data):
        self.text.append(data)
        if "strong" in self._in:
            self.strong.append(data.strip())
        if self._in and self._in[-1] in ("td", "th"):
            self.cells.append(data.strip())


@pytest.fixture
def summary():
    rows = []
    for method, base in [("ground truth", 30.0), ("noise", 6.0), ("xunet/<b>stochastic</b>", 22.0),
                         ("xunet/naive", 19.0)]:
        for scene in ["s0", "s1"]:
            rows += [(method, scene, "consistency_psnr", base + (scene == "s1")),
                     (method, scene, "consistency_ssim", base / 40)]
    return summary_table(pd.DataFrame(rows, columns=["method", "scene", "metric", "value"]))


@pytest.fixture
def images(tmp_path):
    paths = []
    for i, size in enumerate([(40, 30), (20, 60), (16, 16)]):
        path = tmp_path / "images" / f"image{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(np.full((*size, 3), 40 * i, np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.mark.parametrize("as_markdown", [True, False], ids=["markdown", "dataframe"])
def test_page_parses_and_embeds_everything(summary, images, tmp_path, as_markdown):
    table = summary_markdown(summary) + "\n\nlegend line\n" if as_markdown else summary
    figures, grids = images[:2], [("scene <s0> & co", images[2])]
    path = write_report_html(tmp_path / "report", "nvsc <report>", table, figures, grids,
                             ["seed 0 & 2 scenes"])
    assert path == tmp_path / "report" / "index.html"
    page = _Collector()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    assert page.tags.count("table") == 1 and page.tags.count("img") == 3
    for src, image in zip(page.images, figures + [images[2]]):
        header, payload = src.split(",", 1)
        assert header == "data:image/png;base64"
        assert base64.b64decode(payload) == image.read_bytes()
    # Escaped user strings come back as text, not as markup.
    assert "b" not in page.tags and "s0" not in page.tags
    text = "".join(page.text)
    assert "nvsc <report>" in text and "scene <s0> & co" in text and "seed 0 & 2 scenes" in text
    assert "xunet/<b>stochastic</b>" in page.cells
    assert "upper bound" in text and "lower bound" in text
    assert f"{summary.loc['xunet/naive', 'consistency_psnr']:.2f}" in page.cells
    # Best cells of the evaluated methods are bold, bounds are not.
    assert page.strong == [f"{summary.loc['xunet/<b>stochastic</b>', 'consistency_psnr']:.2f}",
                           f"{summary.loc['xunet/<b>stochastic</b>', 'consistency_ssim']:.3f}"]


def test_missing_image_is_rejected_before_writing(summary, images, tmp_path):
    with pytest.raises(InvalidInputError, match="missing.png"):
        write_report_html(tmp_path / "report", "t", summary, [tmp_path / "missing.png"], [], [])
    with pytest.raises(InvalidInputError):
        write_report_html(tmp_path / "report", "t", "not a table", images[:1], [], [])
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not an image")
    with pytest.raises(InvalidInputError, match="suffix"):
        write_report_html(tmp_path / "report", "t", summary, [text_file], [], [])
    assert not (tmp_path / "report").exists()


def test_default_notes_can_be_replaced(summary, tmp_path):
    path = write_report_html(tmp_path, "t", summary, [], [], ["only note"], default_notes=())
    page = _Collector()
    page.feed(path.read_text(encoding="utf-8"))
    assert page.tags.count("li") == 1 and "upper bound" not in "".join(page.text)
