"""Your own images: a folder of picture files or one .npy array, as uint8 (N, H, W, C) arrays.

    python -m edgevae.train --dataset folder --data-dir photos/ --preset conv32
    python -m edgevae.train --dataset npy --data-dir images.npy --block conv

folder: png, jpg/jpeg, bmp and webp files under DIR, nested folders included (other files are
ignored and counted). Pillow decodes them (nothing here decodes pictures), one file open at a
time, so 100,000 images never mean 100,000 open files; each is converted to grey ("L") or RGB and
resized (Lanczos) to the image shape. A file Pillow cannot read is skipped and counted; a folder
where none is readable is an error naming it.
npy: (N, H, W) or (N, H, W, C) with C in {1, 3, 4}, uint8 or float in [0, 1], read without pickle.
The held-out test split is `test_fraction` of the images, chosen by a permutation seeded by the
run's seed (`split_indices`), and recorded in the run.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import DataError

logger = logging.getLogger(__name__)

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
SPLIT_SEED_OFFSET = 7_919  # the split's generator: seed + this, so it differs from the weights' draw
MAX_ARRAY_BYTES = 16 * 2**30  # a .npy whose header promises more is refused before it is read


@dataclass(frozen=True)
class ImageSet:
    """Decoded images (N, H, W, C) uint8, where they came from, and what was skipped on the way."""

    images: np.ndarray
    source: str
    skipped: tuple[str, ...] = ()
    ignored: int = 0  # files that are not pictures


def find_image_files(root: Path) -> tuple[list[Path], int]:
    """Picture files under root (sorted, nested folders included) and the count of other files."""
    if not root.is_dir():
        raise DataError(f"--dataset folder: {root} is not a folder (give --data-dir DIR with image files under it)")
    found, ignored = [], 0
    for folder, _, names in os.walk(root):
        for name in names:
            if name.startswith("."):
                continue
            if Path(name).suffix.lower() in SUFFIXES:
                found.append(Path(folder) / name)
            else:
                ignored += 1
    found.sort()
    if not found:
        raise DataError(f"no images ({', '.join(SUFFIXES)}) under {root}; {ignored} other files there")
    return found, ignored


def probe_first(files: list[Path]) -> tuple[tuple[int, int], int, Path]:
    """((H, W), channels, path) of the first readable image: the defaults when no flag gives them."""
    from PIL import Image

    for path in files:
        try:
            with Image.open(path) as im:
                channels = 1 if im.mode in ("1", "L", "I", "I;16", "F") else 3
                return (im.height, im.width), channels, path
        except OSError:
            continue
    raise DataError(f"none of the {len(files)} image files under {files[0].parent} is readable")


def read_one(path: Path, shape: tuple[int, int] | None, channels: int) -> np.ndarray | None:
    """One file as (H, W, C) uint8, resized to `shape` (None: keep its size); None when unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
            im = im.convert("L" if channels == 1 else "RGB")
            if shape is not None and (im.height, im.width) != shape:
                im = im.resize((shape[1], shape[0]), Image.LANCZOS)
            arr = np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    return arr.reshape(arr.shape[0], arr.shape[1], channels)


def load_folder(root: Path, shape: tuple[int, int] | None, channels: int, progress: bool = True) -> ImageSet:
    """Every readable picture under root as one (N, H, W, C) uint8 array. With shape None every image
    must have the first one's size (DataError naming the first that differs: pass --image-shape)."""
    files, ignored = find_image_files(root)
    if ignored:
        print(f"data: ignored {ignored} files under {root} that are not images ({', '.join(SUFFIXES)})")
    out: np.ndarray | None = None
    kept, skipped = 0, []
    bar = make_bar(len(files), f"reading {root}", progress)
    for path in files:
        arr = read_one(path, shape, channels)
        if bar is not None:
            bar.update(1)
        if arr is None:
            skipped.append(str(path))
            continue
        if out is None:
            out = np.empty((len(files), *arr.shape), np.uint8)  # one allocation; trimmed at the end
        elif arr.shape != out.shape[1:]:
            raise DataError(
                f"{path} is {arr.shape[1]}x{arr.shape[0]}, the first image {out.shape[2]}x{out.shape[1]}: "
                "images of mixed sizes need --image-shape H W (each is then resized to it)"
            )
        out[kept] = arr
        kept += 1
    if bar is not None:
        bar.close()
    if out is None or kept == 0:
        raise DataError(f"none of the {len(files)} image files under {root} is readable (first: {files[0]})")
    if skipped:
        print(f"data: skipped {len(skipped)} unreadable image(s) of {len(files)} (first: {skipped[0]})")
    return ImageSet(out[:kept], f"folder {root}: {kept} images", tuple(skipped), ignored)


def make_bar(total: int, desc: str, enabled: bool) -> object | None:
    """A tqdm bar on stderr for long reads, or None."""
    if not enabled or total < 1000:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, leave=False, unit="img")


def load_npy(path: Path, shape: tuple[int, int] | None, channels: int) -> ImageSet:
    """An (N, H, W) or (N, H, W, C) array of uint8 or floats in [0, 1] as uint8 (N, H, W, channels)."""
    from edgevae.runtime.images import read_npy

    if not path.is_file():
        raise DataError(f"--dataset npy: {path} is not a file (give --data-dir FILE.npy)")
    try:
        arr = read_npy(path)
    except ValueError as exc:
        raise DataError(str(exc)) from exc
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[3] not in (1, 3, 4) or len(arr) == 0:
        raise DataError(f"{path}: expected images shaped (N, H, W) or (N, H, W, C) with C 1, 3 or 4; got {arr.shape}")
    if shape is not None and arr.shape[1:3] != tuple(shape):
        raise DataError(f"{path} holds {arr.shape[2]}x{arr.shape[1]} images; --image-shape asks for {shape}")
    levels = to_levels(arr, path)
    return ImageSet(convert_channels(levels, channels), f"npy {path}: {len(levels)} images")


def to_levels(arr: np.ndarray, path: Path) -> np.ndarray:
    """uint8 levels from uint8, or from floats in [0, 1] (rounded); DataError naming the file otherwise."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind != "f":
        raise DataError(f"{path}: expected uint8 or float values in [0, 1]; got dtype {arr.dtype}")
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if not (np.isfinite(lo) and np.isfinite(hi) and lo >= 0.0 and hi <= 1.0):
        raise DataError(f"{path}: float images must hold values in [0, 1]; got values from {lo} to {hi}")
    return np.round(arr * 255.0).astype(np.uint8)


def convert_channels(levels: np.ndarray, channels: int) -> np.ndarray:
    """(N, H, W, C) uint8 to `channels`: RGB to grey by ITU-R 601 luma (what Pillow's "L" uses), grey
    copied to RGB, an alpha channel composited onto white."""
    if levels.shape[3] == 4:
        alpha = levels[..., 3:4].astype(np.float32) / 255.0
        levels = np.round(levels[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    have = levels.shape[3]
    if have == channels:
        return levels
    if channels == 3:
        return np.repeat(levels, 3, axis=3)
    luma = levels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.round(luma).astype(np.uint8)[..., None]


def probe_npy(path: Path) -> tuple[tuple[int, int], int]:
    """((H, W), channels) of an .npy data set from its header (grey unless C is 3 or 4)."""
    if not path.is_file():
        raise DataError(f"--dataset npy: {path} is not a file (give --data-dir FILE.npy)")
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    if arr.ndim not in (3, 4) or arr.nbytes > MAX_ARRAY_BYTES:
        raise DataError(f"{path}: expected images shaped (N, H, W) or (N, H, W, C); got {arr.shape}")
    return (int(arr.shape[1]), int(arr.shape[2])), (3 if arr.ndim == 4 and arr.shape[3] in (3, 4) else 1)


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices: a permutation seeded by the run's seed; at least one image on each side."""
    if n < 2:
        raise DataError(f"need at least 2 images to hold some out for testing; got {n}")
    n_test = min(n - 1, max(1, round(n * test_fraction)))
    order = np.random.default_rng(seed + SPLIT_SEED_OFFSET).permutation(n)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


OWN_DATASETS = ("folder", "npy")
SAMPLE_FILE = "data_sample.npy"  # training images beside the checkpoints: export's parity inputs and score data
SAMPLE_IMAGES = 2000


def load(
    dataset: str, data_dir: str | os.PathLike[str] | None, shape: tuple[int, int] | None, channels: int, progress: bool
) -> ImageSet:
    """The images of a folder or .npy data set, converted to `channels`; folder images resized to
    `shape` (None: all must have the first one's size); npy images must have `shape`."""
    if dataset not in OWN_DATASETS:
        raise ValueError(f"dataset must be one of {OWN_DATASETS}, got {dataset!r}")
    if not data_dir:
        raise DataError(
            f"--dataset {dataset} needs --data-dir ({'a folder of images' if dataset == 'folder' else 'FILE.npy'})"
        )
    path = Path(data_dir).expanduser()
    if dataset == "folder":
        return load_folder(path, shape, channels, progress)
    return load_npy(path, shape, channels)


def resolve_shape(
    dataset: str, data_dir: str | os.PathLike[str] | None, shape: tuple[int, int] | None, channels: int | None
) -> tuple[tuple[int, int], int, str]:
    """(image shape, channels, how they were chosen): the given values, the rest from the first image."""
    if shape is not None and channels is not None:
        return tuple(shape), channels, "given"  # type: ignore[return-value]
    if not data_dir:
        raise DataError(f"--dataset {dataset} needs --data-dir")
    path = Path(data_dir).expanduser()
    if dataset == "folder":
        first_shape, first_channels, first = probe_first(find_image_files(path)[0])
        where = f"the first image, {first}"
    else:
        first_shape, first_channels = probe_npy(path)
        where = f"the array in {path}"
    return (
        tuple(shape) if shape is not None else first_shape,  # type: ignore[return-value]
        channels if channels is not None else first_channels,
        where,
    )


def write_sample(out: Path, train_rows: np.ndarray, config: object) -> Path:
    """OUT/data_sample.npy: up to SAMPLE_IMAGES training images (uint8 (N, H, W, C), the split's first),
    which export uses for its parity inputs, golden vectors, variant costs and score statistics."""
    from edgevae.runtime.atomic import write_bytes_atomic

    model = config.model  # type: ignore[attr-defined]
    rows = np.asarray(train_rows[:SAMPLE_IMAGES], np.uint8)
    buf = io.BytesIO()
    np.save(buf, rows.reshape(len(rows), *model.image_shape, model.channels), allow_pickle=False)
    write_bytes_atomic(out / SAMPLE_FILE, buf.getvalue())
    return out / SAMPLE_FILE
