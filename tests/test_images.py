"""Pictures: grids, the standard-library PNG writer (checked with Pillow), .npy round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import need

need("PIL")

from PIL import Image

from edgevae.runtime.errors import InputError
from edgevae.runtime.images import encode_png, read_images, save_grid, tile_images


def test_png_writer_matches_pillow_decoding(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 256, (17, 23), dtype=np.uint8)
    path = tmp_path / "x.png"
    path.write_bytes(encode_png(image))
    with Image.open(path) as im:
        assert im.mode == "L" and im.size == (23, 17)
        np.testing.assert_array_equal(np.asarray(im), image)
    path.write_bytes(encode_png(image, scale=3))
    with Image.open(path) as im:
        np.testing.assert_array_equal(np.asarray(im)[::3, ::3], image)


def test_grid_layout_and_values() -> None:
    images = np.stack([np.full((2, 2), v, np.float32) for v in (0.0, 0.5, 1.0)])
    grid = tile_images(images, ncols=2, pad=1, pad_value=1.0)
    assert grid.shape == (2 * 3 + 1, 2 * 3 + 1) and grid.dtype == np.uint8
    assert grid[1, 1] == 0 and grid[1, 4] == 128 and grid[4, 1] == 255


def test_save_and_read_round_trip(tmp_path: Path) -> None:
    images = np.random.default_rng(1).random((5, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(read_images(save_grid(images, tmp_path / "a.npy")), images)
    single = np.random.default_rng(2).integers(0, 256, (28, 28), dtype=np.uint8)
    (tmp_path / "one.png").write_bytes(encode_png(single))
    np.testing.assert_array_equal(read_images(tmp_path / "one.png"), single)


def test_bad_paths_and_arrays(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="output must end in .png or .npy, got 'a.jpg'"):
        save_grid(np.zeros((1, 28, 28)), tmp_path / "a.jpg")
    with pytest.raises(InputError, match="input file .* not found"):
        read_images(tmp_path / "missing.npy")
    with pytest.raises(ValueError, match=r"tile_images expects a non-empty \(N, H, W\) array"):
        tile_images(np.zeros((0, 28, 28)))
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="is not a readable .npy array"):
        read_images(tmp_path / "bad.npy")
