"""The likelihood graph (export/likelihood_graph.py): built from the decoder graph, shipped with the
packaged models of a standard prior, equal to the numpy formulas within the gate, used where it is
faster, checked by the self-test and the export gate, and refused when it disagrees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgevae.runtime import VAE, ModelError, contract
from edgevae.runtime.files import ModelFiles
from edgevae.runtime.selftest import run_selftest

from conftest import DEVICES, SHIPPED_MODEL, need

# the packaged models with a likelihood graph: `large` has a learned prior, whose log p(z) is not the
# graph's N(0, I), so it ships none (docs/likelihood.md)
MODELS = ["default"]


def real(n: int) -> np.ndarray:
    digits = np.load(Path(__file__).parents[1] / "export" / "fixtures" / "mnist_test_256.npy")
    return (np.resize(digits, (n, 784)) / 255.0).astype(np.float32)


def without_graph(vae: VAE) -> VAE:
    """The same model and variant with the likelihood graph left out: the numpy formulas."""
    f = vae.files
    extras = {k: v for k, v in f.extras.items() if k != contract.LIKELIHOOD_FILE}
    return VAE(ModelFiles(f.folder, f.manifest, f.graphs, extras, f.variant), device=vae.device)


@pytest.mark.parametrize("model", MODELS)
def test_the_shipped_graph_is_what_the_builder_makes_of_the_shipped_decoder(model: str) -> None:
    need("onnx")
    from edgevae.export.likelihood_graph import build_likelihood_graph

    folder = SHIPPED_MODEL.parent / model
    vae = VAE(model=model, device="cpu")
    built = build_likelihood_graph((folder / "decoder.onnx").read_bytes(), "bernoulli", vae.latent, vae.pixels)
    assert built == (folder / contract.LIKELIHOOD_FILE).read_bytes()  # our own serialization of fixed weights
    assert vae.files.manifest["files"][contract.LIKELIHOOD_FILE]["max_abs_diff_vs_numpy_nats"] <= 1e-3


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("batch", [1, 7, 64])
def test_log_likelihood_through_the_graph_equals_the_numpy_formulas(device: str, model: str, batch: int) -> None:
    vae = VAE(model=model, device=device)
    assert vae.loaded.likelihood_graph is not None
    x = real(batch)
    got = vae.log_likelihood(x, k=100, seed=2)
    want = without_graph(vae).log_likelihood(x, k=100, seed=2)
    np.testing.assert_allclose(got, want, rtol=0, atol=contract.LIKELIHOOD_GRAPH_NATS)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch", [1, 40])
def test_scores_through_the_graph_equal_the_numpy_formulas(device: str, batch: int) -> None:
    vae = VAE(device=device)
    got, want = vae.score(real(batch)), without_graph(vae).score(real(batch))
    np.testing.assert_allclose(got.nll, want.nll, rtol=0, atol=contract.LIKELIHOOD_GRAPH_NATS)
    np.testing.assert_allclose(got.score, want.score, rtol=0, atol=1e-3)


def test_the_graph_gives_one_number_per_sample_and_image() -> None:
    vae = VAE(device="cpu")
    x = real(3)
    mu, logvar = vae.encode(x)
    eps = np.zeros((5, 3, vae.latent), np.float32)
    feeds = {contract.X: x, contract.MU: mu, contract.LOGVAR: logvar, contract.EPS: eps}
    (log_w,) = vae.loaded.likelihood_graph.runner()([contract.LOG_W], feeds)  # type: ignore[union-attr]
    assert log_w.shape == (5, 3) and log_w.dtype == np.float64
    np.testing.assert_allclose(log_w[0], log_w[4], rtol=0, atol=0)  # the same z for every sample


@pytest.mark.parametrize(
    ("options", "used"),
    [
        ({}, True),  # threads=None: the graph on every core
        ({"threads": 2}, True),
        ({"threads": 1}, False),  # one CPU thread: numpy's passes are faster (make bench)
        ({"variant": "int8"}, False),  # not an exact build of the fp32 decoder
        ({"variant": "fp16"}, False),
        ({"variant": "b1"}, True),
    ],
)
def test_where_the_graph_is_used(options: dict, used: bool) -> None:
    assert (VAE(device="cpu", **options).loaded.likelihood_graph is not None) is used


def test_the_self_test_checks_the_graph_on_this_device() -> None:
    report = run_selftest(VAE(device="cpu"))
    checks = [c for c in report.checks if c.graph == "likelihood"]
    assert len(checks) == 1 and checks[0].passed and report.passed
    assert not [c for c in run_selftest(VAE(device="cpu", threads=1)).checks if c.graph == "likelihood"]


def test_a_changed_graph_byte_is_refused_at_load(tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(SHIPPED_MODEL, folder)
    blob = bytearray((folder / contract.LIKELIHOOD_FILE).read_bytes())
    blob[len(blob) // 2] ^= 1
    (folder / contract.LIKELIHOOD_FILE).write_bytes(bytes(blob))
    with pytest.raises(ModelError, match="likelihood.onnx"):
        VAE(folder, device="cpu")


def test_a_graph_that_disagrees_is_refused_with_its_difference() -> None:
    need("onnx")
    from edgevae.export.likelihood_graph import LikelihoodGraphError, build_likelihood_graph, check_likelihood_graph

    vae = VAE(device="cpu")
    wrong = build_likelihood_graph(vae.files.graphs["decoder"], "gaussian", vae.latent, vae.pixels)
    with pytest.raises(LikelihoodGraphError, match=r"differs from the numpy formulas by [0-9.e+]+ nats"):
        check_likelihood_graph(vae.files, wrong, real(8))


def test_no_graph_for_the_discretized_logistic() -> None:
    need("onnx")
    from edgevae.export.likelihood_graph import build_likelihood_graph

    with pytest.raises(ValueError, match="built for .'bernoulli', 'gaussian'.; got 'discretized_logistic'"):
        build_likelihood_graph(b"", "discretized_logistic", 20, 784)


def test_adding_the_graph_to_a_folder_lists_it_in_the_sealed_manifest(tmp_path: Path) -> None:
    need("onnx")
    import shutil

    from edgevae.export.likelihood_graph import main
    from edgevae.runtime.manifest import read_manifest, seal_manifest

    folder = tmp_path / "m"  # an export from before the likelihood graph: neither the file nor its entry
    shutil.copytree(SHIPPED_MODEL, folder)
    (folder / contract.LIKELIHOOD_FILE).unlink()
    manifest = read_manifest(folder)
    del manifest["files"][contract.LIKELIHOOD_FILE]
    (folder / contract.MANIFEST_FILE).write_bytes(seal_manifest(manifest))
    assert VAE(folder, device="cpu").loaded.likelihood_graph is None  # it still loads, on numpy's formulas
    assert main(["--model", str(folder)]) == 0
    vae = VAE(folder, device="cpu")
    assert vae.files.extras[contract.LIKELIHOOD_FILE] == (SHIPPED_MODEL / contract.LIKELIHOOD_FILE).read_bytes()


def test_a_graph_built_for_another_likelihood_is_not_run() -> None:
    """A manifest whose config now names another likelihood than the graph was built for (a gaussian
    model's means read as bernoulli, as bench/quality.py does) runs the numpy formulas."""
    vae = VAE(device="cpu")
    f = vae.files
    manifest = {**f.manifest, "config": {**f.manifest["config"], "likelihood": "gaussian"}}
    other = VAE(ModelFiles(f.folder, manifest, f.graphs, f.extras, f.variant), device="cpu")
    assert vae.loaded.likelihood_graph is not None and other.loaded.likelihood_graph is None
    assert f.manifest["files"][contract.LIKELIHOOD_FILE]["likelihood"] == "bernoulli"


def test_a_decoder_older_than_opset_13_gets_no_graph() -> None:
    need("onnx")
    import onnx

    from edgevae.export.likelihood_graph import build_likelihood_graph, graph_opset

    vae = VAE(device="cpu")
    old = onnx.load_from_string(vae.files.graphs["decoder"])
    old.opset_import[0].version = 12
    blob = old.SerializeToString()
    assert graph_opset(blob) == 12 and graph_opset(vae.files.graphs["decoder"]) == contract.OPSET
    with pytest.raises(ValueError, match="needs a decoder of opset 13 or newer; got 12"):
        build_likelihood_graph(blob, "bernoulli", vae.latent, vae.pixels)
