"""Generative quality: test-set -log p(x) of each model through its ONNX graphs: `make quality`.

    EDGEVAE_DATA_DIR=../shared/data/mnist .venv/bin/python bench/quality.py [--images 1000] [-k 1000]

One evaluation path for every figure of the README's quality table: the first N MNIST test images,
binarized once exactly as training evaluates them (train/evaluate.py: each pixel ~ Bernoulli(grey
level), torch generator seeded 20140101) for bernoulli models, grey levels for gaussian ones; the
importance-weighted bound with k samples (Burda et al. 2015, eq. 8) computed by the runtime
(`VAE.log_likelihood`, numpy + onnxruntime, CPU, noise seed 0) from the shipped fp32 graphs.
Beside each figure: the active latent units over all 10,000 test images (Cov_x E_q[z_u] > 0.01,
Burda et al. 2015; VAE.latent_activity), training's own figure over all 10,000 test images (metrics.json: same
binarization and estimator, k=1000, computed by train/evaluate.py in PyTorch; the paper's figures
are over all of them too), the graphs' sizes, the int8 variant's, and the training time.
Prints a Markdown table and writes artifacts/quality.json (models not named by --models keep their record).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgevae.runtime import VAE
from edgevae.runtime.atomic import write_bytes_atomic
from edgevae.runtime.files import ModelFiles
from edgevae.runtime.noise import NOISE_SCHEME
from edgevae.train.data import load_split
from edgevae.train.evaluate import EVAL_SEED, describe_nll, prepare_eval_images
from edgevae.train.loop import stage_record

REPO = Path(__file__).resolve().parents[1]
# name -> (graphs folder, checkpoints folder with metrics.json); book and conv28 are exported by `make quality`.
MODELS = {
    "default": ("runtime/models/default", "artifacts/checkpoints"),
    "large": ("runtime/models/large", "artifacts/checkpoints-large"),
    "book": ("artifacts/onnx-book", "artifacts/checkpoints-book"),
    "conv28": ("artifacts/onnx-conv28", "artifacts/checkpoints-conv28"),
}
TIGHT_K = 5000  # the published protocol's k (Burda et al. 2015; Tomczak & Welling 2018): a tighter bound
TIGHT = ("default", "large")  # models measured at TIGHT_K too (a conv decoder costs 20x an MLP's: conv28 is not)
ALL_TIGHT = ("large",)  # models also measured over all 10,000 test images at TIGHT_K (about 8 min for large)
# Burda et al. 2015, Table 1 (one stochastic layer, 784-200-200-50 tanh, dynamic binarization, k=5000).
PAPER = {
    "VAE (Burda et al. 2015, Table 1)": 86.76,
    "IWAE, k=50 (Burda et al. 2015, Table 1)": 84.78,
}


def graph_bytes(vae: VAE, variant: str) -> int | None:
    """Encoder + decoder bytes of a variant, from the manifest."""
    files = vae.files.manifest["files"]
    names = [
        n for n, e in files.items() if isinstance(e, dict) and e.get("variant", "fp32") == variant and "graph" in e
    ]
    return sum(files[n]["size"] for n in names) if names else None


def prepared(test: np.ndarray, likelihood: str) -> np.ndarray:
    """All test images as training evaluates them: binarized once for bernoulli, grey levels otherwise."""
    x = torch.from_numpy(test.reshape(len(test), -1).astype(np.float32) / 255.0)
    return prepare_eval_images(x, likelihood).numpy()


def measure_nll(vae: VAE, test: np.ndarray, n: int, k: int) -> dict[str, Any]:
    """-log p(x) of the first n test images (binarized for bernoulli) under `vae`, with its protocol."""
    x = prepared(test, vae.likelihood)[:n]  # binarize all, then take the first n
    t0 = time.perf_counter()
    ll = float(np.mean(vae.log_likelihood(x, k=k, seed=0)))
    record = describe_nll(-ll, k, n, vae.likelihood, EVAL_SEED)
    record.update(noise=f"edgevae runtime, seed 0, {NOISE_SCHEME}", eval_seconds=time.perf_counter() - t0)
    return record


def read_as_bernoulli(vae: VAE) -> VAE:
    """The same graphs with the decoder's pixel means read as Bernoulli probabilities: a gaussian
    model's figure on the binarized images, comparable with the others (the decoder gives logits too)."""
    files = vae.files
    manifest = {**files.manifest, "config": {**files.manifest["config"], "likelihood": "bernoulli"}}
    return VAE(ModelFiles(files.folder, manifest, files.graphs, files.extras, files.variant), device="cpu")


def evaluate_model(
    name: str, graphs: Path, checkpoints: Path, test: np.ndarray, n: int, k: int, tight_k: int, all_tight: bool
) -> dict[str, Any]:
    """A model's figures (tight_k = 0: no k = TIGHT_K column), active units, sizes and training."""
    vae = VAE(graphs, device="cpu")
    record = measure_nll(vae, test, n, k)
    if vae.likelihood == "gaussian":
        record["as_bernoulli"] = measure_nll(read_as_bernoulli(vae), test, n, k)
    elif tight_k:
        record["tight"] = measure_nll(vae, test, n, tight_k)  # the same images, k = TIGHT_K
        if all_tight:
            record["all_tight"] = measure_nll(vae, test, len(test), tight_k)  # every test image, k = TIGHT_K
    metrics = json.loads((checkpoints / "metrics.json").read_text())
    config = metrics["config"]
    activity = vae.latent_activity(
        prepared(test, vae.likelihood)
    )  # all 10,000: active units (Burda et al. 2015) and KL per unit
    return {
        **record,
        "active_units": activity.active_units,
        "latent_activity_images": activity.images,
        "kl_per_unit_nats": [float(v) for v in activity.kl_per_unit],
        "config": config,
        "fp32_bytes": graph_bytes(vae, "fp32"),
        "int8_bytes": graph_bytes(vae, "int8"),
        "train_minutes": sum(stage["minutes"] for stage in training_stages(metrics)),
        "stages": training_stages(metrics),
        "all_test_images": metrics.get("test_nll"),  # training's own figure: all 10,000, k=1000, torch
        "epochs": sum(stage["epochs"] for stage in training_stages(metrics)),
    }


def training_stages(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Every stage that trained the model (a fine-tuned run records them all), or its one run."""
    return list(metrics.get("stages") or [stage_record(metrics["config"], metrics["history"])])


def describe_training(r: dict[str, Any]) -> str:
    """'elbo, warm-up 10, 240 epochs, then iwae k=5, 60 epochs, 71 min' from the stages (a record written
    before stages were recorded: its config's one run)."""
    parts = []
    for stage in r.get("stages") or [stage_record(r["config"], [])]:
        how = stage.get("objective") or "elbo"
        how += f" k={stage['k']}" if (stage.get("k") or 1) > 1 else ""
        how += f", warm-up {stage['warmup_epochs']}" if stage.get("warmup_epochs") else ""
        parts.append(f"{how}, {stage['epochs']} epochs")
    return ", then ".join(parts) + f", {r['train_minutes']:.0f} min"


def format_mb(n: int | None) -> str:
    return f"{n / 1e6:.2f} MB" if n else "-"


def format_table(results: dict[str, dict[str, Any]], tight_k: int) -> str:
    rows = [
        f"| model | -log p(x), nats | k = {tight_k} | all 10,000 test images | network | active latent units "
        "| training | fp32 graphs | int8 graphs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        m = r["config"]["model"]
        net = f"{m.get('block', 'plain')} {m.get('layers', 1)}x{m['hidden']}, {m['latent']} latents, {m['likelihood']}"
        if m.get("prior", "standard") != "standard":
            net += f", {m['prior']} prior ({m['prior_components']})"
        how = describe_training(r)
        figure = f"**{r['nll']:.2f}**"
        tight = f"{r['tight']['nll']:.2f}" if "tight" in r else "-"
        if "as_bernoulli" in r:  # a density over grey levels: not comparable; its means read as bernoulli are
            figure = f"**{r['as_bernoulli']['nll']:.2f}** (means read as bernoulli; {r['nll']:.1f} as its own gaussian)"
        full = r["all_test_images"]
        every = f"{full['nll']:.2f}" if full and full["likelihood"] == "bernoulli" else "-"
        if "all_tight" in r:
            every += f" ({r['all_tight']['nll']:.2f} at k = {r['all_tight']['k']})"
        sizes = f"{format_mb(r['fp32_bytes'])} | {format_mb(r['int8_bytes'])}"
        active = f"{r['active_units']} of {m['latent']}"
        rows.append(f"| {name} | {figure} | {tight} | {every} | {net} | {active} | {how} | {sizes} |")
    for paper, nll in PAPER.items():
        rows.append(f"| {paper} | - | - | {nll:.2f} | 784-200-200-50 tanh | - | 3280 epochs | - | - |")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None, help="MNIST folder (default: $EDGEVAE_DATA_DIR)")
    p.add_argument("--images", type=int, default=1000, help="the first N test images (default: 1000)")
    p.add_argument("-k", type=int, default=1000, help="importance samples per image (default: 1000)")
    p.add_argument(
        "--tight-k", type=int, default=TIGHT_K, help=f"k of the second column, 0 = skip (default: {TIGHT_K})"
    )
    p.add_argument("--models", nargs="+", default=list(MODELS), help=f"(default: {' '.join(MODELS)})")
    p.add_argument(
        "--tight", nargs="*", default=list(TIGHT), help=f"models measured at --tight-k (default: {' '.join(TIGHT)})"
    )
    p.add_argument(
        "--all-tight",
        nargs="*",
        default=list(ALL_TIGHT),
        help=f"models also measured on all test images at --tight-k (default: {' '.join(ALL_TIGHT)})",
    )
    p.add_argument("--out", default=str(REPO / "artifacts" / "quality.json"), help="(default: artifacts/quality.json)")
    args = p.parse_args()
    test, _ = load_split(args.data_dir, "test")
    out = Path(args.out)
    # models not measured this time keep their record from --out, so one model can be re-measured alone
    kept = json.loads(out.read_text())["models"] if out.is_file() else {}
    results = {name: kept[name] for name in MODELS if name in kept and name not in args.models}
    for name in args.models:
        graphs, checkpoints = (REPO / part for part in MODELS[name])
        results[name] = evaluate_model(
            name,
            graphs,
            checkpoints,
            test,
            args.images,
            args.k,
            args.tight_k if name in args.tight else 0,
            name in args.all_tight,
        )
        print(f"{name}: {results[name]['nll']:.3f} nats ({results[name]['eval_seconds']:.0f} s)", flush=True)
    results = {name: results[name] for name in MODELS if name in results}  # the table's order
    table = format_table(results, args.tight_k)
    print(table)
    doc = {"models": results, "paper": PAPER, "table": table}
    write_bytes_atomic(out, (json.dumps(doc, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()
