"""The fast paths behind the benchmark give the same answers as the plain ones (no timings here:
speed is measured by `make bench`)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import need

need("hypothesis")

from hypothesis import given, settings
from hypothesis import strategies as st

from edgevae.runtime import VAE, contract
from edgevae.runtime.inputs import all_finite
from edgevae.runtime.model import make_runner
from edgevae.runtime.sessions import WIDE_ROWS


def test_seeds_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*128\); got -1"):
        VAE().sample(1, seed=-1)
    with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*128\)"):
        VAE().sample(1, seed=2**128)


def test_unseeded_sampling_uses_a_generator_per_instance() -> None:
    vae = VAE()
    a, b = vae.sample(3), vae.sample(3)
    assert not np.array_equal(a, b) and not np.array_equal(a, VAE().sample(3))


@pytest.mark.parametrize("rows", [1, WIDE_ROWS - 1, WIDE_ROWS, 3000])
def test_default_threads_give_the_single_thread_answers(rows: int, real_digits: np.ndarray) -> None:
    auto, single = VAE(), VAE(threads=1)
    z = np.random.default_rng(rows).standard_normal((rows, 20), dtype=np.float32)
    x = np.resize(real_digits, (rows, 784))
    np.testing.assert_allclose(auto.decode(z), single.decode(z), rtol=0, atol=1e-6)
    np.testing.assert_allclose(auto.reconstruct(x), single.reconstruct(x), rtol=0, atol=1e-5)
    assert (len(auto._wide) > 0) == (rows >= WIDE_ROWS)  # the all-cores sessions exist only once needed


def test_explicit_threads_use_one_session_per_graph() -> None:
    vae = VAE(threads=2)
    assert not hasattr(vae, "_wide")
    assert vae.decode(np.zeros((WIDE_ROWS * 2, 20), np.float32)).shape == (WIDE_ROWS * 2, 28, 28)


def test_runner_falls_back_to_the_public_run() -> None:
    class Plain:
        def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[str]:
            return [f"{names}:{sorted(feeds)}"]

        def get_providers(self) -> list[str]:
            return ["CPUExecutionProvider"]

    assert make_runner(Plain())(["mean"], {"z": np.zeros(1)}) == ["['mean']:['z']"]  # type: ignore[arg-type]
    vae = VAE()
    fast = make_runner(vae.decoder)
    z = np.ones((2, 20), np.float32)
    assert np.array_equal(
        fast([contract.MEAN], {contract.Z: z})[0], vae.decoder.run([contract.MEAN], {contract.Z: z})[0]
    )


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True), min_size=1, max_size=600))
def test_all_finite_agrees_with_numpy(values: list[float]) -> None:
    arr = np.asarray(values, np.float32)
    assert all_finite(arr) == bool(np.isfinite(arr).all())


def test_all_finite_cannot_be_fooled_by_overflow() -> None:
    big = np.full(1000, np.finfo(np.float32).max, np.float32)
    assert all_finite(big) and all_finite(big[:10]) and not all_finite(np.append(big, np.inf))
