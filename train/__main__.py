"""Train the VAE on MNIST-format data or your own images and write encoder/decoder checkpoints.

    python -m edgevae.train --data-dir ../shared/data/mnist              # tuned default (bernoulli)
    python -m edgevae.train --data-dir DIR --preset book                 # the textbook recipe
    python -m edgevae.train --data-dir DIR --resume                      # continue an interrupted run
    python -m edgevae.train --dataset folder --data-dir photos/ --preset conv32 --out run/   # your images

Writes OUT/encoder.safetensors, OUT/decoder.safetensors, the resume state OUT/train_state.safetensors
and their sha256 record OUT/checkpoint.sha256 (one commit after every epoch), OUT/metrics.json,
OUT/loss_curve.png and OUT/samples.png (folder and npy data also
OUT/data_sample.npy: up to 2000 training images, which export validates on and fits the score
statistics to). An OUT that already holds a run is
refused unless --resume or --overwrite says what to do with it.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import textwrap
from typing import Any

from edgevae.runtime import __version__
from edgevae.runtime.devices import add_device_argument
from edgevae.runtime.errors import run_cli

from . import require_torch
from .config import PRESETS, TrainConfig, VAEConfig
from .data import DATA_DIR_ENV, DATASETS
from .imagedata import OWN_DATASETS


def format_value(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def describe_default(name: str, model: bool) -> str:
    """'(default: 200; book: 30)': the default preset's value and each preset that differs, read from PRESETS."""
    values = {preset: getattr(cfg.model if model else cfg, name) for preset, cfg in PRESETS.items()}
    base = values.pop("default")
    others = "".join(f"; {preset}: {format_value(v)}" for preset, v in values.items() if v != base)
    return f"(default: {format_value(base)}{others})"


def add_config_flags(parser: argparse.ArgumentParser, cls: type, model: bool) -> None:
    """One flag per dataclass field (help and choices from its metadata); unset flags stay None."""
    group = parser.add_argument_group("model (saved in every checkpoint)" if model else "training")
    for f in dataclasses.fields(cls):
        if f.name == "model":
            continue
        flag, default = "--" + f.name.replace("_", "-"), f.default
        help_text = f"{f.metadata['help']} {describe_default(f.name, model)}"
        if isinstance(default, bool):
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif isinstance(default, tuple):
            group.add_argument(
                flag, dest=f.name, nargs=len(default), type=type(default[0]), default=None, metavar="N", help=help_text
            )
        else:
            group.add_argument(
                flag, dest=f.name, type=type(default), choices=f.metadata.get("choices"), default=None, help=help_text
            )


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's help, wrapped at spaces only: a preset name such as large-iwae20 stays whole."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m edgevae.train", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--version", action="version", version=f"edgevae {__version__}")
    p.add_argument(
        "--data-dir",
        default=None,
        help=f"folder with the IDX files, a folder of images (--dataset folder) or FILE.npy (--dataset npy) "
        f"(default: ${DATA_DIR_ENV})",
    )
    p.add_argument(
        "--dataset",
        choices=DATASETS + OWN_DATASETS,
        default="mnist",
        help="mnist: verify each file against MNIST's published checksum; idx: other data in MNIST's "
        "format and file names (Fashion-MNIST, your own), unchecked; folder: png/jpg/bmp/webp files under "
        "--data-dir, nested folders too; npy: one (N, H, W[, C]) array, uint8 or float in [0, 1] (default: mnist)",
    )
    p.add_argument("--download", action="store_true", help="fetch MNIST into --data-dir first (needs internet)")
    p.add_argument("--out", default="artifacts/checkpoints", help="output folder (default: artifacts/checkpoints)")
    p.add_argument("--resume", action="store_true", help="continue the run in OUT from its last finished epoch")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in OUT (default: refuse)")
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="default",
        help="starting hyperparameters; the flags below override them (default: default)",
    )
    add_device_argument(p)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    add_config_flags(p, VAEConfig, model=True)
    add_config_flags(p, TrainConfig, model=False)
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The preset, with exactly the flags given on the command line applied on top."""
    base = PRESETS[args.preset]

    def given(cls: type) -> dict[str, Any]:
        return {
            f.name: getattr(args, f.name)
            for f in dataclasses.fields(cls)
            if f.name != "model" and getattr(args, f.name) is not None
        }

    model_over, train_over = given(VAEConfig), given(TrainConfig)
    if "image_shape" in model_over:
        model_over["image_shape"] = tuple(model_over["image_shape"])
    if getattr(args, "dataset", None) in OWN_DATASETS:
        shape, resize = own_image_shape(args, base.model, model_over)
        model_over.update(shape)
        train_over.setdefault("resize", resize)
    if train_over.get("objective") == "elbo" and "k" not in train_over:
        train_over["k"] = 1  # the ELBO has one sample: --objective elbo on an IWAE preset needs no --k 1
    return dataclasses.replace(base, model=dataclasses.replace(base.model, **model_over), **train_over)


def own_image_shape(args: argparse.Namespace, preset: VAEConfig, given: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Image shape and channels for folder/npy data: the flags, else the preset's when it has its own
    (conv32: 32x32 RGB), else the first image's; the choice is printed. Also whether folder images are
    resized to that shape (only when the shape was given, not taken from the first image)."""
    from .imagedata import resolve_shape

    mnist = VAEConfig()
    shape = given.get("image_shape") or (preset.image_shape if preset.image_shape != mnist.image_shape else None)
    channels = given.get("channels") or (preset.channels if preset.channels != mnist.channels else None)
    resize = shape is not None
    shape, channels, where = resolve_shape(args.dataset, args.data_dir, shape, channels)
    told = "from the flags or the preset" if where == "given" else f"from {where}"
    print(f"data: images {shape[0]}x{shape[1]}, {'grey' if channels == 1 else 'RGB'} ({told})", file=sys.stderr)
    return {"image_shape": tuple(shape), "channels": channels}, resize


def train(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = config_from_args(args)
    require_torch("training", ("torch", "safetensors"))
    from .data import download_mnist
    from .loop import resolve_torch_device, run_training

    print(f"device: {args.device} -> {resolve_torch_device(args.device)}", file=sys.stderr)
    if args.download:
        if not args.data_dir:
            raise ValueError("--download needs --data-dir")
        download_mnist(args.data_dir)
    metrics = run_training(
        config,
        args.data_dir,
        args.out,
        device=args.device,
        resume=args.resume,
        dataset=args.dataset,
        progress=not args.no_progress,
        overwrite=args.overwrite,
    )
    if "test_elbo" not in metrics:  # a torchrun rank other than 0: rank 0 reports
        return 0
    print(
        f"test ELBO {metrics['test_elbo']:.3f} nats"
        + (
            f", importance-weighted log p(x) {metrics['test_iw_log_likelihood']:.3f} nats (k={config.iw_samples})"
            if "test_iw_log_likelihood" in metrics
            else ""
        )
    )
    print(f"wrote {args.out}/encoder.safetensors, decoder.safetensors, metrics.json, loss_curve.png, samples.png")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(
        lambda: train(args),
        "python -m edgevae.train",
        debug=args.debug,
        interrupted=f"interrupted; rerun with --resume to continue from the last finished epoch in {args.out}",
    )


if __name__ == "__main__":
    sys.exit(main())
