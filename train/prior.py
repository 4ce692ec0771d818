"""The prior p(z): the standard normal, or a VampPrior learned with the model.

    log p(z) = log N(z; 0, I)                                         prior "standard"
    log p(z) = log (1/K) sum_k q(z | u_k)                             prior "vamp"

The VampPrior (Tomczak & Welling 2018, eq. 9) is the mixture of the encoder's own posteriors at K
learned pseudo-inputs u_k, images of the data's size kept in [0, 1] (their hardtanh). The pseudo-inputs
are a parameter of the encoder (`pseudo_inputs`), so they are saved and loaded with its checkpoint.
Train with it: `python -m edgevae.train --preset large --prior vamp` (K = --prior-components).

The mixture's log-density is formed from matrix products (no (rows, K, latent) tensor), so an
evaluation with k = 1000 samples of 20 images against K = 500 components stays within memory.
Export writes the mixture's components to prior.bin (export/prior_file.py), and the runtime and the
JavaScript package draw z from it and score likelihoods with it (runtime/prior.py).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .config import VAEConfig

PSEUDO_MEAN, PSEUDO_STD = 0.05, 0.01  # the pseudo-inputs' initial values (Tomczak & Welling's code, for MNIST)


def add_pseudo_inputs(encoder: nn.Module, config: VAEConfig) -> None:
    """Give a vamp model's encoder its K pseudo-inputs (K, input_dim); a standard model gets none."""
    if config.prior == "vamp":
        start = PSEUDO_MEAN + PSEUDO_STD * torch.randn(config.prior_components, config.input_dim)
        encoder.pseudo_inputs = nn.Parameter(start)


def vamp_components(encoder: nn.Module) -> tuple[Tensor, Tensor]:
    """The VampPrior's components: the encoder's (mu, logvar) at its pseudo-inputs, (K, latent) each."""
    return encoder(torch.clamp(encoder.pseudo_inputs, 0.0, 1.0))


def log_prior(encoder: nn.Module, z: Tensor) -> Tensor:
    """log p(z) summed over the latent axis, for z (..., latent), in z's dtype."""
    if encoder.config.prior != "vamp":
        return -0.5 * (math.log(2 * math.pi) + z.pow(2)).sum(dim=-1)
    mu, logvar = vamp_components(encoder)
    return log_mixture(z, mu.to(z.dtype), logvar.to(z.dtype))


def sample_prior(encoder: nn.Module, eps: Tensor, u: Tensor) -> Tensor:
    """Draws z (N, latent) from p(z) for standard normal eps (N, latent) and uniform u (N,) in [0, 1):
    eps itself for N(0, I); for the VampPrior, component k = floor(u * K), z = mu_k + sigma_k * eps."""
    if encoder.config.prior != "vamp":
        return eps
    mu, logvar = vamp_components(encoder)
    k = torch.clamp((u * mu.shape[0]).long(), max=mu.shape[0] - 1)
    return mu[k] + torch.exp(0.5 * logvar[k]) * eps


def log_mixture(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log (1/K) sum_k N(z; mu_k, diag(exp(logvar_k))) for z (..., D) and mu, logvar (K, D).

    Expanded: sum_d (z_d - m_d)^2 / v_d = z^2 . (1/v) - 2 z . (m/v) + sum m^2/v, each a matrix product.
    """
    flat = z.reshape(-1, z.shape[-1])
    inv = torch.exp(-logvar)
    square = flat.pow(2) @ inv.T - 2 * flat @ (mu * inv).T + (mu.pow(2) * inv).sum(dim=-1)
    log_comp = -0.5 * (square + logvar.sum(dim=-1) + z.shape[-1] * math.log(2 * math.pi))
    return (torch.logsumexp(log_comp, dim=-1) - math.log(mu.shape[0])).reshape(z.shape[:-1])
