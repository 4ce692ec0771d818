"""The likelihood formulas, with numpy only: log p(x|z), the KL term, log-mean-exp, complexity.

What `VAE.elbo`, `VAE.log_likelihood` and `VAE.score` compute with (estimates.py, scoring.py runs
the graphs); everything is in nats per image, float64 where it sums.

Formulas:
- bernoulli log p(x|z) = sum x * l - softplus(l), from logits l (stable for any l);
  gaussian log p(x|z) = -sum (x - mean)^2 - D/2 log(pi) (variance 1/2: the book's MSE sum + const);
  both as in the training code (train/model.py, log_likelihood).
- discretized logistic log p(x|z) = sum log [F((x + 1/510 - m) / s) - F((x - 1/510 - m) / s)] over 8-bit
  levels x = k/255, F the logistic CDF, the end bins open to -inf and +inf (Salimans et al. 2017,
  PixelCNN++, eq. 2, one mixture component), location m = mean and s = exp(log_scale) per pixel.
- KL(q || N(0, I)) in closed form (Kingma & Welling 2014, Appendix B).
- log p(x) >= log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x), z_i ~ q(z|x) (Burda et al. 2015, eq. 8),
  reduced with log-sum-exp.
- Complexity (Serra et al. 2020, "Input complexity and out-of-distribution detection"): the
  length in nats of the image's 8-bit pixels compressed by zlib (DEFLATE, level 9).
- z = mu + exp(logvar / 2) * eps, the reparameterization (Kingma & Welling 2014, section 2.4).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from .contract import LIKELIHOODS
from .scores import DEFAULT_SCORE, SCORES  # noqa: F401  (names kept from 0.1.0)

LOG_2PI = math.log(2 * math.pi)
LN2 = math.log(2.0)
HALF_BIN = 0.5 / 255.0  # half the width of one 8-bit level in [0, 1]
# The bernoulli term goes through in blocks of this many values (512 KiB of float32), so each of its
# passes reads what the last one wrote from the core's L2 cache, not from memory.
BLOCK_VALUES = 1 << 17
# log1p(exp(-|l|)) is formed from exp(-min(|l|, 80)): exp(-80) is still a normal float32, where
# exp(-|l|) of a saturated logit (often below -87) is subnormal and costs the CPU ten times as much
# per value; the term's change is under 2e-35 nats per pixel.
SOFTPLUS_CLAMP = 80.0


def softplus(v: np.ndarray) -> np.ndarray:
    """log(1 + exp(v)) elementwise, stable for any v: max(v, 0) + log1p(exp(-|v|)), in v's dtype."""
    out = np.abs(v)
    np.negative(out, out=out)
    np.exp(out, out=out)
    np.log1p(out, out=out)
    out += np.maximum(v, 0)
    return out


def reparameterize(mu: np.ndarray, logvar: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """z = mu + exp(logvar / 2) * eps in float32, as the encoder graph and train/model.py compute it."""
    return (mu + np.exp(np.float32(0.5) * logvar) * eps).astype(np.float32, copy=False)


def log_px_given_z(x: np.ndarray, logits: np.ndarray, mean: np.ndarray | None, likelihood: str) -> np.ndarray:
    """log p(x|z) summed over the last axis; x (float32) broadcasts against logits / mean.

    Each pixel's term is formed in float32, as PyTorch forms it, and the terms are summed in float64.
    For discretized_logistic, `logits` is the decoder's log_scale output (its location is `mean`).
    """
    if likelihood == "discretized_logistic":
        if mean is None:
            raise ValueError("the discretized logistic likelihood needs the decoder's mean")
        return discretized_logistic(x, mean, logits).sum(axis=-1)
    if likelihood == "bernoulli":
        return bernoulli_log_px(x, logits)
    if likelihood == "gaussian":
        if mean is None:
            raise ValueError("the gaussian likelihood needs the decoder's mean")
        d = x - mean
        return -(d * d).sum(axis=-1, dtype=np.float64) - 0.5 * x.shape[-1] * math.log(math.pi)
    raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")


def bernoulli_log_px(x: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """sum over the last axis of x * l - softplus(l), float64 sums of float32 terms, shaped like
    logits (..., pixels) without its last axis; x (float32) has logits' shape, or fewer leading axes,
    or size 1 on the first (one way only: logits never broadcast against x).

    softplus(l) = max(l, 0) + log1p(exp(-|l|)), stable for any l; the work goes in blocks of about
    BLOCK_VALUES along the first axis, so that no pass over the values leaves the cache.
    """
    if x.ndim < logits.ndim:
        x = x.reshape((1,) * (logits.ndim - x.ndim) + x.shape)
    out = np.empty(logits.shape[:-1], np.float64)
    if logits.ndim == 1:
        return bernoulli_log_px(x[None], logits[None])[0]
    per = max(1, BLOCK_VALUES // max(1, math.prod(logits.shape[1:])))
    for s in range(0, logits.shape[0], per):
        b = logits[s : s + per]
        xb = x if x.shape[0] == 1 else x[s : s + per]
        t = np.abs(b)
        np.minimum(t, SOFTPLUS_CLAMP, out=t)
        np.negative(t, out=t)
        np.exp(t, out=t)
        np.log1p(t, out=t)
        r = np.maximum(b, 0)
        t += r
        np.multiply(xb, b, out=r)
        t -= r
        out[s : s + per] = -t.sum(axis=-1, dtype=np.float64)
    return out


def discretized_logistic(x: np.ndarray, mean: np.ndarray, log_scale: np.ndarray) -> np.ndarray:
    """Per-pixel log P(x) of 8-bit levels x = k/255 under a logistic (location mean, scale
    exp(log_scale)) binned to width 1/255, the end bins open (PixelCNN++, Salimans et al. 2017), float64."""
    x64, m64 = np.asarray(x, np.float64), np.asarray(mean, np.float64)
    ls = np.asarray(log_scale, np.float64)
    inv = np.exp(-ls)
    centred = x64 - m64
    upper, lower = inv * (centred + HALF_BIN), inv * (centred - HALF_BIN)
    log_cdf_upper = upper - softplus(upper)  # log F(upper): the bottom bin's probability
    log_sf_lower = -softplus(lower)  # log (1 - F(lower)): the top bin's
    # log (F(upper) - F(lower)) = log F(upper) + log(1 - exp(log F(lower) - log F(upper))), stable for any width
    log_cdf_lower = lower - softplus(lower)
    log_mid = log_cdf_upper + np.log(-np.expm1(np.minimum(log_cdf_lower - log_cdf_upper, -1e-300)))
    # far in the upper tail both CDFs round to 1: use the survival functions instead
    log_mid_tail = log_sf_lower + np.log(-np.expm1(np.minimum(-softplus(upper) - log_sf_lower, -1e-300)))
    mid = np.where(centred > 0, log_mid_tail, log_mid)
    return np.where(x64 < HALF_BIN, log_cdf_upper, np.where(x64 > 1.0 - HALF_BIN, log_sf_lower, mid))


def kl_standard_normal(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """KL(N(mu, exp(logvar)) || N(0, I)) per row, float64 (Kingma & Welling 2014, Appendix B)."""
    mu64, lv64 = mu.astype(np.float64), logvar.astype(np.float64)
    return -0.5 * (1.0 + lv64 - mu64 * mu64 - np.exp(lv64)).sum(axis=-1)


ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2015, section 5.2: unit u is active when Cov_x(E_q[z_u]) > 0.01


def latent_activity(mu: np.ndarray, logvar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per latent unit, over images (rows): Cov_x(E_q[z_u]), the variance of the posterior means
    (Burda et al. 2015, section 5.2: a unit whose mean does not move with x is inactive), and the mean
    KL(q(z_u|x) || N(0, 1)) in nats, float64; the KL per unit sums to the KL term."""
    mu64, lv64 = np.asarray(mu, np.float64), np.asarray(logvar, np.float64)
    kl = -0.5 * (1.0 + lv64 - mu64 * mu64 - np.exp(lv64))
    return mu64.var(axis=0), kl.mean(axis=0)


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


def logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    """log sum exp(a) along `axis`, stable."""
    return log_mean_exp(a, axis) + math.log(a.shape[axis])
