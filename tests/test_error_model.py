"""One error model for the three command lines: a domain error (or bad input) is one line and exit 2;
anything else keeps its traceback; --debug shows the traceback of domain errors too; --version."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from conftest import need

need("torch", "onnx")

from edgevae.export.convert import ExportError
from edgevae.export.validate import ParityError, SelftestError, ShapeError, ValidationError
from edgevae.export.variants import VariantError
from edgevae.runtime import __version__
from edgevae.runtime.errors import (
    DeviceError,
    EdgeVAEError,
    InputError,
    MissingDependencyError,
    ModelError,
    SelftestFailed,
    run_cli,
)
from edgevae.train.checkpoint import CheckpointError
from edgevae.train.data import DataError

from conftest import REPO

CLIS = {
    "runtime": [sys.executable, "-m", "edgevae.runtime.cli"],
    "train": [sys.executable, "-m", "edgevae.train"],
    "export": [sys.executable, "-m", "edgevae.export"],
}


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize(
    "cls",
    [
        ModelError,
        DeviceError,
        InputError,
        MissingDependencyError,
        SelftestFailed,
        CheckpointError,
        DataError,
        ExportError,
        ValidationError,
        ParityError,
        SelftestError,
        ShapeError,
        VariantError,
    ],
)
def test_every_domain_error_is_an_edgevae_error(cls: type) -> None:
    assert issubclass(cls, EdgeVAEError) and not issubclass(cls, RuntimeError)


@pytest.mark.parametrize(
    "exc, code",
    [
        (ModelError("bad model"), 2),
        (ValueError("bad input"), 2),
        (InputError("no file"), 2),
        (SelftestFailed("report"), 1),
    ],
)
def test_domain_errors_become_one_line(exc: Exception, code: int, capsys: pytest.CaptureFixture[str]) -> None:
    def body() -> int:
        raise exc

    assert run_cli(body, "prog") == code
    out, err = capsys.readouterr()
    text = out + err
    assert str(exc) in text and len(text.strip().splitlines()) == 1
    with pytest.raises(type(exc)):
        run_cli(body, "prog", debug=True)


@pytest.mark.parametrize("exc", [RuntimeError("torch failed"), MemoryError(), KeyError("x"), OSError("disk")])
def test_other_errors_keep_their_traceback(exc: BaseException) -> None:
    def body() -> int:
        raise exc

    with pytest.raises(type(exc)):
        run_cli(body, "prog")


def test_runtime_cli_domain_error_and_debug(tmp_path: Path) -> None:
    plain = run([*CLIS["runtime"], "sample", "--model", str(tmp_path / "none")], tmp_path)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert plain.stderr.strip() == f"edgevae: error: model folder {tmp_path / 'none'} does not exist"
    debug = run([*CLIS["runtime"], "sample", "--model", str(tmp_path / "none"), "--debug"], tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "ModelError" in debug.stderr


UNEXPECTED = """
import sys
import edgevae.{module} as m
def boom(*args, **kwargs):
    raise RuntimeError("an unexpected failure inside torch")
m.{function} = boom
from edgevae.{stage}.__main__ import main
sys.exit(main({argv!r}))
"""


@pytest.mark.parametrize(
    "module, function, stage, argv",
    [
        ("train.loop", "run_training", "train", ["--data-dir", "d", "--out", "o", "--device", "cpu"]),
        ("export.convert", "export_model", "export", ["--out", "o", "--device", "cpu"]),
    ],
)
def test_unexpected_errors_in_train_and_export_keep_their_traceback(
    tmp_path: Path, module: str, function: str, stage: str, argv: list[str]
) -> None:
    code = UNEXPECTED.format(module=module, function=function, stage=stage, argv=argv)
    result = run([sys.executable, "-c", code], tmp_path)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "RuntimeError: an unexpected failure inside torch" in result.stderr


def test_train_domain_error_is_one_line(tmp_path: Path) -> None:
    result = run([*CLIS["train"], "--data-dir", str(tmp_path / "nowhere"), "--out", "o", "--device", "cpu"], tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("python -m edgevae.train: error: data folder")


def test_cuda_without_cuda_is_a_device_error_in_every_stage(tmp_path: Path) -> None:
    import onnxruntime as ort
    import torch

    if torch.cuda.is_available() or "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA: the refusal cannot happen here")
    for stage, extra in (("train", ["--data-dir", str(tmp_path)]), ("export", []), ("runtime", ["sample"])):
        result = run(
            [
                *CLIS[stage],
                *extra,
                "--device",
                "cuda",
                "--out" if stage != "runtime" else "-o",
                str(tmp_path / ("o" if stage != "runtime" else "s.png")),
            ],
            tmp_path,
        )
        assert result.returncode == 2 and "Traceback" not in result.stderr, (stage, result.stderr)
        assert "device 'cuda' was asked for, but" in result.stderr and "use device 'cpu'" in result.stderr


@pytest.mark.parametrize("stage", sorted(CLIS))
def test_version_matches_the_package(stage: str, tmp_path: Path) -> None:
    result = run([*CLIS[stage], "--version"], tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == f"edgevae {__version__}"


def test_version_has_one_source() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "edgevae.runtime.__version__"}
    from importlib.metadata import version

    assert version("edgevae") == __version__
