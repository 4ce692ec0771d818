"""Shared fixtures: data folder, small trained and fresh checkpoints, exported model folders."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import onnxruntime as ort
import pytest

REPO = Path(__file__).resolve().parents[1]
# EDGEVAE_TEST_OPTIMIZATION=disable|basic|extended|all: every onnxruntime session this test process
# starts without an explicit level runs at that graph optimization level (fused and unfused kernels
# round differently: the suite's tolerances must hold at any level). Child processes are not affected.
OPTIMIZATION = os.environ.get("EDGEVAE_TEST_OPTIMIZATION")
if OPTIMIZATION:
    _plain_options = ort.SessionOptions
    _level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[OPTIMIZATION]

    def _options_at_level() -> Any:
        options = _plain_options()
        options.graph_optimization_level = _level
        return options

    ort.SessionOptions = _options_at_level
RELEASED_CHECKPOINTS = REPO / "artifacts" / "checkpoints"
LEGACY_CHECKPOINTS = REPO / "tests" / "fixtures" / "legacy_pt"  # format 1 (.pt), written by edgevae 0.1 code
SHIPPED_MODEL = REPO / "runtime" / "models" / "default"
HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()
NO_CUDA_REASON = (
    f"onnxruntime {ort.__version__} has no CUDAExecutionProvider here "
    f"(available: {ort.get_available_providers()}); run on a GPU machine with edgevae[gpu]"
)
DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not HAS_CUDA, reason=NO_CUDA_REASON)]),
]


# Optional packages the suite uses, and the extra that brings each: a test module that needs one calls
# need(...) before importing it, so a missing package skips the module with this reason instead of
# breaking collection (tests/test_optional.py checks that with each of them blocked).
EXTRAS = {
    "torch": "the train extra (pip install -e '.[train]')",
    "onnx": "the train extra (pip install -e '.[train]')",
    "hypothesis": "the dev extra (pip install -e '.[dev]')",
    "PIL": "Pillow: the images extra (pip install -e '.[images]')",
    "ray": "the ray extra (pip install -e '.[ray]')",
}


def need(*modules: str) -> None:
    """Skip the calling test module (or test, or fixture) unless every one of `modules` imports; the
    reason names the caller's file, the package and its extra."""
    caller = Path(sys._getframe(1).f_code.co_filename).name
    for name in modules:
        pytest.importorskip(name, reason=f"{caller} needs {name}, which is not installed: {EXTRAS[name]}")


def load_script(path: Path, name: str | None = None) -> ModuleType:
    """A script (bench/, docs/, web/: folders of scripts, not packages) loaded as a module."""
    spec = importlib.util.spec_from_file_location(name or f"script_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_bench(name: str) -> ModuleType:
    """bench/NAME.py as a module."""
    return load_script(REPO / "bench" / f"{name}.py", f"bench_{name}")


def assert_same_bytes(got: bytes, want: bytes, message: str) -> None:
    """got == want, compared by sha256: pytest's diff of two different large byte strings runs for hours."""
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(want).hexdigest(), message


def find_data_dir() -> Path | None:
    env = os.environ.get("EDGEVAE_DATA_DIR")
    for candidate in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data" / "mnist"]:
        if (candidate / "MNIST" / "raw").is_dir() or candidate.is_dir() and any(candidate.glob("*-ubyte*")):
            return candidate
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    found = find_data_dir()
    if found is None:
        pytest.skip("MNIST not found: set EDGEVAE_DATA_DIR or put it at ../shared/data/mnist")
    return found


@pytest.fixture(scope="session")
def fresh_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly initialized (untrained) encoder/decoder pair with the default config."""
    need("torch")
    from edgevae.train import checkpoint
    from edgevae.train.config import TrainConfig
    from edgevae.train.model import build_models

    folder = tmp_path_factory.mktemp("fresh_ckpt")
    config = TrainConfig()
    encoder, decoder = build_models(config.model, seed=123)
    checkpoint.save_module(folder / checkpoint.ENCODER_FILE, "encoder", encoder, config, 0)
    checkpoint.save_module(folder / checkpoint.DECODER_FILE, "decoder", decoder, config, 0)
    return folder


def export_to(checkpoints: Path, out: Path) -> Path:
    need("torch", "onnx")
    from edgevae.export.convert import export_model

    export_model(checkpoints, out)
    return out


@pytest.fixture(scope="session")
def released_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed checkpoints exported into a temporary folder."""
    return export_to(RELEASED_CHECKPOINTS, tmp_path_factory.mktemp("released_onnx"))


@pytest.fixture(scope="session")
def fresh_model(fresh_checkpoints: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_to(fresh_checkpoints, tmp_path_factory.mktemp("fresh_onnx"))


@pytest.fixture(params=["released", "fresh"])
def model_case(request: pytest.FixtureRequest) -> tuple[Path, Path]:
    """(checkpoint folder, exported model folder) for the released and a fresh model."""
    if request.param == "released":
        return RELEASED_CHECKPOINTS, request.getfixturevalue("released_model")
    return request.getfixturevalue("fresh_checkpoints"), request.getfixturevalue("fresh_model")


@pytest.fixture(scope="session")
def real_digits() -> object:
    """256 real MNIST test digits, uint8 (256, 784), as shipped with the exporter (read without torch)."""
    import numpy as np

    return np.load(REPO / "export" / "fixtures" / "mnist_test_256.npy", allow_pickle=False)


REAL_SESSION = ort.InferenceSession
CPU_PROVIDER, CUDA_PROVIDER = "CPUExecutionProvider", "CUDAExecutionProvider"


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str]]]:
    """onnxruntime lists CUDA; every session start is recorded as (sha256 of the graph, providers asked)."""
    started: list[tuple[str, list[str]]] = []

    def session(blob: bytes, sess_options: Any = None, providers: Any = None, **kw: Any) -> Any:
        names = [p[0] if isinstance(p, tuple) else p for p in providers or []]
        started.append((hashlib.sha256(blob).hexdigest(), names))
        return REAL_SESSION(blob, sess_options=sess_options, providers=[CPU_PROVIDER], **kw)

    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA_PROVIDER, CPU_PROVIDER])
    monkeypatch.setattr(ort, "InferenceSession", session)
    return started
