"""Cells of the image grid hold the enlarged views, padding is white, and labels are drawn."""

import numpy as np
import pytest
from PIL import Image

from reports.image_grid import BACKGROUND, render_image_grid, save_image_grid
from scenes.errors import InvalidInputError


@pytest.fixture
def rows():
    rng = np.random.default_rng(11)
    # Multiples of 1/255, so the float -> uint8 conversion is exact and the test can compare bytes.
    def views(n):
        return (rng.integers(0, 256, (n, 12, 10, 3)) / 255.0).astype(np.float32)
    return [("input", views(1)), ("ground truth", views(4)), ("xunet/stochastic NeRF renders", views(3))]


def _upscaled(view, scale):
    return np.round(view * 255).astype(np.uint8).repeat(scale, axis=0).repeat(scale, axis=1)


def test_cells_hold_the_upscaled_views(rows, tmp_path):
    path = save_image_grid(rows, tmp_path / "grid.png", scale=3)
    grid = np.asarray(Image.open(path).convert("RGB"))
    _, layout = render_image_grid(rows, scale=3)
    assert grid.shape == (layout.size[1], layout.size[0], 3)
    assert layout.columns == 4 and layout.cell_width == 30 and layout.cell_height == 36
    for row, column in [(0, 0), (1, 2), (2, 1)]:
        x, y = layout.cell_origin(row, column)
        np.testing.assert_array_equal(grid[y:y + 36, x:x + 30], _upscaled(rows[row][1][column], 3))
    # Rows with fewer views are padded white.
    x, y = layout.cell_origin(0, 3)
    assert (grid[y:y + 36, x:x + 30] == BACKGROUND).all()
    # Each label leaves dark pixels in the left margin of its row.
    for row in range(3):
        _, y = layout.cell_origin(row, 0)
        assert grid[y:y + layout.row_height, :layout.label_width].min() < 128


def test_rows_are_capped_at_max_columns(rows):
    image, layout = render_image_grid(rows, max_columns=2, scale=1)
    assert layout.columns == 2 and image.shape[1] == layout.size[0]
    x, y = layout.cell_origin(1, 1)
    np.testing.assert_array_equal(image[y:y + 12, x:x + 10], _upscaled(rows[1][1][1], 1))


def test_bad_rows_are_rejected(rows, tmp_path):
    with pytest.raises(InvalidInputError, match="sizes"):
        save_image_grid(rows + [("small", np.zeros((2, 6, 6, 3)))], tmp_path / "grid.png")
    with pytest.raises(InvalidInputError, match="input"):
        save_image_grid([("input", np.zeros((12, 10, 3)))], tmp_path / "grid.png")
    assert not (tmp_path / "grid.png").exists()
