"""Likelihoods with numpy only: the ELBO, the importance-weighted log p(x) and unusual-input scores.

The encoder graph gives q(z|x) = N(mu, exp(logvar)); z = mu + exp(logvar / 2) * eps is formed here
from caller-given or seeded noise; the decoder graph gives logits (bernoulli) or pixel means
(gaussian). Everything is in nats per image. These functions are what `VAE.elbo`,
`VAE.log_likelihood` and `VAE.score` run; they take the two sessions through the `VAE`.

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
- Density NLL: -log of an image's score features (its encoder mean, log(1 + NLL) and log L(x))
  under a Gaussian mixture fitted at export to those of normal images (one mixture per digit class
  when labels are known, as in the class-conditional Gaussians of Lee et al. 2018, "A simple
  unified framework for detecting out-of-distribution samples and adversarial attacks"), in nats.
"""

from __future__ import annotations

import io
import json
import math
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .arrays import read_npz_bytes
from .contract import LIKELIHOODS, SCORE_STATS_FORMAT
from .limits import MAX_SIDE_FILE_BYTES

LOG_2PI = math.log(2 * math.pi)
LN2 = math.log(2.0)
HALF_BIN = 0.5 / 255.0  # half the width of one 8-bit level in [0, 1]


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
    For discretized_logistic, `logits` is the decoder's log_scale output (its location is `mean`).
    """
    if likelihood == "discretized_logistic":
        if mean is None:
            raise ValueError("the discretized logistic likelihood needs the decoder's mean")
        return discretized_logistic(x, mean, logits).sum(axis=-1)
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


DENSITY_ROWS = 256  # rows per block of the density NLL: (256, components, features) floats at a time
DENSITY_KEYS = ("log_weights", "means", "prec_chol")


@dataclass(frozen=True)
class ScoreDensity:
    """A Gaussian mixture over score features (`density_features`): log weights (M,), means (M, d) and
    triangular precision factors (M, d, d), L L^T = inverse covariance (export writes it: score_density.npz)."""

    log_weights: np.ndarray
    means: np.ndarray
    prec_chol: np.ndarray

    def log_components(self, f: np.ndarray) -> np.ndarray:
        """(N, M): log w_m + log N(f_n; m_m, C_m) = log w + log det L - |(f - m) L|^2 / 2 - d/2 log(2 pi)."""
        q = np.asarray(f, np.float64)
        chol = np.asarray(self.prec_chol, np.float64)
        d = q.shape[1]
        const = self.log_weights + np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1) - 0.5 * d * LOG_2PI
        y = np.einsum("nmi,mij->nmj", q[:, None, :] - np.asarray(self.means, np.float64)[None], chol)
        return const[None] - 0.5 * np.einsum("nmj,nmj->nm", y, y)

    def nll(self, f: np.ndarray) -> np.ndarray:
        """-log p(f) per row of f (N, d) under the mixture, in nats (float64), in blocks of DENSITY_ROWS."""
        out = np.empty(len(f), np.float64)
        for lo in range(0, len(f), DENSITY_ROWS):
            out[lo : lo + DENSITY_ROWS] = -logsumexp(self.log_components(f[lo : lo + DENSITY_ROWS]), axis=1)
        return out

    @classmethod
    def from_npz(cls, blob: bytes, features: int, name: str = "score_density.npz") -> ScoreDensity:
        """The mixture in an .npz file's bytes; ValueError naming the file when it is not one over `features`."""
        stored = read_npz_bytes(blob, name, MAX_SIDE_FILE_BYTES)  # headers checked before any allocation
        try:
            arrays = {key: np.asarray(stored[key], np.float64) for key in DENSITY_KEYS}
        except KeyError as exc:
            raise ValueError(f"{name} is not a score density: no array {exc}") from exc
        m = len(arrays["log_weights"])
        want = {"log_weights": (m,), "means": (m, features), "prec_chol": (m, features, features)}
        for key, shape in want.items():
            if arrays[key].shape != shape:
                raise ValueError(
                    f"{name}: expected {key} shaped {shape} for {features} features; got {arrays[key].shape}"
                )
        diag = np.diagonal(arrays["prec_chol"], axis1=1, axis2=2)
        if m == 0 or not all(np.isfinite(a).all() for a in arrays.values()) or (diag <= 0).any():
            raise ValueError(f"{name}: expected a non-empty mixture of finite values with positive precision diagonals")
        return cls(arrays["log_weights"], arrays["means"], arrays["prec_chol"])

    def to_npz(self) -> bytes:
        buf = io.BytesIO()
        arrays: dict[str, Any] = {key: np.asarray(getattr(self, key), np.float32) for key in DENSITY_KEYS}
        np.savez(buf, **arrays)
        return buf.getvalue()


def logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    """log sum exp(a) along `axis`, stable."""
    return log_mean_exp(a, axis) + math.log(a.shape[axis])


def density_features(mu: np.ndarray, nll: np.ndarray, complexity: np.ndarray) -> np.ndarray:
    """(N, latent + 2): the encoder mean, log(1 + NLL) and log L(x): what the density score measures."""
    return np.concatenate([np.asarray(mu, np.float64), score_features(nll, complexity)], axis=1)


# -- unusual-input scores ------------------------------------------------------------------------
# Higher = more unusual. Chosen by measurement (bench/ood.py; table in docs/likelihood.md): raw -log p(x)
# calls blank images *more* typical than digits (Nalisnick et al. 2019); subtracting the complexity
# (Serra et al. 2020) fixes blanks but misses letters; "typicality" asks whether the pair
# (log -log p(x), log L(x)) is typical of normal images (the Mahalanobis distance from that pair's
# mean and covariance over normal images, stored at export) and catches everything but most letters;
# the default, "density", models that pair jointly with the image's code, per digit class: a letter
# may have a digit's likelihood and complexity, but not with the code it lands on.
SCORES = {
    "density": "-log density of (code, log NLL, log complexity) under normal images' mixture, "
    "in standard deviations of normal images' (default)",
    "typicality": "Mahalanobis distance of (log NLL, log complexity) from normal images'",
    "nll": "-log p(x) in nats (importance-weighted)",
    "nll-typicality": "|NLL - mean| / std over normal images",
    "complexity": "NLL - L(x): Serra et al. 2020's complexity-corrected likelihood, in nats",
}
DEFAULT_SCORE = "density"
PERCENTILES = ("90", "95", "99", "99.9")


def score_features(nll: np.ndarray, complexity: np.ndarray) -> np.ndarray:
    """(N, 2): log(1 + max(NLL, 0)) and log L(x), the pair the typicality score measures."""
    return np.stack([np.log1p(np.maximum(nll, 0.0)), np.log(complexity)], axis=1)


def as_pair(values: Any) -> tuple[float, float]:
    """Two floats from a sequence of exactly two numbers; ValueError otherwise."""
    a, b = (float(v) for v in values)
    return a, b


@dataclass(frozen=True)
class ScoreStats:
    """What the scores need from normal images: written by export as score_stats.json."""

    k: int
    seed: int
    images: int
    source: str
    nll_mean: float
    nll_std: float
    feature_mean: tuple[float, float]
    feature_cov: tuple[tuple[float, float], tuple[float, float]]
    density_mean: float  # of the density NLL over held-out normal images
    density_std: float
    density_components: int  # Gaussians in the mixture (score_density.npz)
    percentiles: dict[str, dict[str, float]]  # score name -> percentile ("99") -> value on the normal images

    @classmethod
    def from_json(cls, blob: bytes, name: str = "score_stats.json") -> ScoreStats:
        try:
            d = json.loads(blob.decode("utf-8"))
            if d.get("format") != SCORE_STATS_FORMAT:
                raise ValueError(f"format is not {SCORE_STATS_FORMAT!r}")
            if len(d["feature_cov"]) != 2:
                raise ValueError(f"feature_cov has {len(d['feature_cov'])} rows, expected 2")
            stats = cls(
                int(d["k"]),
                int(d["seed"]),
                int(d["images"]),
                str(d["source"]),
                float(d["nll_mean"]),
                float(d["nll_std"]),
                as_pair(d["feature_mean"]),
                (as_pair(d["feature_cov"][0]), as_pair(d["feature_cov"][1])),
                float(d["density_mean"]),
                float(d["density_std"]),
                int(d["density_components"]),
                {s: {p: float(v) for p, v in ps.items()} for s, ps in d["percentiles"].items()},
            )
        except KeyError as exc:
            raise ValueError(
                f"{name} is not valid score statistics: no {exc}; written by an older edgevae? re-export the model"
            ) from exc
        except (UnicodeDecodeError, ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"{name} is not valid score statistics: {exc}") from exc
        if (
            len(stats.feature_mean) != 2
            or np.asarray(stats.feature_cov).shape != (2, 2)
            or stats.nll_std <= 0
            or stats.density_std <= 0
        ):
            raise ValueError(f"{name} is not valid score statistics: wrong shapes or a zero spread")
        return stats

    def to_json(self) -> bytes:
        d = {"format": SCORE_STATS_FORMAT, **asdict(self)}
        return (json.dumps(d, indent=2, sort_keys=True) + "\n").encode()

    def compute(self, name: str, nll: np.ndarray, complexity: np.ndarray, density: np.ndarray) -> np.ndarray:
        """Score `name` for each image from its NLL, complexity and density NLL (nats)."""
        if name == "density":
            return (density - self.density_mean) / self.density_std
        if name == "nll":
            return nll.copy()
        if name == "nll-typicality":
            return np.abs(nll - self.nll_mean) / self.nll_std
        if name == "complexity":
            return nll - complexity
        if name == "typicality":
            d = score_features(nll, complexity) - np.asarray(self.feature_mean)
            inv = np.linalg.inv(np.asarray(self.feature_cov))
            return np.sqrt(np.einsum("ij,jk,ik->i", d, inv, d))
        raise ValueError(f"score must be one of {sorted(SCORES)}; got {name!r}")

    def threshold(self, name: str, percentile: str) -> float:
        """The `percentile` (e.g. "99") of score `name` over the normal images."""
        table = self.percentiles.get(name, {})
        if percentile not in table:
            raise ValueError(f"no stored percentile {percentile!r} for score {name!r}; stored: {sorted(table)}")
        return table[percentile]


def build_score_stats(
    nll: np.ndarray, complexity: np.ndarray, density: np.ndarray, k: int, seed: int, source: str, components: int
) -> ScoreStats:
    """ScoreStats from the NLL, complexity and density NLL of normal images (at least 10) that the
    mixture was not fitted to; `components`: the mixture's Gaussians."""
    if len(nll) < 10:
        raise ValueError(f"score statistics need at least 10 normal images; got {len(nll)}")
    f = score_features(nll, complexity)
    cov = np.cov(f.T)
    base = ScoreStats(
        k,
        seed,
        len(nll),
        source,
        float(nll.mean()),
        float(nll.std(ddof=1)),
        as_pair(f.mean(axis=0)),
        (as_pair(cov[0]), as_pair(cov[1])),
        float(density.mean()),
        float(density.std(ddof=1)),
        components,
        {},
    )
    pct = {
        name: {p: float(np.percentile(base.compute(name, nll, complexity, density), float(p))) for p in PERCENTILES}
        for name in SCORES
    }
    return ScoreStats(**{**asdict(base), "percentiles": pct})
