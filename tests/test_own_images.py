"""Your own images end to end: a folder of colour PNGs (nested, one corrupt) or an .npy array, trained
with --block conv for a few epochs, exported, and run through every CLI command and variant."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import need

need("torch", "onnx", "PIL")
from PIL import Image  # noqa: E402

pytestmark = pytest.mark.slow  # three small training runs and exports: about two minutes on 2 cores

SIDE = 16
TRAIN_FLAGS = [
    "--block", "conv", "--hidden", "8", "--layers", "2", "--latent", "8", "--likelihood", "discretized_logistic",
    "--epochs", "3", "--batch-size", "32", "--lr", "3e-3", "--iw-samples", "10", "--no-progress", "--device", "cpu",
]  # fmt: skip


def draw_pictures(n: int, seed: int, channels: int = 3) -> np.ndarray:
    """n pictures (n, 16, 16, channels) uint8: a disc (radius 4-6) of one colour on a background of another."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIDE, :SIDE]
    out = np.empty((n, SIDE, SIDE, channels), np.uint8)
    for i in range(n):
        out[i] = rng.integers(0, 256, channels)
        cy, cx = rng.integers(5, SIDE - 5, 2)
        r = rng.integers(4, 7)
        out[i][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = rng.integers(0, 256, channels)
    return out


def shuffle_pixels(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """The same pictures with their pixels in another (fixed) order: colours kept, shapes gone."""
    n, h, w = images.shape[:3]
    order = np.random.default_rng(seed).permutation(h * w)
    return images.reshape(n, h * w, -1)[:, order].reshape(images.shape)


def auroc(normal: np.ndarray, unusual: np.ndarray) -> float:
    """P(score of an unusual image > score of a normal one), ties counting half."""
    diff = np.asarray(unusual)[:, None] - np.asarray(normal)[None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


def make_folder(root: Path, n: int = 240) -> Path:
    """n PNGs in nested folders, one corrupt PNG and one text file."""
    for i, picture in enumerate(draw_pictures(n, seed=0)):
        sub = root / f"class{i % 3}" / ("deeper" if i % 2 else "")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture).save(sub / f"p{i:04d}.png")
    (root / "class1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not a picture" * 10)
    (root / "README.txt").write_text("not a picture")
    return root


def train_and_export(tmp: Path, data_flags: list[str]) -> tuple[Path, Path]:
    """(checkpoint folder, model folder) after training and exporting with the CLIs."""
    from edgevae.export.__main__ import main as export_main
    from edgevae.train.__main__ import main as train_main

    run, model = tmp / "run", tmp / "model"
    assert train_main([*data_flags, *TRAIN_FLAGS, "--out", str(run)]) == 0
    assert export_main(["--checkpoints", str(run), "--out", str(model), "--device", "cpu"]) == 0
    return run, model


@pytest.fixture(scope="module")
def colour_case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(image folder, checkpoints, model) for the colour folder data set."""
    tmp = tmp_path_factory.mktemp("own_colour")
    folder = make_folder(tmp / "pictures")
    run, model = train_and_export(tmp, ["--dataset", "folder", "--data-dir", str(folder)])
    return folder, run, model


def test_folder_run_records_its_data(colour_case: tuple[Path, Path, Path]) -> None:
    _, run, _ = colour_case
    data = json.loads((run / "metrics.json").read_text())["data"]
    assert data["skipped_unreadable"] == 1 and data["ignored_other_files"] == 1
    assert data["train_images"] + data["test_images"] == 240
    assert data["test_images"] == 24 and data["test_fraction"] == 0.1
    assert (data["image_shape"], data["channels"]) == ([SIDE, SIDE], 3)
    metrics = json.loads((run / "metrics.json").read_text())
    history = metrics["history"]
    assert history[-1]["test_elbo"] > history[0]["test_elbo"]  # it learns
    expected = -metrics["test_iw_log_likelihood"] / (SIDE * SIDE * 3 * np.log(2))
    assert metrics["test_bits_per_dim"] == pytest.approx(expected)


def test_manifest_states_every_variant_cost(colour_case: tuple[Path, Path, Path]) -> None:
    manifest = json.loads((colour_case[2] / "manifest.json").read_text())
    assert manifest["config"]["channels"] == 3 and manifest["config"]["likelihood"] == "discretized_logistic"
    assert set(manifest["variants"]) == {"fp32", "int8", "fp16", "b1", "ort"}
    for name, variant in manifest["variants"].items():
        change = variant["log_likelihood_change"]
        assert np.isfinite(change["nats"]) and np.isfinite(change["bits_per_dim"]), name
        assert abs(change["nats"]) <= variant["budget"]["log_likelihood_change_nats"], name
    assert "ConvInteger" not in (colour_case[2] / "decoder.int8.onnx").read_bytes().decode("latin-1")


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_every_command_on_colour_model(
    colour_case: tuple[Path, Path, Path], variant: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgevae.runtime.cli import main

    folder, _, model = colour_case
    common = ["--model", str(model), "--variant", variant, "--device", "cpu"]
    pngs = sorted(folder.rglob("p*.png"))
    Image.open(pngs[1]).convert("RGB").save(tmp_path / "b.jpg", quality=95)
    np.save(tmp_path / "x.npy", draw_pictures(6, seed=5))
    assert main(["sample", "-n", "9", "-o", str(tmp_path / "s.png"), *common]) == 0
    with Image.open(tmp_path / "s.png") as im:
        assert im.mode == "RGB" and im.size[0] > 3 * SIDE
    assert main(["sample", "-n", "3", "-o", str(tmp_path / "s.npy"), *common]) == 0
    samples = np.load(tmp_path / "s.npy")
    assert samples.shape == (3, SIDE, SIDE, 3) and samples.dtype == np.float32
    assert 0.0 <= samples.min() and samples.max() <= 1.0
    assert main(["reconstruct", str(tmp_path / "x.npy"), "-o", str(tmp_path / "r.png"), *common]) == 0
    assert main(["reconstruct", str(pngs[0]), "-o", str(tmp_path / "r.npy"), *common]) == 0
    assert np.load(tmp_path / "r.npy").shape == (1, SIDE, SIDE, 3)
    assert main(["interpolate", str(pngs[0]), str(tmp_path / "b.jpg"), "-o", str(tmp_path / "i.png"), *common]) == 0
    assert main(["score", str(tmp_path / "x.npy"), "-o", str(tmp_path / "s.csv"), "--threshold", "p99", *common]) == 0
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 7
    assert main(["selftest", *common]) == 0
    assert main(["info", *common]) == 0
    out = capsys.readouterr().out
    assert "selftest cpu int8 (CPUExecutionProvider): pass" in out


def test_score_ranks_shuffled_pixels_as_unusual(colour_case: tuple[Path, Path, Path]) -> None:
    from edgevae.runtime import VAE

    vae = VAE(colour_case[2], device="cpu")
    held_out = draw_pictures(60, seed=11)
    normal, shuffled = vae.score(held_out).score, vae.score(shuffle_pixels(held_out)).score
    assert auroc(normal, shuffled) >= 0.95


def test_runtime_likelihood_matches_training_code(colour_case: tuple[Path, Path, Path]) -> None:
    import torch

    from edgevae.runtime import VAE
    from edgevae.train.checkpoint import load_pair
    from edgevae.train.evaluate import elbo_terms

    _, run, model = colour_case
    encoder, decoder = load_pair(run)
    x = draw_pictures(8, seed=3).reshape(8, -1)
    eps = np.random.default_rng(0).standard_normal((8, 8), dtype=np.float32)
    rec, kl = elbo_terms(encoder, decoder, torch.from_numpy(x.astype(np.float32) / 255.0), torch.from_numpy(eps))
    got = VAE(model, device="cpu").elbo(x.reshape(8, SIDE, SIDE, 3), eps=eps)
    np.testing.assert_allclose(got, -(rec + kl).numpy(), rtol=1e-5, atol=1e-2)


@pytest.mark.parametrize("channels", [1, 3], ids=["grey", "colour"])
def test_npy_data_trains_exports_and_runs(channels: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgevae.runtime import VAE
    from edgevae.runtime.cli import main

    images = draw_pictures(200, seed=1, channels=channels)
    array = images[..., 0] if channels == 1 else images.astype(np.float32) / 255.0  # (N, H, W) uint8; float RGB
    np.save(tmp_path / "data.npy", array)
    _, model = train_and_export(tmp_path, ["--dataset", "npy", "--data-dir", str(tmp_path / "data.npy")])
    vae = VAE(model, device="cpu")
    assert vae.channels == channels
    assert vae.sample(2, seed=0).shape == ((2, SIDE, SIDE) if channels == 1 else (2, SIDE, SIDE, 3))
    for variant in ("fp32", "int8"):
        assert main(["selftest", "--model", str(model), "--variant", variant, "--device", "cpu"]) == 0
    held_out = draw_pictures(40, seed=12, channels=channels)
    held_out = held_out[..., 0] if channels == 1 else held_out
    assert auroc(vae.score(held_out).score, vae.score(shuffle_pixels(held_out)).score) >= 0.95
    capsys.readouterr()
