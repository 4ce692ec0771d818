"""Bulk scoring, reconstruction and sampling on Ray Data: one VAE per actor, rows kept in order.

    python -m edgevae.runtime.raydata score IMAGES -o scores.parquet [--address auto] [--actors 2]
    python -m edgevae.runtime.raydata reconstruct IMAGES -o recon.parquet
    python -m edgevae.runtime.raydata sample -n 100000 --seed 0 -o samples.parquet

IMAGES is a folder of .npy and .png files (sorted by name; a .npy may hold many images), one .npy
file, or Parquet (a file or a folder) with a column of images (`--column`, default "image"), each
a list of H*W numbers. Without --address a local Ray cluster starts on every core of this machine;
`--address auto` joins a running cluster, `--address ray://HOST:10001` a remote one. The output is
a folder of Parquet files with the input's other columns, in the input's order.

From Python, `score_dataset`, `reconstruct_dataset` and `sample_dataset` take and give
`ray.data.Dataset`s. Each actor holds one `VAE` (sessions are built in the actor, never pickled)
with `threads` intra-op threads and asks Ray for as many CPUs. Results equal the single-process
runtime's bit for bit: a score uses the same noise for every image, and sample row i decodes row i
of the noise scheme's LATENT stream (runtime/noise.py), the latent of `VAE.sample(n, seed)[i]`,
whatever the partitioning.
Needs the ray extra: pip install 'edgevae[cpu,ray]'.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import __version__
from .contract import DEFAULT_VARIANT
from .devices import add_device_argument, resolve_device
from .errors import InputError, MissingDependencyError, run_cli
from .limits import check_seed
from .scores import DEFAULT_SCORE, SCORE_COLUMNS, SCORES, get_score

if TYPE_CHECKING:
    import ray.data

IMAGE = "image"
BLOCK_ROWS = 2048  # rows per block of in-memory input
TASKS = ("score", "reconstruct", "sample")
RAY_HINT = "Ray Data is not installed: pip install 'edgevae[cpu,ray]' (it brings ray[data])"


def import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(RAY_HINT) from exc
    return ray


class VAEBatch:
    """What `map_batches` builds once per actor: one VAE, applied to each batch of rows."""

    def __init__(
        self,
        task: str,
        column: str,
        model: str | None,
        device: str,
        variant: str,
        threads: int,
        k: int | None,
        seed: int,
        score: str,
    ) -> None:
        from .vae import VAE

        self.vae = VAE(model, device=device, variant=variant, threads=threads)
        self.task, self.column, self.k, self.seed, self.score = task, column, k, seed, score

    def latents(self, ids: np.ndarray) -> np.ndarray:
        """The latents of `VAE.sample(n, seed)`'s rows `ids`: rows of the LATENT stream under the seed, one
        draw per run of consecutive ids, through the model's learned prior when it has one."""
        cuts = np.flatnonzero(np.diff(ids) != 1) + 1
        return np.concatenate([self.vae.latent_rows(self.seed, len(r), int(r[0])) for r in np.split(ids, cuts)])

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.task == "sample":
            ids = np.asarray(batch["id"], np.int64)
            return {"id": ids, IMAGE: self.vae.decode(self.latents(ids)).reshape(len(ids), -1)}
        column = batch[self.column]
        x = np.stack(list(column)) if column.dtype == object else column  # Parquet lists arrive as objects
        out = {name: values for name, values in batch.items() if name != self.column}
        if self.task == "score":
            result = self.vae.score(x, score=self.score, k=self.k, seed=self.seed)
            out.update({name: getattr(result, name) for name in SCORE_COLUMNS})
        else:
            out["reconstruction"] = self.vae.reconstruct(x).reshape(len(x), -1)
        return out


def map_vae(
    ds: ray.data.Dataset,
    task: str,
    *,
    column: str = IMAGE,
    model: str | None = None,
    device: str = "cpu",
    variant: str = DEFAULT_VARIANT,
    threads: int = 1,
    actors: int | None = None,
    batch_size: int = 1024,
    k: int | None = None,
    seed: int = 0,
    score: str = DEFAULT_SCORE,
) -> ray.data.Dataset:
    """`ds.map_batches` with one VAE per actor; rows keep their order (preserve_order is switched on).

    actors default to (the cluster's CPUs - 1) // threads: the actors hold their CPUs for the whole
    run, and tasks that read or reshape the input (read_parquet, range, repartition) need a free one.
    Input already in the object store (`split_blocks`, `ray.data.from_numpy`) needs none, so there
    every CPU can hold an actor."""
    ray = import_ray()
    check_options(task, score, threads, seed)
    if actors is None:  # one CPU stays free for the tasks that read the input (else they can starve)
        actors = max(1, (int(ray.cluster_resources().get("CPU", 1)) - 1) // threads)
    # A Dataset runs with the DataContext it was created with: keep the order there.
    ds.context.execution_options.preserve_order = True
    return ds.map_batches(
        VAEBatch,
        fn_constructor_kwargs={
            "task": task,
            "column": column,
            "model": model,
            "device": device,
            "variant": variant,
            "threads": threads,
            "k": k,
            "seed": seed,
            "score": score,
        },
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=actors),
        batch_format="numpy",
        num_cpus=None if device == "cuda" else threads,
        num_gpus=1 if device == "cuda" else None,
    )


def check_options(task: str, score: str, threads: int, seed: int) -> None:
    """ValueError for a task, score, threads or seed that map_vae cannot take (before Ray starts work)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    get_score(score)  # the registry's names (scores.py)
    check_seed(seed)
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads per actor must be an int >= 1; got {threads!r}")


def score_dataset(ds: ray.data.Dataset, **options: Any) -> ray.data.Dataset:
    """Columns SCORE_COLUMNS (see `VAE.score`) beside the input's other columns."""
    return map_vae(ds, "score", **options)


def reconstruct_dataset(ds: ray.data.Dataset, **options: Any) -> ray.data.Dataset:
    """Column reconstruction (H*W pixel means per row) beside the input's other columns."""
    return map_vae(ds, "reconstruct", **options)


def sample_dataset(n: int, seed: int = 0, **options: Any) -> ray.data.Dataset:
    """Rows id, image: image i decoded from the noise scheme's LATENT row i under `seed`, as
    `VAE.sample(n, seed)[i]` is (runtime/noise.py)."""
    ray = import_ray()
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1; got {n!r}")
    ids = np.array_split(np.arange(n, dtype=np.int64), max(1, -(-n // BLOCK_ROWS)))
    return map_vae(ray.data.from_numpy(ids).rename_columns({"data": "id"}), "sample", seed=seed, **options)


def read_file_rows(row: dict[str, Any]) -> list[dict[str, Any]]:
    """One file of a folder -> a row per image: path, row within the file, image (flattened)."""
    from .images import read_images

    images = read_images(row["path"])
    if Path(row["path"]).suffix.lower() == ".png" or images.ndim == 1:
        images = images[None]
    flat = images.reshape(len(images), -1) if images.ndim > 2 else images
    return [{"path": row["path"], "row": i, IMAGE: flat[i]} for i in range(len(flat))]


def split_blocks(images: np.ndarray, rows_per_block: int = BLOCK_ROWS) -> ray.data.Dataset:
    """A Dataset (column "image") of in-memory images, cut into blocks of about `rows_per_block` rows so
    that several actors share the work. (A `repartition` after the fact would need free CPUs while the
    actors hold them all, and can stall a small cluster.)"""
    ray = import_ray()
    images = images.reshape(len(images), -1) if images.ndim > 2 else images
    parts = np.array_split(images, max(1, -(-len(images) // rows_per_block)))
    return ray.data.from_numpy(parts).rename_columns({"data": IMAGE})


def read_images_dataset(path: str | Path, column: str = IMAGE) -> ray.data.Dataset:
    """A Dataset of images from a folder of .npy/.png files, one .npy file, or Parquet."""
    ray = import_ray()
    source = Path(path)
    if not source.exists():
        raise InputError(f"input {source} not found")
    if source.suffix.lower() == ".parquet" or (source.is_dir() and any(source.glob("*.parquet"))):
        return ray.data.read_parquet(str(source), columns=[column])
    if source.is_file():
        from .images import read_images

        if column != IMAGE:
            raise ValueError(f"--column applies to Parquet input; a .npy file gives the column {IMAGE!r}")
        return split_blocks(read_images(source))
    files = sorted(str(p) for p in source.iterdir() if p.suffix.lower() in (".npy", ".png"))
    if not files:
        raise InputError(f"{source} holds no .npy, .png or .parquet files")
    if column != IMAGE:
        raise ValueError(f"--column applies to Parquet input; a folder of files gives the column {IMAGE!r}")
    return ray.data.from_items([{"path": f} for f in files]).flat_map(read_file_rows)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m edgevae.runtime.raydata",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"edgevae {__version__}")
    p.add_argument("task", choices=TASKS)
    p.add_argument("input", nargs="?", help="images: a folder of .npy/.png files, a .npy file, or Parquet")
    p.add_argument("-o", "--output", required=True, help="output folder of Parquet files")
    p.add_argument("-n", type=int, default=None, help="sample: number of images")
    p.add_argument("--column", default=IMAGE, help=f"Parquet input: the image column (default: {IMAGE})")
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster: auto (a running one), ray://HOST:10001 (remote) (default: a local one)",
    )
    p.add_argument(
        "--actors",
        type=int,
        default=None,
        help="actors, one VAE each (default: (CPUs - 1) / threads, leaving one CPU to read the input)",
    )
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads per actor (default: 1)")
    p.add_argument("--batch-size", type=int, default=1024, help="rows per batch (default: 1024)")
    p.add_argument("--model", default=None, help="model folder (default: the packaged model)")
    p.add_argument("--model-name", default=None, help="a packaged model, instead of --model (default: default)")
    p.add_argument("--variant", default=DEFAULT_VARIANT, help=f"graph build (default: {DEFAULT_VARIANT})")
    add_device_argument(p, "cpu or cuda per actor; auto: cuda when the cluster has GPUs (default: auto)")
    p.add_argument("-k", type=int, default=None, help="score: importance samples (default: the model's, 16)")
    p.add_argument("--score", choices=sorted(SCORES), default=DEFAULT_SCORE, help=f"default: {DEFAULT_SCORE}")
    p.add_argument("--seed", type=int, default=0, help="score noise / sample latents, in [0, 2**128) (default: 0)")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p


def run(args: argparse.Namespace) -> int:
    from .model import find_model_dir

    ray = import_ray()
    ray.init(address=args.address, include_dashboard=False, log_to_driver=False)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        device = resolve_device(args.device, gpus > 0, "the Ray cluster has no GPU", "add GPU nodes to it")
        options = {
            "model": str(find_model_dir(args.model, args.model_name)),
            "device": device,
            "variant": args.variant,
            "threads": args.threads,
            "actors": args.actors,
            "batch_size": args.batch_size,
        }
        if args.task == "sample":
            if args.n is None:
                raise ValueError("sample needs -n")
            ds = sample_dataset(args.n, seed=args.seed, **options)
        else:
            if args.input is None:
                raise ValueError(f"{args.task} needs an input")
            ds = map_vae(
                read_images_dataset(args.input, args.column),
                args.task,
                column=args.column,
                k=args.k,
                seed=args.seed,
                score=args.score,
                **options,
            )
        print(f"device: {args.device} -> {device}; cluster: {ray.cluster_resources()}", file=sys.stderr)
        ds.write_parquet(args.output)
        print(f"wrote {args.output} ({args.task})")
    finally:
        ray.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args), "python -m edgevae.runtime.raydata", debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
