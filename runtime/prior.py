"""A model's learned prior p(z): the mixture in prior.bin, for models trained with `--prior vamp`.

    p(z) = (1/K) sum_k N(z; mean_k, diag(exp(logvar_k)))

The VampPrior (Tomczak & Welling 2018) is this mixture with the encoder's posteriors at K learned
pseudo-inputs as components; export computes them once and writes them to prior.bin, listed in the
manifest with its sha256 like every file: K x latent means, then K x latent log-variances, little-
endian float32, row after row (K and latent are the manifest config's prior_components and latent).
A model without the file has the standard normal prior, and this module is not used.

A draw: component k = floor(u * K) for a uniform u in [0, 1), then z = mean_k + exp(logvar_k / 2) * eps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import contract
from .errors import ModelError

LAYOUT = "means (K, latent) then log-variances (K, latent), float32 little-endian, rows in order"


@dataclass(frozen=True)
class MixturePrior:
    """The mixture's components: means and log-variances, (K, latent) float32 each."""

    means: np.ndarray
    logvars: np.ndarray

    @property
    def components(self) -> int:
        return len(self.means)

    @classmethod
    def from_bytes(cls, blob: bytes, components: int, latent: int, name: str = contract.PRIOR_FILE) -> MixturePrior:
        """The mixture in `blob`, or a ModelError naming what was expected and what arrived."""
        want = 2 * components * latent * 4
        if len(blob) != want:
            raise ModelError(
                f"corrupt {name}: {len(blob):,} bytes, expected {want:,} ({components} components x {latent} "
                f"latents x 2 arrays x 4 bytes; {LAYOUT})"
            )
        values = np.frombuffer(blob, dtype="<f4").astype(np.float32).reshape(2, components, latent)
        if not np.isfinite(values).all():
            raise ModelError(f"corrupt {name}: it holds values that are not finite")
        return cls(values[0], values[1])

    def to_bytes(self) -> bytes:
        """prior.bin's bytes (LAYOUT)."""
        return np.concatenate([self.means.ravel(), self.logvars.ravel()]).astype("<f4").tobytes()

    def log_density(self, z: np.ndarray) -> np.ndarray:
        """log p(z) summed over the latent axis, float64, for z (..., latent). The squared distances
        come from matrix products: z^2 . (1/v) - 2 z . (m/v) + sum m^2/v, so no (rows, K, latent) array."""
        flat = np.asarray(z, np.float64).reshape(-1, z.shape[-1])
        mean, logvar = self.means.astype(np.float64), self.logvars.astype(np.float64)
        inv = np.exp(-logvar)
        square = flat**2 @ inv.T - 2 * flat @ (mean * inv).T + (mean**2 * inv).sum(axis=1)
        log_comp = -0.5 * (square + logvar.sum(axis=1) + z.shape[-1] * math.log(2 * math.pi))
        top = log_comp.max(axis=1, keepdims=True)
        total = top[:, 0] + np.log(np.exp(log_comp - top).sum(axis=1)) - math.log(self.components)
        return total.reshape(z.shape[:-1])

    def draw(self, eps: np.ndarray, u: np.ndarray) -> np.ndarray:
        """z (N, latent) float32 from standard normal eps (N, latent) and uniforms u (N,) in [0, 1)."""
        k = np.minimum((np.asarray(u, np.float64) * self.components).astype(np.int64), self.components - 1)
        return (self.means[k] + np.exp(np.float32(0.5) * self.logvars[k]) * eps).astype(np.float32)


def prior_of(config: dict, extras: dict[str, bytes], folder: object) -> MixturePrior | None:
    """The model's learned prior, or None for the standard normal (no `prior` in its config)."""
    kind = config.get("prior", "standard")
    if kind == "standard":
        return None
    if kind != "vamp":
        raise ModelError(f"model in {folder} has prior {kind!r}; this runtime knows standard and vamp")
    if contract.PRIOR_FILE not in extras:
        raise ModelError(
            f"model in {folder} was trained with a learned prior but its manifest lists no "
            f"{contract.PRIOR_FILE}; re-export it with this version: make export"
        )
    return MixturePrior.from_bytes(extras[contract.PRIOR_FILE], int(config["prior_components"]), int(config["latent"]))
