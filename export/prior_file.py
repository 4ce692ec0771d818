"""prior.bin for a model trained with a learned prior (`--prior vamp`), checked against PyTorch.

The VampPrior's components are the encoder's posteriors at its pseudo-inputs (train/prior.py); they
are computed here once, in float32, and written as runtime/prior.py's layout. Before anything is
written, the runtime's reading of the file is compared with PyTorch on seeded latents: log p(z)
within PRIOR_NATS and the draws z = mean_k + sigma_k * eps within PRIOR_DRAW (PriorError otherwise,
with the max difference). Called by export (convert.py) for such models; the file is listed in the
manifest with its sha256 like every other.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgevae.runtime.prior import MixturePrior
from edgevae.train.prior import log_prior, sample_prior, vamp_components

from .validate import ValidationError

PRIOR_NATS = 1e-3  # max |runtime - PyTorch| of log p(z), nats (float64 both; float32 components)
PRIOR_DRAW = 1e-5  # max |runtime - PyTorch| of a drawn latent


class PriorError(ValidationError):
    """The runtime's reading of prior.bin differs from PyTorch's prior."""


def prior_mixture(encoder: nn.Module) -> MixturePrior:
    """The components of the encoder's VampPrior: its posteriors at the pseudo-inputs, float32."""
    with torch.no_grad():
        means, logvars = vamp_components(encoder)
    return MixturePrior(means.cpu().numpy().astype(np.float32), logvars.cpu().numpy().astype(np.float32))


def check_prior(encoder: nn.Module, blob: bytes, rows: int = 256) -> dict[str, float]:
    """Read `blob` as the runtime does and compare it with PyTorch on `rows` seeded latents and draws;
    returns the max differences, or raises PriorError."""
    config = encoder.config
    mixture = MixturePrior.from_bytes(blob, config.prior_components, config.latent)
    gen = torch.Generator().manual_seed(0)
    z = 2 * torch.randn(rows, config.latent, generator=gen, dtype=torch.float64)
    eps = torch.randn(rows, config.latent, generator=gen)
    u = torch.rand(rows, generator=gen, dtype=torch.float64)  # float64, as the runtime's COMPONENT draws
    with torch.no_grad():
        want_log_p = log_prior(encoder, z).numpy()
        want_z = sample_prior(encoder, eps, u).numpy()
    found = {
        "log_prior_nats": float(np.abs(mixture.log_density(z.numpy()) - want_log_p).max()),
        "draw": float(np.abs(mixture.draw(eps.numpy(), u.numpy()) - want_z).max()),
    }
    if found["log_prior_nats"] > PRIOR_NATS or found["draw"] > PRIOR_DRAW:
        raise PriorError(
            f"prior.bin read by the runtime differs from PyTorch: log p(z) by {found['log_prior_nats']:.3g} nats "
            f"(tolerance {PRIOR_NATS:g}), draws by {found['draw']:.3g} (tolerance {PRIOR_DRAW:g})"
        )
    return found


def prior_extra(encoder: nn.Module) -> tuple[bytes, dict[str, float]] | None:
    """(prior.bin's bytes, the checked differences) for a model with a learned prior; None for N(0, I)."""
    if getattr(encoder.config, "prior", "standard") == "standard":
        return None
    blob = prior_mixture(encoder).to_bytes()
    return blob, check_prior(encoder, blob)
