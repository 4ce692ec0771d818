"""Train the VAE on MNIST-format data and write encoder/decoder checkpoints.

    python -m edgevae.train --data-dir ../shared/data/mnist              # tuned default (bernoulli)
    python -m edgevae.train --data-dir DIR --preset book                 # the textbook recipe
    python -m edgevae.train --data-dir DIR --resume                      # continue an interrupted run

Writes OUT/encoder.pt, OUT/decoder.pt (after every epoch), OUT/metrics.json, OUT/loss_curve.png,
OUT/samples.png and the resume state OUT/train_state.pt.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

from .checkpoint import CheckpointError
from .config import PRESETS, TrainConfig
from .data import DATA_DIR_ENV, DataError, download_mnist


def build_parser() -> argparse.ArgumentParser:
    d = PRESETS["default"]
    p = argparse.ArgumentParser(prog="python -m edgevae.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None, help=f"folder with the IDX files (default: ${DATA_DIR_ENV})")
    p.add_argument("--dataset", choices=["auto", "mnist", "idx"], default="auto",
                   help="mnist: verify published checksums; idx: any MNIST-format data; "
                        "auto: verify when the folder has the MNIST/raw layout (default: auto)")
    p.add_argument("--download", action="store_true", help="fetch MNIST into --data-dir first (needs internet)")
    p.add_argument("--out", default="artifacts/checkpoints", help="output folder (default: artifacts/checkpoints)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="default",
                   help="starting hyperparameters; flags below override them (default: default)")
    p.add_argument("--likelihood", choices=["bernoulli", "gaussian"], help=f"default: {d.model.likelihood}")
    p.add_argument("--hidden", type=int, help=f"hidden units (default: {d.model.hidden})")
    p.add_argument("--latent", type=int, help=f"latent dimensions (default: {d.model.latent})")
    p.add_argument("--beta", type=float, help=f"KL weight (default: {d.model.beta})")
    p.add_argument("--epochs", type=int, help=f"default: {d.epochs} (book: 30)")
    p.add_argument("--batch-size", type=int, help=f"default: {d.batch_size} (book: 32)")
    p.add_argument("--lr", type=float, help=f"Adam learning rate (default: {d.lr}; book: 3e-4)")
    p.add_argument("--lr-final", type=float, help=f"cosine-decayed final lr (default: {d.lr_final})")
    p.add_argument("--seed", type=int, help=f"default: {d.seed}")
    p.add_argument("--train-limit", type=int, help="use the first N training images (default: all)")
    p.add_argument("--test-limit", type=int, help="use the first N test images (default: all)")
    p.add_argument("--iw-samples", type=int, help=f"k for the importance-weighted log p(x) (default: {d.iw_samples})")
    p.add_argument("--resume", action="store_true", help="continue from OUT/train_state.pt if present")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default: auto")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The preset with any flags given on the command line applied on top."""
    base = PRESETS[args.preset]
    model_over = {k: getattr(args, k) for k in ("likelihood", "hidden", "latent", "beta") if getattr(args, k) is not None}
    train_over = {k: getattr(args, k) for k in ("epochs", "batch_size", "lr", "lr_final", "seed", "train_limit",
                                                "test_limit", "iw_samples") if getattr(args, k) is not None}
    if args.lr is not None and args.lr_final is None and base.lr == base.lr_final:
        train_over["lr_final"] = args.lr
    return dataclasses.replace(base, model=dataclasses.replace(base.model, **model_over), **train_over)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from .loop import resolve_device, run_training  # imports torch; keep --help fast

    try:
        config = config_from_args(args)
        print(f"device: {args.device} -> {resolve_device(args.device)}", file=sys.stderr)
        if args.download:
            if not args.data_dir:
                raise DataError("--download needs --data-dir")
            download_mnist(args.data_dir)
        metrics = run_training(config, args.data_dir, args.out, device=args.device, resume=args.resume,
                               dataset=args.dataset, progress=not args.no_progress)
    except (DataError, CheckpointError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; rerun with --resume to continue from the last finished epoch in {args.out}",
              file=sys.stderr)
        return 130
    print(f"test ELBO {metrics['test_elbo']:.3f} nats"
          + (f", importance-weighted log p(x) {metrics['test_iw_log_likelihood']:.3f} nats (k={config.iw_samples})"
             if "test_iw_log_likelihood" in metrics else ""))
    print(f"wrote {args.out}/encoder.pt, decoder.pt, metrics.json, loss_curve.png, samples.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
