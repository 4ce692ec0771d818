"""The unusual-input scores: one definition each, read by `VAE.score`, the CLI, Ray and the export.

Every score is computed from three measures of each image (`Measures`, made by `VAE.score_inputs`):
its -log p(x) (importance-weighted, nats), its complexity L(x) (zlib length in nats, Serra et al.
2020) and its density NLL (-log density of its code, log NLL and log L(x) under a Gaussian mixture of
normal images', mixture.py). A score that compares with normal images declares the statistics it
needs (`stats`) and how to measure them from normal images' measures (`fit`); export measures them
(export/calibrate.py) and stores them in score_stats.json (score_stats.py) with the percentiles of
every score. Higher = more unusual.

To add a score: define it here and list it in SCORES, then re-export the model (make export).

Chosen by measurement (bench/ood.py; table in the README): raw -log p(x) calls blank images *more*
typical than digits (Nalisnick et al. 2019); subtracting the complexity (Serra et al. 2020) fixes
blanks but misses letters; "typicality" asks whether the pair (log -log p(x), log L(x)) is typical of
normal images (the Mahalanobis distance from that pair's mean and covariance over normal images) and
catches everything but most letters; the default, "density", models that pair jointly with the
image's code, per digit class: a letter may have a digit's likelihood and complexity, but not with
the code it lands on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_SCORE = "density"
# what `VAE.score` gives per image (ScoreResult's fields), in this order the columns of the CLI's CSV and of Ray
SCORE_COLUMNS = ("score", "nll", "complexity_nats", "density_nll")
PERCENTILES = ("90", "95", "99", "99.9")
Params = dict[str, Any]  # a score's statistics of normal images: name -> float or nested lists of floats


@dataclass(frozen=True)
class Measures:
    """What every score is computed from, per image (float64, nats)."""

    nll: np.ndarray  # -log p(x), importance-weighted
    complexity_nats: np.ndarray  # L(x)
    density_nll: np.ndarray  # -log density of (code, log NLL, log L(x)) under the normal images' mixture


@dataclass(frozen=True)
class Stat:
    """One statistic a score needs: its name, shape, and whether it must be positive (a spread)."""

    name: str
    shape: tuple[int, ...] = ()
    positive: bool = False


def no_stats(m: Measures) -> Params:
    return {}


@dataclass(frozen=True)
class Score:
    """One unusual-input score: what it is, how it is computed, and what it needs from normal images."""

    name: str
    description: str
    compute: Callable[[Measures, Params], np.ndarray]  # (measures, its statistics) -> score per image
    stats: tuple[Stat, ...] = ()  # the statistics of normal images it needs (checked when they are loaded)
    fit: Callable[[Measures], Params] = no_stats  # ... measured from normal images' measures (at export)


def score_features(nll: np.ndarray, complexity: np.ndarray) -> np.ndarray:
    """(N, 2): log(1 + max(NLL, 0)) and log L(x), the pair the typicality score measures."""
    return np.stack([np.log1p(np.maximum(nll, 0.0)), np.log(complexity)], axis=1)


def density_features(mu: np.ndarray, nll: np.ndarray, complexity: np.ndarray) -> np.ndarray:
    """(N, latent + 2): the encoder mean, log(1 + NLL) and log L(x): what the density score measures."""
    return np.concatenate([np.asarray(mu, np.float64), score_features(nll, complexity)], axis=1)


def spread(values: np.ndarray) -> Params:
    """mean and standard deviation (ddof=1) of normal images' values."""
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1))}


SPREAD = (Stat("mean"), Stat("std", positive=True))


def mahalanobis(m: Measures, p: Params) -> np.ndarray:
    """Distance of each image's score_features from normal images' mean, in their covariance's units."""
    d = score_features(m.nll, m.complexity_nats) - np.asarray(p["mean"])
    return np.sqrt(np.einsum("ij,jk,ik->i", d, np.linalg.inv(np.asarray(p["cov"])), d))


def feature_moments(m: Measures) -> Params:
    f = score_features(m.nll, m.complexity_nats)
    return {"mean": f.mean(axis=0).tolist(), "cov": np.cov(f.T).tolist()}


SCORES: dict[str, Score] = {
    s.name: s
    for s in (
        Score(
            "density",
            "-log density of (code, log NLL, log complexity) under normal images' mixture, "
            "in standard deviations of normal images' (default)",
            lambda m, p: (m.density_nll - p["mean"]) / p["std"],
            SPREAD,
            lambda m: spread(m.density_nll),
        ),
        Score(
            "typicality",
            "Mahalanobis distance of (log NLL, log complexity) from normal images'",
            mahalanobis,
            (Stat("mean", (2,)), Stat("cov", (2, 2))),
            feature_moments,
        ),
        Score("nll", "-log p(x) in nats (importance-weighted)", lambda m, p: m.nll.copy()),
        Score(
            "nll-typicality",
            "|NLL - mean| / std over normal images",
            lambda m, p: np.abs(m.nll - p["mean"]) / p["std"],
            SPREAD,
            lambda m: spread(m.nll),
        ),
        Score(
            "complexity",
            "NLL - L(x): Serra et al. 2020's complexity-corrected likelihood, in nats",
            lambda m, p: m.nll - m.complexity_nats,
        ),
    )
}


def get_score(name: object) -> Score:
    """The score called `name`; a ValueError listing them otherwise."""
    if not isinstance(name, str) or name not in SCORES:
        raise ValueError(f"score must be one of {sorted(SCORES)}; got {name!r}")
    return SCORES[name]
