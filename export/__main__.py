"""Export encoder/decoder checkpoints to two ONNX graphs and validate them against PyTorch.

    python -m edgevae.export --checkpoints artifacts/checkpoints --out artifacts/onnx

Builds encoder.onnx and decoder.onnx in memory, checks them (ONNX checker, shape inference, no
random operators), compares ONNX Runtime with PyTorch on random and real inputs at batch sizes
1, 7, 64 and 4096 (512 for images of over 1024 values), replays golden vectors (fixed inputs and
the PyTorch outputs) through ONNX
Runtime, measures the unusual-input score's statistics on normal images, and only then writes the
graphs, golden.bin + golden.json (for `edgevae selftest`), score_stats.json (for `edgevae score`),
manifest.json (checksums, signatures, parity figures) and samples.png (64 digits decoded by ONNX
Runtime from fixed noise, seed 0). A missing or corrupt checkpoint, or a failed check, writes nothing.
Real inputs are the shipped MNIST test digits for MNIST-shaped models, and for a model trained on
your own images (--dataset folder or npy) the training images saved beside its checkpoints
(data_sample.npy), which also give the unusual-input score's statistics. Your own PyTorch VAE:
edgevae.export.export_pair (export/pair.py).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from edgevae.runtime import __version__, contract
from edgevae.runtime.devices import CPU_DEVICE, CUDA_DEVICE, PROVIDERS, add_device_argument
from edgevae.runtime.errors import run_cli
from edgevae.train import require_torch


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m edgevae.export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--version", action="version", version=f"edgevae {__version__}")
    p.add_argument(
        "--checkpoints",
        default="artifacts/checkpoints",
        help="folder with encoder.safetensors, decoder.safetensors and checkpoint.sha256 (a folder of format-1 "
        ".pt checkpoints is read too, for this release) (default: artifacts/checkpoints)",
    )
    p.add_argument("--out", default="artifacts/onnx", help="output folder (default: artifacts/onnx)")
    p.add_argument("--opset", type=int, default=contract.OPSET, help=f"ONNX opset (default: {contract.OPSET})")
    add_device_argument(
        p,
        "execution providers to validate on: cpu; cuda (CPU and CUDA); auto (CPU, plus CUDA "
        "when onnxruntime has it). Tracing always runs on the CPU. (default: auto)",
    )
    p.add_argument(
        "--score-images",
        default=None,
        help="normal images (.npy, any accepted shape) for the score statistics (default: the training images "
        "saved beside the checkpoints by a folder/npy run, else 2000 MNIST training digits shipped with the exporter)",
    )
    p.add_argument(
        "--score-data",
        default=None,
        help="an MNIST folder: fit the density score's mixture to all 60,000 training digits, per digit class, "
        "and measure the score statistics on a held-out sixth; more digits catch more near-digit inputs "
        "(docs/likelihood.md) (default: the 2000 shipped digits, unlabelled)",
    )
    p.add_argument("--no-samples", action="store_true", help="skip samples.png")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p


def resolve_validation_devices(device: str) -> list[str]:
    """The devices to validate on: always the CPU, plus CUDA when `device` resolves to it."""
    from edgevae.runtime.sessions import resolve_providers

    return [CPU_DEVICE, CUDA_DEVICE] if resolve_providers(device)[0] == PROVIDERS[CUDA_DEVICE] else [CPU_DEVICE]


def export(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    require_torch("export", ("torch", "onnx", "safetensors"))
    from .convert import export_model

    out = Path(args.out)
    t0 = time.perf_counter()
    devices = resolve_validation_devices(args.device)
    print(f"device: {args.device} -> validating on {', '.join(devices)} (tracing on cpu)")
    score_images, source, labels = None, None, None
    if args.score_images and args.score_data:
        raise ValueError("give --score-images or --score-data, not both")
    if args.score_images:
        from edgevae.runtime.images import read_images

        score_images, source = read_images(args.score_images), f"caller-given images ({args.score_images})"
    if args.score_data:
        from .calibrate import load_training_digits

        score_images, labels = load_training_digits(args.score_data)
        source = f"the {len(labels):,} MNIST training digits, mixture per digit class"
    paths, parity = export_model(args.checkpoints, out, args.opset, tuple(devices), score_images, source, labels)
    for device, summary in parity.items():
        rounding = summary["float32_rounding"]
        figures = ", ".join(f"{k} {v:.1e} (rounding {rounding[k]:.1e})" for k, v in summary["max_abs_diff"].items())
        allowed = f"tolerance {summary['tolerance']:.0e} + twice the float32 rounding"
        print(f"parity vs PyTorch ({device}, {allowed}): {figures}")
    if not args.no_samples:
        from edgevae.runtime import VAE
        from edgevae.runtime.images import save_grid

        paths.append(save_grid(VAE(out, device="cpu").sample(64, seed=0), out / "samples.png", ncols=8))
    for path in paths:
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    print(f"export done in {time.perf_counter() - t0:.1f}s")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: export(args), "python -m edgevae.export", debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
