"""Likelihoods with numpy only: the ELBO, the importance-weighted log p(x) and unusual-input scores.

The encoder graph gives q(z|x) = N(mu, exp(logvar)); z = mu + exp(logvar / 2) * eps is formed here
from caller-given or seeded noise; the decoder graph gives logits (bernoulli) or pixel means
(gaussian). Everything is in nats per image. These functions are what `VAE.elbo`,
`VAE.log_likelihood` and `VAE.score` run; they take the two sessions through the `VAE`.

Formulas:
- bernoulli log p(x|z) = sum x * l - softplus(l), from logits l (stable for any l);
  gaussian log p(x|z) = -sum (x - mean)^2 - D/2 log(pi) (variance 1/2: the book's MSE sum + const);
  both as in edgevae.train.model.log_likelihood.
- KL(q || N(0, I)) in closed form (Kingma & Welling 2014, Appendix B).
- log p(x) >= log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x), z_i ~ q(z|x) (Burda et al. 2015, eq. 8),
  reduced with log-sum-exp.
- Complexity (Serra et al. 2020, "Input complexity and out-of-distribution detection"): the
  length in nats of the image's 8-bit pixels compressed by zlib (DEFLATE, level 9).
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

LOG_2PI = math.log(2 * math.pi)
LN2 = math.log(2.0)
LIKELIHOODS = ("bernoulli", "gaussian")


def softplus(v: np.ndarray) -> np.ndarray:
    """log(1 + exp(v)) elementwise, stable for any v: max(v, 0) + log1p(exp(-|v|)), in v's dtype."""
    out = np.abs(v)
    np.negative(out, out=out)
    np.exp(out, out=out)
    np.log1p(out, out=out)
    out += np.maximum(v, 0)
    return out


def log_px_given_z(x: np.ndarray, logits: np.ndarray, mean: np.ndarray | None, likelihood: str) -> np.ndarray:
    """log p(x|z) summed over the last axis; x (float32) broadcasts against logits / mean.

    Each pixel's term is formed in float32, as PyTorch forms it, and the terms are summed in float64.
    """
    if likelihood == "bernoulli":
        term = softplus(logits)
        term -= x * logits
        return -term.sum(axis=-1, dtype=np.float64)
    if likelihood == "gaussian":
        if mean is None:
            raise ValueError("the gaussian likelihood needs the decoder's mean")
        d = x - mean
        return -(d * d).sum(axis=-1, dtype=np.float64) - 0.5 * x.shape[-1] * math.log(math.pi)
    raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")


def kl_standard_normal(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """KL(N(mu, exp(logvar)) || N(0, I)) per row, float64 (Kingma & Welling 2014, Appendix B)."""
    mu64, lv64 = mu.astype(np.float64), logvar.astype(np.float64)
    return -0.5 * (1.0 + lv64 - mu64 * mu64 - np.exp(lv64)).sum(axis=-1)


def log_normal(z: np.ndarray, mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """log N(z; mu, diag(exp(logvar))) summed over the last axis, float64."""
    z64, mu64, lv64 = z.astype(np.float64), mu.astype(np.float64), logvar.astype(np.float64)
    return -0.5 * (LOG_2PI + lv64 + (z64 - mu64) ** 2 / np.exp(lv64)).sum(axis=-1)


def log_mean_exp(log_w: np.ndarray, axis: int = 0) -> np.ndarray:
    """log (1/k) sum exp(log_w) along `axis`, stable (max subtracted first)."""
    top = np.max(log_w, axis=axis, keepdims=True)
    out = np.log(np.mean(np.exp(log_w - top), axis=axis, keepdims=True)) + top
    return np.squeeze(out, axis=axis)


def plan_blocks(n: int, k: int, rows: int) -> Iterator[tuple[int, int, int, int]]:
    """(image lo, image hi, sample lo, sample hi) blocks so that (samples * images) <= rows per
    decoder run: k x N is never held at once, only one block of it."""
    per = max(1, rows // k)  # images per block
    kb = min(k, max(1, rows // per))  # samples per block
    for lo in range(0, n, per):
        hi = min(n, lo + per)
        for s in range(0, k, kb):
            yield lo, hi, s, min(k, s + kb)


def complexity_nats(x: npt.ArrayLike) -> np.ndarray:
    """Serra et al. 2020's L(x): zlib-compressed length of each image's 8-bit pixels, in nats.

    x: (N, pixels) floats in [0, 1]. The pixels are rounded to 0..255 first, as a PNG would hold them.
    """
    arr = np.asarray(x, dtype=np.float64)
    levels = np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.array([len(zlib.compress(row.tobytes(), 9)) * 8 * LN2 for row in levels], dtype=np.float64)
