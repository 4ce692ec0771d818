"""The `edgevae` command: sample, reconstruct, interpolate and inspect a model. No torch needed.

edgevae sample -n 64 --seed 0 -o samples.png
edgevae reconstruct digits.npy -o recon.png
edgevae interpolate a.png b.png --steps 10 -o path.png
edgevae score digits.npy -o scores.csv --threshold p99
edgevae likelihood digits.npy -k 1000 -o ll.csv
edgevae selftest
edgevae info
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from . import __version__
from .contract import DEFAULT_VARIANT, MEAN, PRIOR_FILE, VARIANTS
from .devices import PROVIDERS, add_device_argument
from .errors import DeviceError, EdgeVAEError, SelftestError, run_cli
from .files import DEFAULT_MODEL, MODEL_DIR_ENV, MODEL_NAME_ENV, ModelFiles, find_model_dir, list_packaged_models
from .images import GRID_BYTES_PER_PIXEL, STDOUT, Output, plan_output, read_images, save_grid, write_output
from .limits import MEMORY_BUDGET_ENV, check_amount, check_seed, parse_size
from .progress import ProgressLine
from .scores import DEFAULT_SCORE, PERCENTILES, SCORE_COLUMNS, SCORES

if TYPE_CHECKING:
    from .vae import VAE


def seed_value(text: str) -> int:
    """argparse type for --seed: an int in [0, 2**128) (argparse names the flag in its error)."""
    try:
        return check_seed(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int in [0, 2**128), got {text!r}") from None


def size_value(text: str) -> int:
    """argparse type for --memory-budget: bytes, or a size such as 512M or 8G."""
    try:
        return parse_size(text, "--memory-budget")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def common_options() -> argparse.ArgumentParser:
    """The options every subcommand takes: which model, device, variant, threads, memory budget."""
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
    common.add_argument(
        "--memory-budget",
        type=size_value,
        default=None,
        help=f"bytes (or 512M, 8G) that bound -n, --steps, -k and input sizes (default: ${MEMORY_BUDGET_ENV}, else 2G)",
    )
    common.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    p = argparse.ArgumentParser(
        prog="edgevae", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--version", action="version", version=f"edgevae {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    add_image_commands(sub, common)
    add_score_command(sub, common)
    sub.add_parser(
        "selftest",
        parents=[common],
        help="replay the golden vectors (PyTorch outputs) on this device; exit 1 on any failure",
    )
    sub.add_parser("info", parents=[common], help="model metadata, file checksums, providers, self-test")
    return p


def add_image_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """sample, reconstruct and interpolate."""
    s = sub.add_parser("sample", parents=[common], help="decode random latents into a grid of digits")
    s.add_argument("-n", type=int, default=64, help="number of samples (default: 64)")
    s.add_argument(
        "--seed", type=seed_value, default=0, help="seed of the latents z ~ N(0, I), an int in [0, 2**128) (default: 0)"
    )
    s.add_argument(
        "-o",
        "--output",
        default="samples.png",
        help=".png grid or .npy array; - writes the PNG to stdout (default: samples.png)",
    )
    r = sub.add_parser("reconstruct", parents=[common], help="encode and decode images; originals beside results")
    r.add_argument("input", help=".npy array of images (any accepted shape) or a grayscale .png digit")
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


def add_score_command(sub: Any, common: argparse.ArgumentParser) -> None:
    """score, its choices read from the score registry (scores.py)."""
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
        help=f"which score (default: {DEFAULT_SCORE}): "
        + "; ".join(f"{name}: {score.description}" for name, score in SCORES.items()),
    )
    c.add_argument("--seed", type=seed_value, default=0, help="seed of the importance-sampling noise (default: 0)")
    c.add_argument(
        "--threshold",
        default=None,
        help="flag images whose score is above this: a number, or pNN for the NN-th percentile of "
        f"normal images' scores stored with the model ({', '.join('p' + q for q in PERCENTILES)}) "
        "(default: no flags)",
    )
    c.add_argument("-o", "--output", default="-", help=".csv file (default: -, standard output)")
    ll = sub.add_parser(
        "likelihood", parents=[common], help="importance-weighted log p(x) of each image in nats and bits/dim, as CSV"
    )
    ll.add_argument("input", help=".npy array of images (any accepted shape) or a grayscale .png")
    ll.add_argument("-k", type=int, default=1000, help="importance samples per image (default: 1000)")
    ll.add_argument("--seed", type=seed_value, default=0, help="seed of the importance-sampling noise (default: 0)")
    ll.add_argument("-o", "--output", default="-", help=".csv file (default: -, standard output)")


def resolve_threshold(vae: VAE, text: str | None, score: str) -> tuple[float | None, str]:
    """--threshold as a finite number, or pNN -> the stored percentile; with a description for the summary."""
    if text is None:
        return None, ""
    if text.lower().startswith("p"):
        value = vae.threshold(text[1:], score)
        return value, f"{value:.4g} (the {text[1:]}th percentile of {vae.score_stats.images} normal images)"
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(
            f"--threshold: expected a finite number or pNN ({', '.join('p' + q for q in PERCENTILES)}); got {text!r}"
        )
    return value, text


def format_scores(result: Any, threshold: float | None) -> str:
    """CSV: index, score, nll, complexity_nats, density_nll[, flagged]."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["index", *SCORE_COLUMNS] + (["flagged"] if threshold is not None else []))
    rows = zip(*(getattr(result, name) for name in SCORE_COLUMNS), strict=True)
    for i, values in enumerate(rows):
        flag = [int(values[0] > threshold)] if threshold is not None else []
        writer.writerow([i, *(f"{v:.6g}" for v in values), *flag])
    return buf.getvalue()


def selftest_lines(vae: VAE, model: str, threads: int | None, variants: list[str]) -> tuple[list[str], int]:
    """One line per device and variant: the self-test result, "not for" the devices a variant is not
    built for, or "not run" where the device is missing; with the number of checks that failed. Every
    check runs, whatever failed before it."""
    import onnxruntime as ort

    from .selftest import run_selftest
    from .vae import VAE

    lines, failed = [], 0
    for device, provider in PROVIDERS.items():
        if provider not in ort.get_available_providers():
            lines.append(f"selftest {device}: not run ({provider} not in this onnxruntime)")
            continue
        for variant in variants:
            try:
                ModelFiles(vae.files.folder, vae.files.manifest, {}, variant=variant).session_device(device)
            except DeviceError as exc:
                lines.append(f"selftest {device} {variant}: not for {device.upper()} ({exc})")
                continue
            try:
                report = run_selftest(VAE(model, device=device, variant=variant, threads=threads))
            except DeviceError as exc:
                lines.append(f"selftest {device} {variant}: not run ({exc})")
                continue
            except EdgeVAEError as exc:
                lines.append(f"selftest {device} {variant}: FAIL ({exc})")
                failed += 1
                continue
            lines.append(f"selftest {device} {variant} ({report.provider}): {report.summary()}")
            failed += not report.passed
    return lines, failed


def describe_variant(files: ModelFiles, name: str) -> str:
    """One `edgevae info` line for a manifest variant; a malformed entry is a ModelError."""
    from .errors import ModelError

    v, folder = files.variants[name], files.folder
    try:
        change = v.get("log_likelihood_change", {})
        cost = (
            f"NLL {-change['nats']:+.4f} nats (N={change['images']}, k={change['k']}, seed={change['seed']})"
            if change
            else "not measured"
        )
        diff = v.get("max_abs_diff_vs_fp32", {}).get(f"reconstruct.{MEAN}", 0.0)
        # a variant newer than this runtime: what its entry says
        entry = ModelFiles(folder, files.manifest, {}, variant=name) if name in VARIANTS else None
        devices = "+".join(entry.devices if entry else v.get("devices", ["cpu", "cuda"]))
        on_cuda = entry.spec.on_cuda if entry else ""
        return (
            f"  {name:5s} {v.get('size', 0):>10,} bytes ({v.get('size_vs_fp32', 1.0):.0%} of fp32)  "
            f"cost {cost}  pixel |diff| {diff:.1e}  for {devices}  {v.get('description', '')}"
            + (f"  (on CUDA: {on_cuda})" if on_cuda else "")
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelError(f"{folder}/manifest.json: variants.{name} is malformed ({type(exc).__name__}: {exc})") from exc


def latent_lines(manifest: dict[str, Any]) -> list[str]:
    """`edgevae info`'s line on the latent units the model uses (the manifest's latent_activity), if recorded."""
    a = manifest.get("latent_activity")
    if not isinstance(a, dict):
        return []
    try:
        kl = sorted((float(v) for v in a["kl_per_unit_nats"]), reverse=True)
        return [
            f"latent units: {a['active_units']} of {a['latent']} active (Cov_x E_q[z_u] > {a['threshold']}, "
            f"Burda et al. 2015) over {a['images']:,} {a['source']}; KL per unit, nats, largest first: "
            + ", ".join(f"{v:.2f}" for v in kl)
        ]
    except (KeyError, TypeError, ValueError) as exc:
        from .errors import ModelError

        raise ModelError(f"manifest.json: latent_activity is malformed ({type(exc).__name__}: {exc})") from exc


# -- the commands: each plans its output before any work, then loads the model, then works ----------
def load_vae(args: argparse.Namespace) -> VAE:
    from .vae import VAE

    args.model = str(find_model_dir(args.model, args.model_name))
    return VAE(
        args.model, device=args.device, variant=args.variant, threads=args.threads, memory_budget=args.memory_budget
    )


def header(args: argparse.Namespace, vae: VAE) -> str:
    only = "" if "cuda" in vae.files.devices else f" (built for {', '.join(vae.files.devices)} only)"
    on_cuda = vae.files.spec.on_cuda if vae.device == "cuda" else ""
    only += f" ({on_cuda})" if on_cuda else ""
    return f"device: {args.device} -> {vae.device} ({', '.join(vae.providers)}); variant: {vae.files.variant}{only}"


def output_cost(vae: VAE, output: Output, images_per_item: int = 1) -> int:
    """Bytes of work per output image beside the images themselves: a PNG grid's copies, or an .npy copy."""
    per_pixel = GRID_BYTES_PER_PIXEL if output.format == "png" else 8
    return images_per_item * per_pixel * vae.pixels


def cmd_sample(args: argparse.Namespace) -> str:
    output = plan_output(args.output)
    vae = load_vae(args)
    check_amount("-n", args.n, vae.image_bytes + output_cost(vae, output), vae.memory_budget, " images")
    images = vae.sample(args.n, seed=args.seed)
    path = save_grid(images, output)
    return f"{header(args, vae)}\nwrote {len(images)} samples to {path}"


def cmd_reconstruct(args: argparse.Namespace) -> str:
    output = plan_output(args.output, inputs=[args.input])
    vae = load_vae(args)
    pairs = output.format == "png"  # originals beside reconstructions: twice the images in the grid
    x = read_images(
        args.input,
        vae.input_rule(args.input, vae.image_bytes + output_cost(vae, output, 1 + pairs)),
        channels=vae.channels,
    )
    recon = vae.reconstruct(x, stochastic=args.stochastic, seed=args.seed).reshape(-1, *vae.output_shape)
    if pairs:
        orig = vae.normalize_images(x)
        grid = np.stack([orig, recon], axis=1).reshape(-1, *vae.output_shape)  # original, result, ...
        path = save_grid(grid, output, ncols=2 * min(8, len(recon)))
    else:
        path = save_grid(recon, output)
    return f"{header(args, vae)}\nwrote {len(recon)} reconstructions to {path}"


def cmd_interpolate(args: argparse.Namespace) -> str:
    output = plan_output(args.output, inputs=[args.a, args.b])
    vae = load_vae(args)
    check_amount("--steps", args.steps, vae.image_bytes + output_cost(vae, output), vae.memory_budget, " images")
    a, b = (read_images(path, vae.input_rule(path), channels=vae.channels) for path in (args.a, args.b))
    images = vae.interpolate(a, b, steps=args.steps)
    path = save_grid(images, output, ncols=len(images))
    return f"{header(args, vae)}\nwrote {len(images)} interpolation steps to {path}"


def cmd_score(args: argparse.Namespace) -> str:
    output = plan_output(args.output, formats={".csv": "csv"}, default="csv", inputs=[args.input])
    vae = load_vae(args)
    threshold, described = resolve_threshold(vae, args.threshold, args.score)
    x = read_images(args.input, vae.input_rule(args.input, 64), channels=vae.channels)
    with ProgressLine("score") as line:
        result = vae.score(x, score=args.score, k=args.k, seed=args.seed, progress=line)
    summary = f"{header(args, vae)}\nscored {len(result.score)} images: score {result.name}, k={result.k}"
    if threshold is not None:
        summary += f"; {int((result.score > threshold).sum())} flagged above {described}"
    write_output(output, format_scores(result, threshold).encode())
    return summary if output.path == STDOUT else f"{summary}\nwrote {output.path}"


def cmd_likelihood(args: argparse.Namespace) -> str:
    """CSV: index, log_likelihood_nats, bits_per_dim (-log2 p(x) per pixel value)."""
    output = plan_output(args.output, formats={".csv": "csv"}, default="csv", inputs=[args.input])
    vae = load_vae(args)
    x = read_images(args.input, vae.input_rule(args.input, 64), channels=vae.channels)
    with ProgressLine("likelihood") as line:
        ll = np.atleast_1d(vae.log_likelihood(x, k=args.k, seed=args.seed, progress=line))
    dims = vae.pixels
    text = "index,log_likelihood_nats,bits_per_dim\n" + "".join(
        f"{i},{v:.6f},{-v / (dims * math.log(2)):.6f}\n" for i, v in enumerate(ll)
    )
    write_output(output, text.encode())
    summary = f"{header(args, vae)}\n{len(ll)} images, k={args.k}: mean log p(x) {float(np.mean(ll)):.4f} nats"
    return summary if output.path == STDOUT else f"{summary}\nwrote {output.path}"


def cmd_selftest(args: argparse.Namespace) -> str:
    from .selftest import run_selftest

    vae = load_vae(args)
    report = run_selftest(vae)
    lines = [header(args, vae)] + [c.line() for c in report.checks]
    lines.append(f"selftest on {report.provider}: {report.summary()}")
    if not report.passed:
        raise SelftestError("\n".join(lines))
    return "\n".join(lines)


def cmd_info(args: argparse.Namespace) -> str:
    """Metadata, every file's checksum, the variants, and the self-test of every variant on every
    device; exit 1 (SelftestError) when any check failed, after running all of them."""
    import onnxruntime as ort

    vae = load_vae(args)
    m = vae.files.manifest
    lines = [
        header(args, vae),
        f"model: {vae.files.folder}",
        f"packaged models: {', '.join(list_packaged_models())} (choose with --model-name)",
        f"config: {json.dumps(m['config'], sort_keys=True)}",
        "prior: N(0, I)"
        if vae.prior is None
        else f"prior: learned ({m['config'].get('prior')}), a mixture of {vae.prior.components} Gaussians "
        f"read from {PRIOR_FILE}; sample draws a component per row, then z from it",
        f"opset: {m.get('opset')}  min onnxruntime: {m.get('min_onnxruntime')}  "
        f"versions: {json.dumps(m.get('versions', {}), sort_keys=True)}",
    ]
    verified = set(vae.files.extras) | {vae.files.spec.file(g) for g in vae.files.graphs}
    for name, entry in m["files"].items():
        state = "verified" if name in verified else "listed; verified when its variant loads"
        lines.append(f"{name}: sha256 {entry['sha256']}  {entry['size']:,} bytes  ({state})")
    lines.extend(latent_lines(m))
    lines.append(
        "variants (cost: change of the importance-weighted -log p(x) against fp32, nats per image; "
        "pixel |diff|: max against fp32 over reconstructed real digits):"
    )
    present = vae.files.variants
    for name in sorted(present, key=lambda n: list(VARIANTS).index(n) if n in VARIANTS else 99):
        lines.append(describe_variant(vae.files, name))
    lines.append(f"onnxruntime {ort.__version__}; available providers: {', '.join(ort.get_available_providers())}")
    lines.append(f"active providers: {', '.join(vae.providers)}")
    checks, failed = selftest_lines(vae, args.model, args.threads, [n for n in VARIANTS if n in present])
    lines.extend(checks)
    if failed:
        lines.append(f"info: {failed} check(s) failed")
        raise SelftestError("\n".join(lines))
    return "\n".join(lines)


COMMANDS: dict[str, Callable[[argparse.Namespace], str]] = {
    "sample": cmd_sample,
    "reconstruct": cmd_reconstruct,
    "interpolate": cmd_interpolate,
    "score": cmd_score,
    "likelihood": cmd_likelihood,
    "selftest": cmd_selftest,
    "info": cmd_info,
}


def run_command(args: argparse.Namespace) -> str:
    return COMMANDS[args.command](args)


def main(argv: list[str] | None = None) -> int:
    """Entry point: domain errors and bad input are one line and exit 2 (see errors.run_cli)."""
    args = build_parser().parse_args(argv)

    def body() -> int:
        text = run_command(args)
        # the report goes where the data does not: stderr when the output is standard output
        print(text, file=sys.stderr if getattr(args, "output", None) == STDOUT else sys.stdout)
        return 0

    return run_cli(body, "edgevae", debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
