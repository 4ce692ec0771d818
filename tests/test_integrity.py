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


CHECKPOINT_FILES = [checkpoint.ENCODER_FILE, checkpoint.DECODER_FILE, checkpoint.RECORD_FILE]


@pytest.mark.parametrize("name", CHECKPOINT_FILES)
def test_a_flipped_byte_in_a_checkpoint_is_detected(tmp_path: Path, name: str) -> None:
    """200 spread offsets (every byte of the record); the next test covers every header byte."""
    folder = tmp_path / "ckpt"
    shutil.copytree(RELEASED_CHECKPOINTS, folder)
    path = folder / name
    pristine = path.read_bytes()
    missed = missed_flips(path, pristine, offsets(len(pristine)), lambda: checkpoint.load_pair(folder), CheckpointError)
    assert missed == [], missed


@pytest.mark.parametrize("name", [checkpoint.ENCODER_FILE, checkpoint.DECODER_FILE])
def test_every_header_byte_of_a_checkpoint_is_checked(tmp_path: Path, name: str) -> None:
    """The safetensors header (its length, the tensor table and the metadata: config, run, epoch)
    byte by byte; the sha256 in the record covers the tensor data as well."""
    folder = tmp_path / "ckpt"
    shutil.copytree(RELEASED_CHECKPOINTS, folder)
    path = folder / name
    pristine = path.read_bytes()
    header = range(8 + int.from_bytes(pristine[:8], "little"))
    missed = missed_flips(path, pristine, list(header), lambda: checkpoint.read_file(path), CheckpointError)
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
@pytest.mark.parametrize("name", CHECKPOINT_FILES)
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
