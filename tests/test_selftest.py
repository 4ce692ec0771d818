"""The device self-test: golden vectors written by export, replayed by `edgevae selftest` (and by
any runtime from the neutral .npz + JSON), failing loudly on drift."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from conftest import need

need("torch", "onnx")

import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from edgevae.export.golden import build_golden, save_npz
from edgevae.export.validate import load_real_images
from edgevae.runtime import VAE, contract
from edgevae.runtime.cli import main
from edgevae.runtime.model import seal_manifest
from edgevae.runtime.selftest import max_excess, run_selftest
from edgevae.train import checkpoint

from conftest import DEVICES, RELEASED_CHECKPOINTS, SHIPPED_MODEL, assert_same_bytes


@pytest.mark.parametrize("device", DEVICES)
def test_selftest_passes_on_the_shipped_and_exported_models(device: str, model_case: tuple[Path, Path]) -> None:
    for folder in (SHIPPED_MODEL, model_case[1]):
        report = run_selftest(VAE(folder, device=device))
        assert report.passed, [c.line() for c in report.checks]
        assert {(c.graph, c.output) for c in report.checks} == {
            (g, o) for g, s in contract.GRAPHS.items() for o in s.output_names
        }
        assert all(0 <= c.max_diff <= c.tolerance == contract.TOLERANCE[device] for c in report.checks)


def test_golden_files_are_deterministic_and_shipped_as_exported() -> None:
    encoder, decoder = checkpoint.load_pair(RELEASED_CHECKPOINTS)
    npz, spec = build_golden(encoder, decoder, load_real_images())
    assert (npz, spec) == build_golden(encoder, decoder, load_real_images())
    for name, blob in ((contract.GOLDEN_FILE, npz), (contract.GOLDEN_SPEC_FILE, spec)):
        assert_same_bytes((SHIPPED_MODEL / name).read_bytes(), blob, f"{name} drifted: run `make ship`")
    manifest = json.loads((SHIPPED_MODEL / contract.MANIFEST_FILE).read_text())
    for name, blob in ((contract.GOLDEN_FILE, npz), (contract.GOLDEN_SPEC_FILE, spec)):
        assert manifest["files"][name]["sha256"] == hashlib.sha256(blob).hexdigest()


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
    for name in (contract.GOLDEN_FILE, contract.GOLDEN_SPEC_FILE, contract.SCORE_STATS_FILE):
        assert f"{name}: sha256" in out


def test_golden_vectors_replay_with_bare_onnxruntime() -> None:
    """The README's recipe for any runtime: plain numpy + onnxruntime, no edgevae code."""
    spec = json.loads((SHIPPED_MODEL / "golden.json").read_text())
    arrays = np.load(SHIPPED_MODEL / spec["arrays"])
    worst = 0.0
    for graph, g in spec["graphs"].items():
        sess = ort.InferenceSession(str(SHIPPED_MODEL / g["file"]), providers=["CPUExecutionProvider"])
        got = sess.run(g["outputs"], {name: arrays[f"{graph}.{name}"] for name in g["inputs"]})
        for name, value in zip(g["outputs"], got, strict=True):
            want = arrays[f"{graph}.{name}"].astype(np.float64)
            excess = np.abs(value - want) - spec["relative_tolerance"].get(name, 0.0) * np.abs(want)
            worst = max(worst, float(excess.max()))
    assert 0 < worst <= spec["tolerance"]["cpu"]


def test_max_excess_never_passes_nan_or_a_wrong_shape() -> None:
    a = np.zeros((2, 3), np.float32)
    assert max_excess(a, a) == 0.0
    assert max_excess(a[:1], a) == float("inf")
    assert max_excess(np.full_like(a, np.nan), a) == float("inf")
    assert max_excess(a + 2e-5, a + 10.0, rtol=1e-6) == pytest.approx(10.0 - 2e-5 - 1e-5, rel=1e-7)


def test_save_npz_reads_back_with_numpy(tmp_path: Path) -> None:
    arrays = {"encoder.x": np.arange(6, dtype=np.float32).reshape(2, 3), "decoder.z": np.ones((1, 20), np.float32)}
    (tmp_path / "g.npz").write_bytes(save_npz(arrays))
    with np.load(tmp_path / "g.npz", allow_pickle=False) as back:
        assert sorted(back.files) == sorted(arrays) and all(np.array_equal(back[k], v) for k, v in arrays.items())
