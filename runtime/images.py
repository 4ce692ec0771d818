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

PILLOW_HINT = "reading PNG input needs Pillow: pip install 'edgevae[images]' (or pass a .npy array instead)"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def import_pillow() -> Any:
    """The PIL.Image module, or an ImportError that says how to get it."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError(PILLOW_HINT) from exc
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
    return (PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 9))
            + png_chunk(b"IEND", b""))


def save_grid(images: np.ndarray, path: str | os.PathLike[str], ncols: int | None = None, scale: int = 2) -> Path:
    """Write (N, H, W) images in [0, 1] as a PNG grid (or the raw array to a .npy file)."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        buf = io.BytesIO()
        np.save(buf, np.asarray(images, dtype=np.float32))
        write_bytes_atomic(path, buf.getvalue())
    elif path.suffix.lower() == ".png":
        write_bytes_atomic(path, encode_png(tile_images(images, ncols), scale))
    else:
        raise ValueError(f"output must end in .png or .npy, got {path.name!r}")
    return path


def read_images(path: str | os.PathLike[str]) -> np.ndarray:
    """Images from a .npy file (any shape the model accepts) or a grayscale PNG (one image)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file {path} not found")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise ValueError(f"{path} is not a readable .npy array: {exc}") from exc
    if suffix == ".png":
        image_mod = import_pillow()
        with image_mod.open(path) as im:
            return np.asarray(im.convert("L"), dtype=np.uint8)
    raise ValueError(f"input must be a .png or .npy file, got {path.name!r}")
