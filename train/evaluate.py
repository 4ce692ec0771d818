"""Test-set ELBO and the importance-weighted estimate of log p(x), in nats per image.

For the bernoulli likelihood the test images are binarized once, by sampling each pixel with
its grey level as probability from a generator seeded with EVAL_SEED, so the figures are
repeatable and comparable with the binarized-MNIST literature.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .model import Decoder, Encoder, kl_term, log_likelihood, log_normal, reparameterize
from .prior import log_prior

EVAL_SEED = 20140101  # fixed seed for test binarization and evaluation noise
IW_ESTIMATOR = "importance-weighted bound log (1/k) sum_i p(x, z_i) / q(z_i|x) (Burda et al. 2015, eq. 8)"


def describe_nll(nll: float, k: int, images: int, likelihood: str, seed: int = EVAL_SEED) -> dict[str, object]:
    """How an NLL figure was measured, recorded beside it: estimator, k, images, binarization."""
    binarized = likelihood == "bernoulli"
    return {
        "nll": nll,
        "estimator": IW_ESTIMATOR,
        "k": k,
        "images": images,
        "subset": f"first {images} test images",
        "likelihood": likelihood,
        "binarization": "fixed (each pixel ~ Bernoulli(grey level), drawn once)" if binarized else "none (grey levels)",
        "binarization_seed": seed if binarized else None,
        "noise": f"torch generator seeded {seed + 1}",
    }


def prepare_eval_images(images: Tensor, likelihood: str, seed: int = EVAL_SEED) -> Tensor:
    """Float images in [0, 1] (N, D) -> what the likelihood is evaluated on."""
    if likelihood != "bernoulli":
        return images
    gen = torch.Generator(device=images.device).manual_seed(seed)
    return torch.bernoulli(images, generator=gen)


@torch.no_grad()
def evaluate_elbo(
    encoder: Encoder, decoder: Decoder, x: Tensor, batch_size: int = 1000, seed: int = EVAL_SEED
) -> dict[str, float]:
    """Mean ELBO (one reparameterized sample per image, fixed noise) and its two terms."""
    gen = torch.Generator(device=x.device).manual_seed(seed)
    rec_sum = kl_sum = 0.0
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size]
        eps = torch.randn((len(xb), encoder.config.latent), generator=gen, device=x.device)
        rec, kl = elbo_terms(encoder, decoder, xb, eps)
        rec_sum += float(rec.sum())
        kl_sum += float(kl.sum())
    n = len(x)
    return {"elbo": -(rec_sum + kl_sum) / n, "rec": rec_sum / n, "kl": kl_sum / n}


@torch.no_grad()
def elbo_terms(encoder: Encoder, decoder: Decoder, x: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
    """Per image: -log p(x|z) and KL(q(z|x) || p(z)) for z = mu + sigma * eps; eps is (N, latent)
    (closed form for N(0, I), the one-sample estimate for a learned prior).

    The networks run in their own precision; the likelihood terms are summed in float64, so a value
    of hundreds of nats is not rounded to float32's 6e-5 steps.
    """
    mu, logvar = encoder(x)
    z = reparameterize(mu, logvar, eps)
    return (
        -log_likelihood(x.double(), decoder(z).double(), encoder.config.likelihood),
        kl_term(encoder, mu.double(), logvar.double(), z.double()),
    )


@torch.no_grad()
def evaluate_iw_log_likelihood(
    encoder: Encoder, decoder: Decoder, x: Tensor, k: int, batch_size: int = 20, seed: int = EVAL_SEED
) -> float:
    """Mean over x of log (1/k) sum_i p(x, z_i) / q(z_i|x), z_i ~ q(z|x) (Burda et al. 2015, eq. 8).

    A lower bound on log p(x) that tightens as k grows; with k=1 it is the ELBO.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    gen = torch.Generator(device=x.device).manual_seed(seed + 1)
    total = 0.0
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size]
        eps = torch.randn((k, len(xb), encoder.config.latent), generator=gen, device=x.device)  # (k, B, L)
        total += float(iw_log_likelihood(encoder, decoder, xb, eps).sum())
    return total / len(x)


@torch.no_grad()
def iw_log_likelihood(encoder: Encoder, decoder: Decoder, x: Tensor, eps: Tensor) -> Tensor:
    """Per image: log (1/k) sum_i p(x, z_i) / q(z_i|x) with z_i = mu + sigma * eps[i]; eps is (k, N, latent).

    The networks run in their own precision; the log-weights are formed in float64.
    """
    k = eps.shape[0]
    mu, logvar = encoder(x)  # (N, L)
    z = reparameterize(mu, logvar, eps)
    logits = decoder(z.reshape(-1, z.shape[-1])).reshape(k, len(x), -1)
    log_px_z = log_likelihood(x.double().expand(k, -1, -1), logits.double(), encoder.config.likelihood)
    z64 = z.double()
    log_pz = log_prior(encoder, z64)
    log_qz = log_normal(z64, mu.double(), logvar.double())
    log_w = log_px_z + log_pz - log_qz  # (k, N)
    return torch.logsumexp(log_w, dim=0) - math.log(k)
