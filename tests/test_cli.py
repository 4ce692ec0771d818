"""The `edgevae` console script: outputs, --model/--device, and one-line errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import need

need("PIL")

from PIL import Image

from edgevae.runtime import VAE

from conftest import HAS_CUDA


def edgevae(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("edgevae", path=os.path.dirname(sys.executable))
    assert exe, "the edgevae console script is not installed next to this python"
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_sample_png_and_npy(released_model: Path, tmp_path: Path) -> None:
    out = ok(
        edgevae(
            "sample",
            "-n",
            "64",
            "--seed",
            "0",
            "-o",
            "s.png",
            "--model",
            str(released_model),
            "--device",
            "cpu",
            cwd=tmp_path,
        )
    )
    assert "device: cpu -> cpu (CPUExecutionProvider)" in out and "wrote 64 samples" in out
    with Image.open(tmp_path / "s.png") as im:
        assert im.mode == "L" and im.size == (2 * (8 * 30 + 2),) * 2  # 8x8 tiles of 28+2 px, scaled x2
    ok(edgevae("sample", "-n", "5", "--seed", "3", "-o", "s.npy", "--model", str(released_model), cwd=tmp_path))
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), VAE(released_model, device="cpu").sample(5, seed=3))


def test_reconstruct_npy_and_png_inputs(released_model: Path, tmp_path: Path, real_digits: np.ndarray) -> None:
    np.save(tmp_path / "x.npy", real_digits[:6].reshape(6, 28, 28))
    out = ok(edgevae("reconstruct", "x.npy", "-o", "r.png", "--model", str(released_model), cwd=tmp_path))
    assert "wrote 6 reconstructions" in out
    with Image.open(tmp_path / "r.png") as im:
        assert im.size[0] == 2 * (12 * 30 + 2)  # originals and reconstructions side by side
    ok(edgevae("reconstruct", "x.npy", "-o", "r.npy", "--model", str(released_model), cwd=tmp_path))
    np.testing.assert_array_equal(
        np.load(tmp_path / "r.npy"), VAE(released_model, device="cpu").reconstruct(real_digits[:6])
    )
    Image.fromarray(real_digits[0].reshape(28, 28)).save(tmp_path / "one.png")
    ok(edgevae("reconstruct", "one.png", "-o", "one_r.npy", "--model", str(released_model), cwd=tmp_path))
    assert np.load(tmp_path / "one_r.npy").shape == (1, 28, 28)


def test_interpolate(released_model: Path, tmp_path: Path, real_digits: np.ndarray) -> None:
    Image.fromarray(real_digits[0].reshape(28, 28)).save(tmp_path / "a.png")
    np.save(tmp_path / "b.npy", real_digits[1].reshape(28, 28))
    out = ok(
        edgevae(
            "interpolate",
            "a.png",
            "b.npy",
            "--steps",
            "7",
            "-o",
            "path.npy",
            "--model",
            str(released_model),
            cwd=tmp_path,
        )
    )
    assert "wrote 7 interpolation steps" in out and np.load(tmp_path / "path.npy").shape == (7, 28, 28)


def test_info(released_model: Path, tmp_path: Path) -> None:
    out = ok(edgevae("info", "--model", str(released_model), cwd=tmp_path))
    for text in (
        "encoder.onnx: sha256",
        "decoder.onnx: sha256",
        "(verified)",
        "available providers:",
        "active providers: CPUExecutionProvider",
        '"latent": 20',
        "opset: 17",
    ):
        assert text in out, text


def test_model_name_picks_a_packaged_model(tmp_path: Path) -> None:
    ok(edgevae("sample", "-n", "4", "-o", "s.npy", "--model-name", "large", "--seed", "1", cwd=tmp_path))
    assert np.load(tmp_path / "s.npy").shape == (4, 28, 28)
    info = ok(edgevae("info", "--model-name", "large", cwd=tmp_path))
    assert '"block": "gated"' in info and "packaged models: default, large" in info
    assert str(Path("models") / "large") in info


@pytest.mark.parametrize(
    "args, message",
    [
        (["sample", "-n", "0"], "n must be an int >= 1; got 0"),
        (["sample", "-o", "s.gif"], "output must end in .png or .npy"),
        (["reconstruct", "missing.npy"], "input file missing.npy not found"),
        (["reconstruct", "bad.npy"], "bad.npy: expected images shaped"),
        (["sample", "--model", "nowhere"], "model folder nowhere does not exist"),
        (["sample", "--model-name", "huge"], "no packaged model named 'huge'; this edgevae ships default, large"),
        (["sample", "--model-name", "large", "--model", "x"], "not both"),
        (["interpolate", "bad.npy", "bad.npy"], "bad.npy: expected images shaped"),
    ],
)
def test_errors_exit_nonzero_with_one_line(released_model: Path, tmp_path: Path, args: list[str], message: str) -> None:
    np.save(tmp_path / "bad.npy", np.zeros((3, 5), np.float32))
    if "--model" not in args and "--model-name" not in args:
        args = [*args, "--model", str(released_model)]
    result = edgevae(*args, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgevae: error: ") and message in lines[0], result.stderr


@pytest.mark.skipif(HAS_CUDA, reason="this machine has the CUDA provider")
def test_cuda_without_provider_is_one_line(released_model: Path, tmp_path: Path) -> None:
    result = edgevae("sample", "--device", "cuda", "--model", str(released_model), cwd=tmp_path)
    assert result.returncode == 2 and "has no CUDAExecutionProvider" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_help_lists_commands(tmp_path: Path) -> None:
    out = ok(edgevae("--help", cwd=tmp_path))
    for command in ("sample", "reconstruct", "interpolate", "info"):
        assert command in out
    assert "default: auto" in " ".join(ok(edgevae("sample", "--help", cwd=tmp_path)).split())


def test_info_names_a_malformed_variant_entry_instead_of_a_key_error(tmp_path: Path) -> None:
    import json
    import shutil

    from edgevae.runtime import contract
    from edgevae.runtime.model import seal_manifest

    from conftest import SHIPPED_MODEL

    model = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL, model)
    manifest = json.loads((model / contract.MANIFEST_FILE).read_text())
    del manifest["variants"]["int8"]["log_likelihood_change"]["images"]
    (model / contract.MANIFEST_FILE).write_bytes(seal_manifest(manifest))
    result = edgevae("info", "--model", str(model), "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "variants.int8 is malformed (KeyError: 'images')" in result.stderr
