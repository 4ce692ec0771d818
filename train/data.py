"""MNIST-format IDX data: find the files, verify them, read them into uint8 arrays.

Accepts the torchvision layout (`ROOT/MNIST/raw/*`) and a plain folder of IDX files, each file
plain or gzipped. MNIST itself is verified against the published checksums of the uncompressed
content; any other data set in MNIST's IDX format (28x28 uint8 images, 1-byte labels: e.g.
Fashion-MNIST) trains by pointing at its folder with `dataset="idx"`.

The folder comes from the `data_dir` argument, else the EDGEVAE_DATA_DIR environment variable.
`download_mnist` fetches from the public mirrors for users who are online; tests never call it.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import struct
import urllib.request
from pathlib import Path

import numpy as np

from edgevae.runtime.atomic import write_bytes_atomic
from edgevae.runtime.errors import EdgeVAEError

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "EDGEVAE_DATA_DIR"
DATASETS = ("mnist", "idx")  # mnist: checksums verified; idx: any data in MNIST's format and file names
SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# md5 of the uncompressed files, as published with MNIST (and used by torchvision).
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
HOW_TO_GET = (
    "Get MNIST with `python -m edgevae.train --download --data-dir DIR`, or copy the four "
    "*-ubyte(.gz) files into DIR (or DIR/MNIST/raw), then pass --data-dir DIR or set "
    f"{DATA_DIR_ENV}=DIR."
)


class DataError(EdgeVAEError):
    """The data folder is missing, incomplete or holds a corrupt file."""


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """The argument, else $EDGEVAE_DATA_DIR; a clear error when neither is given."""
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV)
    if not data_dir:
        raise DataError(f"no data folder given: pass --data-dir or set {DATA_DIR_ENV}. {HOW_TO_GET}")
    return Path(data_dir).expanduser()


def _candidate_dirs(root: Path) -> list[Path]:
    return [root / "MNIST" / "raw", root / "raw", root]


def find_idx_file(root: Path, stem: str) -> Path:
    """Path of `stem` (or `stem.gz`) in the first candidate folder that has it."""
    for folder in _candidate_dirs(root):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    searched = ", ".join(str(d) for d in _candidate_dirs(root))
    raise DataError(f"{stem}[.gz] not found; searched {searched}. {HOW_TO_GET}")


def read_bytes(path: Path) -> bytes:
    """The file's uncompressed bytes; a truncated or damaged gzip is reported as corrupt."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"corrupt data file {path}: cannot decompress ({exc}). {HOW_TO_GET}") from exc


def parse_idx(raw: bytes, path: Path, expect_ndim: int) -> np.ndarray:
    """Decode an IDX buffer (big-endian header, magic 0x0000 08 NDIM) of unsigned bytes."""
    if len(raw) < 4 + 4 * expect_ndim:
        raise DataError(f"corrupt data file {path}: {len(raw)} bytes is too short for an IDX header")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or ndim != expect_ndim:
        raise DataError(
            f"corrupt data file {path}: IDX magic says dtype 0x{dtype_code:02x}, {ndim} dims; "
            f"expected unsigned bytes (0x08) with {expect_ndim} dims"
        )
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    body = raw[4 + 4 * ndim :]
    if len(body) != int(np.prod(dims)):
        raise DataError(
            f"corrupt data file {path}: header says {dims} = {int(np.prod(dims))} bytes, "
            f"file holds {len(body)} (truncated?)"
        )
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def load_split(
    data_dir: str | os.PathLike[str] | None, split: str, dataset: str = "mnist"
) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W) uint8 and labels (N,) uint8 of `split` ('train' or 'test').

    The files are found by MNIST's names, in ROOT/MNIST/raw, ROOT/raw or ROOT. dataset 'mnist'
    (default) verifies each against the published checksum, whatever the folder's layout; 'idx'
    reads any data in MNIST's format under those names (Fashion-MNIST, your own) unchecked.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
    root = resolve_data_dir(data_dir)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist. {HOW_TO_GET}")
    arrays = []
    for stem, ndim in zip(SPLITS[split], (3, 1), strict=True):
        path = find_idx_file(root, stem)
        raw = read_bytes(path)
        digest = hashlib.md5(raw).hexdigest() if dataset == "mnist" else None
        if digest is not None and digest != MNIST_MD5[stem]:
            raise DataError(
                f"corrupt data file {path}: md5 of its content is {digest}, the published MNIST "
                f"value is {MNIST_MD5[stem]}. Delete it and fetch it again. {HOW_TO_GET} "
                "(For another data set in MNIST's format, such as Fashion-MNIST, pass --dataset idx.)"
            )
        arrays.append(parse_idx(raw, path, ndim))
    images, labels = arrays
    if len(images) != len(labels):
        raise DataError(f"{split}: {len(images)} images but {len(labels)} labels in {root}")
    return images, labels


def download_mnist(root: str | os.PathLike[str]) -> Path:
    """Fetch the four MNIST files into ROOT/MNIST/raw (verified, written atomically)."""
    dest = Path(root).expanduser() / "MNIST" / "raw"
    dest.mkdir(parents=True, exist_ok=True)
    for stem, md5 in MNIST_MD5.items():
        target = dest / (stem + ".gz")
        if target.is_file() and hashlib.md5(read_bytes(target)).hexdigest() == md5:
            continue
        errors = []
        for mirror in MNIST_MIRRORS:
            try:
                with urllib.request.urlopen(mirror + stem + ".gz", timeout=60) as resp:
                    blob = resp.read()
            except OSError as exc:
                errors.append(f"{mirror}: {exc}")
                continue
            if hashlib.md5(gzip.decompress(blob)).hexdigest() != md5:
                errors.append(f"{mirror}: checksum mismatch")
                continue
            write_bytes_atomic(target, blob)
            logger.info("downloaded %s", target)
            break
        else:
            raise DataError(f"could not download {stem}.gz: " + "; ".join(errors))
    return dest.parent.parent
