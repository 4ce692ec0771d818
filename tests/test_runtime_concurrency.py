"""One loaded model used from many threads at once; bounded memory on large batches."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from edgevae.runtime import VAE


def test_eight_threads_match_serial_use(released_model: Path, real_digits: np.ndarray) -> None:
    vae = VAE(released_model, device="cpu", chunk_size=64)
    x = real_digits[:200]

    def work(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return vae.sample(50, seed=i), vae.reconstruct(x, stochastic=True, seed=i), vae.encode(x)[0]

    serial = [work(i) for i in range(16)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(work, range(16)))
    for a, b in zip(serial, parallel, strict=True):
        for x_a, x_b in zip(a, b, strict=True):
            np.testing.assert_array_equal(x_a, x_b)


def test_100k_reconstruct_stays_well_under_1_gib(released_model: Path) -> None:
    code = f"""
import re, numpy as np
from edgevae.runtime import VAE
vae = VAE({str(released_model)!r}, device='cpu')
x = np.random.default_rng(0).integers(0, 256, (100_000, 28, 28), dtype=np.uint8)
out = vae.reconstruct(x)
assert out.shape == (100_000, 28, 28)
# VmHWM: this image's own peak (getrusage's maxrss also counts the pytest parent's pages copied before exec)
print(int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) * 1024)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    peak = int(result.stdout.strip().splitlines()[-1])
    # input 78 MB (uint8) + output 314 MB (float32) + interpreter and onnxruntime
    assert peak < 700 * 2**20, f"peak RSS {peak / 2**20:.0f} MiB"
