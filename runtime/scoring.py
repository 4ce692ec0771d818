"""How unusual an image is for a `VAE`: `score`, and the measures and statistics behind it.

    result = vae.score(images)                  # the default score, "density"
    flagged = result.score > vae.threshold("99")

The scores themselves are defined once, in scores.py (the registry the CLI, Ray and export read);
this module measures what they are computed from (`score_inputs`) and loads what they compare with:
the statistics of normal images (score_stats.json, score_stats.py) and the density score's mixture
(score_density.npz, mixture.py), both written by export and listed in the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import contract
from .errors import ModelError
from .estimates import Estimates
from .inputs import as_float_images
from .likelihood import complexity_nats
from .limits import check_seed
from .mixture import ScoreDensity
from .progress import Progress, check_progress
from .score_stats import ScoreStats
from .scores import DEFAULT_SCORE, density_features, get_score

Floats = NDArray[np.float64]


@dataclass(frozen=True)
class ScoreResult:
    """`VAE.score`'s answer, one entry per image: the score, -log p(x) and L(x) in nats, and the density
    NLL (-log density of the image's code, log NLL and log L(x) under normal images' mixture, nats);
    named as the CSV's and Ray's columns (`complexity` and `density` are their names of 0.1.0)."""

    name: str
    score: Floats
    nll: Floats
    complexity_nats: Floats
    density_nll: Floats
    k: int

    @property
    def complexity(self) -> Floats:
        return self.complexity_nats

    @property
    def density(self) -> Floats:
        return self.density_nll


class Scoring(Estimates):
    """score, score_inputs, threshold and what they read from the model folder (see `VAE`)."""

    def score(
        self,
        x: ArrayLike,
        score: str = DEFAULT_SCORE,
        k: int | None = None,
        seed: int = 0,
        progress: Progress | None = None,
    ) -> ScoreResult:
        """How unusual each image is for this model: higher = more unusual (see `scores.SCORES`).

        The default, "density", flags inputs whose code, likelihood and complexity together are
        improbable for normal images: too unlikely, too simple to be likely (blank pages), or likely
        enough but with a code that normal images of that likelihood do not have (letters). It is
        measured against a mixture fitted to normal images at export (score_density.npz) and
        statistics of held-out normal images (score_stats.json). k defaults to the k those
        statistics were made with. Every image gets the same noise (the noise scheme's IMPORTANCE
        stream 0 under `seed`: what `log_likelihood` gives an image alone), so an image's score depends
        on the image alone, not on its batch. Pick a threshold with `threshold("99")` (the 99th
        percentile of normal images' scores) or from scores of your own normal images.
        `progress(done, total)` (progress.py) is called with the images measured after each block.
        """
        get_score(score)
        stats = self.score_stats
        k = stats.k if k is None else k
        nll, complexity, density = self.score_inputs(x, k, seed, progress)
        return ScoreResult(score, stats.compute(score, nll, complexity, density), nll, complexity, density, k)

    def score_inputs(
        self, x: ArrayLike, k: int, seed: int = 0, progress: Progress | None = None
    ) -> tuple[Floats, Floats, Floats]:
        """(-log p(x), L(x), density NLL) per image: what every score is computed from.

        -log p(x) is the importance-weighted estimate in nats with the same noise for every image (see
        `score`); L(x) is the zlib-compressed length of the 8-bit pixels in nats (Serra et al. 2020);
        the density NLL is -log of (encoder mean, log(1 + NLL), log L(x)) under the mixture of normal
        images' stored with the model (mixture.ScoreDensity).
        """
        xs, _ = self._check_images(x)
        encoded = self._encode_rows(xs, None, (contract.MU, contract.LOGVAR))  # once, for both uses
        nll, complexity = self.measure_nll_complexity(xs, k, seed, progress, (encoded[0], encoded[1]))
        return nll, complexity, self.score_density.nll(density_features(encoded[0], nll, complexity))

    def measure_nll_complexity(
        self,
        x: ArrayLike,
        k: int,
        seed: int = 0,
        progress: Progress | None = None,
        encoded: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[Floats, Floats]:
        """The first two of `score_inputs`: -log p(x) with one shared noise draw, and L(x), in nats
        (encoded: the images' (mu, logvar), when the caller has them)."""
        k, seed, progress = self._check_k(k), check_seed(seed), check_progress(progress)
        xs, _ = self._check_images(x)
        shared = self._noise.importance(seed, 0, k, self.latent)[:, None]  # (k, 1, latent)
        nll = -self._iw_log_likelihood(
            xs, k, lambda lo, hi: np.broadcast_to(shared, (k, hi - lo, self.latent)), progress, encoded
        )
        chunks = range(0, len(xs), self.chunk_size)
        complexity = np.concatenate([complexity_nats(as_float_images(xs[lo : lo + self.chunk_size])) for lo in chunks])
        return nll, complexity

    @cached_property
    def score_density(self) -> ScoreDensity:
        """The density score's Gaussian mixture over normal images' score features (from the model folder)."""
        blob = self.files.extra(contract.SCORE_DENSITY_FILE, "unusual-input scores")
        try:
            return ScoreDensity.from_npz(blob, self.latent + 2, contract.SCORE_DENSITY_FILE)
        except ValueError as exc:
            raise ModelError(f"{self.files.folder / contract.SCORE_DENSITY_FILE}: {exc}") from exc

    @cached_property
    def score_stats(self) -> ScoreStats:
        """Statistics of normal images that the scores compare with (from the model folder)."""
        blob = self.files.extra(contract.SCORE_STATS_FILE, "unusual-input scores")
        try:
            return ScoreStats.from_json(blob, contract.SCORE_STATS_FILE)
        except ValueError as exc:
            raise ModelError(f"{self.files.folder / contract.SCORE_STATS_FILE}: {exc}") from exc

    def threshold(self, percentile: str = "99", score: str = DEFAULT_SCORE) -> float:
        """The given percentile ("90", "95", "99" or "99.9") of `score` over the normal images."""
        return self.score_stats.threshold(score, percentile)
