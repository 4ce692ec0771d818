"""The real onnxruntime-gpu wheel on a machine without a GPU: its CUDA provider is listed but
cannot load. Run with that wheel's interpreter (make cuda-check builds .venv-ort-gpu):

    .venv-ort-gpu/bin/python bench/cuda_without_gpu.py OUT.npy

Checks that device="cuda" raises DeviceError, that variant "ort" is refused on CUDA before any
session starts (a CPU-only build), that device="auto" falls back to the CPU with a logged warning,
and writes samples, reconstructions and likelihoods to OUT.npy so that the caller
can compare them with the CPU build's (tests/test_cuda_wheel.py). Exits non-zero on any failure.
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import onnxruntime as ort

from edgevae.runtime import VAE, DeviceError


def main() -> int:
    assert ort.get_device() == "GPU" or "CUDAExecutionProvider" in ort.get_available_providers(), (
        f"not the GPU wheel: providers {ort.get_available_providers()}"
    )
    print("onnxruntime", ort.__version__, "providers", ort.get_available_providers())
    try:
        VAE(device="cuda")
    except DeviceError as exc:
        print("device='cuda' -> DeviceError:", str(exc)[:200])
    else:
        print("device='cuda' did not raise although no GPU is here")
        return 1
    started = []
    real_session = ort.InferenceSession
    ort.InferenceSession = lambda *a, **k: started.append(k.get("providers")) or real_session(*a, **k)  # type: ignore
    try:
        VAE(device="cuda", variant="ort")
    except DeviceError as exc:
        print("device='cuda' variant='ort' -> DeviceError:", str(exc)[:200], "sessions started:", len(started))
        if started or "is not for device 'cuda'" not in str(exc):
            return 1
    else:
        print("variant 'ort' started on CUDA")
        return 1
    finally:
        ort.InferenceSession = real_session  # type: ignore[misc]
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("edgevae").addHandler(handler)
    logging.getLogger("edgevae").setLevel(logging.WARNING)
    vae = VAE(device="auto")
    warned = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    print("device='auto' ->", vae.device, vae.providers, "warnings:", warned[:2])
    if vae.device != "cpu" or not any("CUDA provider failed to load" in w for w in warned):
        return 1
    real = np.load("export/fixtures/mnist_test_256.npy")[:32]
    out = np.concatenate(
        [
            vae.sample(32, seed=0).reshape(32, -1),
            vae.reconstruct(real).reshape(32, -1),
            vae.log_likelihood(real, k=8, seed=0)[:, None].repeat(784, axis=1),
        ]
    ).astype(np.float64)
    np.save(sys.argv[1], out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
