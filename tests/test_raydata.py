"""Ray Data on a local cluster (2 CPUs): scoring and reconstructing 20,000 images with one VAE per actor
gives the single-process runtime's results bit for bit, in order; sampling by row id; the CLI reads a
folder of .npy/.png files or Parquet and writes Parquet."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import need

need("PIL", "ray")

import ray
import ray.data
from PIL import Image

from edgevae.runtime import VAE
from edgevae.runtime.raydata import (
    IMAGE,
    read_images_dataset,
    reconstruct_dataset,
    sample_dataset,
    score_dataset,
    split_blocks,
)

pytestmark = pytest.mark.slow  # a Ray cluster starts in about 10 s


@pytest.fixture(scope="module")
def cluster() -> object:
    import faulthandler

    # A stalled Ray job must fail this run, not hang it: dump every thread and exit after 10 minutes.
    faulthandler.dump_traceback_later(600, exit=True)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=400 * 2**20)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="module")
def images(data_dir: Path) -> np.ndarray:
    from edgevae.train.data import load_split

    test, _ = load_split(data_dir, "test")
    train, _ = load_split(data_dir, "train")
    return np.concatenate([test, train[:10_000]]).reshape(-1, 784)  # 20,000 real digits, uint8


def dataset(x: np.ndarray) -> ray.data.Dataset:
    return split_blocks(x)


def test_20000_images_score_as_in_one_process_in_order(cluster: object, images: np.ndarray) -> None:
    got = score_dataset(dataset(images), actors=2, threads=1, batch_size=1000).to_pandas()
    want = VAE(device="cpu", threads=1).score(images)
    assert len(got) == len(images) == 20_000
    np.testing.assert_array_equal(got["score"].to_numpy(), want.score)
    np.testing.assert_array_equal(got["nll"].to_numpy(), want.nll)
    np.testing.assert_array_equal(got["complexity_nats"].to_numpy(), want.complexity)
    np.testing.assert_array_equal(got["density_nll"].to_numpy(), want.density)


def test_20000_images_reconstruct_as_in_one_process_in_order(cluster: object, images: np.ndarray) -> None:
    got = reconstruct_dataset(dataset(images), actors=2, threads=1).take_batch(len(images))["reconstruction"]
    want = VAE(device="cpu", threads=1).reconstruct(images).reshape(len(images), -1)
    np.testing.assert_array_equal(got, want)


def test_sample_rows_are_decoded_from_their_own_seeded_latents(cluster: object) -> None:
    got = sample_dataset(300, seed=5, actors=2, batch_size=64).take_batch(300)
    assert got["id"].tolist() == list(range(300))
    vae = VAE(device="cpu")
    z = vae.sample_latent(300, seed=5)  # row i of the noise scheme's LATENT stream, as VAE.sample draws it
    np.testing.assert_array_equal(got[IMAGE], vae.decode(z).reshape(300, -1))


def test_cli_scores_a_folder_of_files_into_parquet(cluster: str, tmp_path: Path, images: np.ndarray) -> None:
    import pandas as pd

    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "a.npy", images[:3].reshape(3, 28, 28))
    Image.fromarray(images[3].reshape(28, 28)).save(folder / "b.png")
    np.save(folder / "c.npy", images[4:6])
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgevae.runtime.raydata",
            "score",
            str(folder),
            "-o",
            str(tmp_path / "out"),
            "--address",
            str(cluster),
            "--actors",
            "1",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_parquet(tmp_path / "out").sort_values(["path", "row"], kind="stable")
    assert [Path(p).name for p in table["path"]] == ["a.npy"] * 3 + ["b.png"] + ["c.npy"] * 2
    assert table["row"].tolist() == [0, 1, 2, 0, 0, 1]
    np.testing.assert_array_equal(table["score"].to_numpy(), VAE(device="cpu", threads=1).score(images[:6]).score)


def test_reading_parquet_and_bad_input(cluster: object, tmp_path: Path, images: np.ndarray) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"pixels": [row.tolist() for row in images[:50]]}), tmp_path / "x.parquet")
    got = reconstruct_dataset(read_images_dataset(tmp_path / "x.parquet", "pixels"), column="pixels", actors=1)
    np.testing.assert_array_equal(
        got.take_batch(50)["reconstruction"], VAE(device="cpu", threads=1).reconstruct(images[:50]).reshape(50, -1)
    )
    from edgevae.runtime.errors import InputError

    with pytest.raises(InputError, match="not found"):
        read_images_dataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no .npy, .png or .parquet files"):
        read_images_dataset(tmp_path / "empty")
