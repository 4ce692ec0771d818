"""The runtime's ELBO and importance-weighted log p(x): numpy + ONNX against the training code.

Parity uses shared noise (eps given to both sides), over provider, batch size and model (released,
fresh bernoulli, fresh gaussian). The released-figure test reruns the metrics file's test-set
estimate (k=1000, all 10,000 binarized test digits) through the runtime.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import need

need("torch", "hypothesis")

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevae.runtime import VAE
from edgevae.runtime import likelihood as lik
from edgevae.train import checkpoint
from edgevae.train.config import TrainConfig, VAEConfig
from edgevae.train.evaluate import elbo_terms, iw_log_likelihood, prepare_eval_images
from edgevae.train.model import build_models

from conftest import DEVICES, RELEASED_CHECKPOINTS, export_to

PARITY_NATS = 1e-4  # the budget: runtime vs PyTorch with the same eps


@pytest.fixture(scope="session")
def gaussian_case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("gauss_ckpt")
    config = TrainConfig(model=VAEConfig(likelihood="gaussian"))
    encoder, decoder = build_models(config.model, seed=5)
    checkpoint.save_module(folder / checkpoint.ENCODER_FILE, "encoder", encoder, config, 0)
    checkpoint.save_module(folder / checkpoint.DECODER_FILE, "decoder", decoder, config, 0)
    return folder, export_to(folder, tmp_path_factory.mktemp("gauss_onnx"))


@pytest.fixture(params=["released", "fresh", "gaussian"])
def case(request: pytest.FixtureRequest) -> tuple[Path, Path]:
    if request.param == "gaussian":
        return request.getfixturevalue("gaussian_case")
    if request.param == "released":
        return RELEASED_CHECKPOINTS, request.getfixturevalue("released_model")
    return request.getfixturevalue("fresh_checkpoints"), request.getfixturevalue("fresh_model")


def digits(batch: int, real_digits: np.ndarray, binary: bool) -> np.ndarray:
    x = (np.resize(real_digits, (batch, 784)) / 255.0).astype(np.float32)
    return (np.random.default_rng(batch).random(x.shape) < x).astype(np.float32) if binary else x


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch", [1, 7, 64])
@pytest.mark.parametrize("binary", [True, False], ids=["binarized", "grey"])
def test_elbo_matches_pytorch_with_shared_eps(
    case: tuple[Path, Path], device: str, batch: int, binary: bool, real_digits: np.ndarray
) -> None:
    ckpt, model = case
    encoder, decoder = checkpoint.load_pair(ckpt)
    x = digits(batch, real_digits, binary)
    eps = np.random.default_rng(1).standard_normal((batch, 20), dtype=np.float32)
    rec, kl = elbo_terms(encoder, decoder, torch.from_numpy(x), torch.from_numpy(eps))
    want = -(rec.double() + kl.double()).numpy()
    got = VAE(model, device=device).elbo(x, eps=eps)
    assert got.shape == (batch,) and got.dtype == np.float64
    assert np.abs(got - want).max() <= PARITY_NATS


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch", [1, 7, 64])
@pytest.mark.parametrize("k", [1, 5, 50])
def test_log_likelihood_matches_pytorch_with_shared_eps(
    case: tuple[Path, Path], device: str, batch: int, k: int, real_digits: np.ndarray
) -> None:
    ckpt, model = case
    encoder, decoder = checkpoint.load_pair(ckpt)
    x = digits(batch, real_digits, binary=True)
    eps = np.random.default_rng(2).standard_normal((k, batch, 20), dtype=np.float32)
    want = iw_log_likelihood(encoder, decoder, torch.from_numpy(x), torch.from_numpy(eps)).double().numpy()
    vae = VAE(model, device=device, chunk_size=64)  # several blocks: k x N is split
    got = vae.log_likelihood(x, k=k, eps=eps)
    assert np.abs(got - want).max() <= PARITY_NATS


def test_importance_sampling_tightens_the_bound(real_digits: np.ndarray) -> None:
    vae = VAE()
    x = digits(32, real_digits, binary=True)
    elbo = vae.elbo(x, seed=0).mean()
    ll = [vae.log_likelihood(x, k=k, seed=0).mean() for k in (1, 10, 100)]
    assert elbo < ll[1] < ll[2] and abs(ll[0] - elbo) < 3.0  # k=1 is an (unbiased) ELBO estimate


def test_values_do_not_depend_on_chunking_or_batch(real_digits: np.ndarray) -> None:
    x = digits(20, real_digits, binary=True)
    whole = VAE(chunk_size=2048).log_likelihood(x, k=30, seed=3)
    small = VAE(chunk_size=7).log_likelihood(x, k=30, seed=3)
    np.testing.assert_allclose(small, whole, rtol=0, atol=1e-6)
    one = VAE().log_likelihood(x[0], k=30, seed=3)
    assert isinstance(one, float) and abs(one - whole[0]) <= 1e-6


def test_seeded_is_repeatable_and_unseeded_varies(real_digits: np.ndarray) -> None:
    vae = VAE()
    x = digits(4, real_digits, binary=True)
    assert np.array_equal(vae.log_likelihood(x, k=8, seed=1), vae.log_likelihood(x, k=8, seed=1))
    assert not np.array_equal(vae.log_likelihood(x, k=8), vae.log_likelihood(x, k=8))
    assert np.array_equal(vae.elbo(x, seed=4), vae.elbo(x, eps=vae.sample_latent(4, seed=4)))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda v, x: v.log_likelihood(x, k=0), "k must be an int >= 1"),
        (lambda v, x: v.log_likelihood(x, k=2, seed=1, eps=np.zeros((2, 3, 20))), "not both"),
        (lambda v, x: v.log_likelihood(x, k=2, eps=np.zeros((2, 2, 20))), "expected shape (k, N, latent) = (2, 3, 20)"),
        (lambda v, x: v.log_likelihood(x, k=2, eps=np.full((2, 3, 20), np.nan)), "finite"),
        (lambda v, x: v.log_likelihood(x, k=2, seed=-1), "seed must be an int in [0, 2**128); got -1"),
        (lambda v, x: v.elbo(x, seed=1, eps=np.zeros((3, 20))), "not both"),
        (lambda v, x: v.elbo(x, eps=np.zeros((2, 20))), "does not match x's batch of 3"),
    ],
)
def test_bad_arguments_say_what_was_expected(call: object, message: str, real_digits: np.ndarray) -> None:
    with pytest.raises(ValueError, match=None) as info:
        call(VAE(), digits(3, real_digits, binary=True))  # type: ignore[operator]
    assert message in str(info.value)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 300), k=st.integers(1, 3000), rows=st.integers(1, 4096))
def test_blocks_cover_every_sample_once_and_stay_within_rows(n: int, k: int, rows: int) -> None:
    seen = np.zeros((n, k), np.int32)
    for lo, hi, s, e in lik.plan_blocks(n, k, rows):
        assert (hi - lo) * (e - s) <= rows
        seen[lo:hi, s:e] += 1
    assert (seen == 1).all()


def test_log_mean_exp_is_stable() -> None:
    w = np.array([[-5000.0, 800.0], [-5001.0, 800.0]])
    got = lik.log_mean_exp(w, axis=0)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, [-5000.0 + np.log((1 + np.exp(-1.0)) / 2), 800.0], rtol=1e-12)


def test_bernoulli_term_is_stable_for_huge_logits() -> None:
    logits = np.array([[-200.0, 200.0, 0.0]], np.float32)
    x = np.array([[0.0, 1.0, 1.0]], np.float32)
    got = lik.log_px_given_z(x, logits, None, "bernoulli")
    np.testing.assert_allclose(got, [-np.log(2.0)], rtol=1e-6)


@pytest.mark.slow
def test_released_test_set_estimate_matches_metrics_file(data_dir: Path) -> None:
    """All 10,000 test digits, binarized exactly as training evaluated them, k from metrics.json."""
    from edgevae.train.data import load_split

    metrics = json.loads((RELEASED_CHECKPOINTS / "metrics.json").read_text())
    assert metrics["test_images_binarized"] and metrics["test_images"] == 10_000
    images, _ = load_split(data_dir, "test")
    x = prepare_eval_images(
        torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255.0),
        metrics["config"]["model"]["likelihood"],
    ).numpy()
    estimate = VAE(device="cpu").log_likelihood(x, k=metrics["iw_samples"], seed=0).mean()
    assert abs(estimate - metrics["test_iw_log_likelihood"]) <= 0.1, (estimate, metrics["test_iw_log_likelihood"])


@settings(max_examples=60, deadline=None)
@given(
    lead=st.integers(1, 400),
    images=st.integers(1, 6),
    pixels=st.sampled_from([1, 3, 784]),
    scale=st.sampled_from([0.1, 10.0, 150.0]),
    broadcast=st.booleans(),
)
def test_bernoulli_blocks_equal_the_float64_formula(
    lead: int, images: int, pixels: int, scale: float, broadcast: bool
) -> None:
    """The blocked, clamped bernoulli term against log p = sum x*l - log(1 + e^l) in float64, for
    shapes on both sides of a block and logits far past float32's subnormal exp (|l| > 87)."""
    rng = np.random.default_rng(lead * 7 + images)
    logits = (rng.standard_normal((lead, images, pixels)) * scale).astype(np.float32)
    x = rng.random((1 if broadcast else lead, images, pixels)).astype(np.float32)
    want = (x.astype(np.float64) * logits - np.logaddexp(0.0, logits.astype(np.float64))).sum(axis=-1)
    got = lik.bernoulli_log_px(x, logits)
    assert got.shape == (lead, images) and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-4)
