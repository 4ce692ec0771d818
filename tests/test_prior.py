"""The learned prior (train/prior.py): the VampPrior's density, its draws, its checkpoints, and export's
refusal; the standard prior's numbers are unchanged by it."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest

from conftest import need

need("torch")

import torch
from safetensors import safe_open

from edgevae.train import checkpoint
from edgevae.train.config import PRESETS, TrainConfig, VAEConfig
from edgevae.train.evaluate import elbo_terms, iw_log_likelihood
from edgevae.train.model import build_models, compute_loss_terms, iwae_terms, log_normal
from edgevae.train.prior import log_mixture, log_prior, sample_prior

VAMP = VAEConfig(prior="vamp", prior_components=7, latent=3, hidden=16)
PRIOR = checkpoint.PRIOR_FILE


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("shape", [(5, 3), (4, 6, 3), (1, 3)])
@pytest.mark.parametrize("components", [1, 7])
def test_the_mixture_density_equals_the_direct_sum(shape: tuple[int, ...], components: int) -> None:
    """log (1/K) sum_k N(z; mu_k, sigma_k) from matrix products equals the per-component sum, in float64."""
    z = torch.randn(*shape, generator=gen(1), dtype=torch.float64) * 2
    mu = torch.randn(components, 3, generator=gen(2), dtype=torch.float64)
    logvar = torch.randn(components, 3, generator=gen(3), dtype=torch.float64)
    direct = torch.logsumexp(log_normal(z[..., None, :], mu, logvar), dim=-1) - math.log(components)
    torch.testing.assert_close(log_mixture(z, mu, logvar), direct, rtol=1e-12, atol=1e-10)


def test_the_vamp_prior_is_the_encoders_posterior_mixture_at_the_pseudo_inputs() -> None:
    encoder, _ = build_models(VAMP, seed=0)
    z = torch.randn(9, 3, generator=gen(4), dtype=torch.float64)
    with torch.no_grad():
        mu, logvar = encoder(torch.clamp(encoder.pseudo_inputs, 0, 1))
        direct = torch.logsumexp(log_normal(z[:, None], mu.double(), logvar.double()), dim=-1) - math.log(7)
        torch.testing.assert_close(log_prior(encoder, z), direct, rtol=1e-9, atol=1e-9)


def test_the_standard_prior_is_the_unit_normal_bit_for_bit() -> None:
    """The standard prior's log-density is log N(z; 0, I) exactly, so standard runs keep their numbers."""
    encoder, _ = build_models(VAEConfig(latent=3, hidden=16), seed=0)
    z = torch.randn(4, 5, 3, generator=gen(5))
    assert torch.equal(log_prior(encoder, z), log_normal(z, torch.zeros_like(z), torch.zeros_like(z)))
    assert not hasattr(encoder, "pseudo_inputs")


def test_draws_pick_component_floor_u_times_k() -> None:
    encoder, _ = build_models(VAMP, seed=0)
    eps = torch.randn(4, 3, generator=gen(6))
    u = torch.tensor([0.0, 0.5, 0.999, 1.0])  # 1.0 (outside [0, 1)) clamps to the last component
    with torch.no_grad():
        mu, logvar = encoder(torch.clamp(encoder.pseudo_inputs, 0, 1))
        z = sample_prior(encoder, eps, u)
    for row, k in enumerate([0, 3, 6, 6]):
        torch.testing.assert_close(z[row], mu[k] + torch.exp(0.5 * logvar[k]) * eps[row], rtol=1e-6, atol=1e-6)
    standard, _ = build_models(VAEConfig(latent=3, hidden=16), seed=0)
    assert torch.equal(sample_prior(standard, eps, u), eps)


@pytest.mark.parametrize("batch", [1, 6])
def test_one_importance_sample_is_the_elbo_against_the_mixture(batch: int) -> None:
    """The IW bound with k = 1 equals -(reconstruction + one-sample KL) for the same noise: the training
    loss, the evaluation and the bound agree on what log p(z) is."""
    encoder, decoder = build_models(VAMP, seed=0)
    x = torch.rand(batch, 784, generator=gen(7)).bernoulli(generator=gen(8))
    eps = torch.randn(batch, 3, generator=gen(9))
    with torch.no_grad():
        rec, kl = elbo_terms(encoder, decoder, x, eps)
        bound = iw_log_likelihood(encoder, decoder, x, eps[None])
        train_rec, train_kl = compute_loss_terms(encoder, decoder, x, eps)
        iw_bound, _, iw_kl = iwae_terms(encoder, decoder, x, eps[None])
    torch.testing.assert_close(bound, -(rec + kl), rtol=1e-9, atol=1e-6)
    torch.testing.assert_close(iw_bound.double(), -(rec + kl), rtol=1e-5, atol=1e-3)
    torch.testing.assert_close((train_rec + train_kl).double(), rec + kl, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(iw_kl.double(), kl, rtol=1e-5, atol=1e-3)


def test_the_pseudo_inputs_learn_and_travel_in_a_prior_checkpoint_of_their_own(tmp_path: Path) -> None:
    encoder, decoder = build_models(VAMP, seed=0)
    before = encoder.pseudo_inputs.detach().clone()
    x = torch.rand(8, 784, generator=gen(10)).bernoulli(generator=gen(11))
    rec, kl = compute_loss_terms(encoder, decoder, x, torch.randn(8, 3, generator=gen(12)))
    (rec + kl).mean().backward()
    torch.optim.SGD(encoder.parameters(), lr=1.0).step()
    assert not torch.equal(encoder.pseudo_inputs, before)  # the KL's gradient reaches them
    checkpoint.save_pair(tmp_path, encoder, decoder, TrainConfig(model=VAMP, epochs=1), 1, "run")
    assert set(checkpoint.read_record(tmp_path)) == {checkpoint.ENCODER_FILE, checkpoint.DECODER_FILE, PRIOR}
    with safe_open(tmp_path / checkpoint.ENCODER_FILE, "pt") as f:
        assert "pseudo_inputs" not in f.keys()  # the encoder file is the network alone, as for N(0, I)
    with safe_open(tmp_path / PRIOR, "pt") as f:
        assert list(f.keys()) == ["pseudo_inputs"]
    pair = checkpoint.load_checkpoints(tmp_path)
    assert pair.encoder.config.prior == "vamp" and set(pair.sha256) == {"encoder", "decoder", "prior"}
    assert torch.equal(pair.encoder.pseudo_inputs, encoder.pseudo_inputs)


def test_a_standard_model_writes_no_prior_file(tmp_path: Path) -> None:
    encoder, decoder = build_models(dataclasses.replace(VAMP, prior="standard"), seed=0)
    checkpoint.save_pair(tmp_path, encoder, decoder, TrainConfig(model=encoder.config, epochs=1), 1, "run")
    assert not (tmp_path / PRIOR).exists() and set(checkpoint.load_checkpoints(tmp_path).sha256) == {
        "encoder",
        "decoder",
    }


def test_a_standard_run_over_a_vamp_folder_drops_its_prior_file_in_the_same_commit(tmp_path: Path) -> None:
    encoder, decoder = build_models(VAMP, seed=0)
    checkpoint.save_pair(tmp_path, encoder, decoder, TrainConfig(model=VAMP, epochs=1), 1, "run")
    standard = dataclasses.replace(VAMP, prior="standard")
    encoder, decoder = build_models(standard, seed=0)
    checkpoint.save_pair(tmp_path, encoder, decoder, TrainConfig(model=standard, epochs=1), 1, "other")
    assert not (tmp_path / PRIOR).exists()
    assert set(checkpoint.read_record(tmp_path)) == {checkpoint.ENCODER_FILE, checkpoint.DECODER_FILE}


def foreign_tensor(folder: Path) -> None:
    """A prior file that also carries an encoder weight (its record line rewritten to match)."""
    raw, _, path = checkpoint.read_verified(folder / PRIOR)
    meta, tensors = checkpoint.decode(raw, path)
    tensors["mu.bias"] = torch.zeros(3)
    meta = {k: v for k, v in meta.items() if k not in ("format", "version")}
    checkpoint.commit(folder, {PRIOR: checkpoint.encode(tensors, meta)})


def mixed_prior(folder: Path) -> None:
    """A prior file from another run of the same model."""
    encoder, decoder = build_models(VAMP, seed=1)
    checkpoint.save_module(folder / "other" / checkpoint.ENCODER_FILE, "encoder", encoder, TrainConfig(model=VAMP), 2)
    blob = (folder / "other" / PRIOR).read_bytes()
    checkpoint.commit(folder, {PRIOR: blob})


@pytest.mark.parametrize(
    ("damage", "found"),
    [
        (lambda folder: (folder / PRIOR).unlink(), "prior.safetensors not found"),
        (lambda folder: (folder / PRIOR).write_bytes(b"x" * 64), "corrupt checkpoint .*prior.safetensors"),
        (mixed_prior, r"encoder.safetensors \(run run, epoch 1\) and prior.safetensors \(run None, epoch 2\)"),
        (foreign_tensor, r"corrupt checkpoint .*prior.safetensors: it holds \['mu.bias', 'pseudo_inputs'\]"),
    ],
)
def test_a_missing_damaged_or_mixed_prior_file_is_named(tmp_path: Path, damage: Any, found: str) -> None:
    encoder, decoder = build_models(VAMP, seed=0)
    checkpoint.save_pair(tmp_path, encoder, decoder, TrainConfig(model=VAMP, epochs=1), 1, "run")
    damage(tmp_path)
    with pytest.raises(checkpoint.CheckpointError, match=found):
        checkpoint.load_checkpoints(tmp_path)


def test_prior_settings_are_checked_and_left_out_of_configs_at_their_defaults() -> None:
    assert "prior" not in VAEConfig().to_dict() and "prior_components" not in VAEConfig().to_dict()
    assert VAEConfig.from_dict(VAMP.to_dict()) == VAMP
    vamp = PRESETS["large-vamp"]
    assert vamp.model == dataclasses.replace(PRESETS["large"].model, prior="vamp", prior_components=500)
    assert dataclasses.replace(vamp, model=PRESETS["large"].model) == PRESETS["large"]  # the prior alone differs
    vamp_presets = [name for name, preset in PRESETS.items() if preset.model.prior != "standard"]
    assert vamp_presets == ["large-vamp", "large-vamp-iwae5"]
    assert PRESETS["large-vamp-iwae5"] == dataclasses.replace(PRESETS["large-iwae5"], model=vamp.model)
    with pytest.raises(ValueError, match=r"prior must be one of \('standard', 'vamp'\), got 'flow'"):
        VAEConfig(prior="flow")
    with pytest.raises(ValueError, match="prior_components must be >= 1, got 0"):
        VAEConfig(prior="vamp", prior_components=0)


def test_the_device_cost_on_the_quality_page_is_the_presets() -> None:
    """docs/quality.md's device cost of the VampPrior: the mixture's bytes and multiply-adds from the
    `large-vamp` preset's sizes, against its decoder's multiply-adds (one per weight)."""
    from test_readme import says

    m = PRESETS["large-vamp"].model
    _, decoder = build_models(m, seed=0)
    decoder_macs = sum(p.numel() for name, p in decoder.named_parameters() if name.endswith("weight"))
    says(
        "docs/quality.md",
        f"{m.prior_components * m.latent * 2 * 4:,} bytes for K = {m.prior_components} and {m.latent} latents",
        f"3 x K x latent = {3 * m.prior_components * m.latent:,} multiply-adds, against the decoder's "
        f"{decoder_macs / 1e6:.2f} M",
    )
