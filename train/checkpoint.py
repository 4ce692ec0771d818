"""The only place that saves and loads checkpoints.

Files (all plain dicts of tensors and Python types, so a literal
`torch.load(path, weights_only=True)` reads them):
  encoder.pt / decoder.pt   {"format", "version", "kind", "config", "train_config", "epoch", "state_dict"}
  train_state.pt            resume state: both state dicts, optimizer, epoch, metrics history
Every write is atomic (temporary file, fsync, rename); every load is weights_only and reports a
missing or corrupt file by name.
"""
from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgevae.runtime.atomic import write_bytes_atomic

from .config import TrainConfig, VAEConfig
from .model import Decoder, Encoder

FORMAT = "edgevae-checkpoint"
VERSION = 1
ENCODER_FILE = "encoder.pt"
DECODER_FILE = "decoder.pt"
STATE_FILE = "train_state.pt"
KINDS = {"encoder": Encoder, "decoder": Decoder}


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or not what the caller asked for."""


def serialize(obj: Any) -> bytes:
    """torch.save into memory (so the file write itself can be atomic)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def cpu_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the module's parameters and buffers."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def save_module(path: str | os.PathLike[str], kind: str, module: nn.Module, train_config: TrainConfig,
                epoch: int) -> None:
    """Write one encoder or decoder checkpoint atomically."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "config": module.config.to_dict(),
        "train_config": train_config.to_dict(),
        "epoch": int(epoch),
        "state_dict": cpu_state_dict(module),
    }
    write_bytes_atomic(path, serialize(payload))


def read_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """torch.load(weights_only=True) with missing and corrupt files named as such."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError, OSError) as exc:
        raise CheckpointError(f"corrupt checkpoint {path}: {type(exc).__name__}: {str(exc)[:200]}") from exc
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an edgevae checkpoint (no format={FORMAT!r} field)")
    if obj.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {obj.get('version')}, this code reads {VERSION}")
    return obj


def load_module(path: str | os.PathLike[str], kind: str) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild an Encoder or Decoder from its checkpoint; returns (module in eval mode, payload)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    obj = read_file(path)
    if obj.get("kind") != kind:
        raise CheckpointError(f"{path} holds a {obj.get('kind')!r} checkpoint, expected {kind!r}")
    try:
        config = VAEConfig.from_dict(obj["config"])
        module = KINDS[kind](config)
        module.load_state_dict(obj["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"corrupt checkpoint {path}: cannot rebuild the {kind}: {exc}") from exc
    return module.eval(), obj


def load_pair(folder: str | os.PathLike[str]) -> tuple[Encoder, Decoder]:
    """Encoder and decoder from FOLDER/encoder.pt and FOLDER/decoder.pt, checked to match."""
    folder = Path(folder)
    encoder, enc = load_module(folder / ENCODER_FILE, "encoder")
    decoder, dec = load_module(folder / DECODER_FILE, "decoder")
    if enc["config"] != dec["config"]:
        raise CheckpointError(f"encoder and decoder in {folder} have different configs: "
                              f"{enc['config']} vs {dec['config']}")
    return encoder, decoder  # type: ignore[return-value]


def save_train_state(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write the resume state atomically."""
    write_bytes_atomic(path, serialize({"format": FORMAT, "version": VERSION, "kind": "train_state", **state}))


def load_train_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the resume state written by `save_train_state`."""
    obj = read_file(path)
    if obj.get("kind") != "train_state":
        raise CheckpointError(f"{path} is not a training state file")
    return obj
