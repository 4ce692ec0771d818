"""The MLP VAE: `Encoder`, `Decoder` and the ELBO terms.

encoder: x (N, D) -> `layers` hidden layers -> mu, logvar (N, latent each)
decoder: z (N, latent) -> `layers` hidden layers -> logits (N, D); pixel means = sigmoid(logits)
loss    = -log p(x|z) + beta * KL(q(z|x) || p(z)),  z = mu + exp(logvar / 2) * eps
          (p(z) = N(0, I), or a learned VampPrior: prior.py)

A hidden layer is `block`: plain is Linear then ReLU (the textbook model: one plain layer of 200);
gated is Linear * sigmoid(Linear); resnet adds its input back after the first layer.
Noise is always passed in (`eps`), never drawn inside a module, so the exported graphs and the
PyTorch model compute the same thing from the same inputs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from edgevae.runtime.contract import LIKELIHOODS, SCALED_LIKELIHOODS

from .config import VAEConfig
from .prior import add_pseudo_inputs, log_prior


class Gated(nn.Module):
    """h = (W x + b) * sigmoid(V x + c): the gated dense layer (Dauphin et al. 2017, eq. 1), the MLP
    block of Tomczak & Welling 2018."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        self.gate = nn.Linear(n_in, n_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x) * torch.sigmoid(self.gate(x))


class Hidden(nn.Module):
    """`config.layers` hidden layers of `config.block` from n_in to config.hidden units: `first`, then
    `rest`. (The textbook shape, one plain layer, is a bare `Linear` instead: see `make_hidden`.)"""

    def __init__(self, n_in: int, config: VAEConfig) -> None:
        super().__init__()
        self.block = config.block
        self.first = make_layer(n_in, config.hidden, config.block)
        self.rest = nn.ModuleList(
            make_layer(config.hidden, config.hidden, config.block) for _ in range(config.layers - 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        h = activate(self.first(x), self.block)
        for layer in self.rest:
            out = activate(layer(h), self.block)
            h = h + out if self.block == "resnet" else out
        return h


def make_layer(n_in: int, n_out: int, block: str) -> nn.Module:
    """One hidden layer's weights: a Linear, or a Gated pair."""
    return Gated(n_in, n_out) if block == "gated" else nn.Linear(n_in, n_out)


def activate(h: Tensor, block: str) -> Tensor:
    """ReLU after a plain or resnet Linear; a gated layer is its own nonlinearity."""
    return h if block == "gated" else F.relu(h)


def make_hidden(n_in: int, config: VAEConfig) -> nn.Module:
    """The hidden stack. The textbook shape (one plain layer) stays a bare Linear, so checkpoints
    written before blocks existed keep loading with their keys (hidden.weight, hidden.bias)."""
    if config.layers == 1 and config.block == "plain":
        return nn.Linear(n_in, config.hidden)
    return Hidden(n_in, config)


def run_hidden(hidden: nn.Module, x: Tensor) -> Tensor:
    """The hidden stack's output: ReLU after the textbook's bare Linear; a `Hidden` activates itself."""
    return F.relu(hidden(x)) if isinstance(hidden, nn.Linear) else hidden(x)


class Encoder(nn.Module):
    """q(z|x): a diagonal Gaussian with mean `mu` and log-variance `logvar`."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.hidden = make_hidden(config.input_dim, config)
        self.mu = nn.Linear(config.hidden, config.latent)
        self.logvar = nn.Linear(config.hidden, config.latent)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = run_hidden(self.hidden, x)
        return self.mu(h), self.logvar(h)


class Decoder(nn.Module):
    """p(x|z): returns logits; the pixel means are their sigmoid. For the discretized logistic the
    output is twice as wide: location logits, then log scales (`split_output`)."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.hidden = make_hidden(config.latent, config)
        self.out = nn.Linear(config.hidden, config.input_dim * output_params(config.likelihood))

    def forward(self, z: Tensor) -> Tensor:
        return self.out(run_hidden(self.hidden, z))


LOG_SCALE_MIN = -7.0  # the logistic's scale is at least exp(-7) = 0.0009 (a quarter of one level), as in PixelCNN++


def output_params(likelihood: str) -> int:
    """Values the decoder gives per pixel: 2 (location, log scale) for the discretized logistic, else 1."""
    return 2 if likelihood in SCALED_LIKELIHOODS else 1


def split_output(out: Tensor, pixels: int, likelihood: str) -> tuple[Tensor, Tensor | None]:
    """(logits, log_scale or None) from a decoder's output; log scales are clamped at LOG_SCALE_MIN."""
    if likelihood not in SCALED_LIKELIHOODS:
        return out, None
    logits, log_scale = torch.split(out, pixels, dim=-1)
    return logits, torch.clamp(log_scale, min=LOG_SCALE_MIN)


def make_encoder(config: VAEConfig) -> nn.Module:
    """The encoder `config.block` asks for: the MLP `Encoder` or the convolutional one."""
    from .conv import ConvEncoder

    encoder = ConvEncoder(config) if config.block == "conv" else Encoder(config)
    add_pseudo_inputs(encoder, config)
    return encoder


def make_decoder(config: VAEConfig) -> nn.Module:
    """The decoder `config.block` asks for: the MLP `Decoder` or the convolutional one."""
    from .conv import ConvDecoder

    decoder = ConvDecoder(config, output_params(config.likelihood)) if config.block == "conv" else Decoder(config)
    if config.likelihood in SCALED_LIKELIHOODS:
        start_log_scale(decoder)
    return decoder


LOG_SCALE_START = -3.0  # initial scale exp(-3) = 0.05, about 13 levels: training starts near a useful width


def start_log_scale(decoder: nn.Module) -> None:
    """Set the bias of the decoder's log-scale outputs to LOG_SCALE_START (the last layer's second half)."""
    last = decoder.head if hasattr(decoder, "head") else decoder.out
    with torch.no_grad():
        half = last.bias.shape[0] // 2
        last.bias[half:] = LOG_SCALE_START


def decoder_mean(decoder: nn.Module, z: Tensor) -> Tensor:
    """Pixel means (N, H*W*C) in [0, 1] for latents z: the sigmoid of the (location) logits."""
    logits, _ = split_output(decoder(z), decoder.config.input_dim, decoder.config.likelihood)
    return torch.sigmoid(logits)


def reparameterize(mu: Tensor, logvar: Tensor, eps: Tensor) -> Tensor:
    """z = mu + sigma * eps with sigma = exp(logvar / 2) (Kingma & Welling 2014, eq. 10)."""
    return mu + torch.exp(0.5 * logvar) * eps


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) per example, summed over latent dims.

    Closed form from Kingma & Welling 2014, Appendix B: -1/2 * sum(1 + log sigma^2 - mu^2 - sigma^2).
    """
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=-1)


def log_normal(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mu, diag(exp(logvar))) summed over the last axis."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu).pow(2) / logvar.exp()).sum(dim=-1)


def kl_term(encoder: nn.Module, mu: Tensor, logvar: Tensor, z: Tensor) -> Tensor:
    """The KL term per example: closed form against N(0, I); against a learned prior, the one-sample
    estimate log q(z|x) - log p(z) at z (Kingma & Welling 2014, eq. 6)."""
    if encoder.config.prior == "standard":
        return kl_divergence(mu, logvar)
    return log_normal(z, mu, logvar) - log_prior(encoder, z)


def iwae_terms(
    encoder: Encoder, decoder: Decoder, x: Tensor, eps: Tensor, kl_weight: float = 1.0
) -> tuple[Tensor, Tensor, Tensor]:
    """The importance-weighted bound per example, for eps (k, N, latent) (Burda et al. 2015, eq. 8):
    log (1/k) sum_i p(x|z_i) [p(z_i) / q(z_i|x)]^kl_weight with z_i = mu + sigma * eps_i (kl_weight 1 is
    the bound; below 1 it is the warm-up's tempered version). Also -mean_i log p(x|z_i) and the
    closed-form KL, for reporting. Returns (bound, rec, kl), each (N,)."""
    mu, logvar = encoder(x)
    z = reparameterize(mu[None], logvar[None], eps)
    logits = decoder(z)
    log_px = log_likelihood(x[None].expand(*logits.shape[:-1], x.shape[-1]), logits, encoder.config.likelihood)
    log_ratio = log_prior(encoder, z) - log_normal(z, mu[None], logvar[None])
    bound = torch.logsumexp(log_px + kl_weight * log_ratio, dim=0) - math.log(eps.shape[0])
    kl = kl_divergence(mu, logvar) if encoder.config.prior == "standard" else -log_ratio.mean(dim=0)
    return bound, -log_px.mean(dim=0), kl


def log_likelihood(x: Tensor, logits: Tensor, likelihood: str) -> Tensor:
    """log p(x|z) per example, summed over pixels, in nats.

    bernoulli: -BCE computed from logits (stable for any logit; x may be binary or in [0, 1]).
    gaussian:  N(x; sigmoid(logits), variance 1/2), so -log p = sum (x - mean)^2 + D/2 log(pi):
               the book's MSE-sum loss plus a constant, which makes it a proper density.
    discretized_logistic: `logits` holds location logits then log scales (`split_output`); each
               8-bit level x = k/255 gets the logistic's probability mass over its bin of width 1/255,
               the end bins open (Salimans et al. 2017, PixelCNN++, eq. 2, one component).
    """
    if likelihood == "discretized_logistic":
        loc_logits, log_scale = split_output(logits, x.shape[-1], likelihood)
        assert log_scale is not None, "a discretized-logistic decoder gives 2 values per pixel"
        return discretized_logistic(x, torch.sigmoid(loc_logits), log_scale).sum(dim=-1)
    if likelihood == "bernoulli":
        return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=-1)
    if likelihood == "gaussian":
        mean = torch.sigmoid(logits)
        sq = (x - mean).pow(2).sum(dim=-1)
        return -sq - 0.5 * x.shape[-1] * math.log(math.pi)
    raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")


def discretized_logistic(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """Per-pixel log P(x) of levels x = k/255 under a logistic (location mean, scale exp(log_scale))
    binned to width 1/255 (PixelCNN++, Salimans et al. 2017): log(F(x + h) - F(x - h)), F the
    logistic CDF, h half a bin; log F(x + h) at level 0 and log(1 - F(x - h)) at level 255. The
    difference is formed from whichever tail keeps it exact (log-space, as runtime/likelihood.py)."""
    half = 0.5 / 255.0
    inv = torch.exp(-log_scale)
    centred = x - mean
    upper, lower = inv * (centred + half), inv * (centred - half)
    log_cdf_upper = upper - F.softplus(upper)
    log_sf_lower = -F.softplus(lower)
    tiny = -torch.finfo(upper.dtype).tiny
    log_mid = log_cdf_upper + torch.log(-torch.expm1(torch.clamp(lower - F.softplus(lower) - log_cdf_upper, max=tiny)))
    log_tail = log_sf_lower + torch.log(-torch.expm1(torch.clamp(-F.softplus(upper) - log_sf_lower, max=tiny)))
    mid = torch.where(centred > 0, log_tail, log_mid)
    return torch.where(x < half, log_cdf_upper, torch.where(x > 1.0 - half, log_sf_lower, mid))


def compute_loss_terms(encoder: Encoder, decoder: Decoder, x: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
    """Per-example reconstruction term (-log p(x|z)) and KL term for one noise draw."""
    mu, logvar = encoder(x)
    z = reparameterize(mu, logvar, eps)
    rec = -log_likelihood(x, decoder(z), encoder.config.likelihood)
    return rec, kl_term(encoder, mu, logvar, z)


def build_models(config: VAEConfig, seed: int | None = None) -> tuple[Encoder, Decoder]:
    """A freshly initialized encoder/decoder pair (seeded when `seed` is given)."""
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return make_encoder(config), make_decoder(config)  # type: ignore[return-value]
    return make_encoder(config), make_decoder(config)  # type: ignore[return-value]
