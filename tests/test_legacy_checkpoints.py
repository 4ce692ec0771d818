"""Format-1 checkpoints (.pt) for one release: they load through the checked reader with a note to
convert, `python -m edgevae.train.convert` converts them exactly, and a converted folder exports
the same graphs apart from the checkpoint sha256 they record."""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import need

need("torch", "onnx")

import onnx
import torch

from edgevae.runtime import contract
from edgevae.train import checkpoint, legacy, loop
from edgevae.train.checkpoint import CheckpointError
from edgevae.train.config import TrainConfig
from edgevae.train.convert import main as convert_main

from conftest import LEGACY_CHECKPOINTS

PT_FILES = [legacy.ENCODER_FILE, legacy.DECODER_FILE, legacy.STATE_FILE]


@pytest.fixture
def old_run(tmp_path: Path) -> Path:
    folder = tmp_path / "old"
    shutil.copytree(LEGACY_CHECKPOINTS, folder)
    return folder


def test_a_format_1_folder_loads_through_the_checked_reader_with_a_note(
    old_run: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        pair = checkpoint.load_checkpoints(old_run)
    notes = [r.getMessage() for r in caplog.records if "format-1" in r.getMessage()]
    assert len(notes) == 1 and f"python -m edgevae.train.convert {old_run}" in notes[0] and "\n" not in notes[0]
    assert pair.paths == {"encoder": old_run / "encoder.pt", "decoder": old_run / "decoder.pt"}
    for kind in ("encoder", "decoder"):
        assert pair.sha256[kind] == hashlib.sha256((old_run / f"{kind}.pt").read_bytes()).hexdigest()
    assert (pair.encoder.config.hidden, pair.encoder.config.latent) == (4, 2)
    state = checkpoint.load_train_state(old_run / legacy.STATE_FILE)
    assert state["epoch"] == 2 and len(state["optimizer"]["state"]) == 10


@pytest.mark.parametrize("name", [legacy.ENCODER_FILE, legacy.DECODER_FILE])
def test_a_flipped_byte_in_a_format_1_checkpoint_is_still_detected(old_run: Path, name: str) -> None:
    path = old_run / name
    pristine = path.read_bytes()
    for offset in np.linspace(0, len(pristine) - 1, 120).astype(int):
        blob = bytearray(pristine)
        blob[offset] ^= 0x01
        path.write_bytes(bytes(blob))
        with pytest.raises(CheckpointError, match=name):
            checkpoint.load_pair(old_run)


def test_convert_in_place_keeps_every_tensor_and_value_and_removes_the_pt_files(
    old_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {name: checkpoint.read_file(old_run / name) for name in PT_FILES}
    assert convert_main([str(old_run)]) == 0
    assert "every tensor and value equal to the .pt files (removed)" in capsys.readouterr().out
    assert sorted(p.name for p in old_run.iterdir()) == sorted([*checkpoint.FILES, checkpoint.RECORD_FILE])
    for old, new in zip(PT_FILES, checkpoint.FILES, strict=True):
        was, now = before[old], checkpoint.read_file(old_run / new)
        assert was["epoch"] == now["epoch"] and was["run"] == now["run"] and was["train_config"] == now["train_config"]
        tensors = ["state_dict"] if "state_dict" in was else ["encoder", "decoder"]
        for key in tensors:
            assert was[key].keys() == now[key].keys()
            assert all(torch.equal(was[key][k], now[key][k]) for k in was[key])
    optimizer = before[legacy.STATE_FILE]["optimizer"]
    back = checkpoint.load_train_state(old_run / checkpoint.STATE_FILE)["optimizer"]
    for pid, slots in optimizer["state"].items():
        assert all(torch.equal(value, back["state"][pid][slot]) for slot, value in slots.items())


def test_convert_to_another_folder_leaves_the_source_and_gives_the_same_bytes_each_time(
    old_run: Path, tmp_path: Path
) -> None:
    source = {p.name: p.read_bytes() for p in old_run.iterdir()}
    assert convert_main([str(old_run), "--out", str(tmp_path / "a")]) == 0
    assert convert_main([str(old_run), "--out", str(tmp_path / "b")]) == 0
    assert {p.name: p.read_bytes() for p in old_run.iterdir()} == source
    for name in (*checkpoint.FILES, checkpoint.RECORD_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert convert_main([str(old_run), "--keep"]) == 0
    assert {p.name for p in old_run.iterdir()} == {*source, *checkpoint.FILES, checkpoint.RECORD_FILE}
    checkpoint.load_pair(old_run)  # the record is there now: format 2 is read, not the .pt files


@pytest.mark.parametrize("damage", ["flipped", "none there"])
def test_convert_refuses_what_it_cannot_read_and_removes_nothing(
    old_run: Path, tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = old_run
    if damage == "flipped":
        blob = bytearray((old_run / "decoder.pt").read_bytes())
        blob[len(blob) // 2] ^= 0x01
        (old_run / "decoder.pt").write_bytes(bytes(blob))
    else:
        folder = tmp_path / "empty"
        folder.mkdir()
    listed = sorted(p.name for p in folder.iterdir())
    assert convert_main([str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m edgevae.train.convert: error:") and err.count("\n") == 1
    assert ("decoder.pt" in err) if damage == "flipped" else ("holds no format-1 checkpoints" in err)
    assert sorted(p.name for p in folder.iterdir()) == listed


def metadata_stripped(blob: bytes) -> tuple[bytes, str]:
    """The graph with its checkpoint sha256 blanked, serialized, and the value it had."""
    model = onnx.load_from_string(blob)
    value = ""
    for prop in model.metadata_props:
        if prop.key == contract.META_CHECKPOINT_SHA256:
            value, prop.value = prop.value, ""
    return model.SerializeToString(deterministic=True), value


def test_a_converted_folder_exports_the_same_graphs_apart_from_the_checkpoint_sha256(
    old_run: Path, tmp_path: Path
) -> None:
    from edgevae.export.convert import build_graphs

    _, from_pt = build_graphs(old_run)
    convert_main([str(old_run), "--out", str(tmp_path / "new")])
    _, from_safetensors = build_graphs(tmp_path / "new")
    record = checkpoint.read_record(tmp_path / "new")
    for graph in contract.GRAPHS:
        (a, sha_pt), (b, sha_new) = metadata_stripped(from_pt[graph]), metadata_stripped(from_safetensors[graph])
        assert a == b, f"{graph}: the graphs differ beyond the checkpoint sha256"
        assert sha_pt == hashlib.sha256((old_run / f"{graph}.pt").read_bytes()).hexdigest()
        assert sha_new == record[f"{graph}.safetensors"]


def test_resume_of_a_format_1_run_asks_for_conversion_first(old_run: Path, data_dir: Path) -> None:
    config = TrainConfig.from_dict(checkpoint.read_file(old_run / legacy.STATE_FILE)["train_config"])
    with pytest.raises(CheckpointError, match=rf"convert them first \(python -m edgevae.train.convert {old_run}\)"):
        loop.run_training(config, data_dir, old_run, device="cpu", resume=True, progress=False)
    assert convert_main([str(old_run)]) == 0
    metrics = loop.run_training(config, data_dir, old_run, device="cpu", resume=True, progress=False)
    assert len(metrics["history"]) == 2  # the history came from the converted resume state


def test_overwrite_replaces_a_format_1_run(old_run: Path, data_dir: Path) -> None:
    config = TrainConfig.from_dict(checkpoint.read_file(old_run / legacy.STATE_FILE)["train_config"])
    loop.run_training(config, data_dir, old_run, device="cpu", overwrite=True, progress=False)
    assert not [p.name for p in old_run.iterdir() if p.suffix == ".pt"]
    checkpoint.load_pair(old_run)
