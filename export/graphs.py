"""Thin modules that fix the exported signatures to the contract.

EncoderGraph: (x, eps) -> (mu, logvar, z)   the noise is an input, so the graph is deterministic
DecoderGraph: z -> (mean, logits)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from edgevae.train.model import Decoder, Encoder, reparameterize


class EncoderGraph(nn.Module):
    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: Tensor, eps: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.encoder(x)
        return mu, logvar, reparameterize(mu, logvar, eps)


class DecoderGraph(nn.Module):
    def __init__(self, decoder: Decoder) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.decoder(z)
        return torch.sigmoid(logits), logits
