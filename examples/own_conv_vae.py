"""Your own VAE, exported by edgevae: a small convolutional VAE written in plain PyTorch (no
edgevae.train), trained for a few epochs on coloured discs drawn here, then put through
`edgevae.export.export_pair` (parity gate, golden vectors, variants with their cost, score
statistics, manifest) and run by the numpy + onnxruntime runtime.

    python examples/own_conv_vae.py --out my_vae            # about a minute on 2 CPU cores
    edgevae sample --model my_vae -n 16 -o samples.png      # the exported folder works everywhere
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

SIDE, CHANNELS, LATENT = 16, 3, 8


def draw_discs(n: int, seed: int) -> np.ndarray:
    """n pictures (n, 16, 16, 3) uint8: a coloured disc of random place and size on a plain background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIDE, :SIDE]
    out = np.empty((n, SIDE, SIDE, CHANNELS), np.uint8)
    for i in range(n):
        out[i] = rng.integers(0, 256, 3)
        cy, cx = rng.integers(4, SIDE - 4, 2)
        r = rng.integers(2, 6)
        out[i][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = rng.integers(0, 256, 3)
    return out


class Encoder(nn.Module):
    """x (N, 3, 16, 16) in [0, 1] -> (mu, logvar), each (N, LATENT): the contract's encoder."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(CHANNELS, 16, 4, stride=2, padding=1)  # 16 -> 8
        self.conv2 = nn.Conv2d(16, 32, 4, stride=2, padding=1)  # 8 -> 4
        self.head = nn.Linear(32 * 4 * 4, 2 * LATENT)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.conv2(F.relu(self.conv1(x))))
        mu, logvar = self.head(h.flatten(1)).chunk(2, dim=1)
        return mu, logvar


class Decoder(nn.Module):
    """z (N, LATENT) -> logits (N, 3, 16, 16): pixel means are their sigmoid (gaussian likelihood)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(LATENT, 32 * 4 * 4)
        self.up1 = nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1)  # 4 -> 8
        self.up2 = nn.ConvTranspose2d(16, CHANNELS, 4, stride=2, padding=1)  # 8 -> 16

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc(z)).view(-1, 32, 4, 4)
        return self.up2(F.relu(self.up1(h)))


def train(images: np.ndarray, epochs: int, seed: int) -> tuple[Encoder, Decoder]:
    """The ELBO with a gaussian p(x|z) of variance 1/2 (summed squared error), Adam, batch 32."""
    torch.manual_seed(seed)
    encoder, decoder = Encoder(), Decoder()
    opt = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=2e-3)
    x_all = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    for epoch in range(epochs):
        total = 0.0
        for idx in torch.randperm(len(x_all)).split(32):
            x = x_all[idx]
            mu, logvar = encoder(x)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            rec = ((torch.sigmoid(decoder(z)) - x) ** 2).flatten(1).sum(1)
            kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
            loss = (rec + kl).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        print(f"epoch {epoch + 1}/{epochs}: loss {total / len(x_all):.2f} (per image, nats up to a constant)")
    return encoder.eval(), decoder.eval()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="my_vae", help="model folder to write (default: my_vae)")
    p.add_argument("--images", type=int, default=2000, help="training pictures to draw (default: 2000)")
    p.add_argument("--epochs", type=int, default=5, help="training epochs (default: 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu", help="runtime device (default: cpu)")
    args = p.parse_args(argv)

    from edgevae.export import export_pair
    from edgevae.runtime import VAE

    images = draw_discs(args.images, args.seed)
    encoder, decoder = train(images, args.epochs, args.seed)
    export_pair(
        encoder,
        decoder,
        args.out,
        image_shape=(SIDE, SIDE),
        channels=CHANNELS,
        latent=LATENT,
        likelihood="gaussian",
        example_images=images[:500],
    )
    vae = VAE(args.out, device=args.device)
    held_out = draw_discs(64, args.seed + 1)
    shuffled = held_out.reshape(64, -1, CHANNELS)[:, np.random.default_rng(0).permutation(SIDE * SIDE)]
    normal, odd = vae.score(held_out).score, vae.score(shuffled.reshape(held_out.shape)).score
    print(
        f"exported to {args.out}: samples {vae.sample(4, seed=0).shape}, "
        f"reconstruction error {float(np.abs(vae.reconstruct(held_out) - held_out / 255.0).mean()):.3f}"
    )
    print(
        f"unusual-input score: held-out pictures median {np.median(normal):.2f}, "
        f"pixel-shuffled pictures median {np.median(odd):.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
