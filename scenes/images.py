"""PNG images on disk <-> float32 RGB arrays in [0, 1], with errors that name the file.

Every reader of views (SRN layout, `transforms.json`) goes through `read_png`, so transparency, grey-scale, palette
and 16-bit files are handled once: transparent pixels are composited on the background (white, as in SRN's
renderings), which is what the models and the NeRF see.
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from scenes.errors import InvalidInputError

#: White, the background SRN's renderings and nvsc's renderer use.
WHITE = (1.0, 1.0, 1.0)


#: Most pixels nvsc decodes from one view (4096 x 4096, 200 MB as float32 RGB). A larger image is refused from its
#: header, before decoding: a small PNG can claim 12000 x 12000 pixels and decode to gigabytes.
MAX_VIEW_PIXELS = 4096 * 4096


def read_png(path: Path, background: tuple[float, float, float] = WHITE, size: tuple[int, int] | None = None,
             declared_by: str = "its dataset") -> np.ndarray:
    """[H, W, 3] float32 in [0, 1]; an alpha channel is composited on `background`.

    `size` (height, width), when given, is the size the view must have, which `declared_by` (a file) declares.
    The size is checked from the file's header before any pixel is decoded, as is `MAX_VIEW_PIXELS`.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(path, "image file not found", "check the path, or regenerate the dataset")
    try:
        with warnings.catch_warnings():
            # PIL warns above its own limit (MAX_IMAGE_PIXELS), far above ours, which refuses such an image anyway.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(path)  # reads the header only
        with opened as image:
            check_image_size(path, image.size[1], image.size[0], size, declared_by)
            image.load()  # decode now, so a truncated file fails here and not later
            array, alpha = _to_float(image, path)
    except Image.DecompressionBombError as error:  # PIL refuses twice its limit already in Image.open
        claimed = _png_header_size(path)
        if claimed is not None:
            check_image_size(path, *claimed, size, declared_by)
        raise InvalidInputError(path, f"claims too many pixels to decode ({error})",
                                "resize the views, e.g. to 64x64 or 256x256") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise InvalidInputError(path, f"cannot be read as an image ({error})",
                                "replace it with a valid 8-bit PNG, or regenerate the dataset") from error
    if alpha is not None:
        array = array * alpha + np.asarray(background, dtype=np.float32) * (1.0 - alpha)
    return np.ascontiguousarray(array, dtype=np.float32)


def _png_header_size(path: Path) -> tuple[int, int] | None:
    """(height, width) from a PNG's IHDR chunk (None for another format): what PIL does not tell when it refuses."""
    with open(path, "rb") as handle:
        head = handle.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return height, width


def check_image_size(path: Path, height: int, width: int, size: tuple[int, int] | None, declared_by: str) -> None:
    """`InvalidInputError` for an image of `height` x `width` pixels that is not `size` or exceeds MAX_VIEW_PIXELS."""
    if size is not None and (height, width) != tuple(size):
        raise InvalidInputError(path, f"image is {height}x{width} (HxW) but {declared_by} declares {size[0]}x"
                                f"{size[1]} (h={size[0]}, w={size[1]})",
                                f"store every view at the size {declared_by} declares, or fix that size")
    if height * width > MAX_VIEW_PIXELS:
        raise InvalidInputError(path, f"image is {height}x{width} (HxW) pixels, more than the {MAX_VIEW_PIXELS:,} "
                                "nvsc decodes from one view", "resize the views, e.g. to 64x64 or 256x256")


def _to_float(image: Image.Image, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Colour [H, W, 3] and alpha [H, W, 1] (or None) as float32 in [0, 1], from any PNG mode PIL decodes."""
    mode = image.mode
    if mode.startswith("I"):  # 16-bit grey ("I;16", "I;16B") or 32-bit integer grey
        grey = np.asarray(image, dtype=np.float64)
        scale = 65535.0 if mode.startswith("I;16") or grey.max(initial=0) > 255 else 255.0
        grey = (grey / scale).astype(np.float32)
        return np.repeat(grey[..., None], 3, axis=-1), None
    if mode in ("1", "L", "P", "PA", "LA", "La", "RGBa"):
        image = image.convert("RGBA" if mode in ("P", "PA", "LA", "La", "RGBa") else "RGB")
        mode = image.mode
    if mode not in ("RGB", "RGBA"):
        raise InvalidInputError(path, f"unsupported image mode {image.mode!r}",
                                "save the view as an RGB or RGBA PNG with 8 bits per channel")
    array = np.asarray(image, dtype=np.float32) / 255.0
    if mode == "RGBA":
        return array[..., :3], array[..., 3:]
    return array, None


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] (any shape) to uint8, rounding to the nearest level so that reading back is exact."""
    return np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)


def write_png(path: Path, image: np.ndarray) -> None:
    """Write [H, W, 3] floats in [0, 1] as an 8-bit RGB PNG (same pixels -> same bytes)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise InvalidInputError(path, f"image has shape {list(image.shape)}, expected [H, W, 3]",
                                "pass one RGB view at a time")
    if not np.all(np.isfinite(image)):
        raise InvalidInputError(path, "image contains NaN or infinite values", "fix the values before saving")
    Image.fromarray(to_uint8(image)).save(path, format="PNG")


def check_view_names(names: list[str], what: str) -> None:
    """Raise unless every view name is a unique, non-empty file stem (no folder separators)."""
    bad = [name for name in names if not name or "/" in name or "\\" in name or name in (".", "..")]
    if bad:
        raise InvalidInputError(what, f"view names {bad[:5]} cannot be used as file names",
                                "name views with plain file stems such as 000000")
    if len(set(names)) != len(names):
        duplicates = sorted({name for name in names if names.count(name) > 1})
        raise InvalidInputError(what, f"view names {duplicates[:5]} appear more than once", "give each view its own name")


def write_views(folder: Path, images: np.ndarray, names: list[str]) -> list[Path]:
    """Write images [N, H, W, 3] as `<folder>/<name>.png` and return the paths (all checked before any is written)."""
    if not np.all(np.isfinite(images)):
        raise InvalidInputError(folder, "the views to write contain NaN or infinite values",
                                "fix the values before saving")
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.png" for name in names]
    for path, image in zip(paths, images):
        write_png(path, image)
    return paths
