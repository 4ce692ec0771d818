"""Colour pictures: tile (N, H, W, 3) images into an RGB PNG grid.

The PNG is written with the standard library (zlib), like the grey grids in images.py, so
`edgevae sample` on a colour model needs nothing beyond numpy and onnxruntime (colour inputs are
read by images.read_png with Pillow).
"""

from __future__ import annotations

import math
import struct
import zlib

import numpy as np


def tile_colour(images: np.ndarray, ncols: int | None = None, pad: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """Tile (N, H, W, C) images in [0, 1] into one (rows*H', cols*W', C) uint8 image."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"tile_colour expects a non-empty (N, H, W, C) array, got shape {images.shape}")
    n, h, w, c = images.shape
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), pad_value, dtype=np.float32)
    for i in range(n):
        r, col = divmod(i, ncols)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[top : top + h, left : left + w] = images[i]
    return np.round(np.clip(grid, 0.0, 1.0) * 255).astype(np.uint8)


def encode_rgb_png(image: np.ndarray, scale: int = 1) -> bytes:
    """PNG bytes (8-bit RGB, colour type 2) of an (H, W, 3) uint8 array, optionally upscaled (nearest)."""
    from .images import PNG_SIGNATURE, png_chunk

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"encode_rgb_png expects an (H, W, 3) uint8 array, got {image.dtype} of shape {image.shape}")
    if scale > 1:
        image = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)
    height, width, _ = image.shape
    rows = np.hstack([np.zeros((height, 1), np.uint8), image.reshape(height, width * 3)])  # filter 0 per row
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit, truecolour, no interlace
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 9))
        + png_chunk(b"IEND", b"")
    )
