"""A model with a learned prior, exported and run without torch: prior.bin is written, listed and
verified; the runtime and the JavaScript package draw z from the mixture; likelihoods and the ELBO use
its density and agree with PyTorch."""

from __future__ import annotations

import json
import math
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import need

need("torch", "onnx")

import torch

from edgevae.runtime import VAE, contract
from edgevae.runtime.errors import ModelError
from edgevae.runtime.noise import Noise
from edgevae.runtime.prior import MixturePrior
from edgevae.train import checkpoint
from edgevae.train.config import TrainConfig, VAEConfig
from edgevae.train.evaluate import elbo_terms, iw_log_likelihood
from edgevae.train.model import build_models
from edgevae.train.prior import sample_prior

VAMP = VAEConfig(prior="vamp", prior_components=16)  # the textbook network with a 16-component VampPrior
PARITY_NATS = 1e-4  # runtime against PyTorch, same noise: float32 graphs, float64 sums
DRAW = 1e-5


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, torch.nn.Module, Path]:
    """A fresh VampPrior pair (pseudo-inputs moved off their start, so components differ), exported."""
    from edgevae.export.convert import export_model

    encoder, decoder = build_models(VAMP, seed=5)
    with torch.no_grad():
        encoder.pseudo_inputs.copy_(torch.rand(encoder.pseudo_inputs.shape, generator=torch.Generator().manual_seed(1)))
    folder = tmp_path_factory.mktemp("vamp")
    checkpoint.save_pair(folder / "ckpt", encoder, decoder, TrainConfig(model=VAMP, epochs=1), 1, "run")
    export_model(folder / "ckpt", folder / "onnx")
    return encoder.eval(), decoder.eval(), folder / "onnx"


def digits(n: int) -> np.ndarray:
    return (np.load(Path(__file__).parents[1] / "export" / "fixtures" / "mnist_test_256.npy")[:n] > 127).astype(
        np.float32
    )


def test_export_writes_the_mixture_and_lists_it(pair: tuple) -> None:
    encoder, _, folder = pair
    manifest = json.loads((folder / contract.MANIFEST_FILE).read_text())
    entry = manifest["files"][contract.PRIOR_FILE]
    assert entry["size"] == 2 * 16 * 20 * 4 and "learned prior" in entry["role"]
    assert manifest["config"]["prior"] == "vamp" and manifest["config"]["prior_components"] == 16
    assert manifest["prior"]["max_abs_diff"]["log_prior_nats"] <= 1e-3
    record = checkpoint.read_record(folder.parent / "ckpt")
    assert entry["source_checkpoint_sha256"] == record[checkpoint.PRIOR_FILE]  # the pseudo-inputs it came from
    assert contract.LIKELIHOOD_FILE not in manifest["files"]  # its log p(z) would be N(0, I)'s
    mixture = MixturePrior.from_bytes((folder / contract.PRIOR_FILE).read_bytes(), 16, 20)
    with torch.no_grad():
        mu, logvar = encoder(torch.clamp(encoder.pseudo_inputs, 0, 1))
    np.testing.assert_allclose(mixture.means, mu.numpy(), atol=1e-6)
    np.testing.assert_allclose(mixture.logvars, logvar.numpy(), atol=1e-6)


@pytest.mark.parametrize("n", [1, 7])
def test_sampling_draws_a_component_then_its_gaussian(pair: tuple, n: int) -> None:
    encoder, _, folder = pair
    vae = VAE(folder, device="cpu")
    z = vae.sample_latent(n, seed=11)
    noise = Noise()
    eps, u = noise.latent(11, n, 20), noise.component(11, n)
    with torch.no_grad():
        want = sample_prior(encoder, torch.from_numpy(eps), torch.from_numpy(u)).numpy()
    np.testing.assert_allclose(z, want, atol=DRAW)
    assert np.array_equal(vae.sample_latent(12, seed=11)[:n], z)  # row i does not depend on n
    np.testing.assert_allclose(vae.sample(n, seed=11), vae.decode(z), atol=1e-6)
    assert not np.allclose(z, eps)  # not N(0, I)'s draw


@pytest.mark.parametrize("batch", [1, 5])
def test_likelihood_and_elbo_use_the_mixture_as_pytorch_does(pair: tuple, batch: int) -> None:
    encoder, decoder, folder = pair
    vae = VAE(folder, device="cpu")
    x = digits(batch)
    eps = np.random.default_rng(batch).standard_normal((30, batch, 20)).astype(np.float32)
    with torch.no_grad():
        want_iw = iw_log_likelihood(encoder, decoder, torch.from_numpy(x), torch.from_numpy(eps)).numpy()
        rec, kl = elbo_terms(encoder, decoder, torch.from_numpy(x), torch.from_numpy(eps[0]))
    np.testing.assert_allclose(vae.log_likelihood(x, k=30, eps=eps), want_iw, atol=PARITY_NATS)
    np.testing.assert_allclose(vae.elbo(x, eps=eps[0]), -(rec + kl).numpy(), atol=PARITY_NATS)


def test_a_pickled_model_keeps_its_prior(pair: tuple) -> None:
    vae = VAE(pair[2], device="cpu")
    again = pickle.loads(pickle.dumps(vae))
    assert again.prior is not None and np.array_equal(again.sample_latent(3, seed=2), vae.sample_latent(3, seed=2))


def test_a_changed_prior_file_is_refused(pair: tuple, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(pair[2], folder)
    blob = bytearray((folder / contract.PRIOR_FILE).read_bytes())
    blob[100] ^= 1
    (folder / contract.PRIOR_FILE).write_bytes(bytes(blob))
    with pytest.raises(ModelError, match="prior.bin"):
        VAE(folder, device="cpu")


@pytest.mark.parametrize(
    ("blob", "found"),
    [(b"\0" * 12, "12 bytes, expected 128"), (np.full(32, np.inf, "<f4").tobytes(), "not finite")],
)
def test_a_malformed_mixture_is_named(blob: bytes, found: str) -> None:
    with pytest.raises(ModelError, match=f"corrupt prior.bin: .*{found}"):
        MixturePrior.from_bytes(blob, 4, 4)


def test_the_mixture_density_is_the_sum_over_components() -> None:
    rng = np.random.default_rng(0)
    mixture = MixturePrior(
        rng.standard_normal((6, 3)).astype(np.float32), rng.standard_normal((6, 3)).astype(np.float32)
    )
    z = 3 * rng.standard_normal((4, 5, 3))
    m, lv = mixture.means.astype(np.float64), mixture.logvars.astype(np.float64)
    comp = -0.5 * (math.log(2 * math.pi) + lv + (z[..., None, :] - m) ** 2 / np.exp(lv)).sum(-1)
    np.testing.assert_allclose(mixture.log_density(z), np.log(np.exp(comp).mean(-1)), rtol=1e-12, atol=1e-10)


def test_component_draws_are_uniform_and_keyed_by_row() -> None:
    noise = Noise()
    u = noise.component(3, 20000)
    assert u.dtype == np.float64 and 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.01
    assert np.array_equal(noise.component(3, 5, first=7), u[7:12])
    assert not np.array_equal(noise.component(4, 5), u[:5])


def test_the_javascript_package_samples_from_the_mixture(pair: tuple) -> None:
    """Node: the same component rule and formula as the Python runtime, on its own noise streams;
    checked against numpy's reading of prior.bin with the package's own eps and u."""
    from web_support import run_node

    got = run_node(
        f"""import {{ loadVAE }} from './node.js';
        import {{ standardNormal, uniforms }} from './noise.js';
        const vae = await loadVAE({json.dumps(str(pair[2]) + "/")}, {{ threads: 1 }});
        const z = vae.sampleLatent(6, 9), again = vae.sampleLatent(2, 9), img = await vae.sample(6, 9);
        console.log(JSON.stringify({{ z: Array.from(z.data), again: Array.from(again.data),
          eps: Array.from(standardNormal(9, 6 * 20)), u: Array.from(uniforms(9, 6)), rows: img.rows }}));"""
    )
    mixture = MixturePrior.from_bytes((pair[2] / contract.PRIOR_FILE).read_bytes(), 16, 20)
    want = mixture.draw(np.array(got["eps"], np.float32).reshape(6, 20), np.array(got["u"]))
    np.testing.assert_allclose(np.array(got["z"]).reshape(6, 20), want, atol=DRAW)
    assert got["again"] == got["z"][:40] and got["rows"] == 6


def test_the_export_page_states_the_prior_checks() -> None:
    from test_readme import says

    from edgevae.export.prior_file import PRIOR_DRAW, PRIOR_NATS

    sci = [f"{v:.0e}".replace("e-0", "e-") for v in (PRIOR_NATS, PRIOR_DRAW)]
    says("docs/export.md", f"log p(z) within {sci[0]} nats, draws within {sci[1]}")


def test_bulk_sampling_draws_the_rows_sample_draws(pair: tuple) -> None:
    """Ray Data's sample task (runtime/raydata.py, its per-actor mapper called directly, no Ray needed):
    rows ids of `VAE.sample(n, seed)`, through the mixture, whatever runs of ids a batch holds."""
    from edgevae.runtime.raydata import VAEBatch

    mapper = VAEBatch("sample", "image", str(pair[2]), "cpu", "fp32", 1, None, 4, "nll")
    ids = np.array([0, 1, 2, 7, 8, 3])
    np.testing.assert_array_equal(mapper.latents(ids), mapper.vae.sample_latent(9, seed=4)[ids])


def test_info_names_the_learned_prior(pair: tuple, capsys: pytest.CaptureFixture[str]) -> None:
    from edgevae.runtime.cli import main

    assert main(["info", "--model", str(pair[2]), "--device", "cpu"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("prior: "))
    assert line.startswith("prior: learned (vamp), a mixture of 16 Gaussians read from prior.bin")
