"""Export your own PyTorch VAE: any encoder/decoder pair of nn.Modules, through the same gates.

    from edgevae.export import export_pair
    export_pair(encoder, decoder, "my_model", image_shape=(32, 32), channels=3, latent=16,
                likelihood="discretized_logistic", example_images=train_images[:2000])
    # then: VAE("my_model"), edgevae sample --model my_model, edgevae selftest --model my_model

The contract the modules must meet (checked before anything is written; a module that breaks it is
refused with one line naming the rule):
  encoder(x) -> (mu, logvar): x is (N, C, H, W) float32 in [0, 1]; mu and logvar are (N, latent).
  decoder(z) -> logits (N, C, H, W) for bernoulli and gaussian (pixel means = sigmoid(logits)),
                or (logits, log_scale), both (N, C, H, W), for discretized_logistic (location =
                sigmoid(logits), scale = exp(log_scale); log scales below -7 are raised to -7).
  Both deterministic (noise is the graph input eps, z = mu + exp(logvar / 2) * eps is formed around
  the encoder), each image's outputs depend on that image alone, and no data-dependent Python
  control flow (the graphs are traced once).
The pair then goes through edgevae's own gates: noise as an input, parity against PyTorch on
random and example images, golden vectors, variants with their cost, score statistics from
`example_images` (your training images), and the sha256 manifest.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from edgevae.runtime import contract

from .convert import ExportError, export_traced, trace_pair

MIN_EXAMPLES = 20  # the score statistics need 10 held-out images and 10 to fit


class ContractError(ExportError):
    """An encoder or decoder cannot meet the graph contract (which rule, and what was found)."""


@dataclass(frozen=True)
class PairConfig:
    """What the manifest and the runtime need to know about a pair that edgevae did not train."""

    image_shape: tuple[int, int]
    channels: int
    latent: int
    likelihood: str

    @property
    def input_dim(self) -> int:
        return self.image_shape[0] * self.image_shape[1] * self.channels

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_shape": list(self.image_shape),
            "channels": self.channels,
            "latent": self.latent,
            "likelihood": self.likelihood,
            "source": "export_pair",
        }


class PairEncoder(nn.Module):
    """Flat channels-last rows (N, H*W*C) -> the user's encoder on (N, C, H, W) -> (mu, logvar)."""

    def __init__(self, encoder: nn.Module, config: PairConfig) -> None:
        super().__init__()
        self.inner, self.config = encoder, config

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h, w = self.config.image_shape
        out = self.inner(x.reshape(-1, h, w, self.config.channels).permute(0, 3, 1, 2))
        return out[0], out[1]


class PairDecoder(nn.Module):
    """z -> the user's decoder -> flat channels-last rows: logits, or logits then log scales."""

    def __init__(self, decoder: nn.Module, config: PairConfig) -> None:
        super().__init__()
        self.inner, self.config = decoder, config

    def forward(self, z: Tensor) -> Tensor:
        out = self.inner(z)
        parts = out if isinstance(out, (tuple, list)) else (out,)
        rows = [p.permute(0, 2, 3, 1).reshape(-1, self.config.input_dim) for p in parts]
        return rows[0] if len(rows) == 1 else torch.cat(rows, dim=-1)


def refuse(rule: str, found: str) -> ContractError:
    return ContractError(f"refused: breaks the contract rule '{rule}': {found} (nothing was written)")


def as_rows(images: Any, config: PairConfig) -> np.ndarray:
    """example_images -> uint8 rows (N, H*W*C): (N, H, W[, C]) uint8 or float in [0, 1]."""
    from edgevae.train.data import DataError
    from edgevae.train.imagedata import convert_channels, to_levels

    arr = np.asarray(images)
    h, w = config.image_shape
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[1:3] != (h, w) or arr.shape[3] not in (1, 3, 4):
        raise ValueError(f"example_images: expected (N, {h}, {w}) or (N, {h}, {w}, C); got shape {arr.shape}")
    if len(arr) < MIN_EXAMPLES:
        raise ValueError(f"example_images: give at least {MIN_EXAMPLES} of your training images; got {len(arr)}")
    try:
        levels = to_levels(arr, Path("example_images"))
    except DataError as exc:
        raise ValueError(str(exc)) from exc
    return convert_channels(levels, config.channels).reshape(len(arr), -1)


def shape_of(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"a tensor {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"{len(value)} outputs ({', '.join(shape_of(v) for v in value)})"
    return type(value).__name__


@torch.no_grad()
def check_contract(encoder: nn.Module, decoder: nn.Module, config: PairConfig, rows: np.ndarray) -> None:
    """ContractError for the first rule the pair breaks, checked by running it on example images."""
    c, (h, w) = config.channels, config.image_shape
    x = torch.from_numpy(rows[:3].astype(np.float32) / 255.0).reshape(-1, h, w, c).permute(0, 3, 1, 2)
    out = encoder(x)
    if not (isinstance(out, (tuple, list)) and len(out) == 2 and all(isinstance(t, Tensor) for t in out)):
        raise refuse("the encoder returns (mu, logvar)", f"it returned {shape_of(out)}")
    if any(tuple(t.shape) != (3, config.latent) for t in out):
        raise refuse(f"mu and logvar are (N, latent) = (N, {config.latent})", f"got {shape_of(out)} for N = 3")
    scaled = config.likelihood in contract.SCALED_LIKELIHOODS
    want = f"(logits, log_scale), each (N, {c}, {h}, {w})" if scaled else f"logits (N, {c}, {h}, {w})"
    dec = decoder(out[0])
    parts = dec if isinstance(dec, (tuple, list)) else (dec,)
    if len(parts) != (2 if scaled else 1) or any(
        not isinstance(p, Tensor) or tuple(p.shape) != (3, c, h, w) for p in parts
    ):
        raise refuse(f"the decoder returns {want} for {config.likelihood}", f"it returned {shape_of(dec)} for N = 3")
    again = encoder(x), decoder(out[0])
    same = all(torch.equal(a, b) for a, b in zip(out, again[0], strict=True)) and all(
        torch.equal(a, b) for a, b in zip(parts, again[1] if scaled else (again[1],), strict=True)
    )
    if not same:
        raise refuse(
            "deterministic modules (noise is the graph input eps)",
            "two runs on the same input differ: random ops inside (dropout or batch norm in training mode, "
            "torch.rand*); call .eval() or draw the noise outside",
        )
    alone = encoder(x[:1])[0]
    if not torch.allclose(alone, out[0][:1], atol=1e-5, rtol=1e-4):
        raise refuse("each image's outputs depend on that image alone", "mu of image 0 changes with its batch")


def module_sha256(module: nn.Module) -> str:
    """sha256 of a module's parameters and buffers (names, dtypes, shapes, bytes): the 'source' of its graph."""
    digest = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        t = value.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return digest.hexdigest()


def export_pair(
    encoder: nn.Module,
    decoder: nn.Module,
    out_dir: str | os.PathLike[str],
    *,
    image_shape: tuple[int, int],
    channels: int,
    latent: int,
    likelihood: str = "bernoulli",
    example_images: Any,
    opset: int = contract.OPSET,
    devices: tuple[str, ...] = ("cpu",),
) -> list[Path]:
    """Export any encoder/decoder pair that meets the contract (module docstring) into `out_dir`, a
    folder `VAE(out_dir)` and `edgevae ... --model out_dir` run. example_images: at least 20 of
    your training images, (N, H, W[, C]) uint8 or float in [0, 1]; export validates on them and fits
    the unusual-input score's statistics to them. Returns the paths written. A pair that breaks the
    contract raises ContractError (and a failed gate ValidationError) before anything is written."""
    for role, module in (("encoder", encoder), ("decoder", decoder)):
        if not isinstance(module, nn.Module):
            raise refuse(f"the {role} is a torch.nn.Module", f"got {type(module).__name__}")
    if likelihood not in contract.LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {contract.LIKELIHOODS}; got {likelihood!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB); got {channels!r}")
    if not (isinstance(latent, int) and latent > 0):
        raise ValueError(f"latent must be a positive int; got {latent!r}")
    h, w = (int(s) for s in image_shape)
    config = PairConfig((h, w), channels, latent, likelihood)
    rows = as_rows(example_images, config)
    encoder, decoder = encoder.eval().cpu(), decoder.eval().cpu()
    check_contract(encoder, decoder, config, rows)
    enc, dec = PairEncoder(encoder, config), PairDecoder(decoder, config)
    sha = {"encoder": module_sha256(encoder), "decoder": module_sha256(decoder)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", torch.jit.TracerWarning)
        graphs = trace_pair(enc, dec, sha, opset)
    traced = [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    if traced:
        raise refuse(
            "no data-dependent control flow (the graph is traced once)",
            f"tracing warned: {str(traced[0].message).splitlines()[0]}",
        )
    source = f"{len(rows)} example images given to export_pair"
    paths, _ = export_traced(enc, dec, graphs, sha, out_dir, opset, devices, rows, rows, source)
    return paths
