"""Export encoder/decoder checkpoints to two ONNX graphs and validate them against PyTorch.

    python -m edgevae.export --checkpoints artifacts/checkpoints --out artifacts/onnx

Builds encoder.onnx and decoder.onnx in memory, checks them (ONNX checker, shape inference, no
random operators), compares ONNX Runtime with PyTorch on random and real inputs at batch sizes
1, 7, 64 and 4096, replays golden vectors (fixed inputs and the PyTorch outputs) through ONNX
Runtime, measures the unusual-input score's statistics on normal images, and only then writes the
graphs, golden.npz + golden.json (for `edgevae selftest`), score_stats.json (for `edgevae score`),
manifest.json (checksums, signatures, parity figures) and samples.png (64 digits decoded by ONNX
Runtime from fixed noise, seed 0). A missing or corrupt checkpoint, or a failed check, writes nothing.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from edgevae.runtime import contract


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m edgevae.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoints", default="artifacts/checkpoints",
                   help="folder with encoder.pt and decoder.pt (default: artifacts/checkpoints)")
    p.add_argument("--out", default="artifacts/onnx", help="output folder (default: artifacts/onnx)")
    p.add_argument("--opset", type=int, default=contract.OPSET, help=f"ONNX opset (default: {contract.OPSET})")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="execution providers to validate on: cpu; cuda (CPU and CUDA); auto (CPU, plus "
                        "CUDA when onnxruntime has it). Tracing always runs on the CPU. (default: auto)")
    p.add_argument("--score-images", default=None,
                   help="normal images (.npy, any accepted shape) for the score statistics; give this for a model "
                        "trained on other data (default: 2000 MNIST training digits shipped with the exporter)")
    p.add_argument("--no-samples", action="store_true", help="skip samples.png")
    return p


def resolve_validation_devices(device: str) -> list[str]:
    import onnxruntime as ort

    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if device == "cuda" and not has_cuda:
        raise RuntimeError("--device cuda: onnxruntime has no CUDAExecutionProvider "
                           f"(available: {ort.get_available_providers()}); install edgevae[gpu]")
    return ["cpu", "cuda"] if device == "cuda" or (device == "auto" and has_cuda) else ["cpu"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from edgevae.train.checkpoint import CheckpointError

    from .convert import ExportError, export_model
    from .validate import ValidationError

    out = Path(args.out)
    t0 = time.perf_counter()
    try:
        devices = resolve_validation_devices(args.device)
        print(f"device: {args.device} -> validating on {', '.join(devices)} (tracing on cpu)")
        score_images = None
        if args.score_images:
            from edgevae.runtime.images import read_images

            score_images = read_images(args.score_images)
        paths, parity = export_model(args.checkpoints, out, args.opset, tuple(devices), score_images)
        for device, summary in parity.items():
            figures = ", ".join(f"{k} {v:.1e}" for k, v in summary["max_abs_diff"].items())
            print(f"parity vs PyTorch ({device}, tolerance {summary['tolerance']:.0e}): {figures}")
        if not args.no_samples:
            from edgevae.runtime import VAE
            from edgevae.runtime.images import save_grid

            paths.append(save_grid(VAE(out, device="cpu").sample(64, seed=0), out / "samples.png", ncols=8))
    except (CheckpointError, ExportError, ValidationError, RuntimeError, ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    print(f"export done in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
