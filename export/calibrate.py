"""Statistics of normal images for the runtime's unusual-input scores (score_stats.json).

Computed through the exported graphs themselves (the runtime's own code path, CPU provider), on
2000 MNIST training digits shipped with the exporter (a seeded random subset of the 60,000), on all
60,000 with their labels (`--score-data DIR`, what the shipped models use), or on images the caller
gives (`--score-images FILE.npy` for a model trained on other data). Also fits the density score's
Gaussian mixture to those images' features (score_density.npz). Every score of the registry
(runtime/scores.py) gets the statistics it declares and its percentiles over the held-out images.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from edgevae.runtime.files import ModelFiles
from edgevae.runtime.likelihood import logsumexp
from edgevae.runtime.mixture import DENSITY_KEYS, ScoreDensity
from edgevae.runtime.noise import NOISE_SCHEME
from edgevae.runtime.score_stats import ScoreStats
from edgevae.runtime.scores import PERCENTILES, SCORES, Measures, density_features
from edgevae.runtime.vae import VAE

SCORE_K = 16  # importance samples per image for scoring (docs/likelihood.md: cost per image, AUROC against k)
SCORE_SEED = 0
FIXTURE = "mnist_train_2000.npz"
HELD_OUT_DIVISOR = 6  # one sixth of the normal images is held out for the statistics (10,000 of 60,000)
GMM_COMPONENTS = 12  # Gaussians per digit class in the score density (docs/likelihood.md)
GMM_IMAGES_PER_COMPONENT = 200  # a group with fewer images per Gaussian gets fewer Gaussians
GMM_ITERATIONS = 50
GMM_REG = 1e-3  # added to each covariance's diagonal; normal features spread 0.2 to 1 per axis


def load_normal_images() -> np.ndarray:
    """2000 MNIST training digits, uint8 (2000, 784), seeded subset (index array inside the file)."""
    ref = resources.files("edgevae.export") / "fixtures" / FIXTURE
    with resources.as_file(ref) as path, np.load(path, allow_pickle=False) as npz:
        return npz["images"]


def load_training_digits(data_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """The 60,000 MNIST training digits, uint8 (60000, 784), and their labels (checksums verified by load_split)."""
    from edgevae.train.data import load_split

    images, labels = load_split(data_dir, "train")
    return images.reshape(len(images), -1), labels


def split_normal_images(n: int, seed: int = SCORE_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Indices (fit, held out) of n normal images: the score density is fitted to the first part;
    the statistics are measured on the held-out sixth (at least 10), which the density never saw."""
    held = max(10, n // HELD_OUT_DIVISOR)
    if n - held < 10:
        raise ValueError(f"the unusual-input scores need at least {held + 10} normal images; got {n}")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[held:]), np.sort(order[:held])


def fit_score_density(
    features: np.ndarray, labels: np.ndarray | None = None, components: int = GMM_COMPONENTS, seed: int = SCORE_SEED
) -> ScoreDensity:
    """A Gaussian mixture over feature rows (N, d): `components` full-covariance Gaussians per label
    (fewer for a group under GMM_IMAGES_PER_COMPONENT images each), or over all rows when labels are
    None, each group weighted by its share of the rows."""
    x = np.asarray(features, np.float64)
    groups = [np.arange(len(x))] if labels is None else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    rng = np.random.default_rng(seed)
    parts = []
    for idx in groups:
        m = max(1, min(components, len(idx) // GMM_IMAGES_PER_COMPONENT))
        part = fit_gaussian_mixture(x[idx], m, rng)
        parts.append(ScoreDensity(part.log_weights + np.log(len(idx) / len(x)), part.means, part.prec_chol))
    return ScoreDensity(*(np.concatenate([getattr(p, key) for p in parts]) for key in DENSITY_KEYS))


def fit_gaussian_mixture(
    x: np.ndarray, m: int, rng: np.random.Generator, iterations: int = GMM_ITERATIONS
) -> ScoreDensity:
    """Expectation-maximisation for m full-covariance Gaussians (Dempster, Laird & Rubin 1977;
    Bishop 2006, section 9.2.2), started from m random points and the data's covariance; GMM_REG
    is added to every covariance's diagonal so none collapses onto a few points."""
    n, d = x.shape
    reg = GMM_REG * np.eye(d)
    means = x[rng.choice(n, size=m, replace=False)]
    covs = np.repeat((np.cov(x.T) + reg)[None], m, axis=0)
    log_w = np.full(m, -np.log(m))
    for _ in range(iterations):
        density = ScoreDensity(log_w, means, precision_factors(covs))
        log_p = density.log_components(x)
        resp = np.exp(log_p - logsumexp(log_p, axis=1)[:, None])  # (n, m) responsibilities
        mass = resp.sum(axis=0) + 1e-10
        log_w = np.log(mass / n)
        means = (resp.T @ x) / mass[:, None]
        centred = x[:, None, :] - means[None]  # (n, m, d)
        covs = np.einsum("nm,nmi,nmj->mij", resp, centred, centred) / mass[:, None, None] + reg
    return ScoreDensity(log_w, means, precision_factors(covs))


def precision_factors(covs: np.ndarray) -> np.ndarray:
    """(M, d, d) factors L with L L^T = inverse of each covariance: L = (C^-1)^T for C C^T = cov."""
    return np.transpose(np.linalg.inv(np.linalg.cholesky(covs)), (0, 2, 1))


def calibrate_scores(
    files: ModelFiles,
    images: np.ndarray | None = None,
    source: str | None = None,
    labels: np.ndarray | None = None,
    k: int = SCORE_K,
    seed: int = SCORE_SEED,
) -> tuple[ScoreStats, bytes]:
    """ScoreStats of `images` (default: the shipped training digits) under the model in `files`, and
    the score density (.npz bytes) fitted to their features (`density_features`: code, log NLL, log
    complexity), per label when `labels` are given. The density is fitted to five sixths of the
    images and every statistic is measured on the other sixth, which the density has not seen."""
    if images is None:
        images, source = load_normal_images(), f"{FIXTURE}: 2000 MNIST training digits (seeded subset)"
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"{len(labels)} labels for {len(images)} score images")
    vae = VAE(files, device="cpu")
    fit, held = split_normal_images(len(images), seed)
    nll, complexity = vae.measure_nll_complexity(images, k=k, seed=seed)
    features = density_features(vae.encode(images)[0], nll, complexity)
    fitted = fit_score_density(features[fit], None if labels is None else labels[fit], seed=seed)
    density = ScoreDensity.from_npz(fitted.to_npz(), features.shape[1])  # as stored (float32): stats match the file
    held_source = f"{source or 'caller-given images'}; statistics on a held-out {len(held)} of {len(images)}"
    normal = Measures(nll[held], complexity[held], density.nll(features[held]))
    stats = build_score_stats(normal, k, seed, held_source, len(density.log_weights))
    return stats, density.to_npz()


def build_score_stats(normal: Measures, k: int, seed: int, source: str, components: int) -> ScoreStats:
    """ScoreStats from the measures of normal images (at least 10) that the mixture was not fitted to:
    each score's statistics (its `fit`) and the PERCENTILES of its values; `components`: the mixture's
    Gaussians."""
    n = len(normal.nll)
    if n < 10:
        raise ValueError(f"score statistics need at least 10 normal images; got {n}")
    stats = {name: score.fit(normal) for name, score in SCORES.items()}
    percentiles = {
        name: {p: float(np.percentile(score.compute(normal, stats[name]), float(p))) for p in PERCENTILES}
        for name, score in SCORES.items()
    }
    return ScoreStats(k, seed, n, source, components, stats, percentiles, NOISE_SCHEME)
