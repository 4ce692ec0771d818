"""Statistics of normal images for the runtime's unusual-input scores (score_stats.json).

Computed through the exported graphs themselves (the runtime's own code path, CPU provider), on
2000 MNIST training digits shipped with the exporter (a seeded random subset of the 60,000), or on
images the caller gives (`--score-images FILE.npy` for a model trained on other data).
"""

from __future__ import annotations

import io
from importlib import resources

import numpy as np

from edgevae.runtime.likelihood import ScoreStats, build_score_stats, latent_distance
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


def load_training_digits(data_dir: str, n: int, seed: int = 0) -> np.ndarray:
    """n MNIST training digits, uint8 (n, 784), a seeded subset (checksums verified by load_split)."""
    from edgevae.train.data import load_split

    images, _ = load_split(data_dir, "train")
    if n > len(images):
        raise ValueError(f"asked for {n} training digits; {data_dir} has {len(images)}")
    pick = np.sort(np.random.default_rng(seed).choice(len(images), n, replace=False))
    return images[pick].reshape(n, -1)


def calibrate_scores(
    files: ModelFiles,
    images: np.ndarray | None = None,
    source: str | None = None,
    k: int = SCORE_K,
    seed: int = SCORE_SEED,
) -> tuple[ScoreStats, bytes]:
    """ScoreStats of `images` (default: the shipped training digits) under the model in `files`, and
    their encoder means as .npy bytes (float16), the latent distance's neighbours. Each image's own
    latent distance is measured leave-one-out, so the statistics describe unseen normal images."""
    if images is None:
        images, source = load_normal_images(), f"{FIXTURE}: 2000 MNIST training digits (seeded subset)"
    vae = VAE(files, device="cpu")
    codes = vae.encode(images)[0].astype(np.float16)
    buf = io.BytesIO()
    np.save(buf, codes, allow_pickle=False)
    latent = latent_distance(codes.astype(np.float32), codes.astype(np.float32), exclude_self=True)
    nll, complexity = vae.measure_nll_complexity(images, k=k, seed=seed)
    return build_score_stats(nll, complexity, latent, k, seed, source or "caller-given images"), buf.getvalue()
