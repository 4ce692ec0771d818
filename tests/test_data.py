"""Reading MNIST-format IDX data: layouts, checksums, and clear errors for missing or corrupt files."""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from conftest import need

need("torch")

from edgevae.train.data import DATA_DIR_ENV, DataError, load_split

STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    blob = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(blob, mtime=0))
    else:
        path.write_bytes(blob)


def make_idx_dataset(folder: Path, n: int = 10, gz: bool = True, seed: int = 0) -> None:
    """A tiny synthetic data set in MNIST's IDX format (not MNIST: different checksums)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "t10k"):
        write_idx(folder / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), gz)
        write_idx(folder / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, (n,)), gz)


def test_reads_real_mnist_in_torchvision_layout(data_dir: Path) -> None:
    images, labels = load_split(data_dir, "test", dataset="mnist")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and set(np.unique(labels)) == set(range(10))
    assert labels[:5].tolist() == [7, 2, 1, 0, 4]  # the well-known first test labels


def test_reads_a_plain_folder_of_raw_files(data_dir: Path, tmp_path: Path) -> None:
    for stem in STEMS[2:]:
        with gzip.open(data_dir / "MNIST" / "raw" / f"{stem}.gz") as src:
            (tmp_path / stem).write_bytes(src.read())
    images, _ = load_split(tmp_path, "test", dataset="mnist")
    assert images.shape == (10000, 28, 28)


def test_environment_variable_gives_the_folder(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(data_dir))
    assert load_split(None, "test")[0].shape[0] == 10000


def test_no_folder_given_says_how_to_give_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with pytest.raises(DataError, match=f"pass --data-dir or set {DATA_DIR_ENV}"):
        load_split(None, "train")


def test_missing_files_name_the_folders_searched(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_split(tmp_path, "train")
    message = str(err.value)
    assert "train-images-idx3-ubyte[.gz] not found" in message
    assert str(tmp_path / "MNIST" / "raw") in message and "--download" in message


def test_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"data folder {tmp_path / 'nope'} does not exist"):
        load_split(tmp_path / "nope", "train")


def copy_mnist_test(data_dir: Path, dest: Path) -> Path:
    raw = dest / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in STEMS[2:]:
        shutil.copy(data_dir / "MNIST" / "raw" / f"{stem}.gz", raw)
    return raw


def test_flipped_byte_in_mnist_is_reported_corrupt(data_dir: Path, tmp_path: Path) -> None:
    raw = copy_mnist_test(data_dir, tmp_path)
    target = raw / "t10k-images-idx3-ubyte.gz"
    content = bytearray(gzip.decompress(target.read_bytes()))
    content[5000] ^= 0xFF  # same size, valid gzip, wrong pixel
    target.write_bytes(gzip.compress(bytes(content)))
    with pytest.raises(DataError, match=r"corrupt data file .*t10k-images-idx3-ubyte.gz: md5 of its content"):
        load_split(tmp_path, "test")


def test_truncated_gzip_is_reported_corrupt(data_dir: Path, tmp_path: Path) -> None:
    raw = copy_mnist_test(data_dir, tmp_path)
    target = raw / "t10k-labels-idx1-ubyte.gz"
    target.write_bytes(target.read_bytes()[:1000])
    with pytest.raises(DataError, match=r"corrupt data file .*t10k-labels-idx1-ubyte.gz: cannot decompress"):
        load_split(tmp_path, "test")


def test_truncated_idx_body_is_reported(tmp_path: Path) -> None:
    make_idx_dataset(tmp_path, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"corrupt data file .*: header says .* file holds 7830 \(truncated\?\)"):
        load_split(tmp_path, "test", dataset="idx")


def test_wrong_magic_is_reported(tmp_path: Path) -> None:
    make_idx_dataset(tmp_path, gz=False)
    path = tmp_path / "t10k-labels-idx1-ubyte"
    blob = bytearray(path.read_bytes())
    blob[2] = 0x0D  # float32 dtype code
    path.write_bytes(bytes(blob))
    with pytest.raises(DataError, match="expected unsigned bytes"):
        load_split(tmp_path, "test", dataset="idx")


@pytest.mark.parametrize("layout", ["", "raw", "MNIST/raw"])
def test_files_named_like_mnist_are_verified_in_any_layout(tmp_path: Path, layout: str) -> None:
    make_idx_dataset(tmp_path / layout)
    with pytest.raises(DataError, match="published MNIST value.*pass --dataset idx"):
        load_split(tmp_path, "train")  # the default checks, whatever the folder's layout


def test_other_idx_data_set_trains_with_dataset_idx(tmp_path: Path) -> None:
    make_idx_dataset(tmp_path)
    images, labels = load_split(tmp_path, "train", dataset="idx")
    assert images.shape == (10, 28, 28) and labels.shape == (10,)


def test_bad_split_and_dataset_names() -> None:
    with pytest.raises(ValueError, match="split must be one of"):
        load_split("x", "valid")
    with pytest.raises(ValueError, match="dataset must be"):
        load_split("x", "train", dataset="cifar")
