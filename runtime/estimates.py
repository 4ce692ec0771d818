"""How likely an image is under a `VAE`: the ELBO and the importance-weighted log p(x), in nats.

    vae.elbo(x, seed=0)                    # log p(x|z) - KL(q(z|x) || p(z)), one z per image
    vae.log_likelihood(x, k=100, seed=0)   # Burda et al. 2015's bound, tight as k grows

The encoder graph gives q(z|x); z = mu + exp(logvar / 2) * eps is formed here (likelihood.py holds
the formulas) and the decoder graph gives what log p(x|z) needs. Importance noise is the noise
scheme's IMPORTANCE stream of each image (noise.py), so an image's value depends on its index and
the seed, not on chunk_size, threads or how a batch is split. k x N is never held at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import contract
from . import likelihood as lik
from .inputs import as_float_images, check_noise
from .limits import check_amount, check_int
from .noise import seed_or_fresh
from .operations import Operations
from .progress import Progress, check_progress

DEFAULT_K = 100  # importance samples for log_likelihood
Noise = Callable[[int, int], np.ndarray]  # (image lo, image hi) -> eps (k, hi - lo, latent)


@dataclass(frozen=True)
class LatentActivity:
    """How many latent units the model uses, over some images (`Estimates.latent_activity`)."""

    images: int
    variance: NDArray[np.float64]  # per unit: Cov_x(E_q[z_u]) (Burda et al. 2015)
    kl_per_unit: NDArray[np.float64]  # per unit: mean KL(q(z_u|x) || N(0, 1)), nats
    threshold: float = lik.ACTIVE_UNIT_THRESHOLD

    @property
    def active_units(self) -> int:
        return int((self.variance > self.threshold).sum())


class Estimates(Operations):
    """elbo and log_likelihood (see `VAE`)."""

    def elbo(self, x: ArrayLike, seed: int | None = None, eps: ArrayLike | None = None) -> float | NDArray[np.float64]:
        """The evidence lower bound log p(x|z) - KL(q(z|x) || p(z)) per image, in nats (float64).

        One z = mu + exp(logvar / 2) * eps per image; eps (N, latent) is given, or drawn as the noise
        scheme's LATENT rows under seed, the same draw as `encode_z(x, seed=)`. The KL is the closed
        form against N(0, I); against a learned prior (prior.py), log q(z|x) - log p(z) at that z.
        Returns (N,) for a batch, a float for one image.
        """
        xs, single = self._check_images(x)
        n = len(xs)
        eps_arr = self._eps(n, eps, seed)
        mu, logvar = self._encode_rows(xs, None, (contract.MU, contract.LOGVAR))
        out = np.empty(n, np.float64)
        for lo in range(0, n, self.chunk_size):
            hi = min(n, lo + self.chunk_size)
            z = lik.reparameterize(mu[lo:hi], logvar[lo:hi], eps_arr[lo:hi])
            logits, mean = self.loaded.decoder_outputs(z)
            log_px = lik.log_px_given_z(as_float_images(xs[lo:hi]), logits, mean, self.likelihood)
            out[lo:hi] = log_px - self._kl(z, mu[lo:hi], logvar[lo:hi])
        return float(out[0]) if single else out

    def _kl(self, z: np.ndarray, mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
        """The ELBO's KL term per row: closed form for N(0, I), the one-sample estimate for a learned prior."""
        if self.prior is None:
            return lik.kl_standard_normal(mu, logvar)
        return lik.log_normal(z, mu, logvar) - self.prior.log_density(z)

    def _log_prior(self, z: np.ndarray) -> np.ndarray:
        """log p(z) over the last axis, float64."""
        if self.prior is None:
            zero = np.zeros_like(z)
            return lik.log_normal(z, zero, zero)
        return self.prior.log_density(z)

    def latent_activity(self, x: ArrayLike) -> LatentActivity:
        """Active latent units over the images x: unit u is active when the variance over x of its
        posterior mean exceeds 0.01 (Burda et al. 2015, section 5.2); with each unit's mean KL in nats
        against N(0, 1) (for a learned prior too: a mixture has no per-unit closed form). Posterior
        collapse shows as units with no variance and no KL."""
        xs, _ = self._check_images(x)
        mu, logvar = self._encode_rows(xs, None, (contract.MU, contract.LOGVAR))
        variance, kl = lik.latent_activity(mu, logvar)
        return LatentActivity(len(xs), variance, kl)

    def log_likelihood(
        self,
        x: ArrayLike,
        k: int = DEFAULT_K,
        seed: int | None = None,
        eps: ArrayLike | None = None,
        progress: Progress | None = None,
    ) -> float | NDArray[np.float64]:
        """The importance-weighted estimate of log p(x) per image, in nats (Burda et al. 2015, eq. 8).

        log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x) with z_i ~ q(z|x): a lower bound that tightens as k
        grows (k=1 is the ELBO in expectation). Noise: `eps` shaped (k, N, latent), or for image i the
        first k rows of the noise scheme's IMPORTANCE stream i under `seed` (noise.py), so an image's
        value does not depend on chunk_size or threads, and a larger k keeps the first k samples;
        seed=None draws a fresh seed. Images go through in blocks of at most chunk_size decoder rows;
        `progress(done, total)` (progress.py) is called with the images finished after each block.
        Returns (N,) for a batch, a float for one image.
        """
        xs, single = self._check_images(x)
        k, n, progress = self._check_k(k), len(xs), check_progress(progress)
        if eps is not None:
            if seed is not None:
                raise ValueError("give eps or seed, not both (seed would be ignored)")
            fixed = check_noise(eps, (k, n, self.latent))
            noise: Noise = lambda lo, hi: fixed[:, lo:hi]  # noqa: E731
        else:
            noise = self._importance_noise(seed_or_fresh(seed), k)
        out = self._iw_log_likelihood(xs, k, noise, progress)
        return float(out[0]) if single else out

    def _importance_noise(self, seed: int, k: int) -> Noise:
        """Each image's own IMPORTANCE stream (its index in the batch) under `seed`."""

        def noise(lo: int, hi: int) -> np.ndarray:
            return np.stack([self._noise.importance(seed, i, k, self.latent) for i in range(lo, hi)], axis=1)

        return noise

    def _check_k(self, k: Any) -> int:
        """k importance samples, bounded by the budget: each holds its noise, z (float32) and log weight."""
        k = check_int(k, "k")
        check_amount("k", k, 8 * self.latent + 16, self.memory_budget, " samples")
        return k

    def _log_weights(self, xb: np.ndarray, mu: np.ndarray, logvar: np.ndarray, eps: np.ndarray) -> np.ndarray:
        """log p(x|z) + log p(z) - log q(z|x) for eps (kb, B, latent) in numpy, (kb, B) float64:
        the likelihood graph's arithmetic, for models and variants without one."""
        m, lv = mu[None], logvar[None]
        z = lik.reparameterize(m, lv, eps)  # (kb, B, latent)
        logits, mean = self.loaded.decoder_outputs(z.reshape(-1, self.latent))
        shape = (len(eps), len(xb), self.pixels)
        unflat = None if mean is None else mean.reshape(shape)
        log_px = lik.log_px_given_z(xb[None], logits.reshape(shape), unflat, self.likelihood)
        return log_px + self._log_prior(z) - lik.log_normal(z, m, lv)

    def _iw_log_likelihood(
        self,
        xs: np.ndarray,
        k: int,
        noise: Noise,
        progress: Progress | None = None,
        encoded: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """log p(x) estimates for checked images xs (N, pixels); noise(lo, hi) gives eps (k, hi-lo, latent);
        progress(done, N) after each block of images is finished; encoded: xs's (mu, logvar), when known."""
        mu, logvar = encoded or self._encode_rows(xs, None, (contract.MU, contract.LOGVAR))
        out = np.empty(len(xs), np.float64)
        log_w = eps = xb = np.empty(0)
        graph = self.loaded.likelihood_graph if self.prior is None else None  # its log p(z) is N(0, I)'s
        for lo, hi, s, e in lik.plan_blocks(len(xs), k, self.chunk_size):
            if s == 0:
                log_w = np.empty((k, hi - lo), np.float64)
                xb, eps = as_float_images(xs[lo:hi]), noise(lo, hi)
            if graph is not None:  # the per-pixel work inside onnxruntime: only (kb, B) comes back
                feeds = {
                    contract.X: xb,
                    contract.MU: mu[lo:hi],
                    contract.LOGVAR: logvar[lo:hi],
                    contract.EPS: np.ascontiguousarray(eps[s:e], np.float32),
                }
                log_w[s:e] = graph.runner()([contract.LOG_W], feeds)[0]
            else:
                log_w[s:e] = self._log_weights(xb, mu[lo:hi], logvar[lo:hi], eps[s:e])
            if e == k:
                out[lo:hi] = lik.log_mean_exp(log_w, axis=0)
                if progress is not None:
                    progress(hi, len(xs))
        return out
