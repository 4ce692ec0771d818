"""A VAE travels to worker processes: pickled, it carries its verified model bytes and options,
rebuilds its sessions on the other side (checking every sha256 again) and gives bit-identical results."""

from __future__ import annotations

import multiprocessing as mp
import pickle
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import onnxruntime as ort
import pytest

from edgevae.runtime import VAE, ModelError, contract


def work(vae: VAE, x: np.ndarray) -> list[np.ndarray]:
    return [
        vae.sample(8, seed=3),
        vae.reconstruct(x),
        vae.log_likelihood(x, k=16, seed=1),
        vae.score(x).score,
        np.asarray(vae.encode(x)[0]),
    ]


@pytest.mark.parametrize("variant", ["fp32", "int8", "b1"])
def test_a_pickled_vae_gives_bit_identical_results_in_a_child_process(variant: str, real_digits: np.ndarray) -> None:
    vae = VAE(device="cpu", variant=variant)
    x = real_digits[:6]
    here = work(vae, x)
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        there = pool.submit(work, vae, x).result(timeout=120)
    for a, b in zip(here, there, strict=True):
        np.testing.assert_array_equal(a, b)


def test_bytes_modified_in_transit_are_refused() -> None:
    state = VAE().__getstate__()
    blob = bytearray(state["blobs"]["decoder"])
    blob[len(blob) // 2] ^= 0x01
    state["blobs"]["decoder"] = bytes(blob)
    with pytest.raises(ModelError, match="decoder.onnx carried with this VAE does not match the sha256"):
        VAE.__new__(VAE).__setstate__(state)


def test_options_travel_and_custom_session_options_are_refused() -> None:
    vae = pickle.loads(pickle.dumps(VAE(threads=1, chunk_size=7, variant="fp16")))
    assert vae.chunk_size == 7 and vae.files.variant == "fp16" and vae.device == "cpu"
    with pytest.raises(TypeError, match="session_options cannot be pickled"):
        pickle.dumps(VAE(session_options=ort.SessionOptions()))
    assert contract.VARIANTS["fp16"].file("decoder") in vae.files.manifest["files"]
