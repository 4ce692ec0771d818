"""The exported graphs: contract, checks, metadata, manifest, determinism, validation, CLI."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from conftest import need

need("torch", "onnx")

import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from edgevae.export.convert import ExportError, build_graphs, check_graph, trace_pair
from edgevae.export.validate import ParityError, ShapeError, max_diff, measure_parity, validate_parity
from edgevae.runtime import contract
from edgevae.train import checkpoint

from conftest import RELEASED_CHECKPOINTS, SHIPPED_MODEL, assert_same_bytes


def session(folder: Path, graph: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(folder / contract.GRAPHS[graph].file), providers=["CPUExecutionProvider"])


def test_both_graphs_load_with_contract_signatures(released_model: Path) -> None:
    for graph, spec in contract.GRAPHS.items():
        s = session(released_model, graph)
        assert [i.name for i in s.get_inputs()] == spec.input_names
        assert [o.name for o in s.get_outputs()] == spec.output_names
        assert all(i.type == "tensor(float)" for i in s.get_inputs() + s.get_outputs())
        assert all(i.shape[0] == contract.BATCH for i in s.get_inputs() + s.get_outputs())


def test_no_random_operators_and_self_contained(released_model: Path) -> None:
    for spec in contract.GRAPHS.values():
        model = onnx.load(released_model / spec.file)
        assert not {n.op_type for n in model.graph.node} & contract.RANDOM_OPS
        assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
        onnx.checker.check_model(model, full_check=True)
        assert model.ir_version <= contract.MAX_IR_VERSION
        assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [contract.OPSET]
    manifest = json.loads((released_model / contract.MANIFEST_FILE).read_text())
    listed = sorted([contract.MANIFEST_FILE, *manifest["files"]])
    assert sorted(p.name for p in released_model.iterdir() if p.name != ".export.lock") == listed
    assert {
        contract.GOLDEN_DATA_FILE,
        contract.GOLDEN_SPEC_FILE,
        contract.SCORE_STATS_FILE,
        contract.REQUIRED_OPERATORS_FILE,
    } <= set(manifest["files"])
    assert {v.file(g) for v in contract.VARIANTS.values() for g in contract.GRAPHS} <= set(manifest["files"])


@pytest.mark.parametrize("batch", [1, 7, 64, 4096, 10_000])
def test_dynamic_batch(released_model: Path, batch: int) -> None:
    rng = np.random.default_rng(batch)
    x = rng.random((batch, 784), dtype=np.float32)
    eps = rng.standard_normal((batch, 20), dtype=np.float32)
    mu, logvar, z = session(released_model, "encoder").run(None, {"x": x, "eps": eps})
    assert mu.shape == logvar.shape == z.shape == (batch, 20)
    np.testing.assert_allclose(z, mu + np.exp(0.5 * logvar) * eps, rtol=1e-6, atol=1e-6)
    mean, logits = session(released_model, "decoder").run(None, {"z": z})
    assert mean.shape == logits.shape == (batch, 784)
    assert mean.min() >= 0 and mean.max() <= 1


def test_metadata(released_model: Path) -> None:
    import torch

    for graph in contract.GRAPHS:
        meta = session(released_model, graph).get_modelmeta().custom_metadata_map
        assert meta[contract.META_GRAPH] == graph
        assert json.loads(meta[contract.META_CONFIG]) == {
            "beta": 1.0,
            "block": "plain",
            "hidden": 200,
            "layers": 1,
            "image_shape": [28, 28],
            "latent": 20,
            "likelihood": "bernoulli",
        }
        source = RELEASED_CHECKPOINTS / f"{graph}.safetensors"  # the file's sha256: its line in the record
        assert meta[contract.META_CHECKPOINT_SHA256] == hashlib.sha256(source.read_bytes()).hexdigest()
        record = (RELEASED_CHECKPOINTS / checkpoint.RECORD_FILE).read_text()
        assert f"{meta[contract.META_CHECKPOINT_SHA256]}  {source.name}\n" in record
        versions = json.loads(meta[contract.META_VERSIONS])
        assert versions["torch"] == torch.__version__ and versions["onnx"] == onnx.__version__
        assert meta[contract.META_OPSET] == str(contract.OPSET)


def test_manifest_describes_each_file(released_model: Path) -> None:
    manifest = json.loads((released_model / contract.MANIFEST_FILE).read_text())
    assert manifest["format"] == contract.MANIFEST_FORMAT and manifest["opset"] == contract.OPSET
    assert manifest["min_onnxruntime"] == contract.MIN_ONNXRUNTIME
    for spec in contract.GRAPHS.values():
        entry = manifest["files"][spec.file]
        blob = (released_model / spec.file).read_bytes()
        assert entry["sha256"] == hashlib.sha256(blob).hexdigest() and entry["size"] == len(blob)
        assert [t["name"] for t in entry["inputs"]] == spec.input_names
        assert [t["name"] for t in entry["outputs"]] == spec.output_names
    assert manifest["files"]["encoder.onnx"]["inputs"][0]["shape"] == ["batch", 784]
    assert manifest["files"]["decoder.onnx"]["inputs"][0]["shape"] == ["batch", 20]
    parity = manifest["parity"]["cpu"]
    assert parity["tolerance"] == contract.TOLERANCE["cpu"] and parity["batch_sizes"] == [1, 7, 64, 4096]
    assert 0 <= max(parity["max_abs_diff"].values()) <= contract.TOLERANCE["cpu"]


def test_reexport_is_byte_identical(tmp_path: Path) -> None:
    _, first = build_graphs(RELEASED_CHECKPOINTS)
    _, second = build_graphs(RELEASED_CHECKPOINTS)
    assert first == second


@pytest.mark.parametrize("name", ["default", "large"])
def test_shipped_graphs_are_what_export_produces(name: str) -> None:
    checkpoints = RELEASED_CHECKPOINTS.parent / ("checkpoints" if name == "default" else f"checkpoints-{name}")
    shipped = SHIPPED_MODEL.parent / name
    _, blobs = build_graphs(checkpoints)
    manifest = json.loads((shipped / contract.MANIFEST_FILE).read_text())
    for graph, spec in contract.GRAPHS.items():
        assert_same_bytes(
            (shipped / spec.file).read_bytes(), blobs[graph], f"{name} {spec.file} drifted: make ship MODEL={name}"
        )
        assert manifest["files"][spec.file]["sha256"] == hashlib.sha256(blobs[graph]).hexdigest()


def perturb(blob: bytes, amount: float) -> bytes:
    """Shift every value of the graph's last initializer (an output layer's bias) by `amount`."""
    model = onnx.load_from_string(blob)
    init = model.graph.initializer[-1]
    array = numpy_helper.to_array(init) + np.float32(amount)
    init.CopyFrom(numpy_helper.from_array(array, init.name))
    return model.SerializeToString()


@pytest.mark.parametrize("graph", ["encoder", "decoder"])
def test_validation_catches_a_perturbed_graph(graph: str) -> None:
    _, blobs = build_graphs(RELEASED_CHECKPOINTS)
    encoder, decoder = checkpoint.load_pair(RELEASED_CHECKPOINTS)
    blobs[graph] = perturb(blobs[graph], 1e-3)
    rows = measure_parity(encoder, decoder, blobs, batch_sizes=(7,))
    with pytest.raises(ParityError) as err:
        validate_parity(rows)
    assert err.value.max_abs_diff > contract.TOLERANCE["cpu"]
    assert "differs from PyTorch by max |diff| =" in str(err.value) and "tolerance 5e-05" in str(err.value)


SIZES = {contract.PIXELS: 784, contract.LATENT: 20}


def test_check_graph_rejects_random_operators() -> None:
    _, blobs = build_graphs(RELEASED_CHECKPOINTS)
    model = onnx.load_from_string(blobs["encoder"])
    model.graph.node.append(onnx.helper.make_node("RandomNormalLike", ["mu"], ["noise"]))
    with pytest.raises(ExportError, match=r"random operators \['RandomNormalLike'\]"):
        check_graph(model, contract.ENCODER, "encoder", SIZES)


def break_name(model: onnx.ModelProto) -> None:
    model.graph.output[0].name = "pixels"


def break_dtype(model: onnx.ModelProto) -> None:
    model.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.DOUBLE


def break_rank(model: onnx.ModelProto) -> None:
    model.graph.output[1].type.tensor_type.shape.dim.add().dim_value = 1


def break_fixed_axis(model: onnx.ModelProto) -> None:
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 21


def fix_batch_axis(model: onnx.ModelProto) -> None:
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 4


@pytest.mark.parametrize(
    "damage, found",
    [
        (break_name, "'pixels'"),
        (break_dtype, "elem_type 11"),
        (break_rank, "[None, 784, 1]"),
        (break_fixed_axis, "[None, 21]"),
        (fix_batch_axis, "[4, 20]"),
    ],
)
def test_check_graph_compares_names_dtypes_ranks_and_axes_with_the_contract(damage: Any, found: str) -> None:
    _, blobs = build_graphs(RELEASED_CHECKPOINTS)
    model = onnx.load_from_string(blobs["decoder"])
    damage(model)
    with pytest.raises(ExportError, match="differ from the contract") as err:
        check_graph(model, contract.DECODER, "decoder", SIZES)
    assert found in str(err.value)


def test_validation_reports_the_worst_of_all_failures() -> None:
    rows = [
        {"inputs": "random", "batch": 1, "max_abs_diff": {"encoder.mu": 2e-4, "decoder.mean": 1e-6}},
        {"inputs": "real", "batch": 7, "max_abs_diff": {"encoder.mu": 3e-4, "decoder.mean": 5e-4}},
        {"inputs": "real", "batch": 64, "max_abs_diff": {"encoder.mu": 1e-6, "decoder.mean": 1e-6}},
    ]
    with pytest.raises(ParityError) as err:
        validate_parity(rows)
    assert (err.value.graph, err.value.output, err.value.batch, err.value.max_abs_diff) == ("decoder", "mean", 7, 5e-4)
    assert len(err.value.failures) == 3 and "2 other failures" in str(err.value)
    rows[0]["max_abs_diff"]["encoder.z"] = float("nan")
    with pytest.raises(ParityError) as err:
        validate_parity(rows)
    assert err.value.output == "z" and len(err.value.failures) == 4


def test_validation_allows_twice_the_float32_rounding_on_top_of_the_tolerance() -> None:
    row = {"inputs": "random", "batch": 7, "max_abs_diff": {"encoder.z": 3e-4}}
    row["float32_rounding"] = {"encoder.z": 1.3e-4}
    assert validate_parity([row])["float32_rounding"] == {"encoder.z": 1.3e-4}
    row["float32_rounding"]["encoder.z"] = 1.2e-4  # 5e-5 + 2 * 1.2e-4 = 2.9e-4 < 3e-4
    with pytest.raises(ParityError, match=r"tolerance 5e-05 \+ 2 x float32 rounding 1.2e-04") as err:
        validate_parity([row])
    assert (err.value.output, err.value.rounding) == ("z", 1.2e-4)
    row["max_abs_diff"]["encoder.z"] = row["float32_rounding"]["encoder.z"] = float("inf")  # float32 overflowed
    with pytest.raises(ParityError):  # no allowance then: the gate fails closed
        validate_parity([row])


def wide_posterior_pair(shift: float) -> tuple[checkpoint.CheckpointPair, dict[str, bytes]]:
    """The released pair with every log-variance raised by `shift`: sigma e^(shift / 2) everywhere,
    as a VampPrior encoder's is off the data, so z and the decoder's input reach hundreds."""
    pair = checkpoint.load_checkpoints(RELEASED_CHECKPOINTS)
    with torch.no_grad():
        pair.encoder.logvar.bias += shift
    return pair, trace_pair(pair.encoder, pair.decoder, pair.sha256, contract.OPSET)


def test_validation_tells_float32_rounding_from_a_wrong_graph() -> None:
    pair, blobs = wide_posterior_pair(12.0)  # sigma 403
    rows = measure_parity(pair.encoder, pair.decoder, blobs, batch_sizes=(7, 64))
    raw = max(r["max_abs_diff"]["encoder.z"] for r in rows)
    assert raw > contract.TOLERANCE["cpu"]  # an absolute gate alone would refuse these correct graphs
    summary = validate_parity(rows)
    assert summary["float32_rounding"]["encoder.z"] > contract.TOLERANCE["cpu"]
    blobs["encoder"] = perturb(blobs["encoder"], 1e-3)  # still caught, far beyond the rounding
    with pytest.raises(ParityError):
        validate_parity(measure_parity(pair.encoder, pair.decoder, blobs, batch_sizes=(7,)))


def test_a_shape_mismatch_is_a_shape_error_not_a_broadcast() -> None:
    with pytest.raises(ShapeError, match=r"output 'mean': ONNX Runtime gave shape \(1, 784\), PyTorch \(7, 784\)"):
        max_diff(np.zeros((1, 784), np.float32), np.zeros((7, 784), np.float32), "mean")


def export_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgevae.export", *args], capture_output=True, text=True, timeout=300)


def test_cli_exports_and_says_where(tmp_path: Path) -> None:
    result = export_cli("--checkpoints", str(RELEASED_CHECKPOINTS), "--out", str(tmp_path), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "device: cpu -> validating on cpu" in result.stdout
    for name in ("encoder.onnx", "decoder.onnx", "manifest.json", "samples.png"):
        assert f"wrote {tmp_path / name}" in result.stdout


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_cli_bad_checkpoint_writes_nothing(tmp_path: Path, damage: str) -> None:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    for name in (checkpoint.ENCODER_FILE, checkpoint.RECORD_FILE):
        (ckpt / name).write_bytes((RELEASED_CHECKPOINTS / name).read_bytes())
    if damage == "corrupt":
        decoder = (RELEASED_CHECKPOINTS / checkpoint.DECODER_FILE).read_bytes()
        (ckpt / checkpoint.DECODER_FILE).write_bytes(decoder[:5000])
    result = export_cli("--checkpoints", str(ckpt), "--out", str(tmp_path / "out"), "--device", "cpu")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    expected = "corrupt checkpoint" if damage == "corrupt" else "not found"
    assert "error: " in result.stderr and expected in result.stderr and checkpoint.DECODER_FILE in result.stderr
    assert not (tmp_path / "out").exists()


def test_cli_help() -> None:
    result = export_cli("--help")
    assert result.returncode == 0 and "--checkpoints" in result.stdout and f"default: {contract.OPSET}" in result.stdout


def test_cuda_validation_refused_without_cuda(tmp_path: Path) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has the CUDA provider; the refusal cannot happen here")
    result = export_cli("--checkpoints", str(RELEASED_CHECKPOINTS), "--out", str(tmp_path), "--device", "cuda")
    assert result.returncode == 2 and "has no CUDAExecutionProvider" in result.stderr


def test_export_reads_each_checkpoint_once_and_records_the_bytes_it_traced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill after a commit's record but before its decoder's rename leaves decoder.safetensors one
    epoch behind and the new decoder pending: export must trace the pending file and record *its*
    sha256 (its line in the record), reading each file once."""
    from edgevae.export.convert import export_model
    from edgevae.train.config import TrainConfig
    from edgevae.train.model import build_models

    ckpt = tmp_path / "ckpt"
    config = TrainConfig()
    old_enc, old_dec = build_models(config.model, seed=1)
    new_enc, new_dec = build_models(config.model, seed=2)
    checkpoint.save_pair(ckpt, old_enc, old_dec, config, 1, "run")
    old_decoder = (ckpt / checkpoint.DECODER_FILE).read_bytes()
    checkpoint.save_pair(ckpt, new_enc, new_dec, config, 2, "run")
    pending = checkpoint.pending_path(ckpt / checkpoint.DECODER_FILE)
    (ckpt / checkpoint.DECODER_FILE).rename(pending)  # as if the kill came before this rename
    (ckpt / checkpoint.DECODER_FILE).write_bytes(old_decoder)
    reads: list[str] = []
    real_read = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda p: (reads.append(p.name), real_read(p))[1])

    export_model(ckpt, tmp_path / "out")

    monkeypatch.setattr(Path, "read_bytes", real_read)
    read = sorted(n for n in reads if "safetensors" in n)
    assert read == sorted([checkpoint.ENCODER_FILE, checkpoint.DECODER_FILE, pending.name])
    manifest = json.loads((tmp_path / "out" / contract.MANIFEST_FILE).read_text())
    want = {
        "encoder": hashlib.sha256((ckpt / checkpoint.ENCODER_FILE).read_bytes()).hexdigest(),
        "decoder": hashlib.sha256(pending.read_bytes()).hexdigest(),
    }
    assert checkpoint.read_record(ckpt) == {
        checkpoint.ENCODER_FILE: want["encoder"],
        checkpoint.DECODER_FILE: want["decoder"],
    }
    for graph, spec in contract.GRAPHS.items():
        assert manifest["files"][spec.file]["source_checkpoint_sha256"] == want[graph]
        meta = {p.key: p.value for p in onnx.load(tmp_path / "out" / spec.file).metadata_props}
        assert meta[contract.META_CHECKPOINT_SHA256] == want[graph]
