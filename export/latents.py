"""How many latent units a model uses, recorded in its manifest for `edgevae info` (posterior collapse).

    python -m edgevae.export.latents --model runtime/models/large --data-dir ../shared/data/mnist

Unit u is active when Cov_x(E_q[z_u]), the variance over images of its posterior mean, exceeds 0.01
(Burda et al. 2015, section 5.2); each unit's mean KL(q(z_u|x) || N(0, 1)) is recorded beside it
(runtime/likelihood.py: latent_activity). Export records it on its validation images; this command
records it on all 10,000 MNIST test images, binarized as training evaluates them for bernoulli
models (train/evaluate.py), which is what the packaged models carry.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgevae.runtime import VAE, contract
from edgevae.runtime.errors import run_cli

MANIFEST_KEY = "latent_activity"


def activity_entry(vae: VAE, images: Any, source: str) -> dict[str, Any]:
    """The manifest's record: images, source, threshold, active units, and per unit the variance of
    the posterior mean and the mean KL in nats (rounded to 6 significant digits)."""
    a = vae.latent_activity(images)
    return {
        "images": a.images,
        "source": source,
        "threshold": a.threshold,
        "active_units": a.active_units,
        "latent": vae.latent,
        "variance": [float(f"{v:.6g}") for v in a.variance],
        "kl_per_unit_nats": [float(f"{v:.6g}") for v in a.kl_per_unit],
    }


def mnist_test_images(data_dir: str, likelihood: str) -> np.ndarray:
    """All 10,000 MNIST test images as training evaluates them (binarized once for bernoulli models)."""
    import torch

    from edgevae.train.data import load_split
    from edgevae.train.evaluate import prepare_eval_images

    images, _ = load_split(data_dir, "test")
    x = torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255.0)
    return prepare_eval_images(x, likelihood).numpy()


def add_to_folder(folder: Path, data_dir: str) -> dict[str, Any]:
    """Measure on the MNIST test set and re-seal FOLDER's manifest with the record."""
    from edgevae.runtime.atomic import write_bytes_atomic
    from edgevae.runtime.manifest import seal_manifest

    vae = VAE(folder, device="cpu")
    x = mnist_test_images(data_dir, vae.likelihood)
    how = "binarized as training evaluates them" if vae.likelihood == "bernoulli" else "grey levels"
    entry = activity_entry(vae, x, f"MNIST test images ({how})")
    manifest = {**vae.files.manifest, MANIFEST_KEY: entry}
    write_bytes_atomic(folder / contract.MANIFEST_FILE, seal_manifest(manifest))
    return entry


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a model folder from make export (no default)")
    p.add_argument("--data-dir", required=True, help="the MNIST folder (no default)")
    args = p.parse_args(argv)

    def body() -> int:
        entry = add_to_folder(Path(args.model), args.data_dir)
        print(
            f"{args.model}: {entry['active_units']} of {entry['latent']} latent units active over {entry['images']:,}"
        )
        return 0

    return run_cli(body, "edgevae.export.latents")


if __name__ == "__main__":
    sys.exit(main())
