"""The `edgevae` command: sample, reconstruct, interpolate and inspect a model. No torch needed.

    edgevae sample -n 64 --seed 0 -o samples.png
    edgevae reconstruct digits.npy -o recon.png
    edgevae interpolate a.png b.png --steps 10 -o path.png
    edgevae info
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from .errors import DeviceError, ModelError
from .images import read_images, save_grid
from .model import MODEL_DIR_ENV


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", default=None,
                        help=f"model folder from `make export` (default: ${MODEL_DIR_ENV}, else the packaged model)")
    common.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto: CUDA when onnxruntime has it, else CPU (default: auto)")
    common.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: its own)")
    p = argparse.ArgumentParser(prog="edgevae", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sample", parents=[common], help="decode random latents into a grid of digits")
    s.add_argument("-n", type=int, default=64, help="number of samples (default: 64)")
    s.add_argument("--seed", type=int, default=0, help="numpy seed for z ~ N(0, I) (default: 0)")
    s.add_argument("-o", "--output", default="samples.png", help=".png grid or .npy array (default: samples.png)")
    r = sub.add_parser("reconstruct", parents=[common], help="encode and decode images; originals beside results")
    r.add_argument("input", help=".npy array of images (any accepted shape) or a grayscale .png digit")
    r.add_argument("-o", "--output", default="reconstruction.png",
                   help=".png (pairs side by side) or .npy (reconstructions) (default: reconstruction.png)")
    r.add_argument("--stochastic", action="store_true", help="decode a draw z ~ q(z|x) instead of its mean")
    r.add_argument("--seed", type=int, default=0, help="seed for --stochastic (default: 0)")
    i = sub.add_parser("interpolate", parents=[common], help="walk the latent space from image A to image B")
    i.add_argument("a", help="first image (.png, or .npy holding one image)")
    i.add_argument("b", help="second image (.png, or .npy holding one image)")
    i.add_argument("--steps", type=int, default=10, help="images along the path, ends included (default: 10)")
    i.add_argument("-o", "--output", default="interpolation.png", help=".png or .npy (default: interpolation.png)")
    sub.add_parser("info", parents=[common], help="model metadata, file checksums, providers")
    return p


def run_command(args: argparse.Namespace) -> str:
    import onnxruntime as ort

    from .vae import VAE

    vae = VAE(args.model, device=args.device, threads=args.threads)
    head = f"device: {args.device} -> {vae.device} ({', '.join(vae.providers)})"
    if args.command == "sample":
        images = vae.sample(args.n, seed=args.seed)
        path = save_grid(images, args.output)
        return f"{head}\nwrote {len(images)} samples to {path}"
    if args.command == "reconstruct":
        x = read_images(args.input)
        recon = vae.reconstruct(x, stochastic=args.stochastic, seed=args.seed)
        recon = recon.reshape(-1, *vae.image_shape)
        if args.output.lower().endswith(".png"):
            xs, _ = vae.check_images(x)
            orig = xs.reshape(-1, *vae.image_shape).astype(np.float32)
            orig = orig / 255.0 if xs.dtype.kind in "iu" else orig
            pairs = np.stack([orig, recon], axis=1).reshape(-1, *vae.image_shape)  # original, result, ...
            ncols = 2 * min(8, len(recon))
            path = save_grid(pairs, args.output, ncols=ncols)
        else:
            path = save_grid(recon, args.output)
        return f"{head}\nwrote {len(recon)} reconstructions to {path}"
    if args.command == "interpolate":
        images = vae.interpolate(read_images(args.a), read_images(args.b), steps=args.steps)
        path = save_grid(images, args.output, ncols=len(images))
        return f"{head}\nwrote {len(images)} interpolation steps to {path}"
    m = vae.files.manifest
    lines = [head, f"model: {vae.files.folder}", f"config: {json.dumps(m['config'], sort_keys=True)}",
             f"opset: {m.get('opset')}  min onnxruntime: {m.get('min_onnxruntime')}  "
             f"versions: {json.dumps(m.get('versions', {}), sort_keys=True)}"]
    for name, entry in m["files"].items():
        lines.append(f"{name}: sha256 {entry['sha256']}  {entry['size']:,} bytes  (verified)")
    lines.append(f"onnxruntime {ort.__version__}; available providers: {', '.join(ort.get_available_providers())}")
    lines.append(f"active providers: {', '.join(vae.providers)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        print(run_command(args))
    except (ValueError, ModelError, DeviceError, ImportError, OSError) as exc:
        print(f"edgevae: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
