"""The device self-test: golden vectors written by export, replayed by `edgevae selftest` (and by
any runtime from the neutral golden.bin + golden.json), failing loudly on drift."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import struct
from pathlib import Path

import numpy as np

from conftest import need

need("torch", "onnx")

import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from edgevae.export.golden import build_golden, pack_tensors
from edgevae.export.validate import load_real_images
from edgevae.runtime import VAE, contract
from edgevae.runtime.cli import main
from edgevae.runtime.errors import ModelError
from edgevae.runtime.model import seal_manifest
from edgevae.runtime.selftest import max_excess, run_selftest, unpack_tensors
from edgevae.train import checkpoint

from conftest import DEVICES, RELEASED_CHECKPOINTS, REPO, SHIPPED_MODEL, assert_same_bytes

PACKAGED_CHECKPOINTS = {"default": RELEASED_CHECKPOINTS, "large": REPO / "artifacts" / "checkpoints-large"}


@pytest.mark.parametrize("device", DEVICES)
def test_selftest_passes_on_the_shipped_and_exported_models(device: str, model_case: tuple[Path, Path]) -> None:
    for folder in (SHIPPED_MODEL, model_case[1]):
        report = run_selftest(VAE(folder, device=device))
        assert report.passed, [c.line() for c in report.checks]
        graphs = {(g, o) for g, s in contract.GRAPHS.items() for o in s.output_names}
        likelihood = {("likelihood", contract.LOG_W)}  # the likelihood graph against the numpy formulas
        assert {(c.graph, c.output) for c in report.checks} == graphs | likelihood
        for c in report.checks:
            tolerance = contract.LIKELIHOOD_GRAPH_NATS if c.graph == "likelihood" else contract.TOLERANCE[device]
            assert 0 <= c.max_diff <= c.tolerance == tolerance, c.line()


def shipped_golden(model: Path) -> tuple[dict[str, np.ndarray], bytes, bytes]:
    """(arrays, golden.bin bytes, golden.json bytes) of a shipped model folder."""
    data, spec = (model / contract.GOLDEN_DATA_FILE).read_bytes(), (model / contract.GOLDEN_SPEC_FILE).read_bytes()
    return unpack_tensors(data, json.loads(spec)["tensors"], model / contract.GOLDEN_DATA_FILE), data, spec


@pytest.mark.parametrize("name", sorted(PACKAGED_CHECKPOINTS))
def test_golden_files_are_a_fresh_build_within_tolerance_and_listed_in_the_manifest(name: str) -> None:
    """PyTorch rounds differently on another CPU, so the arrays a fresh build computes must equal the
    shipped ones within the parity tolerance (logits with their relative allowance), not byte for
    byte; golden.json, whose bytes our code fixes, is byte-exact; the manifest lists the shipped bytes."""
    model = SHIPPED_MODEL.parent / name
    data, spec = build_golden(*checkpoint.load_pair(PACKAGED_CHECKPOINTS[name]), load_real_images())
    fresh = unpack_tensors(data, json.loads(spec)["tensors"], Path("fresh") / contract.GOLDEN_DATA_FILE)
    shipped, shipped_data, shipped_spec = shipped_golden(model)
    assert sorted(fresh) == sorted(shipped) and len(fresh) == 8
    for key, want in fresh.items():
        rtol = contract.RELATIVE_TOLERANCE.get(key.split(".")[1], 0.0)
        assert shipped[key].shape == want.shape and max_excess(shipped[key], want, rtol) <= contract.TOLERANCE["cpu"], (
            f"{name} {key} drifted beyond {contract.TOLERANCE['cpu']}: run `make ship MODEL={name}`"
        )
    assert_same_bytes(shipped_spec, spec, f"{name}/golden.json drifted: run `make ship MODEL={name}`")
    manifest = json.loads((model / contract.MANIFEST_FILE).read_text())
    for file, blob in ((contract.GOLDEN_DATA_FILE, shipped_data), (contract.GOLDEN_SPEC_FILE, shipped_spec)):
        assert manifest["files"][file]["sha256"] == hashlib.sha256(blob).hexdigest()
        assert manifest["files"][file]["size"] == len(blob)
    assert contract.GOLDEN_LEGACY_FILE not in manifest["files"] and not (model / contract.GOLDEN_LEGACY_FILE).exists()


def test_golden_data_is_little_endian_float32_in_sorted_order() -> None:
    """The layout any language relies on: sorted names, back to back, little-endian float32."""
    arrays = {"b.y": np.arange(6, dtype=np.float32).reshape(2, 3), "a.x": np.array([[1.5, -2.0]], np.float32)}
    data, index = pack_tensors(arrays)
    assert data == struct.pack("<8f", 1.5, -2.0, 0, 1, 2, 3, 4, 5)
    assert index == {
        "a.x": {"dtype": "float32", "shape": [1, 2], "offset": 0, "bytes": 8},
        "b.y": {"dtype": "float32", "shape": [2, 3], "offset": 8, "bytes": 24},
    }
    back = unpack_tensors(data, index, Path("g.bin"))
    assert all(np.array_equal(back[k], v) and back[k].dtype == np.float32 for k, v in arrays.items())


def reseal(model: Path, changed: dict[str, bytes | None]) -> None:
    """Write (or, for None, delete) files in a model folder and update its manifest to match."""
    manifest = json.loads((model / contract.MANIFEST_FILE).read_text())
    for name, blob in changed.items():
        if blob is None:
            (model / name).unlink()
            manifest["files"].pop(name)
            continue
        (model / name).write_bytes(blob)
        entry = manifest["files"].setdefault(name, {"role": "test"})
        entry.update(sha256=hashlib.sha256(blob).hexdigest(), size=len(blob))
    (model / contract.MANIFEST_FILE).write_bytes(seal_manifest(manifest))


BAD_ENTRIES = {
    "past the end": {"offset": 10**9},
    "wrong length": {"bytes": 4},
    "negative offset": {"offset": -4},
    "float64": {"dtype": "float64"},
    "shape of strings": {"shape": ["8", "784"]},
    "bool offset": {"offset": True},
}


@pytest.mark.parametrize("how", sorted(BAD_ENTRIES))
def test_an_inconsistent_index_is_a_model_error_naming_golden_bin(tmp_path: Path, how: str) -> None:
    model = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL, model)
    spec = json.loads((model / contract.GOLDEN_SPEC_FILE).read_text())
    spec["tensors"]["decoder.mean"].update(BAD_ENTRIES[how])
    reseal(model, {contract.GOLDEN_SPEC_FILE: json.dumps(spec).encode()})
    with pytest.raises(ModelError, match=r"golden\.bin: index entry 'decoder\.mean'"):
        run_selftest(VAE(model))


def test_a_folder_without_the_index_is_refused_in_one_line(tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL, model)
    spec = json.loads((model / contract.GOLDEN_SPEC_FILE).read_text())
    del spec["tensors"]
    reseal(model, {contract.GOLDEN_SPEC_FILE: json.dumps(spec).encode()})
    with pytest.raises(ModelError, match="has no 'tensors' index"):
        run_selftest(VAE(model))


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_an_older_export_with_golden_npz_still_self_tests(tmp_path: Path, variant: str) -> None:
    """Folders exported before golden.bin carry golden.npz, named by golden.json's "arrays"."""
    model = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL, model)
    arrays, _, spec_blob = shipped_golden(model)
    spec = json.loads(spec_blob)
    del spec["tensors"], spec["data"]
    spec["arrays"] = contract.GOLDEN_LEGACY_FILE
    npz = io.BytesIO()
    np.savez(npz, **arrays)
    reseal(
        model,
        {
            contract.GOLDEN_DATA_FILE: None,
            contract.GOLDEN_LEGACY_FILE: npz.getvalue(),
            contract.GOLDEN_SPEC_FILE: json.dumps(spec).encode(),
        },
    )
    report = run_selftest(VAE(model, variant=variant))
    # fp32: five outputs and the likelihood graph's check; the lossy builds leave logits out and run no graph
    assert report.passed and len(report.checks) == (6 if variant == "fp32" else 4)
    planted = dict(arrays, **{"decoder.mean": arrays["decoder.mean"] + 0.6})
    npz = io.BytesIO()
    np.savez(npz, **planted)
    reseal(model, {contract.GOLDEN_LEGACY_FILE: npz.getvalue()})
    assert not run_selftest(VAE(model, variant=variant)).passed  # the legacy arrays are really what is compared


def plant(model: Path, graph: str, amount: float) -> None:
    """Add `amount` to about 1% of the weights of a graph and rewrite the manifest so its sha256 stays valid."""
    path = model / contract.GRAPHS[graph].file
    proto = onnx.load(path)
    init = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    w = numpy_helper.to_array(init).copy()
    w.flat[::97] += amount  # about 1% of the weights
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    blob = proto.SerializeToString()
    path.write_bytes(blob)
    manifest = json.loads((model / contract.MANIFEST_FILE).read_text())
    manifest["files"][path.name].update(sha256=hashlib.sha256(blob).hexdigest(), size=len(blob))
    (model / contract.MANIFEST_FILE).write_bytes(seal_manifest(manifest))


@pytest.mark.parametrize("graph, outputs", [("decoder", {"decoder.logits"}), ("encoder", {"encoder.mu", "encoder.z"})])
def test_planted_corruption_with_a_valid_manifest_fails_naming_the_output(
    tmp_path: Path, graph: str, outputs: set[str], capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL, model)
    plant(model, graph, 0.05)
    vae = VAE(model)  # checksums pass: the manifest was rewritten with the corruption
    report = run_selftest(vae)
    failed = {f"{c.graph}.{c.output}" for c in report.checks if not c.passed}
    assert not report.passed and outputs <= failed
    assert main(["selftest", "--model", str(model)]) == 1
    out = capsys.readouterr().out
    for name in outputs:
        assert f"{name}: max |diff|" in out and "FAIL" in out.split(f"{name}:")[1].splitlines()[0]


def test_selftest_cli_prints_each_output_and_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["selftest", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("device: cpu -> cpu")
    assert out.count("pass") >= 5 and "selftest on CPUExecutionProvider: pass" in out


def test_info_shows_the_selftest_per_provider(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for variant in contract.VARIANTS:
        assert f"selftest cpu {variant} (CPUExecutionProvider): pass" in out
    assert "selftest cuda: " in out  # run, or "not run" with the reason
    for name in (contract.GOLDEN_DATA_FILE, contract.GOLDEN_SPEC_FILE, contract.SCORE_STATS_FILE):
        assert f"{name}: sha256" in out
    assert "\nprior: N(0, I)\n" in out  # the default model keeps the standard prior


def test_golden_vectors_replay_with_bare_onnxruntime() -> None:
    """docs/selftest.md's recipe for any runtime: plain numpy + onnxruntime, no edgevae code."""
    spec = json.loads((SHIPPED_MODEL / "golden.json").read_text())
    data = (SHIPPED_MODEL / spec["data"]).read_bytes()

    def array(name: str) -> np.ndarray:
        t = spec["tensors"][name]
        return np.frombuffer(data, "<f4", t["bytes"] // 4, t["offset"]).reshape(t["shape"])

    worst = 0.0
    for graph, g in spec["graphs"].items():
        sess = ort.InferenceSession(str(SHIPPED_MODEL / g["file"]), providers=["CPUExecutionProvider"])
        got = sess.run(g["outputs"], {name: array(f"{graph}.{name}") for name in g["inputs"]})
        for name, value in zip(g["outputs"], got, strict=True):
            want = array(f"{graph}.{name}").astype(np.float64)
            excess = np.abs(value - want) - spec["relative_tolerance"].get(name, 0.0) * np.abs(want)
            worst = max(worst, float(excess.max()))
    assert 0 < worst <= spec["tolerance"]["cpu"]


def test_max_excess_never_passes_nan_or_a_wrong_shape() -> None:
    a = np.zeros((2, 3), np.float32)
    assert max_excess(a, a) == 0.0
    assert max_excess(a[:1], a) == float("inf")
    assert max_excess(np.full_like(a, np.nan), a) == float("inf")
    assert max_excess(a + 2e-5, a + 10.0, rtol=1e-6) == pytest.approx(10.0 - 2e-5 - 1e-5, rel=1e-7)
