"""edgevae.runtime: run an exported edgevae model with numpy and onnxruntime only (no torch).

    from edgevae.runtime import VAE
    vae = VAE(device="auto")
    images = vae.sample(64, seed=0)

See `VAE` for encode / decode / reconstruct / interpolate, and `edgevae --help` for the CLI.
"""
from .errors import DeviceError, ModelError
from .vae import VAE

__all__ = ["VAE", "ModelError", "DeviceError"]
