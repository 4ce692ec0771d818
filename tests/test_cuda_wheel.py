"""CUDA without a GPU, for real: the onnxruntime-gpu wheel, in its own venv (the CPU and GPU wheels
cannot share one), lists the CUDA provider here and fails to load it. `make cuda-check` builds that
venv and runs this test; .ci/run calls it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgevae.runtime import VAE

REPO = Path(__file__).resolve().parents[1]
GPU_PYTHON = REPO / ".venv-ort-gpu" / "bin" / "python"


@pytest.mark.skipif(
    not GPU_PYTHON.exists(),
    reason="the onnxruntime-gpu wheel venv .venv-ort-gpu is absent: `make cuda-check` builds it (about 260 MB)",
)
def test_gpu_wheel_without_a_gpu_refuses_cuda_falls_back_and_matches_the_cpu_build(tmp_path: Path) -> None:
    out = tmp_path / "gpu.npy"
    done = subprocess.run(
        [str(GPU_PYTHON), "bench/cuda_without_gpu.py", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert "device='cuda' -> DeviceError" in done.stdout and "device='auto' -> cpu" in done.stdout
    assert "device='cuda' variant='ort' -> DeviceError: variant 'ort' is not for device 'cuda'" in done.stdout
    assert "sessions started: 0" in done.stdout
    vae = VAE(device="cpu")
    real = np.load(REPO / "export" / "fixtures" / "mnist_test_256.npy")[:32]
    cpu = np.concatenate(
        [
            vae.sample(32, seed=0).reshape(32, -1),
            vae.reconstruct(real).reshape(32, -1),
            vae.log_likelihood(real, k=8, seed=0)[:, None].repeat(784, axis=1),
        ]
    ).astype(np.float64)
    assert np.abs(np.load(out) - cpu).max() <= 1e-6
