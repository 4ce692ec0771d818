"""Property-based input handling (hypothesis): for any batch size 0..64, dtype, memory layout and
value range, every public entry point either returns what PyTorch returns for the equivalent valid
input (max |diff| <= 1e-5; for likelihoods 1e-4 nats + 1e-6 of the value: the contract lets each
of the 784 float32 logits differ from PyTorch's by 1e-5 + 1e-6 |logit|, and noise images reach
thousands of nats; on real digits test_likelihood.py holds 1e-4 nats flat) or raises ValueError. Never a wrong answer,
never a non-finite output. 300 examples per entry point."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from conftest import need

need("torch", "hypothesis")

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from noise_reference import reference_rows

from edgevae.runtime import VAE
from edgevae.runtime.noise import IMPORTANCE, LATENT
from edgevae.train import checkpoint
from edgevae.train.evaluate import elbo_terms, iw_log_likelihood
from edgevae.train.model import reparameterize

from conftest import RELEASED_CHECKPOINTS

VAE_ = VAE(device="cpu")
ENCODER, DECODER = checkpoint.load_pair(RELEASED_CHECKPOINTS)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TMP = Path(tempfile.mkdtemp(prefix="edgevae-hyp-"))

DTYPES = ["float16", "float32", "float64", ">f4", ">f8", "uint8", "int16", "int32", ">i4", "int64", "bool", "complex64"]
LAYOUTS = ["c", "fortran", "strided", "list", "memmap"]
RANGES = ["valid", "above", "below", "nan", "inf"]


@st.composite
def images(draw: st.DrawFn) -> tuple[object, np.ndarray | None]:
    """(input as given to the runtime, the valid float32 (N, 784) it stands for, or None if invalid)."""
    n = draw(st.integers(0, 64))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    layout = draw(st.sampled_from(LAYOUTS))
    value_range = draw(st.sampled_from(RANGES))
    shape = draw(st.sampled_from([(n, 784), (n, 28, 28), (n, 1, 28, 28)]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    integer = dtype.kind in "iu"
    base = rng.integers(0, 256, shape) if integer else rng.random(shape)
    arr = base.astype(dtype) if dtype.kind != "b" else base > 0.5
    valid = dtype.kind in "fiu" and n > 0
    if n > 0 and value_range != "valid":
        flat = arr.reshape(-1)
        i = int(rng.integers(0, flat.size))
        if value_range == "above":
            flat[i] = 256 if integer and np.iinfo(dtype).max >= 256 else (flat[i] if integer else 1.5)
            valid = valid and not (not integer or np.iinfo(dtype).max >= 256)
        elif value_range == "below":
            if integer and np.iinfo(dtype).min < 0:
                flat[i] = -1
                valid = False
            elif not integer and dtype.kind == "f":
                flat[i] = -0.25
                valid = False
        elif dtype.kind == "f":
            flat[i] = np.nan if value_range == "nan" else np.inf
            valid = False
    want = None
    if valid:
        f = arr.astype(np.float64)
        want = (f / 255.0 if integer else f).astype(np.float32).reshape(n, 784)
        if not integer and dtype.itemsize == 2:  # float16 input: converted exactly to float32
            want = arr.astype(np.float32).reshape(n, 784)
    given_input: object = arr
    if layout == "fortran":
        given_input = np.asfortranarray(arr)
    elif layout == "strided":
        wide = np.repeat(arr[..., None], 2, axis=-1)
        given_input = wide[..., 0]
    elif layout == "list":
        given_input = arr.tolist()
    elif layout == "memmap" and arr.dtype.kind != "b":
        path = TMP / f"x{rng.integers(1 << 60)}.npy"
        np.save(path, arr)
        given_input = np.load(path, mmap_mode="r")
    return given_input, want


def torch_mu(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        mu, logvar = ENCODER(torch.from_numpy(x))
    return mu.numpy(), logvar.numpy()


def check(
    call: object, case: tuple[object, np.ndarray | None], reference: object, tol: float = 1e-5, rtol: float = 0.0
) -> None:
    given_input, want = case
    if want is None:
        with pytest.raises(ValueError):
            call(given_input)  # type: ignore[operator]
        return
    got = np.asarray(call(given_input))  # type: ignore[operator]
    ref = np.asarray(reference(want))  # type: ignore[operator]
    assert np.isfinite(got).all()
    assert got.shape == ref.shape
    assert (np.abs(got.astype(np.float64) - ref) <= tol + rtol * np.abs(ref)).all()


@SETTINGS
@given(case=images())
def test_encode(case: tuple[object, np.ndarray | None]) -> None:
    check(lambda x: VAE_.encode(x)[0].reshape(-1, 20), case, lambda x: torch_mu(x)[0])


@SETTINGS
@given(case=images())
def test_encode_z_with_eps(case: tuple[object, np.ndarray | None]) -> None:
    def ref(x: np.ndarray) -> np.ndarray:
        mu, logvar = (torch.from_numpy(a) for a in torch_mu(x))
        return reparameterize(mu, logvar, torch.ones_like(mu)).numpy()

    check(
        lambda x: VAE_.encode_z(x, eps=np.ones((max(len(np.asarray(x)), 1), 20), np.float32)).reshape(-1, 20), case, ref
    )


@SETTINGS
@given(case=images())
def test_reconstruct(case: tuple[object, np.ndarray | None]) -> None:
    def ref(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.sigmoid(DECODER(torch.from_numpy(torch_mu(x)[0]))).numpy().reshape(-1, 28, 28)

    check(lambda x: VAE_.reconstruct(x).reshape(-1, 28, 28), case, ref)


@SETTINGS
@given(case=images())
def test_elbo(case: tuple[object, np.ndarray | None]) -> None:
    def ref(x: np.ndarray) -> np.ndarray:
        rec, kl = elbo_terms(ENCODER, DECODER, torch.from_numpy(x), torch.zeros((len(x), 20)))
        return -(rec + kl).numpy()

    check(
        lambda x: np.atleast_1d(VAE_.elbo(x, eps=np.zeros((max(len(np.asarray(x)), 1), 20), np.float32))),
        case,
        ref,
        tol=1e-4,
        rtol=1e-6,
    )


@SETTINGS
@given(case=images(), k=st.integers(1, 6))
def test_log_likelihood(case: tuple[object, np.ndarray | None], k: int) -> None:
    eps_of = lambda n: np.random.default_rng(k).standard_normal((k, n, 20), dtype=np.float32)  # noqa: E731

    def ref(x: np.ndarray) -> np.ndarray:
        return iw_log_likelihood(ENCODER, DECODER, torch.from_numpy(x), torch.from_numpy(eps_of(len(x)))).numpy()

    check(
        lambda x: np.atleast_1d(VAE_.log_likelihood(x, k=k, eps=eps_of(max(len(np.asarray(x)), 1)))),
        case,
        ref,
        tol=1e-4,
        rtol=1e-6,
    )


@SETTINGS
@given(case=images())
def test_score(case: tuple[object, np.ndarray | None]) -> None:
    k = 4
    common = reference_rows(0, IMPORTANCE, 0, 0, k, 20)[:, None]  # every image: importance stream 0 (noise.py)

    def ref(x: np.ndarray) -> np.ndarray:
        eps = torch.from_numpy(np.broadcast_to(common, (k, len(x), 20)).copy())
        return -iw_log_likelihood(ENCODER, DECODER, torch.from_numpy(x), eps).numpy()

    check(lambda x: VAE_.score(x, score="nll", k=k, seed=0).score, case, ref, tol=1e-4, rtol=1e-6)


@SETTINGS
@given(
    n=st.integers(0, 64),
    dtype=st.sampled_from(DTYPES),
    layout=st.sampled_from(LAYOUTS),
    value=st.sampled_from(["normal", "huge", "nan", "inf"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_decode(n: int, dtype: str, layout: str, value: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    # "huge": 10 standard deviations out. At 1000 the two float32 GEMMs cancel huge terms in a
    # different order and pixel means differ by 1.2e-5 (hypothesis found it): float32's limit there.
    base = rng.standard_normal((n, 20)) * (10.0 if value == "huge" else 1.0)
    kind = np.dtype(dtype).kind
    if kind in "iu":  # integer latents: small values of the type (a cast of -1.5 to uint8 would be 254)
        base = np.clip(np.round(base), 0 if kind == "u" else -4, 4)
    arr = (base > 0) if kind == "b" else base.astype(dtype)
    if n and value in ("nan", "inf") and kind in "fc":
        arr.reshape(-1)[0] = np.nan if value == "nan" else np.inf
    given_input: object = {
        "c": arr,
        "fortran": np.asfortranarray(arr),
        "strided": np.repeat(arr, 2, axis=1)[:, ::2],
        "list": arr.tolist(),
        "memmap": arr,
    }[layout]
    valid = n > 0 and kind in "fiu" and not (value in ("nan", "inf") and kind == "f")
    if not valid:
        with pytest.raises(ValueError):
            VAE_.decode(given_input)
        return
    got = VAE_.decode(given_input)
    with torch.no_grad():
        want = torch.sigmoid(DECODER(torch.from_numpy(arr.astype(np.float32)))).numpy().reshape(-1, 28, 28)
    assert np.isfinite(got).all() and np.abs(got - want).max() <= 1e-5


@SETTINGS
@given(a=images(), b=images(), steps=st.integers(-1, 12))
def test_interpolate(a: tuple[object, np.ndarray | None], b: tuple[object, np.ndarray | None], steps: int) -> None:
    (xa, wa), (xb, wb) = a, b
    valid = wa is not None and wb is not None and len(wa) == 1 and len(wb) == 1 and steps >= 2
    if not valid:
        with pytest.raises(ValueError):
            VAE_.interpolate(xa, xb, steps=steps)
        return
    got = VAE_.interpolate(xa, xb, steps=steps)
    mu_a, mu_b = torch_mu(wa)[0][0], torch_mu(wb)[0][0]
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    with torch.no_grad():
        want = torch.sigmoid(DECODER(torch.from_numpy((1 - t) * mu_a[None] + t * mu_b[None]))).numpy()
    assert np.isfinite(got).all() and np.abs(got.reshape(steps, -1) - want).max() <= 1e-5


@SETTINGS
@given(
    n=st.one_of(st.integers(-2, 64), st.sampled_from([1.5, "3", None, True])),
    seed=st.one_of(st.none(), st.integers(-2, 2**70), st.sampled_from([1.0, "7"])),
)
def test_sample(n: object, seed: object) -> None:
    valid_n = isinstance(n, int) and not isinstance(n, bool) and n >= 1
    valid_seed = seed is None or (isinstance(seed, int) and 0 <= seed)
    if not (valid_n and valid_seed):
        with pytest.raises(ValueError):
            VAE_.sample(n, seed=seed)  # type: ignore[arg-type]
        return
    got = VAE_.sample(n, seed=seed)  # type: ignore[arg-type]
    assert got.shape == (n, 28, 28) and np.isfinite(got).all() and got.min() >= 0 and got.max() <= 1
    if seed is not None:
        z = reference_rows(seed, LATENT, 0, 0, n, 20)  # the documented draw (runtime/noise.py)
        with torch.no_grad():
            want = torch.sigmoid(DECODER(torch.from_numpy(z))).numpy().reshape(n, 28, 28)
        assert np.abs(got - want).max() <= 1e-5
