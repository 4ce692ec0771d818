"""Statistics of normal images for the runtime's unusual-input scores (score_stats.json).

Computed through the exported graphs themselves (the runtime's own code path, CPU provider), on
2000 MNIST training digits shipped with the exporter (a seeded random subset of the 60,000), or on
images the caller gives (`--score-images FILE.npy` for a model trained on other data).
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from edgevae.runtime.likelihood import ScoreStats, build_score_stats
from edgevae.runtime.model import ModelFiles
from edgevae.runtime.vae import VAE

SCORE_K = 16  # importance samples per image for scoring (README: cost per image, AUROC against k)
SCORE_SEED = 0
FIXTURE = "mnist_train_2000.npz"


def load_normal_images() -> np.ndarray:
    """2000 MNIST training digits, uint8 (2000, 784), seeded subset (index array inside the file)."""
    ref = resources.files("edgevae.export") / "fixtures" / FIXTURE
    with resources.as_file(ref) as path, np.load(path, allow_pickle=False) as npz:
        return npz["images"]


def calibrate_scores(
    files: ModelFiles,
    images: np.ndarray | None = None,
    source: str | None = None,
    k: int = SCORE_K,
    seed: int = SCORE_SEED,
) -> ScoreStats:
    """ScoreStats of `images` (default: the shipped training digits) under the model in `files`."""
    if images is None:
        images, source = load_normal_images(), f"{FIXTURE}: 2000 MNIST training digits (seeded subset)"
    vae = VAE(files, device="cpu")
    nll, complexity = vae.score_inputs(images, k=k, seed=seed)
    return build_score_stats(nll, complexity, k, seed, source or "caller-given images")
