"""Artifact integrity: a flipped byte anywhere in a shipped model file or a released checkpoint is
detected before use, with the file named; empty, truncated, missing, directory and outside-link
files are typed errors naming the file, within a second."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from edgevae.runtime import ModelError, contract
from edgevae.runtime.model import load_model_files

from conftest import need

need("torch")

from edgevae.train import checkpoint
from edgevae.train.checkpoint import CheckpointError

from conftest import RELEASED_CHECKPOINTS, SHIPPED_MODEL

MANIFEST = json.loads((SHIPPED_MODEL / contract.MANIFEST_FILE).read_text())
MODEL_FILES = sorted(MANIFEST["files"]) + [contract.MANIFEST_FILE]


def variant_of(name: str) -> str:
    return MANIFEST["files"].get(name, {}).get("variant", contract.DEFAULT_VARIANT)


def offsets(size: int, count: int = 200) -> list[int]:
    return sorted(set(np.linspace(0, size - 1, min(count, size)).astype(int).tolist()))


def missed_flips(path: Path, pristine: bytes, where: list[int], load: object, error: type[Exception]) -> list[int]:
    """Offsets where flipping one bit of `pristine` (written to `path`) did not make `load` raise
    `error` naming the file; the file is restored afterwards."""
    missed = []
    for offset in where:
        blob = bytearray(pristine)
        blob[offset] ^= 0x01
        path.write_bytes(bytes(blob))
        try:
            load()  # type: ignore[operator]
            missed.append(offset)
        except error as exc:
            assert path.name in str(exc)
    path.write_bytes(pristine)
    return missed


@pytest.fixture
def model(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL, folder)
    return folder


@pytest.mark.parametrize("name", MODEL_FILES)
def test_a_flipped_byte_in_any_model_file_is_detected(model: Path, name: str) -> None:
    path = model / name
    pristine = path.read_bytes()
    missed = missed_flips(
        path, pristine, offsets(len(pristine)), lambda: load_model_files(model, variant_of(name)), ModelError
    )
    assert missed == [], f"{name}: flips at {missed} went unnoticed"


@pytest.mark.parametrize("name", [checkpoint.ENCODER_FILE, checkpoint.DECODER_FILE])
def test_a_flipped_byte_in_a_checkpoint_is_detected(tmp_path: Path, name: str) -> None:
    """200 spread offsets; the next test covers every byte outside tensor data exhaustively."""
    folder = tmp_path / "ckpt"
    shutil.copytree(RELEASED_CHECKPOINTS, folder)
    path = folder / name
    pristine = path.read_bytes()
    missed = missed_flips(path, pristine, offsets(len(pristine)), lambda: checkpoint.load_pair(folder), CheckpointError)
    assert missed == [], missed


def structure_offsets(raw: bytes) -> list[int]:
    """Every byte of a checkpoint that is not inside a member's data (headers, padding, descriptors,
    central directory, end records), plus the first and last byte of each member's data."""
    import io
    import zipfile

    data: set[int] = set()
    for info in zipfile.ZipFile(io.BytesIO(raw)).infolist():
        o = info.header_offset
        start = o + 30 + int.from_bytes(raw[o + 26 : o + 28], "little") + int.from_bytes(raw[o + 28 : o + 30], "little")
        data.update(range(start + 1, start + info.compress_size - 1))
    return [o for o in range(len(raw)) if o not in data]


@pytest.mark.parametrize("name", [checkpoint.ENCODER_FILE, checkpoint.DECODER_FILE])
def test_every_structural_byte_of_a_checkpoint_is_checked(tmp_path: Path, name: str) -> None:
    """Member data is covered by CRC-32 (which catches every error within 32 bits); every other
    byte is checked against the layout torch's writer produces."""
    path = tmp_path / name
    pristine = (RELEASED_CHECKPOINTS / name).read_bytes()
    missed = missed_flips(
        path, pristine, structure_offsets(pristine), lambda: checkpoint.read_file(path), CheckpointError
    )
    assert missed == [], missed


DAMAGE = ["empty", "1%", "50%", "99%", "missing", "directory", "outside link"]


def damage(path: Path, how: str, outside: Path) -> None:
    data = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how.endswith("%"):
        path.write_bytes(data[: len(data) * int(how[:-1]) // 100])
    else:
        path.unlink()
        if how == "directory":
            path.mkdir()
        elif how == "outside link":
            outside.write_bytes(data)
            path.symlink_to(outside)


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize(
    "name",
    [
        contract.MANIFEST_FILE,
        "decoder.onnx",
        "encoder.int8.onnx",
        "decoder.ort",
        contract.GOLDEN_DATA_FILE,
        contract.SCORE_STATS_FILE,
    ],
)
def test_damaged_model_files_are_typed_errors_naming_the_file(model: Path, tmp_path: Path, name: str, how: str) -> None:
    damage(model / name, how, tmp_path / "outside")
    t0 = time.perf_counter()
    with pytest.raises(ModelError) as info:
        load_model_files(model, variant_of(name))
    assert time.perf_counter() - t0 < 1.0
    assert name in str(info.value)


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("name", [checkpoint.ENCODER_FILE, checkpoint.DECODER_FILE])
def test_damaged_checkpoints_are_typed_errors_naming_the_file(tmp_path: Path, name: str, how: str) -> None:
    folder = tmp_path / "ckpt"
    shutil.copytree(RELEASED_CHECKPOINTS, folder)
    damage(folder / name, how, tmp_path / "outside")
    t0 = time.perf_counter()
    try:
        checkpoint.load_pair(folder)
    except CheckpointError as exc:
        assert name in str(exc) and time.perf_counter() - t0 < 1.0
    else:
        assert how == "outside link"  # a link to an intact copy of the file is a valid checkpoint
