"""Unusual-input detection: AUROC of each score against MNIST test digits: `make ood`.

    EDGEVAE_DATA_DIR=../shared/data/mnist .venv/bin/python bench/ood.py [--model DIR] [--normal 2000] [--per-set 500]

Scores 2000 MNIST test digits (normal) and 500 images of each set of bench/outliers.py with
the runtime (CPU), prints a Markdown table (rows: sets; columns: scores) with the default score's
AUROC for several k, and the cost of `score` per image at the default k, and writes
artifacts/ood.json. AUROC: higher score = more unusual; 1.0 separates perfectly, 0.5 is chance.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from outliers import auroc, make_sets  # bench/outliers.py, beside this script

from edgevae.runtime import VAE
from edgevae.runtime.atomic import write_bytes_atomic
from edgevae.runtime.scores import DEFAULT_SCORE, SCORES
from edgevae.train.data import load_split

REPO = Path(__file__).resolve().parents[1]
K_SWEEP = (1, 4, 16, 64)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model folder (default: the packaged model)")
    p.add_argument("--data-dir", default=None, help="MNIST folder (default: $EDGEVAE_DATA_DIR)")
    p.add_argument("--normal", type=int, default=2000, help="MNIST test digits used as normal (default: 2000)")
    p.add_argument("--per-set", type=int, default=500, help="images per unusual set (default: 500)")
    p.add_argument("--out", default=str(REPO / "artifacts" / "ood.json"), help="(default: artifacts/ood.json)")
    args = p.parse_args()
    vae = VAE(args.model, device="cpu", threads=1)
    test, _ = load_split(args.data_dir, "test")
    rng = np.random.default_rng(0)
    normal = test.reshape(len(test), -1)[rng.choice(len(test), args.normal, replace=False)]
    sets = make_sets(test, args.per_set, seed=1)
    k0 = vae.score_stats.k
    t0 = time.perf_counter()
    base = vae.score_inputs(normal, k=k0)
    per_image_ms = (time.perf_counter() - t0) / len(normal) * 1e3
    unusual = {name: vae.score_inputs(x, k=k0) for name, x in sets.items()}
    table = {
        name: {s: auroc(vae.score_stats.compute(s, *base), vae.score_stats.compute(s, *u)) for s in SCORES}
        for name, u in unusual.items()
    }
    sweep = {}
    for k in K_SWEEP:
        b = vae.score_inputs(normal, k=k)
        sweep[k] = {
            name: auroc(
                vae.score_stats.compute(DEFAULT_SCORE, *b),
                vae.score_stats.compute(DEFAULT_SCORE, *vae.score_inputs(x, k=k)),
            )
            for name, x in sets.items()
        }
    order = [DEFAULT_SCORE] + [s for s in SCORES if s != DEFAULT_SCORE]
    lines = [
        f"| unusual set ({args.per_set} images) vs {args.normal} MNIST test digits | "
        + " | ".join(f"`{s}`" + (" (default)" if s == DEFAULT_SCORE else "") for s in order)
        + " |",
        "|---|" + "---:|" * len(order),
    ]
    lines += [f"| {name} | " + " | ".join(f"{row[s]:.4f}" for s in order) + " |" for name, row in table.items()]
    lines += ["| **worst** | " + " | ".join(f"**{min(r[s] for r in table.values()):.4f}**" for s in order) + " |"]
    lines += [
        "",
        f"`{DEFAULT_SCORE}` AUROC by k (importance samples):",
        "",
        "| set | " + " | ".join(f"k={k}" for k in K_SWEEP) + " |",
        "|---|" + "---:|" * len(K_SWEEP),
    ]
    lines += [f"| {name} | " + " | ".join(f"{sweep[k][name]:.4f}" for k in K_SWEEP) + " |" for name in sets]
    lines += ["", f"`score` costs {per_image_ms:.2f} ms per image at k={k0} (1 thread, CPU, batch {args.normal})."]
    print("\n".join(lines))
    result = {
        "normal": args.normal,
        "per_set": args.per_set,
        "k": k0,
        "auroc": table,
        "default_score_auroc_by_k": {str(k): v for k, v in sweep.items()},
        "score_ms_per_image": per_image_ms,
        "model": str(vae.files.folder),
    }
    write_bytes_atomic(args.out, (json.dumps(result, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()
