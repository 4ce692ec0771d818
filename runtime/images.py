"""Arrays <-> pictures: tile images into a grid, write PNG or .npy, read PNG/.npy inputs.

PNG is written with the standard library (zlib), so `edgevae sample` needs nothing beyond numpy
and onnxruntime; reading PNG input imports Pillow lazily and says how to install it when missing.
Inputs are checked from their headers before their pixels are decoded or their data is read (size,
shape, a pixel limit); outputs are planned (format, and never an input file) before any work.
"""

from __future__ import annotations

import io
import math
import os
import struct
import sys
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .arrays import ShapeRule, read_npy_file
from .atomic import is_special_file, remove_stale_temps, write_bytes_atomic
from .errors import InputError, MissingDependencyError
from .limits import memory_budget

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


# A PNG grid holds about five float32 copies of its images at its peak (`edgevae sample -n 50000 -o
# x.png` peaked 4.7x above the images' own bytes; an .npy output 2.2x): what the CLI bounds n by.
GRID_BYTES_PER_PIXEL = 20
# Pixels an input picture may have, checked from its header before it is decoded (a 100 KB PNG can
# claim 10000 x 10000 pixels); the memory budget lowers it further (16 bytes a pixel at most).
MAX_IMAGE_PIXELS = 4096 * 4096
IMAGE_FORMATS = {".png": "png", ".npy": "npy"}
STDOUT = "-"


@dataclass(frozen=True)
class Output:
    """Where a command writes and in which format ("png", "npy" or "csv"); path "-" is standard output."""

    path: str
    format: str


def plan_output(
    path: str | os.PathLike[str],
    formats: dict[str, str] | None = None,
    default: str = "png",
    inputs: Sequence[str | os.PathLike[str]] = (),
) -> Output:
    """The output, checked before any work: its suffix gives the format (an existing device or FIFO
    with no known suffix takes `default`; "-" is standard output); a folder, an unknown suffix, binary
    data for a terminal, or the same file as one of `inputs` (writing would destroy it) is a ValueError."""
    formats = IMAGE_FORMATS if formats is None else formats
    text = os.fspath(path)
    if text == STDOUT:
        if default != "csv" and sys.stdout.isatty():
            raise ValueError(
                f"output '-' would write {default.upper()} bytes to a terminal; redirect it or give a file"
            )
        return Output(STDOUT, default)
    out = Path(text)
    if out.is_dir():
        raise ValueError(f"output {out} is a directory; give a file name ending in {' or '.join(formats)}")
    fmt = formats.get(out.suffix.lower()) or (default if is_special_file(out) else None)
    if fmt is None:
        raise ValueError(f"output must end in {' or '.join(formats)}, got {out.name!r}")
    for source in inputs:
        if same_file(out, Path(source)):
            raise ValueError(f"output {out} is the input file {source}: writing it would destroy the input")
    return Output(text, fmt)


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """The output path, refused before any work when its suffix is not .png or .npy (see plan_output)."""
    return Path(plan_output(path).path)


def same_file(a: Path, b: Path) -> bool:
    """True when a and b are one file: the same path after links, or the same inode (a hard link)."""
    try:
        if os.path.realpath(a) == os.path.realpath(b):
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def encode_images(images: np.ndarray, fmt: str, ncols: int | None = None, scale: int = 2) -> bytes:
    """(N, H, W) images in [0, 1] as a PNG grid's bytes, or the raw array as .npy bytes."""
    if fmt == "npy":
        buf = io.BytesIO()
        np.save(buf, np.asarray(images, dtype=np.float32))
        return buf.getvalue()
    if np.ndim(images) == 4:  # (N, H, W, C): a colour model's images
        from .colour import encode_rgb_png, tile_colour

        return encode_rgb_png(tile_colour(images, ncols), scale)
    return encode_png(tile_images(images, ncols), scale)


def save_grid(
    images: np.ndarray, path: str | os.PathLike[str] | Output, ncols: int | None = None, scale: int = 2
) -> Path:
    """Write (N, H, W) images in [0, 1] as a PNG grid (or the raw array to a .npy file)."""
    output = path if isinstance(path, Output) else plan_output(path)
    return write_output(output, encode_images(images, output.format, ncols, scale))


def write_output(path: str | os.PathLike[str] | Output, data: bytes) -> Path:
    """Write a command's output: "-" to standard output; an existing device or FIFO straight through;
    a link's target, or a regular file, atomically (first removing what killed writers left of it).
    An unwritable path is an InputError naming it."""
    target = path.path if isinstance(path, Output) else os.fspath(path)
    try:
        if target == STDOUT:
            sys.stdout.flush()  # text already printed goes first
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
            return Path(target)
        if not is_special_file(target):
            real = Path(os.path.realpath(target))
            remove_stale_temps(real.parent, [real.name], dead_only=True)
        write_bytes_atomic(target, data)
    except OSError as exc:
        raise InputError(f"cannot write {target}: {exc.strerror or exc}") from exc
    return Path(target)


def read_images(
    path: str | os.PathLike[str], rule: ShapeRule | None = None, max_bytes: int | None = None, channels: int = 1
) -> np.ndarray:
    """Images from a .npy file (any shape the model accepts) or one picture, each checked from its
    header first: `rule(shape, dtype)` (the model's shapes) and `max_bytes` (default: the memory budget).
    A picture is a greyscale PNG for a grey model (channels 1), or a PNG/JPEG/BMP/WebP read as
    (H, W, 3) RGB for a colour model (channels 3)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"input {path} is a directory; give a .npy or .png file")
    if not path.is_file():
        raise InputError(f"input file {path} not found")
    limit = memory_budget() if max_bytes is None else max_bytes
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return read_npy_file(path, limit, rule)
        if suffix == ".png" or (channels != 1 and suffix in PICTURE_SUFFIXES):
            return read_png(path, rule, limit, channels)
    except OSError as exc:  # unreadable (permissions, I/O)
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    pictures = ".png" if channels == 1 else "/".join(PICTURE_SUFFIXES)
    raise InputError(f"input must be a {pictures} or .npy file, got {path.name!r}")


PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")  # what Pillow reads for a colour model


def read_npy(path: Path) -> np.ndarray:
    """A .npy file with its header checked before its data is read (see `arrays.read_npy_file`)."""
    return read_npy_file(path, memory_budget())


def read_png(path: Path, rule: ShapeRule | None, max_bytes: int, channels: int = 1) -> np.ndarray:
    """One greyscale picture as uint8 (H, W), or float32 in [0, 1] for 16-bit ones; with channels 3 any
    picture Pillow reads as uint8 RGB (H, W, 3). The size is read from the header and checked (pixel
    limit, `rule`) before decoding; transparency is composited onto white."""
    image_mod = import_pillow()
    limit = min(MAX_IMAGE_PIXELS, max_bytes // 16)
    try:
        with warnings.catch_warnings():  # Pillow's own bomb warning: the size is checked here, below
            warnings.simplefilter("ignore", image_mod.DecompressionBombWarning)
            im = image_mod.open(path)
        with im:
            width, height = im.size
            if width * height > limit:
                raise InputError(
                    f"{path}: {width} x {height} pixels is over the limit of {limit:,} pixels for an input picture"
                )
            if rule is not None:
                rule((height, width) if channels == 1 else (height, width, channels), np.dtype(np.uint8))
            if channels != 1:
                return np.asarray(flatten_alpha(image_mod, im).convert("RGB"), dtype=np.uint8)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                # 16-bit greyscale (PNG holds no other integer mode): scale 0..65535 to [0, 1];
                # convert("L") would clip every level above 255 to white
                levels = np.asarray(im, dtype=np.float64)
                return (np.clip(levels, 0, 65535.0) / 65535.0).astype(np.float32)
            return np.asarray(flatten_alpha(image_mod, im).convert("L"), dtype=np.uint8)
    except image_mod.DecompressionBombError as exc:
        raise InputError(f"{path}: refused as a decompression bomb ({exc})") from exc
    except OSError as exc:  # PIL.UnidentifiedImageError and truncated files are OSErrors
        raise InputError(f"{path} is not a readable {'PNG' if channels == 1 else 'picture'}: {exc}") from exc


def flatten_alpha(image_mod: Any, im: Any) -> Any:
    """A picture with transparency (RGBA, LA, PA, or a transparent palette or colour) composited onto
    white, as a viewer shows it; others unchanged."""
    if im.mode not in ("RGBA", "LA", "PA") and "transparency" not in im.info:
        return im
    background = image_mod.new("RGBA", im.size, (255, 255, 255, 255))
    background.alpha_composite(im.convert("RGBA"))
    return background
