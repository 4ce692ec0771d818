"""Defects found by a hostile probe (issue 9), each reproduced and now refused with a clear error."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import need

need("torch", "onnx")

import torch

from edgevae.export.convert import ExportError, export_lock, export_model
from edgevae.runtime import VAE, ModelError, contract
from edgevae.runtime.cli import main
from edgevae.runtime.images import read_images
from edgevae.runtime.model import MAX_THREADS, seal_manifest
from edgevae.train import checkpoint, loop
from edgevae.train.checkpoint import CheckpointError
from edgevae.train.config import TrainConfig

from conftest import RELEASED_CHECKPOINTS, SHIPPED_MODEL


def copy_checkpoints(tmp_path: Path) -> Path:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    for name in (checkpoint.ENCODER_FILE, checkpoint.DECODER_FILE, checkpoint.RECORD_FILE):
        shutil.copy(RELEASED_CHECKPOINTS / name, folder / name)
    return folder


def tensor_offsets(path: Path) -> list[int]:
    """Byte offsets inside each tensor's data (first, middle, last byte), from the safetensors header."""
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    spans = [v["data_offsets"] for k, v in header.items() if k != "__metadata__"]
    return [8 + size + o for begin, end in spans if end - begin > 1000 for o in (begin, (begin + end) // 2, end - 1)]


def test_1_a_flipped_byte_in_a_checkpoint_is_refused_and_export_writes_nothing(tmp_path: Path) -> None:
    folder = copy_checkpoints(tmp_path)
    target = folder / checkpoint.DECODER_FILE
    offsets = tensor_offsets(target)
    assert len(offsets) >= 6
    pristine = target.read_bytes()
    for offset in offsets:
        blob = bytearray(pristine)
        blob[offset] ^= 0x01
        target.write_bytes(bytes(blob))
        with pytest.raises(CheckpointError, match=r"corrupt checkpoint .*decoder.safetensors: its sha256 is not"):
            checkpoint.load_pair(folder)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "edgevae.export", "--checkpoints", str(folder), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "its sha256 is not" in result.stderr and not out.exists()


def test_2_threads_are_bounded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match=f"threads must be an int from 0 to {MAX_THREADS}"):
        VAE(threads=MAX_THREADS + 1)
    assert main(["sample", "-n", "4", "--threads", "100000", "-o", str(tmp_path / "s.png")]) == 2
    assert "threads must be an int from 0" in capsys.readouterr().err and not (tmp_path / "s.png").exists()


def test_3_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path, real_digits: np.ndarray) -> None:
    from PIL import Image

    digit = real_digits[0].reshape(28, 28)
    Image.fromarray(digit).save(tmp_path / "d8.png")
    wide = digit.astype(np.uint16) * 257  # the same levels on a 16-bit scale
    Image.fromarray(wide).save(tmp_path / "d16.png")
    with Image.open(tmp_path / "d16.png") as im:
        assert im.mode.startswith("I")  # 16-bit greyscale as Pillow opens it
    eight, sixteen = read_images(tmp_path / "d8.png"), read_images(tmp_path / "d16.png")
    np.testing.assert_allclose(sixteen, eight / 255.0, atol=1e-6)
    vae = VAE()
    np.testing.assert_allclose(vae.reconstruct(sixteen), vae.reconstruct(eight), atol=1e-5)


def test_4_an_interrupted_pair_is_not_one_unit(tmp_path: Path) -> None:
    folder = copy_checkpoints(tmp_path)
    encoder, _ = checkpoint.load_pair(folder)
    config = TrainConfig()
    checkpoint.save_module(folder / checkpoint.ENCODER_FILE, "encoder", encoder, config, epoch=201, run="abc")
    with pytest.raises(
        CheckpointError, match=r"encoder.safetensors \(run abc, epoch 201\) and decoder.safetensors .* are not one pair"
    ):
        checkpoint.load_pair(folder)


def test_5_a_second_export_into_a_locked_folder_fails_at_once(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with export_lock(out, []):
        with pytest.raises(ExportError, match="another export is writing to"):
            export_model(RELEASED_CHECKPOINTS, out)
    assert sorted(p.name for p in out.iterdir()) == [".export.lock"]


def npy_header_only(shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buf.getvalue()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is not a readable .npy array (0 bytes)"),
        (npy_header_only((100_000_000, 784)), "GiB); over the limit of 2.00 GiB"),
        (npy_header_only((1000, 784)), "is truncated: header says shape (1000, 784)"),
    ],
)
def test_6_broken_npy_inputs_are_one_line_errors(
    tmp_path: Path, content: bytes, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "x.npy").write_bytes(content)
    assert main(["reconstruct", str(tmp_path / "x.npy"), "-o", str(tmp_path / "r.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgevae: error:") and message in err and "Traceback" not in err


def test_6_sample_requests_above_the_cap_are_refused_before_allocating(capsys: pytest.CaptureFixture[str]) -> None:
    import tracemalloc

    tracemalloc.start()
    with pytest.raises(ValueError, match="n=10,000,000 is over its bound of [0-9,]+ images under the memory budget"):
        VAE().sample(10_000_000)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 50 * 2**20


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m["config"].pop("image_shape"), "config.image_shape must be"),
        (lambda m: m["config"].update(latent=21), "do not match this runtime's contract"),
        (lambda m: m["config"].update(latent="20"), "config.latent must be a positive int"),
    ],
)
def test_6_manifest_config_is_checked_against_the_graphs(tmp_path: Path, edit: object, message: str) -> None:
    model = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL, model)
    manifest = json.loads((model / contract.MANIFEST_FILE).read_text())
    edit(manifest)  # type: ignore[operator]
    (model / contract.MANIFEST_FILE).write_bytes(seal_manifest(manifest))
    with pytest.raises(ModelError, match=message):
        VAE(model)


class Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize("protocol", [None, 0, 2, 5])
def test_7_a_pickle_payload_is_refused_unread_even_with_a_matching_record(
    tmp_path: Path, protocol: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whoever can write the files can write the record too: the payload reaches the reader, which
    parses safetensors only: a torch zip (None) or a binary pickle is refused by its first bytes, a
    text pickle (protocol 0) fails as safetensors; none is unpickled."""
    import pickle

    folder = copy_checkpoints(tmp_path)
    if protocol is None:
        buf = io.BytesIO()
        torch.save({"format": checkpoint.FORMAT, "payload": Payload()}, buf)
        payload = buf.getvalue()
    else:
        payload = pickle.dumps({"format": checkpoint.FORMAT, "payload": Payload()}, protocol=protocol)
    checkpoint.commit(folder, {checkpoint.DECODER_FILE: payload})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError) as info:
        checkpoint.load_pair(folder)
    message = str(info.value)
    if protocol == 0:
        assert "decoder.safetensors: not an edgevae safetensors file" in message
    else:
        assert "decoder.safetensors: it is a pickle or torch .pt file, not safetensors" in message
        assert "nothing in it was run" in message
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("force_env", [False, True])
def test_7_a_pickle_payload_in_a_format_1_folder_is_refused_plainly_and_never_runs(
    tmp_path: Path, force_env: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The .pt reader kept for one release: weights_only refuses the payload, also when the
    environment asks torch to load everything."""
    from conftest import LEGACY_CHECKPOINTS

    folder = tmp_path / "legacy"
    shutil.copytree(LEGACY_CHECKPOINTS, folder)
    buf = io.BytesIO()
    torch.save({"format": checkpoint.FORMAT, "payload": Payload()}, buf)
    (folder / "decoder.pt").write_bytes(buf.getvalue())
    monkeypatch.chdir(tmp_path)
    if force_env:
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(CheckpointError) as info:
        checkpoint.load_pair(folder)
    message = str(info.value)
    assert "holds pickled code" in message and "not run" in message and "weights_only set to False" not in message
    assert not (tmp_path / "PWNED").exists()


def test_8_stale_temporary_files_are_removed_on_the_next_start(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    stale = [
        out / ".encoder.safetensors.x1y2.tmp",
        out / ".train_state.safetensors.abc.tmp",
        out / "..decoder.safetensors.pending.77.q.tmp",
        out / ".checkpoint.sha256.9.r.tmp",
        out / ".metrics.json.q.tmp",
    ]
    for path in stale:
        path.write_bytes(b"half a file")
    keep = out / ".notes.tmp"
    keep.write_bytes(b"not ours")
    config = TrainConfig(epochs=1, train_limit=200, test_limit=50, batch_size=50, iw_samples=0)
    loop.run_training(config, data_dir, out, device="cpu", progress=False)
    assert not any(p.exists() for p in stale) and keep.exists()
    encoder, decoder = checkpoint.load_pair(out)  # a consistent, verified pair
    assert encoder.config == decoder.config


def test_9_output_suffix_is_checked_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(VAE, "sample", lambda *a, **k: pytest.fail("sampled before checking the output"))
    assert main(["sample", "-n", "300000", "-o", str(tmp_path / "x.jpg")]) == 2
    assert "output must end in .png or .npy, got 'x.jpg'" in capsys.readouterr().err


def test_9_a_directory_input_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reconstruct", str(tmp_path), "-o", str(tmp_path / "r.png")]) == 2
    assert f"input {tmp_path} is a directory" in capsys.readouterr().err


def test_9_negative_seed_names_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["sample", "--seed", "-1"])
    assert info.value.code == 2
    assert "argument --seed: expected an int in [0, 2**128), got '-1'" in capsys.readouterr().err


def test_9_masked_values_are_refused(real_digits: np.ndarray) -> None:
    x = np.ma.masked_array(real_digits[:2], mask=np.zeros((2, 784), bool))
    np.testing.assert_array_equal(VAE().reconstruct(x), VAE().reconstruct(real_digits[:2]))
    x.mask[1, 5] = True
    with pytest.raises(ValueError, match="masked array with 1 masked values"):
        VAE().reconstruct(x)


def test_9_seed_with_eps_is_refused(real_digits: np.ndarray) -> None:
    with pytest.raises(ValueError, match="give eps or seed, not both"):
        VAE().encode_z(real_digits[:2], eps=np.zeros((2, 20), np.float32), seed=3)


def test_links_out_of_the_model_folder_and_directories_are_refused(tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL, model)
    outside = tmp_path / "elsewhere.json"
    shutil.copy(model / contract.SCORE_STATS_FILE, outside)
    (model / contract.SCORE_STATS_FILE).unlink()
    (model / contract.SCORE_STATS_FILE).symlink_to(outside)
    with pytest.raises(ModelError, match="is a link to .* outside the model folder"):
        VAE(model)
    (model / contract.SCORE_STATS_FILE).unlink()
    (model / contract.SCORE_STATS_FILE).mkdir()
    with pytest.raises(ModelError, match="score_stats.json is a directory"):
        VAE(model)
