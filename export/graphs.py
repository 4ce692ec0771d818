"""Thin modules that fix the exported signatures to the contract.

EncoderGraph: (x, eps) -> (mu, logvar, z)   the noise is an input, so the graph is deterministic
DecoderGraph: z -> (mean, logits)           or (mean, logits, log_scale) for the discretized logistic
The wrapped encoder maps flat channels-last rows x (N, H*W*C) to (mu, logvar); the wrapped decoder
maps z to logits (N, H*W*C), or location logits then log scales (N, 2*H*W*C) (edgevae.train.model).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from edgevae.train.model import reparameterize, split_output


class EncoderGraph(nn.Module):
    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: Tensor, eps: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.encoder(x)
        return mu, logvar, reparameterize(mu, logvar, eps)


class DecoderGraph(nn.Module):
    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder
        self.pixels = int(decoder.config.input_dim)
        self.likelihood = str(decoder.config.likelihood)

    def forward(self, z: Tensor) -> tuple[Tensor, ...]:
        logits, log_scale = split_output(self.decoder(z), self.pixels, self.likelihood)
        if log_scale is None:
            return torch.sigmoid(logits), logits
        return torch.sigmoid(logits), logits, log_scale
