"""The training loop: seeded, resumable, with progress, metrics and pictures.

`run_training(config, data_dir, out_dir)` trains, writes encoder.safetensors, decoder.safetensors and
the resume state train_state.safetensors after every epoch (one commit: checkpoint.py), metrics.json,
and at the end a loss-curve PNG and a grid of samples. Rerunning with `resume=True` continues from the
last finished epoch and reaches the same result as an uninterrupted run, because each epoch's randomness (shuffle,
binarization, noise) comes from a generator seeded by (seed, epoch) alone.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgevae.runtime.atomic import remove_stale_temps, write_bytes_atomic
from edgevae.runtime.contract import SCALED_LIKELIHOODS
from edgevae.runtime.devices import resolve_device
from edgevae.runtime.images import save_grid

from . import checkpoint, distributed, imagedata, legacy
from .checkpoint import CheckpointError
from .config import TrainConfig
from .data import DATASETS, load_split
from .evaluate import describe_nll, evaluate_elbo, evaluate_iw_log_likelihood, prepare_eval_images
from .model import build_models, decoder_mean
from .prior import sample_prior

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
CURVE_FILE = "loss_curve.png"
SAMPLES_FILE = "samples.png"
SAMPLE_SEED = 0


def resolve_torch_device(device: str) -> torch.device:
    """The torch device for 'auto', 'cpu' or 'cuda' (edgevae.runtime.devices: the one definition)."""
    return torch.device(
        resolve_device(
            device,
            torch.cuda.is_available(),
            f"torch {torch.__version__} sees no GPU (torch.cuda.is_available() is False)",
            "install a CUDA build of torch on a machine with a GPU",
        )
    )


def check_out_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """CheckpointError when OUT already holds a run and neither --resume nor --overwrite says what to do
    with it (the default OUT is the committed release, which a plain rerun must not silently replace),
    or when --resume is asked of a run whose checkpoints are still format 1 (.pt)."""
    if resume and legacy.holds_legacy(out) and not (out / checkpoint.RECORD_FILE).exists():
        raise CheckpointError(
            f"{out} holds format-1 .pt checkpoints; convert them first (python -m edgevae.train.convert {out}), "
            "then resume"
        )
    if resume or overwrite or not out.is_dir():
        return
    held = [name for name in (*checkpoint.ALL_FILES, *legacy.FILES, METRICS_FILE) if (out / name).exists()]
    if not held:
        return
    try:
        finished = bool(json.loads((out / METRICS_FILE).read_text()).get("complete"))
    except (OSError, ValueError, AttributeError):
        finished = False
    kind = "a finished run" if finished else "an unfinished run"
    raise CheckpointError(
        f"{out} already holds {kind} ({', '.join(held)}); pass --resume to continue it, "
        "--overwrite to replace it, or --out to train elsewhere"
    )


def tidy_out_dir(out: Path, overwrite: bool) -> None:
    """What a killed run left: finish an interrupted commit, drop half-written files; under
    --overwrite, format-1 (.pt) checkpoints go too, since the new run replaces them."""
    checkpoint.finish_commit(out)
    pending = [checkpoint.pending_path(Path(name)).name for name in checkpoint.ALL_FILES]
    remove_stale_temps(out, [*checkpoint.ALL_FILES, *pending, checkpoint.RECORD_FILE, METRICS_FILE])
    for name in legacy.FILES if overwrite else ():
        (out / name).unlink(missing_ok=True)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's generator: depends on nothing but the run seed and the epoch."""
    return (seed * 1_000_003 + epoch) % (2**63)


def learning_rate(config: TrainConfig, epoch: int) -> float:
    """The epoch's learning rate: cosine decay from lr to lr_final across the epochs, or lr throughout."""
    if config.lr_schedule == "constant" or config.epochs == 1:
        return config.lr
    t = epoch / (config.epochs - 1)
    return config.lr_final + 0.5 * (config.lr - config.lr_final) * (1 + math.cos(math.pi * t))


def kl_weight(config: TrainConfig, epoch: int) -> float:
    """The KL weight of epoch `epoch` (0-based): beta, or with warm-up beta * (epoch + 1) / warmup_epochs
    until it reaches beta at epoch warmup_epochs (1-based) (Sonderby et al. 2016, "deterministic warm-up")."""
    if config.warmup_epochs == 0 or epoch + 1 >= config.warmup_epochs:
        return config.model.beta
    return config.model.beta * (epoch + 1) / config.warmup_epochs


def load_images(
    data_dir: str | os.PathLike[str] | None, split: str, limit: int, dataset: str, device: torch.device
) -> torch.Tensor:
    """(N, D) float32 images in [0, 1] on `device`."""
    images, _ = load_split(data_dir, split, dataset)
    if limit:
        images = images[:limit]
    return torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255.0).to(device)


def load_data(
    config: TrainConfig, data_dir: str | os.PathLike[str] | None, dataset: str, device: torch.device, progress: bool
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """(train images, test images, description). MNIST-format data as before (float32 rows); your own
    images (folder, npy) as uint8 rows, made float per batch (`as_batch`), split by the seed."""
    if dataset in DATASETS:
        train = load_images(data_dir, "train", config.train_limit, dataset, device)
        test = load_images(data_dir, "test", config.test_limit, dataset, device)
        return train, test, {"dataset": dataset, "train_images": len(train), "test_images": len(test)}
    shape = config.model.image_shape if config.resize or dataset == "npy" else None
    found = imagedata.load(dataset, data_dir, shape, config.model.channels, progress)
    if found.images.shape[1:3] != config.model.image_shape:
        raise imagedata.DataError(
            f"{data_dir}: images are {found.images.shape[2]}x{found.images.shape[1]}, the model "
            f"{config.model.image_shape[1]}x{config.model.image_shape[0]}; pass --image-shape to resize them"
        )
    rows = found.images.reshape(len(found.images), -1)
    train_idx, test_idx = imagedata.split_indices(len(rows), config.test_fraction, config.seed)
    if config.train_limit:
        train_idx = train_idx[: config.train_limit]
    if config.test_limit:
        test_idx = test_idx[: config.test_limit]
    info = {
        "dataset": dataset,
        "source": found.source,
        "image_shape": list(config.model.image_shape),
        "channels": config.model.channels,
        "test_fraction": config.test_fraction,
        "split_seed": config.seed + imagedata.SPLIT_SEED_OFFSET,
        "train_images": len(train_idx),
        "test_images": len(test_idx),
        "skipped_unreadable": len(found.skipped),
        "ignored_other_files": found.ignored,
    }
    test = torch.from_numpy(rows[test_idx].astype(np.float32) / 255.0).to(device)
    return torch.from_numpy(rows[train_idx]).to(device), test, info


def as_batch(x: torch.Tensor) -> torch.Tensor:
    """A batch of rows as float32 in [0, 1] (uint8 levels / 255)."""
    return x.float() / 255.0 if x.dtype == torch.uint8 else x


def run_training(
    config: TrainConfig,
    data_dir: str | os.PathLike[str] | None,
    out_dir: str | os.PathLike[str],
    device: str = "auto",
    resume: bool = False,
    dataset: str = "mnist",
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train per `config`; returns the metrics dict also written to OUT/metrics.json.

    An OUT that already holds a run is refused unless `resume` (continue it) or `overwrite` (replace it).
    """
    out = Path(out_dir)
    world = distributed.detect_world()
    check_out_dir(out, resume, overwrite)
    dev = distributed.start(world, resolve_torch_device(device))
    try:
        result = train_in_world(config, data_dir, out, dev, world, resume, dataset, progress, overwrite)
        # Leave together: a rank that tears gloo down while rank 0 still writes metrics and pictures
        # can abort at exit ("terminate called without an active exception").
        distributed.barrier(world)
        return result
    finally:
        distributed.stop(world)


def train_in_world(
    config: TrainConfig,
    data_dir: str | os.PathLike[str] | None,
    out: Path,
    dev: torch.device,
    world: distributed.World,
    resume: bool,
    dataset: str,
    progress: bool,
    overwrite: bool = False,
) -> dict[str, Any]:
    """The training run of one process: all of it in a world of one, its shard of each batch under
    torchrun (rank 0 alone writes)."""
    logger.info("device: %s%s", dev, f" (rank {world.rank} of {world.size})" if world.distributed else "")
    train_x, test_x, data_info = load_run_data(config, data_dir, out, dataset, dev, world, progress)
    encoder, decoder = build_models(config.model, seed=config.seed)
    encoder.to(dev)
    decoder.to(dev)
    terms = distributed.LossTerms(encoder, decoder)
    model = distributed.wrap(terms, world, dev)
    optimizer = torch.optim.Adam(terms.parameters(), lr=config.lr)  # encoder's, then decoder's
    run = uuid.uuid4().hex[:12]  # ties each encoder/decoder pair to its run (kept across --resume)
    if world.is_main and out.is_dir():
        tidy_out_dir(out, overwrite)

    distributed.barrier(world)  # the other ranks read OUT only after rank 0 has tidied it
    source = start_from(config, encoder, decoder) if config.init_from else None
    history, start_epoch, run = resume_from(out / checkpoint.STATE_FILE, config, terms, optimizer, resume, run)

    for epoch in range(start_epoch, config.epochs):
        lr, weight = learning_rate(config, epoch), kl_weight(config, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        t0 = time.perf_counter()
        sums = train_epoch(config, epoch, model, optimizer, train_x, world, weight, progress)
        seconds = time.perf_counter() - t0
        sums = distributed.sum_over_ranks(sums, world)
        encoder.eval()
        decoder.eval()
        if not world.is_main:
            distributed.barrier(world)  # rank 0 evaluates and writes this epoch
            continue
        test = evaluate_elbo(encoder, decoder, test_x)
        history.append(epoch_record(epoch, lr, weight, (sums / len(train_x)).tolist(), test, seconds))
        logger.info(
            "epoch %d/%d  train loss %.3f  test ELBO %.3f  (%.1fs)",
            *(epoch + 1, config.epochs, history[-1]["train_loss"], test["elbo"], seconds),
        )
        save_epoch(out, config, encoder, decoder, optimizer, history, epoch + 1, run)
        distributed.barrier(world)

    if not world.is_main:
        return {"rank": world.rank, "processes": world.size}
    encoder.eval()
    decoder.eval()
    metrics = summarize(config, encoder, decoder, test_x, history, dev)
    metrics["processes"] = world.size
    if source is not None:
        metrics["init_from"] = source
        metrics["stages"] = [*source.get("stages", []), stage_record(metrics["config"], history)]
    metrics["data"] = data_info
    write_json(out / METRICS_FILE, metrics)
    write_pictures(out, history, encoder, decoder, config, dev)
    return metrics


def load_run_data(
    config: TrainConfig,
    data_dir: str | os.PathLike[str] | None,
    out: Path,
    dataset: str,
    dev: torch.device,
    world: distributed.World,
    progress: bool,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """(train images, test images as evaluated, data info), checked against the model's size; a folder
    or npy data set also leaves a sample of its training images in OUT (rank 0)."""
    train_x, test_x, data_info = load_data(config, data_dir, dataset, dev, progress and world.is_main)
    test_x = prepare_eval_images(test_x, config.model.likelihood)
    if train_x.shape[1] != config.model.input_dim:
        raise ValueError(f"data images have {train_x.shape[1]} pixels, config expects {config.model.input_dim}")
    if world.is_main and dataset not in DATASETS:
        out.mkdir(parents=True, exist_ok=True)
        imagedata.write_sample(out, train_x.cpu().numpy(), config)
    return train_x, test_x, data_info


def resume_from(
    state_path: Path,
    config: TrainConfig,
    terms: distributed.LossTerms,
    optimizer: torch.optim.Optimizer,
    resume: bool,
    run: str,
) -> tuple[list[dict[str, float]], int, str]:
    """(history, first epoch to train, run id): from the resume state at `state_path` when `resume`
    asks for it and it exists (weights and optimizer loaded into `terms` and `optimizer`), else a fresh
    start. CheckpointError when the state was written by another config."""
    if not resume:
        return [], 0, run
    if not state_path.is_file():
        logger.info("no resume state at %s; starting fresh", state_path)
        return [], 0, run
    state = checkpoint.load_train_state(state_path)
    if TrainConfig.from_dict(state["train_config"]) != config:
        raise CheckpointError(
            f"{state_path} was written by a run with a different config:\n"
            f"  saved:     {state['train_config']}\n  requested: {config.to_dict()}"
        )
    terms.encoder.load_state_dict(state["encoder"])
    terms.decoder.load_state_dict(state["decoder"])
    optimizer.load_state_dict(state["optimizer"])
    logger.info("resumed from %s after epoch %d", state_path, int(state["epoch"]))
    return list(state["history"]), int(state["epoch"]), str(state.get("run") or run)


def train_epoch(
    config: TrainConfig,
    epoch: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    train_x: torch.Tensor,
    world: distributed.World,
    weight: float,
    progress: bool,
) -> torch.Tensor:
    """One pass over the training images in the order and with the noise seeded by (seed, epoch) alone.
    Returns this process's sums of (loss, reconstruction, KL) over its examples, float64."""
    dev = train_x.device
    n, steps = len(train_x), math.ceil(len(train_x) / config.batch_size)
    gen = torch.Generator(device=dev).manual_seed(epoch_seed(config.seed, epoch))
    perm = torch.randperm(n, generator=gen, device=dev)
    model.train()
    sums = torch.zeros(3, dtype=torch.float64, device=dev)
    bar = make_progress(steps, f"epoch {epoch + 1}/{config.epochs}", progress and world.is_main)
    for step in range(steps):
        # Every rank draws the whole global batch's randomness, then trains on its shard of it.
        x = as_batch(train_x[perm[step * config.batch_size : (step + 1) * config.batch_size]])
        if config.binarize and config.model.likelihood == "bernoulli":
            x = torch.bernoulli(x, generator=gen)
        rows = len(x)
        noise = (rows, config.model.latent) if config.objective == "elbo" else (config.k, rows, config.model.latent)
        eps = torch.randn(noise, generator=gen, device=dev)
        if world.distributed:
            part = distributed.shard(rows, world)
            x, eps = x[part], eps[..., part, :]
        per_example, rec, kl = model(x, eps, weight)
        if world.distributed:  # DDP averages gradients over ranks: this makes it the global batch mean
            loss = per_example.sum() * (world.size / rows)
        else:
            loss = per_example.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            sums += torch.stack([per_example.sum(), rec.sum(), kl.sum()]).double()
        if bar is not None:
            bar.update(1)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.2f}")
    if bar is not None:
        bar.close()
    return sums


def epoch_record(
    epoch: int, lr: float, weight: float, train: list[float], test: dict[str, float], seconds: float
) -> dict[str, float]:
    """One epoch's line of the history: train means of (loss, rec, kl), the test ELBO and its terms."""
    return {
        "epoch": epoch + 1,
        "lr": lr,
        "kl_weight": weight,
        "train_loss": train[0],
        "train_rec": train[1],
        "train_kl": train[2],
        "test_elbo": test["elbo"],
        "test_rec": test["rec"],
        "test_kl": test["kl"],
        "seconds": seconds,
    }


def start_from(config: TrainConfig, encoder: torch.nn.Module, decoder: torch.nn.Module) -> dict[str, Any]:
    """Load the final weights of the run in `config.init_from` into `encoder` and `decoder` (fine-tuning;
    a --resume afterwards overwrites them with its own state). Returns the source's provenance for
    metrics.json: folder, run, epochs, the sha256 of both files, its train config and training minutes.
    CheckpointError when its model config differs from this run's."""
    folder = Path(config.init_from)
    pair = checkpoint.load_checkpoints(folder)
    if pair.encoder.config != config.model:
        raise CheckpointError(
            f"--init-from {folder}: its model config {pair.encoder.config.to_dict()} differs from this run's "
            f"{config.model.to_dict()}; fine-tuning keeps the network"
        )
    encoder.load_state_dict(pair.encoder.state_dict())
    decoder.load_state_dict(pair.decoder.state_dict())
    meta = checkpoint.read_file(pair.paths["encoder"])
    source: dict[str, Any] = {
        "folder": str(folder),
        "run": meta.get("run"),
        "epochs": meta.get("epoch"),
        "sha256": pair.sha256,
        "train_config": meta.get("train_config"),
    }
    metrics_path = folder / METRICS_FILE
    if metrics_path.is_file():
        done = json.loads(metrics_path.read_text())
        source["train_minutes"] = sum(h.get("seconds", 0.0) for h in done.get("history", [])) / 60
        source["stages"] = done.get("stages") or [stage_record(done["config"], done.get("history", []))]
    logger.info("fine-tuning from %s (run %s, epoch %s)", folder, source["run"], source["epochs"])
    return source


def stage_record(config: dict[str, Any], history: list[dict[str, float]]) -> dict[str, Any]:
    """One training stage for metrics.json's "stages" (a fine-tuned run lists every run it grew from):
    its objective, k, warm-up, learning rates, epochs and minutes."""
    keys = ("objective", "k", "warmup_epochs", "lr", "lr_final", "epochs")
    return {**{key: config.get(key) for key in keys}, "minutes": sum(h.get("seconds", 0.0) for h in history) / 60}


def make_progress(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar on stderr, or None when disabled or tqdm is missing."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True)


def save_epoch(
    out: Path,
    config: TrainConfig,
    encoder: torch.nn.Module,
    decoder: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    history: list[dict[str, float]],
    epoch: int,
    run: str | None = None,
) -> None:
    """Checkpoints, resume state and partial metrics after a finished epoch.

    The encoder, decoder and resume state are one commit: a kill never leaves them out of step.
    """
    state = {
        "epoch": epoch,
        "train_config": config.to_dict(),
        "encoder": checkpoint.cpu_state_dict(encoder),
        "decoder": checkpoint.cpu_state_dict(decoder),
        "optimizer": optimizer.state_dict(),
        "history": history,
        "run": run,
    }
    checkpoint.save_pair(out, encoder, decoder, config, epoch, run, state)
    write_json(out / METRICS_FILE, {"config": config.to_dict(), "history": history, "complete": False})


def summarize(
    config: TrainConfig,
    encoder: torch.nn.Module,
    decoder: torch.nn.Module,
    test_x: torch.Tensor,
    history: list[dict[str, float]],
    dev: torch.device,
) -> dict[str, Any]:
    """Final metrics: the last test ELBO and, when k > 0, the importance-weighted log p(x)."""
    final = history[-1] if history else {}
    metrics: dict[str, Any] = {
        "config": config.to_dict(),
        "complete": True,
        "device": str(dev),
        "torch": torch.__version__,
        "test_images": len(test_x),
        "test_elbo": final.get("test_elbo"),
        "test_images_binarized": config.model.likelihood == "bernoulli",
        "seconds_per_epoch": (sum(h["seconds"] for h in history) / len(history)) if history else None,
        "history": history,
    }
    if config.iw_samples > 0:
        t0 = time.perf_counter()
        ll = evaluate_iw_log_likelihood(encoder, decoder, test_x, config.iw_samples)
        metrics["test_iw_log_likelihood"] = ll
        metrics["test_iw_nll"] = -ll
        metrics["iw_samples"] = config.iw_samples
        metrics["test_nll"] = describe_nll(-ll, config.iw_samples, len(test_x), config.model.likelihood)
        if config.model.likelihood in SCALED_LIKELIHOODS:  # a probability of 8-bit levels: bits per dimension
            metrics["test_bits_per_dim"] = -ll / (config.model.input_dim * math.log(2))
        logger.info(
            "importance-weighted test log p(x) (k=%d): %.3f nats (%.0fs)",
            config.iw_samples,
            ll,
            time.perf_counter() - t0,
        )
    return metrics


def write_json(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def write_pictures(
    out: Path,
    history: list[dict[str, float]],
    encoder: torch.nn.Module,
    decoder: torch.nn.Module,
    config: TrainConfig,
    dev: torch.device,
) -> None:
    """loss_curve.png (train loss and -test ELBO per epoch) and samples.png (64 decoded draws from the prior)."""
    rng = np.random.default_rng(SAMPLE_SEED)
    eps = torch.from_numpy(rng.standard_normal((64, config.model.latent), dtype=np.float32))
    u = torch.from_numpy(rng.random(64, dtype=np.float32))
    shape = config.model.image_shape + ((config.model.channels,) if config.model.channels > 1 else ())
    with torch.no_grad():
        means = decoder_mean(decoder, sample_prior(encoder, eps.to(dev), u.to(dev))).cpu().numpy().reshape(-1, *shape)
    try:
        save_grid(means, out / SAMPLES_FILE, ncols=8)
        plot_loss_curve(history, out / CURVE_FILE, config)
    except ImportError as exc:  # Pillow or matplotlib missing: the numbers are in metrics.json
        logger.warning("pictures skipped: %s", exc)


def plot_loss_curve(history: list[dict[str, float]], path: Path, config: TrainConfig) -> None:
    """Plot train loss and test -ELBO against epochs with matplotlib (Agg)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(epochs, [h["train_loss"] for h in history], label="train loss (-ELBO)")
    ax.plot(epochs, [-h["test_elbo"] for h in history], label="test -ELBO")
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per image")
    ax.set_title(f"{config.model.likelihood} VAE, latent {config.model.latent}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())
