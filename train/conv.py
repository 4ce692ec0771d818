"""The convolutional VAE (`--block conv`): strided Conv2d down, ConvTranspose2d up.

encoder: x (N, H*W*C) -> (N, C, H, W) -> Conv3x3 -> `layers` x [Conv4x4 stride 2, ReLU] -> Linear -> mu, logvar
decoder: z -> Linear -> (N, C', H/2**layers, W/2**layers) -> `layers` x [ConvTranspose4x4 stride 2, ReLU]
         -> Conv3x3 -> (N, H*W*C*params) logits (params = 2 for the discretized logistic: location, log scale)
Images cross the module boundary as flat rows in channels-last order (runtime/contract.py), so the
training loop, the likelihoods and the exported graphs treat conv and MLP models alike. Channels
double per stage from `hidden`, up to 4 * hidden. H and W must halve evenly `layers` times
(`config.check_conv_shape` names the nearest valid sizes otherwise).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .config import VAEConfig


def stage_channels(config: VAEConfig) -> list[int]:
    """Channels after the stem and after each stride-2 stage: hidden, 2 hidden, ... capped at 4 hidden."""
    return [config.hidden * min(2**i, 4) for i in range(config.layers + 1)]


def bottom_shape(config: VAEConfig) -> tuple[int, int, int]:
    """(channels, height, width) of the smallest feature map."""
    h, w = config.image_shape
    step = 2**config.layers
    return stage_channels(config)[-1], h // step, w // step


def to_nchw(x: Tensor, config: VAEConfig) -> Tensor:
    """Flat channels-last rows (N, H*W*C) -> (N, C, H, W)."""
    h, w = config.image_shape
    return x.reshape(-1, h, w, config.channels).permute(0, 3, 1, 2)


def to_rows(y: Tensor, values: int) -> Tensor:
    """(N, C, H, W) -> flat channels-last rows (N, H*W*C = values)."""
    return y.permute(0, 2, 3, 1).reshape(-1, values)


class ConvEncoder(nn.Module):
    """q(z|x) for images: a diagonal Gaussian with mean `mu` and log-variance `logvar`."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        chans = stage_channels(config)
        self.stem = nn.Conv2d(config.channels, chans[0], 3, padding=1)
        pairs = zip(chans[:-1], chans[1:], strict=True)
        self.down = nn.ModuleList(nn.Conv2d(a, b, 4, stride=2, padding=1) for a, b in pairs)
        c, h, w = bottom_shape(config)
        self.mu = nn.Linear(c * h * w, config.latent)
        self.logvar = nn.Linear(c * h * w, config.latent)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = F.relu(self.stem(to_nchw(x, self.config)))
        for conv in self.down:
            h = F.relu(conv(h))
        h = h.reshape(-1, self.mu.in_features)
        mu, logvar = self.mu(h), self.logvar(h)
        if x.dim() > 2:  # (k, N, pixels) rows: keep the leading axes
            mu, logvar = mu.reshape(*x.shape[:-1], -1), logvar.reshape(*x.shape[:-1], -1)
        return mu, logvar


class ConvDecoder(nn.Module):
    """p(x|z) for images: logits (N, H*W*C), or (N, 2*H*W*C) location logits then log scales."""

    def __init__(self, config: VAEConfig, params: int) -> None:
        super().__init__()
        self.config = config
        self.params = params
        chans = stage_channels(config)
        c, h, w = bottom_shape(config)
        self.bottom = (c, h, w)
        self.fc = nn.Linear(config.latent, c * h * w)
        pairs = reversed(list(zip(chans[:-1], chans[1:], strict=True)))
        self.up = nn.ModuleList(nn.ConvTranspose2d(b, a, 4, stride=2, padding=1) for a, b in pairs)
        self.head = nn.Conv2d(chans[0], config.channels * params, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        lead = z.shape[:-1] if z.dim() > 2 else None  # (k, N, latent): decoded as k * N rows, then reshaped
        h = F.relu(self.fc(z if lead is None else z.reshape(-1, z.shape[-1]))).reshape(-1, *self.bottom)
        for deconv in self.up:
            h = F.relu(deconv(h))
        out = self.head(h)
        c = self.config.channels
        d = self.config.input_dim
        flat = torch.cat([to_rows(out[:, i * c : (i + 1) * c], d) for i in range(self.params)], dim=-1)
        return flat if lead is None else flat.reshape(*lead, -1)
