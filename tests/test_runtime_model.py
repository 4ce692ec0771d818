"""Finding, verifying and starting a model: corrupt files, devices, providers, defaults."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnxruntime as ort
import pytest

from edgevae.runtime import VAE, DeviceError, ModelError, contract
from edgevae.runtime.model import MODEL_DIR_ENV, MODEL_NAME_ENV, find_model_dir, list_packaged_models, seal_manifest

from conftest import HAS_CUDA, SHIPPED_MODEL


@pytest.fixture
def model_copy(released_model: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "model"
    shutil.copytree(released_model, dest)
    return dest


def test_packaged_default_model_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MODEL_DIR_ENV, raising=False)
    monkeypatch.delenv(MODEL_NAME_ENV, raising=False)
    vae = VAE(device="cpu")
    assert vae.files.folder.resolve() == SHIPPED_MODEL.resolve()
    assert vae.sample(4, seed=0).shape == (4, 28, 28)


def test_argument_then_environment_then_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(MODEL_NAME_ENV, raising=False)
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path / "from_env"))
    assert find_model_dir(tmp_path / "arg") == tmp_path / "arg"
    assert find_model_dir() == tmp_path / "from_env"
    monkeypatch.delenv(MODEL_DIR_ENV)
    assert find_model_dir().resolve() == SHIPPED_MODEL.resolve()


def test_packaged_models_are_selected_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MODEL_DIR_ENV, raising=False)
    monkeypatch.delenv(MODEL_NAME_ENV, raising=False)
    assert list_packaged_models() == ["default", "large"]
    large = VAE(model="large", device="cpu")
    assert large.files.folder.name == "large"
    assert (large.files.config["block"], large.files.config["layers"], large.latent) == ("gated", 2, 40)
    assert large.sample(3, seed=0).shape == (3, 28, 28)
    monkeypatch.setenv(MODEL_NAME_ENV, "large")
    assert find_model_dir().name == "large"
    monkeypatch.setenv(MODEL_DIR_ENV, "/elsewhere")  # a name, given or from $EDGEVAE_MODEL, wins over the folder env
    assert find_model_dir().name == "large" and find_model_dir(name="default").name == "default"


def test_unknown_model_name_lists_the_shipped_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelError, match="no packaged model named 'huge'; this edgevae ships default, large"):
        VAE(model="huge", device="cpu")
    with pytest.raises(ValueError, match="not both"):
        VAE(SHIPPED_MODEL, model="large", device="cpu")


def test_environment_variable_is_used(model_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MODEL_DIR_ENV, str(model_copy))
    assert VAE(device="cpu").files.folder == model_copy


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=f"model folder {tmp_path / 'none'} does not exist"):
        VAE(tmp_path / "none")


def test_missing_manifest(model_copy: Path) -> None:
    (model_copy / contract.MANIFEST_FILE).unlink()
    with pytest.raises(ModelError, match=f"model folder {model_copy} has no manifest.json"):
        VAE(model_copy)


def test_corrupt_manifest(model_copy: Path) -> None:
    (model_copy / contract.MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ModelError, match=f"corrupt manifest {model_copy / 'manifest.json'}"):
        VAE(model_copy)


@pytest.mark.parametrize("graph", ["encoder.onnx", "decoder.onnx"])
def test_missing_graph(model_copy: Path, graph: str) -> None:
    (model_copy / graph).unlink()
    with pytest.raises(ModelError, match=f"model file {model_copy / graph} is missing"):
        VAE(model_copy)


@pytest.mark.parametrize("graph", ["encoder.onnx", "decoder.onnx"])
def test_truncated_graph(model_copy: Path, graph: str) -> None:
    path = model_copy / graph
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(
        ModelError, match=rf"model file {path} is corrupt \(truncated\): [\d,]+ bytes; manifest expects"
    ):
        VAE(model_copy)


def test_tampered_graph(model_copy: Path) -> None:
    path = model_copy / "decoder.onnx"
    blob = bytearray(path.read_bytes())
    blob[-100] ^= 0x01  # one bit in a weight: onnxruntime would load this without complaint
    path.write_bytes(bytes(blob))
    with pytest.raises(ModelError, match=rf"model file {path} is corrupt \(modified\)"):
        VAE(model_copy)


def test_manifest_from_another_contract(model_copy: Path) -> None:
    manifest = json.loads((model_copy / contract.MANIFEST_FILE).read_text())
    manifest["files"]["encoder.onnx"]["inputs"][0]["name"] = "image"
    (model_copy / contract.MANIFEST_FILE).write_bytes(seal_manifest(manifest))
    with pytest.raises(ModelError, match="differs from this runtime's contract"):
        VAE(model_copy)


def test_graph_onnxruntime_cannot_parse_is_reported_by_name(model_copy: Path) -> None:
    path = model_copy / "encoder.onnx"
    path.write_bytes(b"\x00garbage" * 100)
    manifest = json.loads((model_copy / contract.MANIFEST_FILE).read_text())
    import hashlib

    manifest["files"]["encoder.onnx"].update(sha256=hashlib.sha256(path.read_bytes()).hexdigest(), size=800)
    (model_copy / contract.MANIFEST_FILE).write_bytes(seal_manifest(manifest))
    with pytest.raises(ModelError, match="onnxruntime could not load encoder.onnx"):
        VAE(model_copy)


@pytest.mark.skipif(HAS_CUDA, reason="this machine has the CUDA provider; the error cannot happen here")
def test_cuda_without_the_provider_is_a_clear_error(released_model: Path) -> None:
    with pytest.raises(
        DeviceError, match=r"device 'cuda' was asked for, but onnxruntime .* has no CUDAExecutionProvider"
    ):
        VAE(released_model, device="cuda")


@pytest.mark.filterwarnings("ignore:Specified provider .CUDAExecutionProvider. is not in available")
def test_cuda_listed_but_not_loading_is_caught(released_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # onnxruntime only warns when a requested provider fails to load; the runtime re-checks.
    if HAS_CUDA:
        pytest.skip("CUDA really loads on this machine; the failure cannot be simulated here")
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(DeviceError, match="listed by onnxruntime but did not load"):
        VAE(released_model, device="cuda")
    auto = VAE(released_model, device="auto")  # auto falls back to the CPU and says so
    assert auto.device == "cpu" and auto.providers == ["CPUExecutionProvider"]


def test_auto_reports_what_it_resolved_to(released_model: Path) -> None:
    vae = VAE(released_model, device="auto")
    assert vae.device == ("cuda" if HAS_CUDA else "cpu")
    assert vae.providers[0] == ("CUDAExecutionProvider" if HAS_CUDA else "CPUExecutionProvider")
    assert "device=" in repr(vae)


def test_session_options_are_applied(released_model: Path) -> None:
    vae = VAE(released_model, device="cpu", threads=1, optimization_level="basic")
    assert vae.encoder.get_session_options().intra_op_num_threads == 1
    assert vae.encoder.get_session_options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC


def test_metadata_is_read(released_model: Path) -> None:
    meta = VAE(released_model, device="cpu").metadata
    assert meta[contract.META_GRAPH] == "encoder" and json.loads(meta[contract.META_CONFIG])["latent"] == 20


class FakeArg:
    def __init__(self, name: str, type: str, shape: list[object]) -> None:
        self.name, self.type, self.shape = name, type, shape


class FakeSession:
    """Only what check_session_signature reads: the inputs and outputs a real session reports."""

    def __init__(self, inputs: list[FakeArg], outputs: list[FakeArg]) -> None:
        self._in, self._out = inputs, outputs

    def get_inputs(self) -> list[FakeArg]:
        return self._in

    def get_outputs(self) -> list[FakeArg]:
        return self._out


def decoder_outputs(batch: int | None) -> list[FakeArg]:
    axis = "batch" if batch is None else batch
    return [FakeArg("mean", "tensor(float)", [axis, 784]), FakeArg("logits", "tensor(float)", [axis, 784])]


@pytest.mark.parametrize(
    "z, batch, problem",
    [
        (FakeArg("z", "tensor(float)", ["batch", 20]), None, None),
        (FakeArg("z", "tensor(float)", [1, 20]), 1, None),
        (FakeArg("z", "tensor(float16)", ["batch", 20]), None, "'float16'"),
        (FakeArg("z", "tensor(double)", ["batch", 20]), None, "'tensor(double)'"),
        (FakeArg("z", "tensor(float)", ["batch", 20, 1]), None, "[None, 20, 1]"),
        (FakeArg("z", "tensor(float)", ["batch", 21]), None, "[None, 21]"),
        (FakeArg("z", "tensor(float)", [4, 20]), None, "[4, 20]"),
        (FakeArg("z", "tensor(float)", ["batch", 20]), 1, "[1, 20]"),
    ],
)
def test_session_signature_is_checked_against_the_contract(z: FakeArg, batch: int | None, problem: str | None) -> None:
    from edgevae.runtime.model import check_session_signature

    session = FakeSession([z], decoder_outputs(batch if problem is None else None))
    sizes = {contract.PIXELS: 784, contract.LATENT: 20}
    if problem is None:
        check_session_signature(session, contract.DECODER, sizes, batch, "decoder.onnx")  # type: ignore[arg-type]
        return
    with pytest.raises(ModelError, match="do not match this runtime's contract") as err:
        check_session_signature(session, contract.DECODER, sizes, batch, "decoder.onnx")  # type: ignore[arg-type]
    assert problem in str(err.value)
