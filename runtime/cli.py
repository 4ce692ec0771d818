"""The `edgevae` command: sample, reconstruct, interpolate and inspect a model. No torch needed.

edgevae sample -n 64 --seed 0 -o samples.png
edgevae reconstruct digits.npy -o recon.png
edgevae interpolate a.png b.png --steps 10 -o path.png
edgevae score digits.npy -o scores.csv --threshold p99
edgevae selftest
edgevae info
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from typing import Any

import numpy as np

from . import __version__
from .contract import DEFAULT_VARIANT, MEAN, VARIANTS
from .devices import PROVIDERS, add_device_argument
from .errors import DeviceError, ModelError, SelftestFailed, run_cli
from .images import check_output_path, read_images, save_grid, write_output
from .likelihood import DEFAULT_SCORE, PERCENTILES, SCORES
from .model import DEFAULT_MODEL, MODEL_DIR_ENV, MODEL_NAME_ENV, find_model_dir, list_packaged_models


def seed_value(text: str) -> int:
    """argparse type for --seed: an int >= 0 (argparse names the flag in its error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an int >= 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--model",
        default=None,
        help=f"model folder from `make export` (default: ${MODEL_DIR_ENV}, else the packaged model)",
    )
    common.add_argument(
        "--model-name",
        default=None,
        help=f"a model shipped in this package, instead of --model: {', '.join(list_packaged_models())} "
        f"(default: ${MODEL_NAME_ENV}, else {DEFAULT_MODEL})",
    )
    add_device_argument(common, "auto: CUDA when onnxruntime has it, else CPU (default: auto)")
    common.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: its own)")
    common.add_argument(
        "--variant",
        default=DEFAULT_VARIANT,
        help=f"which build of the graphs: {', '.join(VARIANTS)} (default: {DEFAULT_VARIANT}); "
        "`edgevae info` lists those in the model folder with size and cost",
    )
    common.add_argument("--debug", action="store_true", help="show the traceback of an error")
    p = argparse.ArgumentParser(
        prog="edgevae", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--version", action="version", version=f"edgevae {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sample", parents=[common], help="decode random latents into a grid of digits")
    s.add_argument("-n", type=int, default=64, help="number of samples (default: 64)")
    s.add_argument("--seed", type=seed_value, default=0, help="numpy seed for z ~ N(0, I) (default: 0)")
    s.add_argument("-o", "--output", default="samples.png", help=".png grid or .npy array (default: samples.png)")
    r = sub.add_parser("reconstruct", parents=[common], help="encode and decode images; originals beside results")
    r.add_argument(
        "input",
        help=".npy array of images (any accepted shape), a grayscale .png digit, or a .png/.jpg picture "
        "for a colour model",
    )
    r.add_argument(
        "-o",
        "--output",
        default="reconstruction.png",
        help=".png (pairs side by side) or .npy (reconstructions) (default: reconstruction.png)",
    )
    r.add_argument("--stochastic", action="store_true", help="decode a draw z ~ q(z|x) instead of its mean")
    r.add_argument("--seed", type=seed_value, default=0, help="seed for --stochastic (default: 0)")
    i = sub.add_parser("interpolate", parents=[common], help="walk the latent space from image A to image B")
    i.add_argument("a", help="first image (.png, or .npy holding one image)")
    i.add_argument("b", help="second image (.png, or .npy holding one image)")
    i.add_argument("--steps", type=int, default=10, help="images along the path, ends included (default: 10)")
    i.add_argument("-o", "--output", default="interpolation.png", help=".png or .npy (default: interpolation.png)")
    c = sub.add_parser("score", parents=[common], help="how unusual each image is (higher = more unusual), as CSV")
    c.add_argument("input", help=".npy array of images (any accepted shape) or a grayscale .png")
    c.add_argument(
        "-k",
        type=int,
        default=None,
        help="importance samples per image (default: the k of the model's score statistics, 16)",
    )
    c.add_argument(
        "--score",
        choices=sorted(SCORES),
        default=DEFAULT_SCORE,
        help=f"which score (default: {DEFAULT_SCORE}); see the README's table",
    )
    c.add_argument("--seed", type=seed_value, default=0, help="seed of the importance-sampling noise (default: 0)")
    c.add_argument(
        "--threshold",
        default=None,
        help="flag images whose score is above this: a number, or pNN for the NN-th percentile of "
        f"normal images' scores stored with the model ({', '.join('p' + q for q in PERCENTILES)}) "
        "(default: no flags)",
    )
    c.add_argument("-o", "--output", default="-", help="CSV file (default: -, standard output)")
    sub.add_parser(
        "selftest",
        parents=[common],
        help="replay the golden vectors (PyTorch outputs) on this device; exit 1 on any failure",
    )
    sub.add_parser("info", parents=[common], help="model metadata, file checksums, providers, self-test")
    return p


def resolve_threshold(vae: Any, text: str | None, score: str) -> tuple[float | None, str]:
    """--threshold as a number, or pNN -> the stored percentile; with a description for the summary."""
    if text is None:
        return None, ""
    if text.lower().startswith("p"):
        value = vae.threshold(text[1:], score)
        return value, f"{value:.4g} (the {text[1:]}th percentile of {vae.score_stats.images} normal images)"
    try:
        return float(text), text
    except ValueError:
        raise ValueError(
            f"--threshold: expected a number or pNN ({', '.join('p' + q for q in PERCENTILES)}); got {text!r}"
        ) from None


def format_scores(result: Any, threshold: float | None) -> str:
    """CSV: index, score, nll, complexity_nats, density_nll[, flagged]."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    header = ["index", "score", "nll", "complexity_nats", "density_nll"]
    writer.writerow(header + (["flagged"] if threshold is not None else []))
    rows = zip(result.score, result.nll, result.complexity, result.density, strict=True)
    for i, (s, nll, c, d) in enumerate(rows):
        row = [i, f"{s:.6g}", f"{nll:.6g}", f"{c:.6g}", f"{d:.6g}"]
        writer.writerow(row + ([int(s > threshold)] if threshold is not None else []))
    return buf.getvalue()


def describe_selftests(model: str | None, threads: int | None, variants: list[str]) -> list[str]:
    """One line per device this onnxruntime could run and variant: the self-test result there."""
    import onnxruntime as ort

    from .selftest import run_selftest
    from .vae import VAE

    lines = []
    for device, provider in PROVIDERS.items():
        if provider not in ort.get_available_providers():
            lines.append(f"selftest {device}: not run ({provider} not in this onnxruntime)")
            continue
        try:
            for variant in variants:
                report = run_selftest(VAE(model, device=device, variant=variant, threads=threads))
                lines.append(f"selftest {device} {variant} ({report.provider}): {report.summary()}")
        except (DeviceError, ModelError) as exc:
            lines.append(f"selftest {device}: not run ({exc})")
    return lines


def describe_variant(name: str, v: dict[str, Any], folder: Any) -> str:
    """One `edgevae info` line for a manifest variant; a malformed entry is a ModelError."""
    try:
        change = v.get("log_likelihood_change", {})
        cost = (
            f"NLL {-change['nats']:+.4f} nats (N={change['images']}, k={change['k']}, seed={change['seed']})"
            if change
            else "not measured"
        )
        diff = v.get("max_abs_diff_vs_fp32", {}).get(f"reconstruct.{MEAN}", 0.0)
        return (
            f"  {name:5s} {v.get('size', 0):>10,} bytes ({v.get('size_vs_fp32', 1.0):.0%} of fp32)  "
            f"cost {cost}  pixel |diff| {diff:.1e}  {v.get('description', '')}"
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelError(f"{folder}/manifest.json: variants.{name} is malformed ({type(exc).__name__}: {exc})") from exc


def run_command(args: argparse.Namespace) -> str:
    import onnxruntime as ort

    from .vae import VAE

    if args.command in ("sample", "reconstruct", "interpolate"):
        check_output_path(args.output)  # before any work: a wrong suffix must not cost a computation
    args.model = str(find_model_dir(args.model, args.model_name))
    vae = VAE(args.model, device=args.device, variant=args.variant, threads=args.threads)
    head = f"device: {args.device} -> {vae.device} ({', '.join(vae.providers)}); variant: {vae.files.variant}"
    if args.command == "sample":
        images = vae.sample(args.n, seed=args.seed)
        path = save_grid(images, args.output)
        return f"{head}\nwrote {len(images)} samples to {path}"
    if args.command == "reconstruct":
        x = read_images(args.input, vae.channels)
        recon = vae.reconstruct(x, stochastic=args.stochastic, seed=args.seed)
        recon = recon.reshape(-1, *vae.output_shape)
        if args.output.lower().endswith(".png"):
            orig = vae.normalize_images(x)
            pairs = np.stack([orig, recon], axis=1).reshape(-1, *vae.output_shape)  # original, result, ...
            ncols = 2 * min(8, len(recon))
            path = save_grid(pairs, args.output, ncols=ncols)
        else:
            path = save_grid(recon, args.output)
        return f"{head}\nwrote {len(recon)} reconstructions to {path}"
    if args.command == "score":
        x = read_images(args.input, vae.channels)
        threshold, described = resolve_threshold(vae, args.threshold, args.score)
        result = vae.score(x, score=args.score, k=args.k, seed=args.seed)
        text = format_scores(result, threshold)
        summary = f"{head}\nscored {len(result.score)} images: score {result.name}, k={result.k}"
        if threshold is not None:
            summary += f"; {int((result.score > threshold).sum())} flagged above {described}"
        if args.output == "-":
            sys.stdout.write(text)
            print(summary, file=sys.stderr)
            return ""
        write_output(args.output, text.encode())
        return f"{summary}\nwrote {args.output}"
    if args.command == "selftest":
        from .selftest import run_selftest

        report = run_selftest(vae)
        lines = [head] + [c.line() for c in report.checks] + [f"selftest on {report.provider}: {report.summary()}"]
        if not report.passed:
            raise SelftestFailed("\n".join(lines))
        return "\n".join(lines)
    if args.command == "interpolate":
        images = vae.interpolate(read_images(args.a, vae.channels), read_images(args.b, vae.channels), steps=args.steps)
        path = save_grid(images, args.output, ncols=len(images))
        return f"{head}\nwrote {len(images)} interpolation steps to {path}"
    m = vae.files.manifest
    lines = [
        head,
        f"model: {vae.files.folder}",
        f"packaged models: {', '.join(list_packaged_models())} (choose with --model-name)",
        f"config: {json.dumps(m['config'], sort_keys=True)}",
        f"opset: {m.get('opset')}  min onnxruntime: {m.get('min_onnxruntime')}  "
        f"versions: {json.dumps(m.get('versions', {}), sort_keys=True)}",
    ]
    verified = set(vae.files.extras) | {VARIANTS[vae.files.variant].file(g) for g in vae.files.blobs}
    for name, entry in m["files"].items():
        state = "verified" if name in verified else "listed; verified when its variant loads"
        lines.append(f"{name}: sha256 {entry['sha256']}  {entry['size']:,} bytes  ({state})")
    lines.append(
        "variants (cost: change of the importance-weighted -log p(x) against fp32, nats per image; "
        "pixel |diff|: max against fp32 over reconstructed real digits):"
    )
    present = vae.files.variants
    for name, v in sorted(present.items(), key=lambda kv: list(VARIANTS).index(kv[0]) if kv[0] in VARIANTS else 99):
        lines.append(describe_variant(name, v, vae.files.folder))
    lines.append(f"onnxruntime {ort.__version__}; available providers: {', '.join(ort.get_available_providers())}")
    lines.append(f"active providers: {', '.join(vae.providers)}")
    lines.extend(describe_selftests(args.model, args.threads, [n for n in VARIANTS if n in present]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point: domain errors and bad input are one line and exit 2 (see errors.run_cli)."""
    args = build_parser().parse_args(argv)

    def body() -> int:
        text = run_command(args)
        if text:
            print(text)
        return 0

    return run_cli(body, "edgevae", debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
