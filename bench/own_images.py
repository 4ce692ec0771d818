"""Bits per dimension on colour photos the project did not choose: scikit-learn's two sample photos
(china.jpg, flower.jpg, 427x640 RGB), cut into 32x32 patches, against lossless PNG and WebP.

    .venv/bin/pip install -e '.[bench]'      # scikit-learn: the photos; never a runtime dependency
    .venv/bin/python bench/own_images.py     # trains --preset conv32 (resumable: rerun to continue),
                                             # exports, measures; writes artifacts/own_images.{json,md}

Held out: the right-hand 128 columns of each photo, cut into non-overlapping patches (2 x 52). The
model trains on patches from the other 512 columns (stride 8, and their mirror images), so no
training patch overlaps a held-out one. Bits per dimension = -log2 p(x) / 3072 with the
importance-weighted estimate (k = 100) through the exported graphs; PNG and WebP are each patch
saved alone by Pillow (PNG at compression 9 with optimize, WebP lossless at method 6), 8 * bytes /
3072. Training minutes are wall time on this machine's 2 cores, which other jobs share.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PATCH, STRIDE, HELD_COLUMNS = 32, 8, 128
K, SEED = 100, 0


def photos() -> list[np.ndarray]:
    from sklearn.datasets import load_sample_images

    return [np.asarray(im, np.uint8) for im in load_sample_images().images]


def cut(image: np.ndarray, stride: int) -> np.ndarray:
    """All PATCH x PATCH patches at `stride` (N, 32, 32, 3)."""
    h, w = image.shape[:2]
    return np.stack(
        [
            image[y : y + PATCH, x : x + PATCH]
            for y in range(0, h - PATCH + 1, stride)
            for x in range(0, w - PATCH + 1, stride)
        ]
    )


def make_patches() -> tuple[np.ndarray, np.ndarray]:
    """(training patches with mirror images, held-out patches) from the two photos."""
    train, held = [], []
    for image in photos():
        split = image.shape[1] - HELD_COLUMNS
        left = cut(image[:, :split], STRIDE)
        train += [left, left[:, :, ::-1]]
        held.append(cut(image[:, split:], PATCH))
    return np.ascontiguousarray(np.concatenate(train)), np.concatenate(held)


def lossless_bits_per_dim(patches: np.ndarray) -> dict[str, float]:
    """Mean bits per dimension of each patch saved alone as PNG and as lossless WebP (Pillow)."""
    from PIL import Image

    sizes: dict[str, list[int]] = {"png": [], "webp": []}
    for patch in patches:
        im = Image.fromarray(patch)
        for fmt, kwargs in (
            ("png", {"optimize": True, "compress_level": 9}),
            ("webp", {"lossless": True, "method": 6, "quality": 100}),
        ):
            buf = io.BytesIO()
            im.save(buf, format=fmt.upper(), **kwargs)
            sizes[fmt].append(len(buf.getvalue()))
    return {fmt: 8.0 * float(np.mean(s)) / patches[0].size for fmt, s in sizes.items()}


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="artifacts/own-images", help="patches, checkpoints, model (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    p.add_argument(
        "--measure-only",
        action="store_true",
        help="skip training: export and measure the checkpoints as they are (an unfinished run is reported so)",
    )
    p.add_argument("--report-only", action="store_true", help="skip training and export: measure the exported model")
    args = p.parse_args(argv)
    work = REPO / args.work
    work.mkdir(parents=True, exist_ok=True)
    train, held = make_patches()
    np.save(work / "train_patches.npy", train)
    py = sys.executable
    data = ["--dataset", "npy", "--data-dir", str(work / "train_patches.npy"), "--test-fraction", "0.02"]
    if not (args.measure_only or args.report_only):
        extra = ["--epochs", str(args.epochs)] if args.epochs else []
        flags = ["--preset", "conv32", "--out", str(work / "run"), "--resume", "--no-progress", "--device", args.device]
        run([py, "-m", "edgevae.train", *data, *flags, *extra])
    if not args.report_only:
        run([py, "-m", "edgevae.export", "--checkpoints", str(work / "run"), "--out", str(work / "model")])
    result = measure(work, train, held)
    (REPO / "artifacts" / "own_images.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    (REPO / "artifacts" / "own_images.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def measure(work: Path, train: np.ndarray, held: np.ndarray) -> dict[str, Any]:
    """Bits per dimension of the held-out patches under every build, beside PNG and WebP, and the run's figures."""
    from edgevae.runtime import VAE

    metrics = json.loads((work / "run" / "metrics.json").read_text())
    manifest = json.loads((work / "model" / "manifest.json").read_text())
    dims = held[0].size
    variants = {}
    for name, v in manifest["variants"].items():
        ll = VAE(work / "model", device="cpu", variant=name).log_likelihood(held, k=K, seed=SEED)
        variants[name] = {
            "bits_per_dim": float(-np.mean(ll) / (dims * np.log(2))),
            "graph_bytes": v["size"],
            "cost_vs_fp32_bits_per_dim": -v["log_likelihood_change"]["bits_per_dim"],
        }
    return {
        "data": f"scikit-learn sample photos (china.jpg, flower.jpg), 32x32 RGB patches; held out: the right "
        f"{HELD_COLUMNS} columns, {len(held)} non-overlapping patches; trained on {len(train)} patches "
        f"(stride {STRIDE}, mirrored) of the rest",
        "held_out_patches": len(held),
        "training_patches": len(train),
        "epochs": len(metrics["history"]),
        "epochs_planned": metrics["config"]["epochs"],
        "training_complete": bool(metrics.get("complete")),
        "training_minutes": sum(h["seconds"] for h in metrics["history"]) / 60.0,
        "training_region_test_bits_per_dim": metrics.get("test_bits_per_dim"),
        "machine": "2 CPU cores shared with other jobs (tests of other sessions ran alongside)",
        "lossless_bits_per_dim": lossless_bits_per_dim(held),
        "variants": variants,
        "k": K,
        "seed": SEED,
    }


def markdown(r: dict[str, Any]) -> str:
    """The tables of docs/own-images.md for these figures (tests/test_own_images_readme.py keeps them equal)."""
    v, lossless = r["variants"], r["lossless_bits_per_dim"]
    stopped = "" if r["training_complete"] else f" of the {r['epochs_planned']} planned (stopped early)"
    lines = [
        "| held-out 32x32 patches, bits per dimension | conv32 VAE fp32 | int8 | PNG | WebP (lossless) |",
        "|---|---:|---:|---:|---:|",
        f"| {r['held_out_patches']} patches of scikit-learn's sample photos | {v['fp32']['bits_per_dim']:.3f} | "
        f"{v['int8']['bits_per_dim']:.3f} | {lossless['png']:.3f} | {lossless['webp']:.3f} |",
        "",
        "| build | graph bytes (encoder + decoder) | held-out bits/dim | cost vs fp32 on 256 training patches "
        "(bits/dim; below 0: better than fp32) |",
        "|---|---:|---:|---:|",
    ]
    for name in ("fp32", "int8", "fp16", "b1", "ort"):
        f = v[name]
        cost = round(f["cost_vs_fp32_bits_per_dim"], 4) + 0.0  # no "-0.0000"
        lines.append(f"| {name} | {f['graph_bytes']:,} | {f['bits_per_dim']:.3f} | {cost:+.4f} |")
    lines += [
        "",
        f"Training: {r['epochs']} epochs{stopped} on {r['training_patches']:,} patches, "
        f"{r['training_minutes']:.1f} minutes of epoch time on {r['machine']}; "
        f"{r['training_region_test_bits_per_dim']:.3f} bits/dim on its own test split (2% of the training "
        "region's patches, which overlap training patches).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
