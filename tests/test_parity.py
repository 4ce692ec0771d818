"""ONNX Runtime (graphs and the runtime API) against PyTorch on the same inputs.

Parametrized over execution provider (cuda skips with a reason where onnxruntime has no CUDA
provider), batch size, and model (the released checkpoints and a freshly initialized pair).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import need

need("torch", "onnx")

import torch
from noise_reference import reference_rows

from edgevae.export.convert import build_graphs
from edgevae.export.validate import measure_parity
from edgevae.runtime import VAE, contract
from edgevae.runtime.noise import LATENT
from edgevae.train import checkpoint
from edgevae.train.model import reparameterize

from conftest import DEVICES

BATCHES = [1, 7, 64, 4096]


def torch_reference(ckpt: Path, x: np.ndarray, eps: np.ndarray) -> dict[str, np.ndarray]:
    encoder, decoder = checkpoint.load_pair(ckpt)
    with torch.no_grad():
        mu, logvar = encoder(torch.from_numpy(x))
        z = reparameterize(mu, logvar, torch.from_numpy(eps))
        return {
            "mu": mu.numpy(),
            "logvar": logvar.numpy(),
            "z": z.numpy(),
            "mean_of_z": torch.sigmoid(decoder(z)).numpy(),
            "mean_of_mu": torch.sigmoid(decoder(mu)).numpy(),
        }


def inputs(batch: int, real_digits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(batch)
    x = (np.resize(real_digits, (batch, 784)) / 255.0).astype(np.float32)
    return x, rng.standard_normal((batch, 20), dtype=np.float32)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch", BATCHES)
def test_graphs_match_pytorch(model_case: tuple[Path, Path], device: str, batch: int) -> None:
    ckpt, _ = model_case
    _, blobs = build_graphs(ckpt)
    encoder, decoder = checkpoint.load_pair(ckpt)
    (random_row, real_row) = measure_parity(encoder, decoder, blobs, device, batch_sizes=(batch,))
    tol = contract.TOLERANCE[device]
    for row in (random_row, real_row):
        diffs = row["max_abs_diff"]
        for name in ("encoder.mu", "encoder.logvar", "encoder.z", "decoder.mean", "reconstruct.mean"):
            assert diffs[name] <= tol, (row["inputs"], name, diffs[name])
        assert diffs["decoder.logits"] <= tol  # allclose-style for logits, see contract.RELATIVE_TOLERANCE


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch", BATCHES)
def test_runtime_matches_pytorch(
    model_case: tuple[Path, Path], device: str, batch: int, real_digits: np.ndarray
) -> None:
    ckpt, model_dir = model_case
    tol = contract.TOLERANCE[device]
    vae = VAE(model_dir, device=device, chunk_size=1000)  # chunking is exercised at batch 4096
    assert vae.device == device
    x, eps = inputs(batch, real_digits)
    ref = torch_reference(ckpt, x, eps)

    mu, logvar = vae.encode(x)
    assert np.abs(mu - ref["mu"]).max() <= tol and np.abs(logvar - ref["logvar"]).max() <= tol
    assert np.abs(vae.encode_z(x, eps=eps) - ref["z"]).max() <= tol
    assert np.abs(vae.decode(ref["z"]).reshape(batch, -1) - ref["mean_of_z"]).max() <= tol
    # reconstruct: deterministic through mu; stochastic through z with eps drawn from the seed
    assert np.abs(vae.reconstruct(x).reshape(batch, -1) - ref["mean_of_mu"]).max() <= tol
    seeded_eps = reference_rows(11, LATENT, 0, 0, batch, 20)  # the noise scheme's draw, written out
    ref_seeded = torch_reference(ckpt, x, seeded_eps)
    got = vae.reconstruct(x, stochastic=True, seed=11).reshape(batch, -1)
    assert np.abs(got - ref_seeded["mean_of_z"]).max() <= tol


@pytest.mark.parametrize("device", DEVICES)
def test_sample_matches_pytorch_given_the_same_z(model_case: tuple[Path, Path], device: str) -> None:
    ckpt, model_dir = model_case
    vae = VAE(model_dir, device=device)
    images = vae.sample(64, seed=42)
    z = reference_rows(42, LATENT, 0, 0, 64, 20)  # the documented draw (runtime/noise.py)
    _, decoder = checkpoint.load_pair(ckpt)
    with torch.no_grad():
        ref = torch.sigmoid(decoder(torch.from_numpy(z))).numpy().reshape(64, 28, 28)
    assert np.abs(images - ref).max() <= contract.TOLERANCE[device]
    assert np.array_equal(images, VAE(model_dir, device=device).sample(64, seed=42))  # every run
