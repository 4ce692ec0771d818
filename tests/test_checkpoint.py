"""Checkpoints: round trip, literal weights_only loads, atomic writes, corrupt files named."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import need

need("torch")

import torch

from edgevae.runtime.atomic import open_atomic
from edgevae.train import checkpoint
from edgevae.train.checkpoint import CheckpointError
from edgevae.train.config import TrainConfig, VAEConfig
from edgevae.train.model import build_models

CONFIG = TrainConfig(model=VAEConfig(hidden=32, latent=5))


def save_pair(folder: Path, seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    encoder, decoder = build_models(CONFIG.model, seed=seed)
    checkpoint.save_module(folder / "encoder.pt", "encoder", encoder, CONFIG, epoch=3)
    checkpoint.save_module(folder / "decoder.pt", "decoder", decoder, CONFIG, epoch=3)
    return encoder, decoder


def test_round_trip_rebuilds_identical_outputs(tmp_path: Path) -> None:
    encoder, decoder = save_pair(tmp_path)
    loaded_enc, loaded_dec = checkpoint.load_pair(tmp_path)
    x, z = torch.rand(9, 784), torch.randn(9, 5)
    with torch.no_grad():
        for a, b in zip(encoder(x), loaded_enc(x), strict=True):
            assert torch.equal(a, b)
        assert torch.equal(decoder(z), loaded_dec(z))
    assert loaded_enc.config == CONFIG.model


def test_files_load_with_literal_weights_only(tmp_path: Path) -> None:
    save_pair(tmp_path)
    for kind in ("encoder", "decoder"):
        obj = torch.load(tmp_path / f"{kind}.pt", weights_only=True)
        assert obj["kind"] == kind and obj["epoch"] == 3
        assert VAEConfig.from_dict(obj["config"]) == CONFIG.model
        assert TrainConfig.from_dict(obj["train_config"]) == CONFIG


def test_released_checkpoints_load_with_literal_weights_only() -> None:
    from conftest import RELEASED_CHECKPOINTS

    for kind in ("encoder", "decoder"):
        obj = torch.load(RELEASED_CHECKPOINTS / f"{kind}.pt", weights_only=True)
        assert VAEConfig.from_dict(obj["config"]) == VAEConfig()  # the textbook sizes, bernoulli


def test_missing_checkpoint_is_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=f"checkpoint {tmp_path / 'encoder.pt'} not found"):
        checkpoint.load_pair(tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_checkpoint_is_named(tmp_path: Path, damage: str) -> None:
    save_pair(tmp_path)
    path = tmp_path / "decoder.pt"
    blob = path.read_bytes()
    path.write_bytes({"truncate": blob[: len(blob) // 2], "garbage": b"not a checkpoint" * 10, "empty": b""}[damage])
    with pytest.raises(CheckpointError, match=f"corrupt checkpoint {path}"):
        checkpoint.load_pair(tmp_path)


def test_swapped_files_are_caught(tmp_path: Path) -> None:
    save_pair(tmp_path)
    (tmp_path / "encoder.pt").replace(tmp_path / "x.pt")
    (tmp_path / "decoder.pt").replace(tmp_path / "encoder.pt")
    with pytest.raises(CheckpointError, match="holds a 'decoder' checkpoint, expected 'encoder'"):
        checkpoint.load_pair(tmp_path)


def test_mismatched_pair_is_caught(tmp_path: Path) -> None:
    save_pair(tmp_path)
    other = TrainConfig(model=VAEConfig(hidden=32, latent=6))
    _, decoder = build_models(other.model, seed=0)
    checkpoint.save_module(tmp_path / "decoder.pt", "decoder", decoder, other, epoch=1)
    with pytest.raises(CheckpointError, match="different configs"):
        checkpoint.load_pair(tmp_path)


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    save_pair(tmp_path)
    before = (tmp_path / "encoder.pt").read_bytes()

    with pytest.raises(KeyboardInterrupt), open_atomic(tmp_path / "encoder.pt") as f:
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt
    assert (tmp_path / "encoder.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["decoder.pt", "encoder.pt"]
