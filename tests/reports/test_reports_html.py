"""The HTML page parses, holds the summary with bold best cells, embeds every image as a data URI, and opens in
headless Chromium with every image loaded."""

import base64
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from reports.html_page import PageImage, PageSection, write_report_html
from reports.tables import summarize, summary_text
from scenes.errors import InvalidInputError
from tests.reports.chromium_probe import CHROMIUM, images_in_chromium



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
    for method, base in [("ground_truth", 30.0), ("noise", 6.0), ("xunet/<b>stochastic</b>", 22.0),
                         ("xunet/naive", 19.0)]:
        for scene in ["s0", "s1"]:
            rows += [(method, scene, "consistency_psnr", base + (scene == "s1")),
                     (method, scene, "consistency_ssim", base / 40)]
    return summary_text(summarize(pd.DataFrame(rows, columns=["method", "scene", "metric", "value"]),
                                  resamples=100))


@pytest.fixture
def sections(tmp_path):
    """Two PNG figures and one two-frame GIF."""
    folder = tmp_path / "images"
    folder.mkdir()
    paths = []
    for i, size in enumerate([(40, 30), (20, 60)]):
        paths.append(folder / f"image{i}.png")
        Image.fromarray(np.full((*size, 3), 40 * i, np.uint8)).save(paths[-1])
    frames = [Image.fromarray(np.full((16, 24, 3), v, np.uint8)) for v in (0, 200)]
    paths.append(folder / "turntable.gif")
    frames[0].save(paths[-1], save_all=True, append_images=frames[1:], duration=100, loop=0)
    return [PageSection("Figures", [PageImage("figure <0>", paths[0]), PageImage("figure 1", paths[1])]),
            PageSection("Turntables", [PageImage("scene <s0> & co", paths[2], True, {"MP4": "a.mp4"})])]


def test_page_parses_and_embeds_everything(summary, sections, tmp_path):
    path = write_report_html(tmp_path / "report", "nvsc <report>", summary, sections, ["seed 0 & 2 scenes"],
                             ["Controls in order: ...", "WARNING tsed: out of order"], "legend <text>")
    assert path == tmp_path / "report" / "index.html"
    page = _Collector()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    assert page.tags.count("table") == 1 and page.tags.count("img") == 3
    for src, image in zip(page.images, [i.path for s in sections for i in s.images]):
        header, payload = src.split(",", 1)
        assert header == f"data:image/{image.suffix[1:]};base64"
        assert base64.b64decode(payload) == image.read_bytes()
    # Escaped user strings come back as text, not as markup.
    assert "b" not in page.tags and "s0" not in page.tags and "0" not in page.tags
    text = "".join(page.text)
    for expected in ("nvsc <report>", "scene <s0> & co", "seed 0 & 2 scenes", "legend <text>", "upper bound",
                     "WARNING tsed"):
        assert expected in text
    assert "xunet/<b>stochastic</b>" in page.cells
    # Best cells of the evaluated methods are bold, controls are not.
    best = summary.cells.loc["xunet/<b>stochastic</b>"]
    assert page.strong == [best["consistency_psnr"], best["consistency_ssim"]]
    assert 'class="warning"' in path.read_text()


def test_missing_image_is_rejected_before_writing(summary, sections, tmp_path):
    with pytest.raises(InvalidInputError, match="missing.png"):
        write_report_html(tmp_path / "report", "t", summary,
                          [PageSection("Figures", [PageImage("x", tmp_path / "missing.png")])])
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not an image")
    with pytest.raises(InvalidInputError, match="suffix"):
        write_report_html(tmp_path / "report", "t", summary, [PageSection("Figures", [PageImage("x", text_file)])])
    assert not (tmp_path / "report").exists()


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs the Debian package)")
def test_every_image_loads_in_chromium(summary, sections, tmp_path):
    path = write_report_html(tmp_path / "report", "t", summary, sections)
    loaded = images_in_chromium(path, tmp_path)
    expected = [(image.caption, Image.open(image.path).size) for s in sections for image in s.images]
    assert [(i["alt"], (i["width"], i["height"])) for i in loaded] == expected
    assert all(i["complete"] for i in loaded)
