"""Bad own-image data gets one line naming the file; conv sizes are refused with the nearest valid
ones; the discretized logistic is a probability; colour layouts and PNGs hold up."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import need

need("PIL")
from PIL import Image  # noqa: E402


def run_train(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    need("torch")
    from edgevae.train.__main__ import main

    code = main([*argv, "--epochs", "1", "--iw-samples", "0", "--no-progress", "--device", "cpu"])
    return code, capsys.readouterr().err.strip().splitlines()[-1]


def save_pictures(folder: Path, sizes: list[tuple[int, int]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, (w, h) in enumerate(sizes):
        Image.new("RGB", (w, h), (i * 40 % 256, 90, 200)).save(folder / f"{i}.png")


@pytest.mark.parametrize(
    ("make", "flags", "message"),
    [
        (lambda d: (d / "x.txt").write_text("no pictures"), ["--dataset", "folder"], "no images"),
        (lambda d: save_pictures(d, [(16, 16), (16, 16), (20, 16)]), ["--dataset", "folder"], "2.png is 20x16"),
        (lambda d: np.save(d / "a.npy", np.full((4, 8, 8), 1.5, np.float32)), ["--dataset", "npy"], "a.npy: float"),
        (lambda d: np.save(d / "a.npy", np.zeros((4, 8), np.uint8)), ["--dataset", "npy"], "a.npy"),
    ],
    ids=["no-images", "mixed-sizes", "npy-out-of-range", "npy-wrong-shape"],
)
def test_bad_data_is_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: object, flags: list[str], message: str
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    make(data)  # type: ignore[operator]
    target = data / "a.npy" if "npy" in flags else data
    code, line = run_train([*flags, "--data-dir", str(target), "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and message in line and line.startswith("python -m edgevae.train: error:")
    assert not (tmp_path / "run" / "encoder.safetensors").exists()


def test_mixed_sizes_train_with_image_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_pictures(tmp_path / "data", [(16, 16), (20, 12), (8, 8), (16, 16)] * 3)
    flags = ["--dataset", "folder", "--data-dir", str(tmp_path / "data"), "--image-shape", "8", "8"]
    code, _ = run_train(
        [*flags, "--block", "conv", "--hidden", "4", "--layers", "1", "--out", str(tmp_path / "r")], capsys
    )
    assert code == 0
    assert np.load(tmp_path / "r" / "data_sample.npy").shape[1:] == (8, 8, 3)


def test_conv_refuses_sizes_with_the_nearest_valid_ones() -> None:
    from edgevae.train.config import VAEConfig  # plain Python: no torch

    with pytest.raises(ValueError, match=r"divisible by 8.*Nearest valid sizes: 24, 32") as err:
        VAEConfig(image_shape=(30, 32), block="conv", layers=3)
    assert "\n" not in str(err.value)


def test_discretized_logistic_is_a_probability_over_256_levels() -> None:
    need("torch")
    import torch

    from edgevae.runtime.likelihood import discretized_logistic
    from edgevae.train.model import discretized_logistic as torch_version

    levels = np.arange(256, dtype=np.float64)[:, None] / 255.0
    mean = np.array([[0.0, 0.3, 0.5, 0.999, 1.0, 0.02]])
    log_scale = np.array([[-7.0, -3.0, 0.0, -5.0, -7.0, 1.0]])
    log_p = discretized_logistic(levels, mean, log_scale)
    assert np.isfinite(log_p).all()  # even 255 levels away from a narrow logistic
    np.testing.assert_allclose(np.exp(log_p).sum(axis=0), 1.0, atol=1e-9)
    got = torch_version(torch.from_numpy(levels), torch.from_numpy(mean), torch.from_numpy(log_scale)).numpy()
    np.testing.assert_allclose(got, log_p, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("channels", [1, 3])
def test_layout_accepts_channels_last_and_names_the_shapes(channels: int) -> None:
    from edgevae.runtime.layout import ImageLayout

    layout = ImageLayout(4, 6, channels)
    batch = np.zeros((2, *layout.shape), np.uint8)
    rows, single = layout.flatten(batch, "x")
    assert rows.shape == (2, 24 * channels) and not single
    assert layout.flatten(batch[0], "x")[1]
    with pytest.raises(ValueError, match=r"x: expected images shaped \(N, \d+\)"):
        layout.flatten(np.zeros((2, 5, 6)), "x")


def test_colour_grid_is_an_rgb_png(tmp_path: Path) -> None:
    from edgevae.runtime.images import save_grid

    images = np.zeros((3, 4, 5, 3), np.float32)
    images[1, ..., 0] = 1.0  # a red picture
    save_grid(images, tmp_path / "g.png", ncols=3, scale=1)
    with Image.open(tmp_path / "g.png") as im:
        assert im.mode == "RGB" and im.size == (3 * 7 + 2, 4 + 4)
        assert im.getpixel((2 + 7 + 1, 3)) == (255, 0, 0)


def test_layout_takes_exactly_its_shapes() -> None:
    need("hypothesis")
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from edgevae.runtime.layout import ImageLayout

    @settings(max_examples=200, deadline=None)
    @given(
        st.sampled_from([1, 3]),
        st.lists(st.integers(min_value=0, max_value=7), min_size=1, max_size=5),
    )
    def check(channels: int, shape: list[int]) -> None:
        layout = ImageLayout(2, 3, channels)
        batches, singles = layout.accepted()
        ok = tuple(shape) in singles or any(len(shape) == len(b) and tuple(shape[1:]) == b[1:] for b in batches)
        if ok:
            n, single = layout.count(tuple(shape), "x")
            assert n == (1 if single else shape[0])
            assert np.zeros(shape).reshape(n, layout.pixels).shape == (n, 6 * channels)
        else:
            with pytest.raises(ValueError, match="x: expected images shaped"):
                layout.count(tuple(shape), "x")

    check()
