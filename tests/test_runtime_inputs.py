"""Input forms the runtime accepts (converted exactly) and the ones it refuses (with the reason)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgevae.runtime import VAE


@pytest.fixture(scope="module")
def vae(released_model: Path) -> VAE:
    return VAE(released_model, device="cpu")


@pytest.fixture(scope="module")
def digits(real_digits: np.ndarray) -> np.ndarray:
    return (real_digits[:5] / 255.0).astype(np.float32)  # (5, 784) floats in [0, 1]


@pytest.mark.parametrize("batch", [1, 5])
def test_all_accepted_shapes_give_the_same_result(vae: VAE, digits: np.ndarray, batch: int) -> None:
    x = digits[:batch]
    want = vae.reconstruct(x)
    assert want.shape == (batch, 28, 28)
    for form in (x.reshape(batch, 28, 28), x.reshape(batch, 1, 28, 28), x.astype(np.float64), x.tolist()):
        np.testing.assert_array_equal(vae.reconstruct(form), want)


def test_one_image_without_batch_axis(vae: VAE, digits: np.ndarray) -> None:
    want = vae.reconstruct(digits[:1])[0]
    for form in (digits[0], digits[0].reshape(28, 28)):
        np.testing.assert_array_equal(vae.reconstruct(form), want)
    mu, logvar = vae.encode(digits[0])
    assert mu.shape == logvar.shape == (20,)
    assert vae.decode(mu).shape == (28, 28)


def test_uint8_is_read_as_0_to_255(vae: VAE, real_digits: np.ndarray) -> None:
    as_float = (real_digits[:5] / np.float32(255.0)).astype(np.float32)
    np.testing.assert_array_equal(vae.reconstruct(real_digits[:5]), vae.reconstruct(as_float))


def test_big_endian_and_non_contiguous_are_converted_exactly(vae: VAE, digits: np.ndarray) -> None:
    want_mu, _ = vae.encode(digits)
    big = digits.astype(">f4")
    np.testing.assert_array_equal(vae.encode(big)[0], want_mu)
    wide = np.zeros((5, 784 * 2), np.float32)
    wide[:, ::2] = digits
    strided = wide[:, ::2]
    assert not strided.flags.c_contiguous
    np.testing.assert_array_equal(vae.encode(strided)[0], want_mu)
    z_big = want_mu.astype(">f4")
    np.testing.assert_array_equal(vae.decode(z_big), vae.decode(want_mu))


def test_chunked_equals_unchunked(released_model: Path, digits: np.ndarray) -> None:
    x = np.resize(digits, (37, 784))
    whole = VAE(released_model, device="cpu", chunk_size=1000)
    tiny = VAE(released_model, device="cpu", chunk_size=4)
    np.testing.assert_array_equal(whole.reconstruct(x), tiny.reconstruct(x))
    np.testing.assert_array_equal(whole.encode_z(x, seed=3), tiny.encode_z(x, seed=3))
    np.testing.assert_array_equal(whole.sample(37, seed=1), tiny.sample(37, seed=1))


def test_encode_with_seed_and_with_eps_agree(vae: VAE, digits: np.ndarray) -> None:
    eps = vae.sample_latent(5, seed=9)
    np.testing.assert_array_equal(vae.encode_z(digits, seed=9), vae.encode_z(digits, eps=eps))


def test_interpolate_walks_from_a_to_b(vae: VAE, digits: np.ndarray) -> None:
    path = vae.interpolate(digits[0], digits[1], steps=6)
    assert path.shape == (6, 28, 28)
    np.testing.assert_allclose(path[0], vae.reconstruct(digits[0]), atol=1e-6)
    np.testing.assert_allclose(path[-1], vae.reconstruct(digits[1]), atol=1e-6)


IMAGE_ERRORS = [
    ("wrong size", np.zeros((2, 783), np.float32), r"x: expected images shaped \(N, 784\).*got shape \(2, 783\)"),
    ("wrong image shape", np.zeros((2, 27, 28), np.float32), r"got shape \(2, 27, 28\)"),
    (
        "NaN",
        np.full((2, 784), np.nan, np.float32),
        r"expected finite pixel values in \[0, 1\]; got NaN or Inf \(first in image 0\)",
    ),
    ("Inf", np.where(np.arange(784) == 3, np.inf, 0.5).astype(np.float32)[None].repeat(3, 0), "got NaN or Inf"),
    (
        "float above 1",
        np.full((1, 784), 1.5, np.float32),
        r"expected pixel values in \[0, 1\] for float input; got values from 1.5 to 1.5",
    ),
    ("negative float", np.full((1, 784), -0.1, np.float32), r"\[0, 1\] for float input; got values from -0.1"),
    ("int above 255", np.full((1, 784), 300, np.int64), r"0..255 for integer input; got values from 300 to 300"),
    ("strings", np.array([["a"] * 784]), "expected a float or integer array of images; got dtype <U1"),
    ("objects", np.array([None, 1], dtype=object), "got dtype object"),
    ("bools", np.zeros((1, 784), bool), "got dtype bool"),
    ("complex", np.zeros((1, 784), complex), "got dtype complex128"),
    ("ragged list", [[0.0] * 784, [0.0] * 3], "could not convert"),
    (
        "empty batch",
        np.zeros((0, 784), np.float32),
        r"expected at least one image; got an empty batch of shape \(0, 784\)",
    ),
]


@pytest.mark.parametrize("name, x, message", IMAGE_ERRORS, ids=[e[0] for e in IMAGE_ERRORS])
@pytest.mark.parametrize("method", ["encode", "reconstruct"])
def test_bad_images_are_refused(vae: VAE, name: str, x: object, message: str, method: str) -> None:
    with pytest.raises(ValueError, match=message):
        getattr(vae, method)(x)


LATENT_ERRORS = [
    (
        "wrong latent size",
        np.zeros((3, 19), np.float32),
        r"z: expected shape \(N, 20\) or \(20,\) for this model's latent size 20; got shape \(3, 19\)",
    ),
    ("NaN", np.full((2, 20), np.nan, np.float32), r"z: expected finite values; got NaN or Inf \(first in row 0\)"),
    ("Inf", np.full((2, 20), -np.inf, np.float32), "got NaN or Inf"),
    ("strings", np.array([["1"] * 20]), "z: expected a float or integer array of latent vectors; got dtype <U1"),
    ("empty", np.zeros((0, 20), np.float32), "z: expected at least one row"),
]


@pytest.mark.parametrize("name, z, message", LATENT_ERRORS, ids=[e[0] for e in LATENT_ERRORS])
def test_bad_latents_are_refused(vae: VAE, name: str, z: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        vae.decode(z)


def test_eps_batch_must_match_x_batch(vae: VAE, digits: np.ndarray) -> None:
    # onnxruntime itself would broadcast an eps batch of 1 over every image
    with pytest.raises(ValueError, match=r"eps: batch of 1 does not match x's batch of 5 \(no broadcasting"):
        vae.encode_z(digits, eps=np.zeros((1, 20), np.float32))
    with pytest.raises(ValueError, match="eps: batch of 7 does not match x's batch of 5"):
        vae.encode_z(digits, eps=np.zeros((7, 20), np.float32))
    with pytest.raises(ValueError, match=r"eps: expected shape \(N, 20\)"):
        vae.encode_z(digits, eps=np.zeros((5, 21), np.float32))
    with pytest.raises(ValueError, match="eps: expected finite values"):
        vae.encode_z(digits, eps=np.full((5, 20), np.nan, np.float32))


@pytest.mark.parametrize("n", [0, -3, 2.5, "4", True])
def test_bad_sample_counts(vae: VAE, n: object) -> None:
    with pytest.raises(ValueError, match=f"n must be an int >= 1; got {n!r}"):
        vae.sample(n)  # type: ignore[arg-type]


def test_interpolate_refuses_batches_and_short_paths(vae: VAE, digits: np.ndarray) -> None:
    with pytest.raises(ValueError, match="x_a: expected one image; got a batch of 5"):
        vae.interpolate(digits, digits[0])
    with pytest.raises(ValueError, match="steps must be an int >= 2; got 1"):
        vae.interpolate(digits[0], digits[1], steps=1)


def test_bad_constructor_arguments(released_model: Path) -> None:
    with pytest.raises(ValueError, match="device must be one of"):
        VAE(released_model, device="tpu")
    with pytest.raises(ValueError, match="chunk_size must be an int >= 1"):
        VAE(released_model, chunk_size=0)
    with pytest.raises(ValueError, match="optimization_level must be one of"):
        VAE(released_model, optimization_level="max")
