"""Arrays <-> pictures: tile images into a grid, write PNG (needs Pillow), read PNG/.npy inputs.

numpy only, except the PNG functions, which import Pillow lazily and say how to install it.
"""
from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import write_bytes_atomic

PILLOW_HINT = "writing or reading PNG needs Pillow: pip install 'edgevae[images]' (or save to .npy instead)"


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


def encode_png(image: np.ndarray, scale: int = 1) -> bytes:
    """PNG bytes of a 2-D uint8 array, optionally upscaled by an integer factor (nearest)."""
    image_mod = import_pillow()
    if scale > 1:
        image = np.kron(image, np.ones((scale, scale), dtype=np.uint8))
    buf = io.BytesIO()
    image_mod.fromarray(image, mode="L").save(buf, format="PNG")
    return buf.getvalue()


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
