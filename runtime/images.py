"""Arrays <-> pictures: tile images into a grid, write PNG or .npy, read PNG/.npy inputs.

PNG is written with the standard library (zlib), so `edgevae sample` needs nothing beyond numpy
and onnxruntime; reading PNG input imports Pillow lazily and says how to install it when missing.
"""

from __future__ import annotations

import io
import math
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import write_bytes_atomic
from .errors import InputError, MissingDependencyError

PILLOW_HINT = "reading PNG input needs Pillow: pip install 'edgevae[images]' (or pass a .npy array instead)"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def import_pillow() -> Any:
    """The PIL.Image module, or a MissingDependencyError (an ImportError) that says how to get it."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise MissingDependencyError(PILLOW_HINT) from exc
    return Image


def tile_images(images: np.ndarray, ncols: int | None = None, pad: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """Tile (N, H, W) images with values in [0, 1] into one (rows*H', cols*W') uint8 image."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3 or images.shape[0] == 0:
        raise ValueError(f"tile_images expects a non-empty (N, H, W) array, got shape {images.shape}")
    n, h, w = images.shape
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad), pad_value, dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, ncols)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[top : top + h, left : left + w] = images[i]
    return np.round(np.clip(grid, 0.0, 1.0) * 255).astype(np.uint8)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(image: np.ndarray, scale: int = 1) -> bytes:
    """PNG bytes (8-bit grayscale) of a 2-D uint8 array, optionally upscaled (nearest)."""
    image = np.asarray(image)
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"encode_png expects a 2-D uint8 array, got {image.dtype} of shape {image.shape}")
    if scale > 1:
        image = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)
    height, width = image.shape
    rows = np.hstack([np.zeros((height, 1), np.uint8), image])  # filter type 0 (None) on every row
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit, grayscale, no interlace
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 9))
        + png_chunk(b"IEND", b"")
    )


OUTPUT_SUFFIXES = (".png", ".npy")


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """The output path, refused before any work when its suffix is not .png or .npy."""
    out = Path(path)
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ValueError(f"output must end in .png or .npy, got {out.name!r}")
    if out.is_dir():
        raise ValueError(f"output {out} is a directory; give a file name ending in .png or .npy")
    return out


def save_grid(images: np.ndarray, path: str | os.PathLike[str], ncols: int | None = None, scale: int = 2) -> Path:
    """Write (N, H, W) images in [0, 1] as a PNG grid (or the raw array to a .npy file)."""
    path = check_output_path(path)
    if path.suffix.lower() == ".npy":
        buf = io.BytesIO()
        np.save(buf, np.asarray(images, dtype=np.float32))
        data = buf.getvalue()
    elif np.ndim(images) == 4:  # (N, H, W, C): a colour model's images
        from .colour import encode_rgb_png, tile_colour

        data = encode_rgb_png(tile_colour(images, ncols), scale)
    else:
        data = encode_png(tile_images(images, ncols), scale)
    return write_output(path, data)


def write_output(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write a command's output atomically; an unwritable path is an InputError naming it."""
    try:
        write_bytes_atomic(path, data)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return Path(path)


MAX_INPUT_BYTES = 4 * 2**30  # an input array larger than this is refused before it is read


def read_npy(path: Path) -> np.ndarray:
    """np.load with the header checked first: an empty or truncated file, or one whose header
    promises more data than the file holds (or than MAX_INPUT_BYTES), is a ValueError, not a crash."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(f)
            offset = f.tell()
    except (ValueError, EOFError, OSError, SyntaxError, TypeError) as exc:
        raise ValueError(f"{path} is not a readable .npy array ({size} bytes): {exc}") from exc
    if dtype.hasobject:
        raise ValueError(f"{path} holds Python objects, not numbers; refused (no pickle is ever loaded)")
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if need > MAX_INPUT_BYTES:
        raise ValueError(
            f"{path}: header says shape {shape} of {dtype} ({need / 2**30:.1f} GiB); inputs above "
            f"{MAX_INPUT_BYTES / 2**30:.0f} GiB are refused: split it into several files"
        )
    if size - offset < need:
        raise ValueError(
            f"{path} is truncated: header says shape {shape} of {dtype} ({need:,} bytes of data), "
            f"the file holds {size - offset:,}"
        )
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        raise ValueError(f"{path} is not a readable .npy array: {exc}") from exc


def read_images(path: str | os.PathLike[str], channels: int = 1) -> np.ndarray:
    """Images from a .npy file (any shape the model accepts) or one picture: a grayscale PNG for a grey
    model (channels 1), or a PNG/JPEG/BMP/WebP read as (H, W, 3) RGB for a colour model (channels 3)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"input {path} is a directory; give a .npy or .png file")
    if not path.is_file():
        raise InputError(f"input file {path} not found")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            return read_npy(path)
        except OSError as exc:  # unreadable (permissions, I/O): the header check opens it first
            raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if channels != 1:
        from .colour import IMAGE_SUFFIXES, read_rgb

        if suffix in IMAGE_SUFFIXES:
            return read_rgb(path)
        raise InputError(f"input must be a .npy or picture file ({', '.join(IMAGE_SUFFIXES)}), got {path.name!r}")
    if suffix in (".jpg", ".jpeg"):
        image_mod = import_pillow()
        try:
            with image_mod.open(path) as im:
                return np.asarray(im.convert("L"), dtype=np.uint8)
        except OSError as exc:
            raise InputError(f"{path} is not a readable JPEG image: {exc}") from exc
    if suffix == ".png":
        image_mod = import_pillow()
        try:
            with image_mod.open(path) as im:
                if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                    # 16-bit greyscale (PNG holds no other integer mode): scale 0..65535 to [0, 1];
                    # convert("L") would clip every level above 255 to white
                    levels = np.asarray(im, dtype=np.float64)
                    return (np.clip(levels, 0, 65535.0) / 65535.0).astype(np.float32)
                return np.asarray(im.convert("L"), dtype=np.uint8)
        except OSError as exc:  # PIL.UnidentifiedImageError and truncated files are OSErrors
            raise InputError(f"{path} is not a readable PNG image: {exc}") from exc
    raise InputError(f"input must be a .png, .jpg or .npy file, got {path.name!r}")
