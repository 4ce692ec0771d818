"""Edge variants: each loads by name, stays within its contract budget against fp32, is listed in
the manifest with a verified sha256, and is what export produces; .ort runs; b1 is mobile-ready."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from conftest import need

need("torch", "onnx")

from edgevae.export.convert import build_graphs
from edgevae.export.variants import VariantError, build_variants, check_mobile_usability, check_variant, measure_variant
from edgevae.runtime import VAE, ModelError, contract
from edgevae.runtime.cli import main
from edgevae.runtime.model import load_model_files
from edgevae.runtime.selftest import run_selftest

from conftest import DEVICES, RELEASED_CHECKPOINTS, SHIPPED_MODEL, assert_same_bytes

NAMES = list(contract.VARIANTS)


@pytest.fixture(scope="module")
def fp32() -> VAE:
    return VAE(SHIPPED_MODEL, device="cpu")


@pytest.mark.parametrize("name", NAMES)
def test_variant_is_within_its_budget_against_fp32(name: str, fp32: VAE, real_digits: np.ndarray) -> None:
    figures = measure_variant(fp32, VAE(SHIPPED_MODEL, device="cpu", variant=name), real_digits)
    check_variant(name, figures)  # raises VariantError over budget
    change = figures["log_likelihood_change"]
    assert change["images"] == contract.VARIANT_NLL_EVAL["images"] and change["k"] == contract.VARIANT_NLL_EVAL["k"]
    recorded = json.loads((SHIPPED_MODEL / contract.MANIFEST_FILE).read_text())["variants"][name]
    assert recorded["log_likelihood_change"]["nats"] == pytest.approx(change["nats"], abs=1e-6)


def test_a_variant_over_budget_is_refused(fp32: VAE, real_digits: np.ndarray) -> None:
    figures = measure_variant(fp32, VAE(SHIPPED_MODEL, device="cpu", variant="int8"), real_digits)
    with pytest.raises(VariantError, match=r"variant 'b1' against fp32: .*max \|diff\| .* > budget 5e-05"):
        check_variant("b1", figures)  # int8's figures are far over the exact build's budget


def test_int8_is_small_and_cheap_in_nats() -> None:
    variants = json.loads((SHIPPED_MODEL / contract.MANIFEST_FILE).read_text())["variants"]
    assert variants["int8"]["size_vs_fp32"] <= 0.27
    assert abs(variants["int8"]["log_likelihood_change"]["nats"]) <= contract.VARIANTS["int8"].nll_budget
    assert variants["fp16"]["size_vs_fp32"] <= 0.51


def test_large_model_fits_the_edge_size_budget() -> None:
    """The large preset's promise: fp32 graphs under 5 MB, int8 under 1.5 MB, every variant in budget."""
    variants = json.loads((SHIPPED_MODEL.parent / "large" / contract.MANIFEST_FILE).read_text())["variants"]
    assert variants["fp32"]["size"] < 5_000_000 and variants["int8"]["size"] < 1_500_000
    for name, v in variants.items():
        assert abs(v["log_likelihood_change"]["nats"]) <= v["budget"]["log_likelihood_change_nats"], name


@pytest.mark.parametrize("model", ["default", "large"])
def test_int8_keeps_the_encoders_later_layers_in_float16(model: str) -> None:
    import onnx

    encoder = onnx.load(SHIPPED_MODEL.parent / model / contract.VARIANTS["int8"].file("encoder"))
    ops = [n.op_type for n in encoder.graph.node]
    halves = [i for i in encoder.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    first_layer = 2 if model == "large" else 1  # gated: linear and gate
    assert ops.count("MatMulInteger") == first_layer  # only the first layer is int8 ...
    cast_from_half = [n for n in encoder.graph.node if n.op_type == "Cast" and n.input[0] in {i.name for i in halves}]
    assert len(halves) == len(cast_from_half) >= 2  # ... the rest (at least mu and logvar) float16


@pytest.mark.parametrize("name", NAMES)
def test_variant_files_are_listed_with_a_verified_sha256(name: str, tmp_path: Path) -> None:
    manifest = json.loads((SHIPPED_MODEL / contract.MANIFEST_FILE).read_text())
    files = manifest["variants"][name]["files"]
    for graph, file in files.items():
        entry = manifest["files"][file]
        assert entry["variant"] == name and entry["graph"] == graph
        assert entry["sha256"] == hashlib.sha256((SHIPPED_MODEL / file).read_bytes()).hexdigest()
    assert load_model_files(SHIPPED_MODEL, name).variant == name
    model = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL, model)
    target = model / files["decoder"]
    blob = bytearray(target.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    target.write_bytes(bytes(blob))
    with pytest.raises(ModelError, match=f"{files['decoder']} is corrupt"):
        VAE(model, variant=name)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", NAMES)
def test_every_variant_passes_its_selftest(name: str, device: str) -> None:
    report = run_selftest(VAE(SHIPPED_MODEL, device=device, variant=name))
    assert report.passed and report.variant == name, [c.line() for c in report.checks]


@pytest.mark.parametrize("batch", [1, 3, 17])
def test_fixed_batch_variant_serves_any_batch(batch: int, fp32: VAE, real_digits: np.ndarray) -> None:
    b1 = VAE(SHIPPED_MODEL, device="cpu", variant="b1")
    assert b1.fixed_batch == 1 and b1.chunk_size == 1
    np.testing.assert_allclose(b1.sample(batch, seed=2), fp32.sample(batch, seed=2), atol=1e-5, rtol=0)
    np.testing.assert_allclose(b1.reconstruct(real_digits[:batch]), fp32.reconstruct(real_digits[:batch]), atol=1e-5)
    np.testing.assert_allclose(
        b1.log_likelihood(real_digits[:batch], k=5, seed=1),
        fp32.log_likelihood(real_digits[:batch], k=5, seed=1),
        atol=1e-3,
    )


def test_ort_format_files_run_in_onnxruntime() -> None:
    z = np.random.default_rng(0).standard_normal((9, 20), dtype=np.float32)
    ref = ort.InferenceSession(str(SHIPPED_MODEL / "decoder.onnx"), providers=["CPUExecutionProvider"])
    for graph in contract.GRAPHS:
        path = SHIPPED_MODEL / contract.VARIANTS["ort"].file(graph)
        assert path.read_bytes()[4:8] == b"ORTM"  # the ORT format's flatbuffer identifier
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [i.name for i in sess.get_inputs()] == contract.GRAPHS[graph].input_names
    sess = ort.InferenceSession(str(SHIPPED_MODEL / "decoder.ort"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"z": z})[0], ref.run(None, {"z": z})[0], atol=1e-6)


def test_required_operators_config_covers_the_ort_graphs() -> None:
    lines = [
        line
        for line in (SHIPPED_MODEL / contract.REQUIRED_OPERATORS_FILE).read_text().splitlines()
        if line and not line.startswith("#")
    ]
    ops = {op for line in lines for op in line.split(";")[2].split(",")}
    assert all(len(line.split(";")) == 3 for line in lines)
    assert {"Gemm", "Sigmoid", "Exp", "Mul", "Add"} <= ops | {"Gemm"} and ("FusedGemm" in ops or "Relu" in ops)


def test_fixed_shape_graphs_pass_the_mobile_usability_check() -> None:
    b1 = {g: (SHIPPED_MODEL / contract.VARIANTS["b1"].file(g)).read_bytes() for g in contract.GRAPHS}
    report = check_mobile_usability(b1)
    for graph, eps in report.items():
        for ep, r in eps.items():
            assert r["supported_nodes"] == r["nodes"] > 0 and r["partitions"] == 1, (graph, ep, r)
    dynamic = {g: (SHIPPED_MODEL / contract.GRAPHS[g].file).read_bytes() for g in contract.GRAPHS}
    with pytest.raises(VariantError, match="not fully usable"):
        check_mobile_usability(dynamic)  # the dynamic batch axis keeps NNAPI and CoreML away


# int8 quantization and .ort conversion are onnxruntime's: the bytes depend on its release
DRIFT = f"onnxruntime {ort.__version__} here; the shipped models were exported under the Makefile's EXPORT_ORT"


def test_shipped_variants_are_what_export_produces() -> None:
    """Byte for byte, except .ort: onnxruntime writes its kernel-type table from a hash map, so the
    order of that table (and only it) changes between conversions; those are compared by size and
    by their outputs instead."""
    _, blobs = build_graphs(RELEASED_CHECKPOINTS)
    variants, extras = build_variants(blobs)
    rng = np.random.default_rng(0)
    for name, graphs in variants.items():
        for graph, blob in graphs.items():
            file = contract.VARIANTS[name].file(graph)
            shipped = (SHIPPED_MODEL / file).read_bytes()
            if name != "ort":
                assert_same_bytes(shipped, blob, f"{file} drifted ({DRIFT})")
                continue
            assert len(shipped) == len(blob), f"{file} drifted ({DRIFT})"
            spec = contract.GRAPHS[graph]
            feeds = {
                t.name: rng.random((5, 784 if t.name == contract.X else 20), dtype=np.float32) for t in spec.inputs
            }
            a, b = (
                ort.InferenceSession(x, providers=["CPUExecutionProvider"]).run(None, feeds) for x in (shipped, blob)
            )
            assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    for name, blob in extras.items():
        assert_same_bytes((SHIPPED_MODEL / name).read_bytes(), blob, f"{name} drifted ({DRIFT})")


def test_unknown_variant_names_what_exists(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="variant 'int4' is not in .*; variants there: b1, fp16, fp32, int8, ort"):
        VAE(variant="int4")
    assert main(["sample", "-n", "2", "--variant", "int4", "-o", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgevae: error: variant 'int4' is not in") and "fp32, int8" in err


@pytest.mark.parametrize("command", [["sample", "-n", "3"], ["selftest"], ["info"]])
def test_every_cli_command_takes_variant(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = ["-o", str(tmp_path / "s.png")] if command[0] == "sample" else []
    assert main(command + ["--variant", "int8"] + extra) == 0
    assert "variant: int8" in capsys.readouterr().out
