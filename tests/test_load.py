"""Load: many threads mixing every public operation on one model, and 100,000 single-image calls.

The figures (throughput, memory growth) are printed for the record; the assertions are on
correctness and on a generous memory bound, never on time."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from edgevae.runtime import VAE


def operations(vae: VAE, digits: np.ndarray) -> list:
    z = np.random.default_rng(3).standard_normal((5, 20), dtype=np.float32)
    return [
        lambda i: vae.sample(1 + i % 3, seed=i),
        lambda i: vae.encode(digits[i % 8 : i % 8 + 2])[0],
        lambda i: vae.encode_z(digits[i % 8 : i % 8 + 2], seed=i),
        lambda i: vae.decode(z[i % 5]),
        lambda i: vae.reconstruct(digits[i % 8]),
        lambda i: vae.reconstruct(digits[:3], stochastic=True, seed=i),
        lambda i: vae.interpolate(digits[0], digits[1 + i % 7], steps=3),
        lambda i: vae.elbo(digits[i % 8], seed=i),
        lambda i: vae.log_likelihood(digits[:2], k=4, seed=i),
        lambda i: vae.score(digits[i % 8 : i % 8 + 1], k=4).score,
    ]


def test_16_threads_x_500_mixed_calls_match_serial(real_digits: np.ndarray) -> None:
    vae = VAE(device="cpu")
    ops = operations(vae, real_digits[:16])
    calls = [(t * 500 + j) for t in range(16) for j in range(500)]
    serial = {i: np.asarray(ops[i % len(ops)](i)) for i in calls}
    t0 = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        parallel = dict(zip(calls, pool.map(lambda i: np.asarray(ops[i % len(ops)](i)), calls), strict=True))
    seconds = time.perf_counter() - t0
    mismatches = [i for i in calls if not np.array_equal(serial[i], parallel[i])]
    print(f"\n16 threads x 500 mixed calls: {len(calls) / seconds:,.0f} calls/s, {len(mismatches)} mismatches")
    assert mismatches == []


def test_100k_single_image_calls_do_not_grow_memory() -> None:
    code = """
import re, numpy as np
from edgevae.runtime import VAE
def rss():
    return int(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) / 1024
vae = VAE(device='cpu')
x = np.random.default_rng(0).random((1, 784), dtype=np.float32)
marks = []
for i in range(100_000):
    if i % 3 == 0:
        vae.sample(1, seed=i)
    elif i % 3 == 1:
        vae.reconstruct(x)
    else:
        vae.decode(x[:, :20])
    if i in (999, 99_999):
        marks.append(rss())
print(marks[0], marks[1])
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    first, last = (float(v) for v in result.stdout.split())
    print(f"\nRSS after 1,000 calls {first:.1f} MiB, after 100,000 {last:.1f} MiB (growth {last - first:+.1f} MiB)")
    assert last - first < 8.0, (first, last)
