"""One noise scheme: every seeded draw is the documented function of (seed, purpose, stream, row),
whatever the chunking, threads, batch split or process; and it is standard normal."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from conftest import need

need("hypothesis")

from hypothesis import given, settings
from hypothesis import strategies as st
from noise_reference import philox4x64, reference_rows

from edgevae.runtime import VAE
from edgevae.runtime.noise import COMPONENT, IMPORTANCE, LATENT, Noise, seed_or_fresh

SEEDS = st.integers(0, 2**128 - 1)
# Random123's known-answer vectors for Philox4x64-10 (kat_vectors): counter, key, the block
KAT = [
    (0, 0, [0x16554D9ECA36314C, 0xDB20FE9D672D0FDC, 0xD7E772CEE186176B, 0x7E68B68AEC7BA23B]),
    (2**256 - 1, 2**128 - 1, [0x87B092C3013FE90B, 0x438C3C67BE8D0224, 0x9CC7D7C69CD777B6, 0xA09CAEBF594F0BA0]),
    (
        0x082EFA98EC4E6C89_A4093822299F31D0_13198A2E03707344_243F6A8885A308D3,
        0xBE5466CF34E90C6C_452821E638D01377,
        [0xA528F45403E61D95, 0x38C72DBD566E9788, 0xA5A1610E72FD18B5, 0x57BD43B5E52B7FE6],
    ),
]


@pytest.mark.parametrize("counter, key, block", KAT)
def test_the_bits_are_philox4x64_10(counter: int, key: int, block: list[int]) -> None:
    assert philox4x64(counter, key) == block  # the reference the other tests trust
    assert Noise().words(key, counter, 1).tolist() == block


@settings(max_examples=200, deadline=None)
@given(
    seed=SEEDS,
    purpose=st.sampled_from([LATENT, IMPORTANCE]),
    stream=st.integers(0, 2**64 - 1),
    low=st.one_of(st.integers(0, 100), st.integers(2**64 - 3, 2**64 - 1)),
    blocks=st.integers(1, 4),
)
def test_counters_carry_as_one_256_bit_number(seed: int, purpose: int, stream: int, low: int, blocks: int) -> None:
    counter = purpose << 192 | stream << 64 | low
    want = [w for b in range(blocks) for w in philox4x64(counter + b, seed)]
    assert Noise().words(seed, counter, blocks).tolist() == want


@settings(max_examples=100, deadline=None)
@given(
    seed=SEEDS,
    purpose=st.sampled_from([LATENT, IMPORTANCE]),
    stream=st.integers(0, 2**64 - 1),
    first=st.integers(0, 10**6),
    count=st.integers(1, 5),
    width=st.integers(1, 41),
    before=st.integers(0, 7),
)
def test_rows_are_the_documented_values(
    seed: int, purpose: int, stream: int, first: int, count: int, width: int, before: int
) -> None:
    noise = Noise()
    if before:  # an earlier draw on the same generator must not leak into this one
        noise.rows(12345, LATENT, 0, 0, before, 3)
    got = noise.rows(seed, purpose, stream, first, count, width)
    assert got.shape == (count, width) and got.dtype == np.float32
    # the same integers and formulas; numpy's and Python's log, cos and sin may differ in a last bit
    np.testing.assert_allclose(got, reference_rows(seed, purpose, stream, first, count, width), rtol=0, atol=4e-6)


@settings(max_examples=100, deadline=None)
@given(seed=SEEDS, n=st.integers(1, 300), first=st.integers(0, 299), count=st.integers(1, 40))
def test_a_row_does_not_depend_on_how_many_rows_are_drawn_with_it(seed: int, n: int, first: int, count: int) -> None:
    noise = Noise()
    whole = noise.latent(seed, max(n, first + count), 20)
    assert np.array_equal(noise.latent(seed, count, 20, first=first), whole[first : first + count])
    assert np.array_equal(noise.latent(seed, n, 20), whole[:n])


def test_purposes_streams_and_seeds_do_not_overlap() -> None:
    noise = Noise()
    draws = [
        noise.rows(0, LATENT, 0, 0, 4, 20),
        noise.rows(0, IMPORTANCE, 0, 0, 4, 20),
        noise.rows(0, IMPORTANCE, 1, 0, 4, 20),
        noise.rows(1, LATENT, 0, 0, 4, 20),
    ]
    for i, a in enumerate(draws):
        for b in draws[i + 1 :]:
            assert not np.isin(a, b).any()


def test_values_are_standard_normal() -> None:
    """A million values: mean, variance, tails and Kolmogorov-Smirnov distance within their sampling
    spread (standard errors 0.001, 0.0014; the KS statistic's 99.9% point at this n is 0.0019)."""
    x = Noise().latent(12345, 50_000, 20).ravel().astype(np.float64)
    assert abs(x.mean()) < 0.005 and abs(x.var() - 1) < 0.007
    assert abs((np.abs(x) > 3).mean() - 0.0026998) < 0.0003  # P(|z| > 3)
    xs = np.sort(x[::10])
    cdf = 0.5 * (1 + np.vectorize(math.erf)(xs / math.sqrt(2)))
    ks = np.max(np.abs(cdf - np.arange(1, len(xs) + 1) / len(xs)))
    assert ks < 0.0062  # n = 100,000: the 99.9% point of the KS statistic


@pytest.mark.parametrize("seed", [True, 1.0, -1, 2**128, "7", np.float32(3)])
def test_a_seed_is_checked_in_one_place(seed: object) -> None:
    with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*128\)"):
        seed_or_fresh(seed)
    with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*128\)"):
        Noise().latent(seed, 1, 20)


def test_no_seed_is_a_fresh_draw_each_time() -> None:
    noise = Noise()
    assert not np.array_equal(noise.latent(None, 2, 20), noise.latent(None, 2, 20))
    assert seed_or_fresh(np.uint8(7)) == 7


def test_draws_are_thread_safe() -> None:
    noise = Noise()
    want = {s: noise.latent(s, 2, 20) for s in range(64)}
    bad: list[int] = []

    def work(offset: int) -> None:
        for i in range(400):
            s = (i * 7 + offset) % 64
            if not np.array_equal(noise.latent(s, 2, 20), want[s]):
                bad.append(s)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bad == []


# -- what each seeded operation promises ------------------------------------------------------
def test_seeded_operations_use_the_documented_rows(real_digits: np.ndarray) -> None:
    vae = VAE(device="cpu")
    z = reference_rows(7, LATENT, 0, 0, 5, vae.latent)
    np.testing.assert_allclose(vae.sample_latent(5, seed=7), z, rtol=0, atol=4e-6)
    x = real_digits[:5]
    np.testing.assert_array_equal(vae.encode_z(x, seed=7), vae.encode_z(x, eps=vae.sample_latent(5, seed=7)))
    np.testing.assert_array_equal(vae.elbo(x, seed=7), vae.elbo(x, eps=vae.sample_latent(5, seed=7)))
    eps = np.stack([reference_rows(7, IMPORTANCE, i, 0, 6, vae.latent) for i in range(5)], axis=1)  # (k, N, latent)
    np.testing.assert_allclose(vae.log_likelihood(x, k=6, seed=7), vae.log_likelihood(x, k=6, eps=eps), atol=1e-4)


@settings(max_examples=25, deadline=None)
@given(seed=SEEDS, n=st.integers(1, 70), m=st.integers(1, 70))
def test_sample_rows_do_not_depend_on_n(seed: int, n: int, m: int) -> None:
    vae = VAE(device="cpu", threads=1)
    a, b = vae.sample_latent(n, seed), vae.sample_latent(m, seed)
    assert np.array_equal(a[: min(n, m)], b[: min(n, m)])


def test_an_image_keeps_its_noise_in_any_batch_split_or_chunking(real_digits: np.ndarray) -> None:
    x = real_digits[:9]
    whole = VAE(device="cpu", chunk_size=2048).log_likelihood(x, k=12, seed=5)
    halves = np.concatenate(
        [
            VAE(device="cpu", chunk_size=5).log_likelihood(x[:4], k=12, seed=5),
            VAE(device="cpu").log_likelihood(x, k=12, seed=5)[4:],
        ]
    )
    np.testing.assert_allclose(halves, whole, rtol=0, atol=1e-6)
    # a larger k keeps the first k samples: k=12 and the first 12 of k=24 are the same noise
    eps = np.stack([Noise().importance(5, i, 24, 20)[:12] for i in range(9)], axis=1)
    np.testing.assert_allclose(VAE(device="cpu").log_likelihood(x, k=12, eps=eps), whole, rtol=0, atol=1e-6)


def test_a_score_s_nll_is_the_image_s_log_likelihood_alone(real_digits: np.ndarray) -> None:
    """score gives every image the importance noise of stream 0: what log_likelihood gives an image alone."""
    vae = VAE(device="cpu")
    x = real_digits[:6]
    nll, _ = vae.measure_nll_complexity(x, k=10, seed=3)
    alone = [-vae.log_likelihood(x[i : i + 1], k=10, seed=3)[0] for i in range(6)]
    np.testing.assert_allclose(nll, alone, rtol=0, atol=1e-6)
    np.testing.assert_allclose(nll[1], -vae.log_likelihood(x[1], k=10, seed=3), atol=1e-6)


@pytest.mark.parametrize(("seed", "first", "count"), [(0, 0, 5), (2**100 + 7, 3, 4)])
def test_component_draws_are_the_documented_values(seed: int, first: int, count: int) -> None:
    """COMPONENT row r: u = (r0 >> 11) / 2**53 from the block at counter COMPONENT * 2**192 + r (noise.py)."""
    want = [(philox4x64(COMPONENT << 192 | row, seed)[0] >> 11) / 2**53 for row in range(first, first + count)]
    assert Noise().component(seed, count, first).tolist() == want
