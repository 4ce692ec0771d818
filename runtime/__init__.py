"""edgevae.runtime: run an exported edgevae model with numpy and onnxruntime only (no torch).

    from edgevae.runtime import VAE
    vae = VAE(device="auto")
    images = vae.sample(64, seed=0)

See `VAE` for encode / decode / reconstruct / interpolate, and `edgevae --help` for the CLI.
`VAE` is imported on first use, so `edgevae.runtime.errors` and `edgevae.runtime.devices` (which
the training and export stages share) do not load onnxruntime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import DeviceError, EdgeVAEError, InputError, ModelError

if TYPE_CHECKING:
    from .vae import VAE

__version__ = "0.1.0"  # tests/test_cli.py checks it against pyproject.toml
__all__ = ["VAE", "EdgeVAEError", "ModelError", "DeviceError", "InputError", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "VAE":
        from .vae import VAE

        return VAE
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
