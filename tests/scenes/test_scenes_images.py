"""PNG reading across the modes PIL decodes, against values computed by hand; 8-bit round trip is exact."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from scenes.errors import InvalidInputError
from scenes.images import check_view_names, read_png, write_png


def test_write_read_round_trip_is_exact(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3)) / 255.0
    write_png(tmp_path / "a.png", image)
    np.testing.assert_array_equal(read_png(tmp_path / "a.png"), image.astype(np.float32))
    assert Image.open(tmp_path / "a.png").mode == "RGB"


def test_modes(tmp_path):
    grey = np.array([[0, 51], [204, 255]], np.uint8)
    Image.fromarray(grey).save(tmp_path / "l.png")
    np.testing.assert_allclose(read_png(tmp_path / "l.png"), np.repeat(grey[..., None] / 255.0, 3, -1), atol=1e-7)

    wide = np.array([[0, 65535], [32768, 1000]], np.uint16)
    Image.fromarray(wide).save(tmp_path / "i16.png")
    np.testing.assert_allclose(read_png(tmp_path / "i16.png")[..., 0], wide / 65535.0, atol=1e-6)

    palette = Image.fromarray(np.array([[0, 1]], np.uint8), mode="P")
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.save(tmp_path / "p.png")
    np.testing.assert_allclose(read_png(tmp_path / "p.png")[0], [[1, 0, 0], [0, 0, 1]])

    la = np.array([[[100, 255], [100, 0]]], np.uint8)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    np.testing.assert_allclose(read_png(tmp_path / "la.png", background=(0.0, 0.5, 1.0))[0],
                               [[100 / 255] * 3, [0.0, 0.5, 1.0]], atol=1e-6)


def test_bad_images(tmp_path):
    with pytest.raises(InvalidInputError, match="missing.png.*not found"):
        read_png(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"junk")
    with pytest.raises(InvalidInputError, match="junk.png.*cannot be read"):
        read_png(tmp_path / "junk.png")
    with pytest.raises(InvalidInputError, match="nan.png.*NaN"):
        write_png(tmp_path / "nan.png", np.full((2, 2, 3), np.nan))
    assert not (tmp_path / "nan.png").exists()


def test_view_names():
    check_view_names(["000000", "a_b"], "scene")
    with pytest.raises(InvalidInputError, match="scene.*'a/b'"):
        check_view_names(["a/b"], "scene")
    with pytest.raises(InvalidInputError, match="scene.*more than once"):
        check_view_names(["x", "x"], "scene")


def claimed_size_png(path, width: int, height: int) -> None:
    """A small PNG whose header claims width x height RGB pixels: a few rows of data, as a decompression bomb's
    first bytes look (its full data would be gigabytes once decoded)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(b"\x00" * (1 + 3 * width) * 4)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def decode_only(monkeypatch, size: tuple[int, int]) -> None:
    """Let PIL decode only images of `size` (a reader's other, real views); any other decode fails the test."""
    from PIL import ImageFile

    load = ImageFile.ImageFile.load

    def load_of_size(image):
        if image.size != size:
            pytest.fail(f"decoded {image.size} pixels")
        return load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load_of_size)


@pytest.fixture
def no_decoding(monkeypatch):
    """Make decoding pixels fail loudly: a check that must come from the header alone."""
    from PIL import ImageFile

    def decode(self):
        raise AssertionError(f"decoded {self.size} pixels")

    monkeypatch.setattr(ImageFile.ImageFile, "load", decode)


@pytest.mark.parametrize("side", [20000, 12000])
def test_a_decompression_bomb_is_refused_by_name_before_decoding(tmp_path, no_decoding, side):
    claimed_size_png(tmp_path / "bomb.png", side, side)
    with pytest.raises(InvalidInputError, match=rf"bomb.png: .*{side}x{side}.*Fix:"):
        read_png(tmp_path / "bomb.png")


def test_a_view_of_another_size_is_refused_from_its_header(tmp_path, no_decoding):
    claimed_size_png(tmp_path / "big.png", 12000, 9000)
    with pytest.raises(InvalidInputError, match=r"big.png: image is 9000x12000 \(HxW\) but intrinsics.txt declares "
                                                r"8x8"):
        read_png(tmp_path / "big.png", size=(8, 8), declared_by="intrinsics.txt")
