"""KL, likelihood and ELBO math, checked against independent computations."""

from __future__ import annotations

import math

import pytest

from conftest import need

need("torch")

import torch
from torch.distributions import Bernoulli, Normal
from torch.distributions import kl_divergence as torch_kl

from edgevae.train.config import VAEConfig
from edgevae.train.evaluate import evaluate_elbo, evaluate_iw_log_likelihood, log_normal
from edgevae.train.model import (
    Decoder,
    Encoder,
    build_models,
    compute_loss_terms,
    kl_divergence,
    log_likelihood,
    reparameterize,
)

torch.set_default_dtype(torch.float32)


def test_kl_matches_torch_distributions() -> None:
    gen = torch.Generator().manual_seed(0)
    mu = torch.randn(16, 20, generator=gen, dtype=torch.float64) * 2
    logvar = torch.randn(16, 20, generator=gen, dtype=torch.float64)
    ref = torch_kl(Normal(mu, (0.5 * logvar).exp()), Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(-1)
    torch.testing.assert_close(kl_divergence(mu, logvar), ref, rtol=1e-12, atol=1e-12)


def test_kl_matches_monte_carlo() -> None:
    gen = torch.Generator().manual_seed(1)
    mu, logvar = torch.tensor([[0.7, -1.2]], dtype=torch.float64), torch.tensor([[-0.5, 0.3]], dtype=torch.float64)
    z = reparameterize(mu, logvar, torch.randn(400_000, 2, generator=gen, dtype=torch.float64))
    mc = (log_normal(z, mu, logvar) - log_normal(z, torch.zeros_like(z), torch.zeros_like(z))).mean()
    assert abs(float(mc) - float(kl_divergence(mu, logvar))) < 5e-3


def test_kl_is_zero_only_at_the_prior() -> None:
    zeros = torch.zeros(3, 5)
    assert torch.all(kl_divergence(zeros, zeros) == 0)
    assert torch.all(kl_divergence(zeros + 0.1, zeros) > 0)


def test_bernoulli_log_likelihood_matches_distribution() -> None:
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(8, 784, generator=gen, dtype=torch.float64) * 30  # extreme logits: stability
    x = torch.bernoulli(torch.rand(8, 784, generator=gen, dtype=torch.float64), generator=gen)
    ref = Bernoulli(logits=logits).log_prob(x).sum(-1)
    got = log_likelihood(x, logits, "bernoulli")
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-8)


def test_gaussian_log_likelihood_is_mse_sum_plus_constant() -> None:
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(4, 784, generator=gen, dtype=torch.float64)
    x = torch.rand(4, 784, generator=gen, dtype=torch.float64)
    mean = torch.sigmoid(logits)
    ref = Normal(mean, math.sqrt(0.5)).log_prob(x).sum(-1)
    got = log_likelihood(x, logits, "gaussian")
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-8)
    mse_sum = ((x - mean) ** 2).sum(-1)  # the book's loss
    torch.testing.assert_close(-got - mse_sum, torch.full_like(mse_sum, 392 * math.log(math.pi)))


def test_unknown_likelihood_is_rejected() -> None:
    with pytest.raises(ValueError, match="likelihood must be"):
        log_likelihood(torch.zeros(1, 4), torch.zeros(1, 4), "poisson")


def test_reparameterize_formula() -> None:
    mu, logvar, eps = torch.tensor([1.0]), torch.tensor([math.log(4.0)]), torch.tensor([0.5])
    assert float(reparameterize(mu, logvar, eps)) == pytest.approx(1.0 + 2.0 * 0.5)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_loss_terms_equal_independent_elbo(likelihood: str) -> None:
    config = VAEConfig(likelihood=likelihood, hidden=16, latent=3, image_shape=(4, 4))
    encoder, decoder = build_models(config, seed=0)
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(5, 16, generator=gen).round()
    eps = torch.randn(5, 3, generator=gen)
    rec, kl = compute_loss_terms(encoder, decoder, x, eps)
    # independent: torch.distributions for q, p(z) and p(x|z)
    mu, logvar = encoder(x)
    q = Normal(mu, (0.5 * logvar).exp())
    z = mu + q.scale * eps
    logits = decoder(z)
    px = Bernoulli(logits=logits) if likelihood == "bernoulli" else Normal(torch.sigmoid(logits), math.sqrt(0.5))
    torch.testing.assert_close(rec, -px.log_prob(x).sum(-1), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(kl, torch_kl(q, Normal(0.0, 1.0)).sum(-1), rtol=1e-5, atol=1e-5)


def test_architecture_is_the_textbook_one() -> None:
    encoder, decoder = Encoder(VAEConfig()), Decoder(VAEConfig())
    shapes = {
        k: tuple(v.shape)
        for k, v in {**encoder.state_dict(), **{"d." + k: v for k, v in decoder.state_dict().items()}}.items()
    }
    assert shapes == {
        "hidden.weight": (200, 784),
        "hidden.bias": (200,),
        "mu.weight": (20, 200),
        "mu.bias": (20,),
        "logvar.weight": (20, 200),
        "logvar.bias": (20,),
        "d.hidden.weight": (200, 20),
        "d.hidden.bias": (200,),
        "d.out.weight": (784, 200),
        "d.out.bias": (784,),
    }


@pytest.mark.parametrize("block", ["plain", "gated", "resnet"])
@pytest.mark.parametrize("layers", [1, 3])
def test_blocks_and_depth_build_the_stated_network(block: str, layers: int) -> None:
    config = VAEConfig(hidden=16, latent=3, image_shape=(4, 4), layers=layers, block=block)
    encoder, decoder = build_models(config, seed=0)
    linears = [m for m in decoder.modules() if isinstance(m, torch.nn.Linear)]
    per_layer = 2 if block == "gated" else 1
    assert len(linears) == layers * per_layer + 1  # hidden layers, then the output layer
    x = torch.rand(5, 16)
    mu, logvar = encoder(x)
    assert mu.shape == logvar.shape == (5, 3) and decoder(mu).shape == (5, 16)


def test_gated_layer_is_linear_times_sigmoid_gate() -> None:
    from edgevae.train.model import Gated

    layer = Gated(4, 3)
    x = torch.randn(2, 4)
    expected = (x @ layer.linear.weight.T + layer.linear.bias) * torch.sigmoid(
        x @ layer.gate.weight.T + layer.gate.bias
    )
    torch.testing.assert_close(layer(x), expected)


def test_resnet_layers_add_their_input_back() -> None:
    config = VAEConfig(hidden=8, latent=2, image_shape=(2, 2), layers=2, block="resnet")
    _, decoder = build_models(config, seed=1)
    with torch.no_grad():
        decoder.hidden.rest[0].weight.zero_()
        decoder.hidden.rest[0].bias.zero_()  # the second layer adds relu(0) = 0: h passes through
        z = torch.randn(3, 2)
        h1 = torch.relu(decoder.hidden.first(z))
        torch.testing.assert_close(decoder(z), decoder.out(h1))


def test_importance_weighted_bound_tightens_with_k() -> None:
    encoder, decoder = build_models(VAEConfig(hidden=32, latent=4), seed=5)
    x = torch.bernoulli(torch.full((50, 784), 0.2), generator=torch.Generator().manual_seed(6))
    elbo = evaluate_elbo(encoder, decoder, x)["elbo"]
    iw1 = evaluate_iw_log_likelihood(encoder, decoder, x, k=1)
    iw100 = evaluate_iw_log_likelihood(encoder, decoder, x, k=100)
    assert abs(iw1 - elbo) < 0.05 * abs(elbo)  # k=1 is an ELBO estimate
    assert iw100 > iw1 + 1.0  # the Burda bound is tighter with more samples


def test_importance_weighted_bound_is_exact_when_q_is_the_posterior() -> None:
    # With a decoder that ignores z, p(x|z) = p(x) and any q gives log p(x) for every k.
    config = VAEConfig(hidden=8, latent=2, image_shape=(2, 2))
    encoder, decoder = build_models(config, seed=7)
    with torch.no_grad():
        decoder.hidden.weight.zero_()
        decoder.out.bias.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0]))
        encoder.mu.weight.zero_()
        encoder.mu.bias.zero_()
        encoder.logvar.weight.zero_()
        encoder.logvar.bias.zero_()
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0]])
    logits = decoder(torch.zeros(1, 2))
    exact = float(Bernoulli(logits=logits.detach()).log_prob(x).sum())
    assert evaluate_iw_log_likelihood(encoder, decoder, x, k=7) == pytest.approx(exact, abs=1e-5)


def test_iwae_bound_is_exact_when_the_decoder_ignores_z() -> None:
    """With p(x|z) independent of z and q(z|x) = p(z), every importance weight is p(x): the bound is
    log p(x) for every k, not just a lower bound."""
    from edgevae.train.model import iwae_terms

    config = VAEConfig(hidden=16, latent=4, image_shape=(4, 4))
    encoder, decoder = build_models(config, seed=0)
    with torch.no_grad():
        for layer in (encoder.mu, encoder.logvar):  # q(z|x) = N(0, I) = p(z)
            layer.weight.zero_()
            layer.bias.zero_()
        decoder.hidden.weight.zero_()  # the decoder sees a constant: p(x|z) = p(x)
    x = torch.bernoulli(torch.full((6, 16), 0.3), generator=torch.Generator().manual_seed(1))
    log_px = log_likelihood(x, decoder(torch.zeros(6, 4)), "bernoulli")
    for k in (1, 7, 50):
        eps = torch.randn((k, 6, 4), generator=torch.Generator().manual_seed(k))
        bound, rec, kl = iwae_terms(encoder, decoder, x, eps)
        torch.testing.assert_close(bound, log_px, rtol=0, atol=1e-4)
        torch.testing.assert_close(rec, -log_px, rtol=0, atol=1e-4)
        assert torch.all(kl.abs() < 1e-6)


def test_iwae_bound_tightens_with_k_on_the_released_model() -> None:
    from edgevae.export.validate import load_real_images
    from edgevae.train import checkpoint
    from edgevae.train.model import iwae_terms

    from conftest import RELEASED_CHECKPOINTS

    encoder, decoder = checkpoint.load_pair(RELEASED_CHECKPOINTS)
    real = torch.from_numpy(load_real_images()[:128].astype("float32") / 255.0)
    x = torch.bernoulli(real, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        means = [
            float(
                iwae_terms(encoder, decoder, x, torch.randn((k, 128, 20), generator=torch.Generator().manual_seed(k)))[
                    0
                ].mean()
            )
            for k in (1, 10, 100)
        ]
    assert means[0] < means[1] < means[2], means  # a tighter bound with more samples (Burda et al., Thm 1)
    assert means[2] - means[0] > 1.0  # nats: the gap an IWAE objective trains on
