"""Checkpoints (format 2): round trip, any safetensors reader and `sha256sum -c` read them, the
resume state keeps the optimizer exactly, no pickle is touched, atomic writes, corrupt files named."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import need

need("torch")

import torch

from edgevae.runtime.atomic import open_atomic
from edgevae.train import checkpoint
from edgevae.train.checkpoint import CheckpointError
from edgevae.train.config import PRESETS, TrainConfig, VAEConfig, stages
from edgevae.train.model import build_models

from conftest import RELEASED_CHECKPOINTS

CONFIG = TrainConfig(model=VAEConfig(hidden=32, latent=5))
ENC, DEC = checkpoint.ENCODER_FILE, checkpoint.DECODER_FILE


def save_pair(folder: Path, seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    encoder, decoder = build_models(CONFIG.model, seed=seed)
    checkpoint.save_module(folder / ENC, "encoder", encoder, CONFIG, epoch=3)
    checkpoint.save_module(folder / DEC, "decoder", decoder, CONFIG, epoch=3)
    return encoder, decoder


def trained_state(seed: int = 0) -> tuple[dict, torch.nn.Module, torch.nn.Module, torch.optim.Optimizer]:
    """A resume state after two Adam steps, as loop.save_epoch builds it."""
    encoder, decoder = build_models(CONFIG.model, seed=seed)
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=1e-3)
    for _ in range(2):
        mu, logvar = encoder(torch.rand(4, 784))
        (decoder(mu).sum() + logvar.sum()).backward()
        optimizer.step()
    state = {
        "epoch": 2,
        "train_config": CONFIG.to_dict(),
        "encoder": checkpoint.cpu_state_dict(encoder),
        "decoder": checkpoint.cpu_state_dict(decoder),
        "optimizer": optimizer.state_dict(),
        "history": [{"epoch": 1, "train_loss": 543.25, "test_elbo": float("-inf")}],
        "run": "r1",
    }
    return state, encoder, decoder, optimizer


def test_round_trip_rebuilds_identical_outputs(tmp_path: Path) -> None:
    encoder, decoder = save_pair(tmp_path)
    loaded_enc, loaded_dec = checkpoint.load_pair(tmp_path)
    x, z = torch.rand(9, 784), torch.randn(9, 5)
    with torch.no_grad():
        for a, b in zip(encoder(x), loaded_enc(x), strict=True):
            assert torch.equal(a, b)
        assert torch.equal(decoder(z), loaded_dec(z))
    assert loaded_enc.config == CONFIG.model


@pytest.mark.parametrize("folder", ["fresh", "released"])
def test_any_safetensors_reader_opens_the_files_and_sha256sum_checks_them(tmp_path: Path, folder: str) -> None:
    from safetensors import safe_open

    if folder == "fresh":
        save_pair(tmp_path)
        where, epoch, model = tmp_path, 3, CONFIG.model
    else:
        last = PRESETS[stages("default")[-1]]  # the released pair is its last stage's run
        where, epoch, model = RELEASED_CHECKPOINTS, last.epochs, VAEConfig()  # the textbook sizes, bernoulli
    for kind, name in (("encoder", ENC), ("decoder", DEC)):
        with safe_open(str(where / name), "pt") as f:
            meta = json.loads(f.metadata()[checkpoint.META_KEY])
            keys = set(f.keys())
        assert meta["kind"] == kind and meta["epoch"] == epoch and meta["format"] == checkpoint.FORMAT
        assert VAEConfig.from_dict(meta["config"]) == model and "run" in meta
        assert TrainConfig.from_dict(meta["train_config"]).model == model
        assert keys == set(checkpoint.read_file(where / name)["state_dict"])
    if shutil.which("sha256sum"):
        done = subprocess.run(["sha256sum", "-c", checkpoint.RECORD_FILE], cwd=where, capture_output=True, text=True)
        assert done.returncode == 0 and done.stdout.count(": OK") == 2, done.stdout + done.stderr
    record = (where / checkpoint.RECORD_FILE).read_text().splitlines()
    assert record == [f"{hashlib.sha256((where / n).read_bytes()).hexdigest()}  {n}" for n in (DEC, ENC)]


def test_the_same_content_gives_the_same_bytes(tmp_path: Path) -> None:
    """The metadata is one canonical JSON entry: safetensors writes several entries in random order."""
    save_pair(tmp_path / "a")
    save_pair(tmp_path / "b")
    for name in (ENC, DEC, checkpoint.RECORD_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_resume_state_round_trip_keeps_the_optimizer_exactly(tmp_path: Path) -> None:
    state, encoder, decoder, optimizer = trained_state()
    checkpoint.save_pair(tmp_path, encoder, decoder, CONFIG, 2, "r1", state)
    back = checkpoint.load_train_state(tmp_path / checkpoint.STATE_FILE)
    assert (back["epoch"], back["run"], back["history"]) == (2, "r1", state["history"])
    assert TrainConfig.from_dict(back["train_config"]) == CONFIG
    for net in ("encoder", "decoder"):
        assert (
            all(torch.equal(state[net][k], back[net][k]) for k in state[net]) and back[net].keys() == state[net].keys()
        )
    fresh_enc, fresh_dec = build_models(CONFIG.model, seed=5)
    fresh = torch.optim.Adam([*fresh_enc.parameters(), *fresh_dec.parameters()], lr=1e-3)
    fresh.load_state_dict(back["optimizer"])
    want, got = optimizer.state_dict(), fresh.state_dict()
    groups = [[{**g, "betas": tuple(g["betas"])} for g in sd["param_groups"]] for sd in (want, got)]
    assert groups[0] == groups[1]  # JSON keeps Adam's betas as a list
    assert got["state"].keys() == want["state"].keys()
    for pid, slots in want["state"].items():
        for slot, value in slots.items():
            assert torch.equal(got["state"][pid][slot], value), (pid, slot)


def test_loading_never_touches_pickle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state, encoder, decoder, _ = trained_state()
    checkpoint.save_pair(tmp_path, encoder, decoder, CONFIG, 2, "r1", state)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a checkpoint load reached pickle")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    checkpoint.load_pair(tmp_path)
    checkpoint.load_pair(RELEASED_CHECKPOINTS)
    assert checkpoint.load_train_state(tmp_path / checkpoint.STATE_FILE)["epoch"] == 2


def test_missing_checkpoint_is_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=f"checkpoint {tmp_path / ENC} not found"):
        checkpoint.load_pair(tmp_path)


def test_missing_record_is_named(tmp_path: Path) -> None:
    save_pair(tmp_path)
    (tmp_path / checkpoint.RECORD_FILE).unlink()
    with pytest.raises(CheckpointError, match=f"sha256 record {tmp_path / checkpoint.RECORD_FILE} not found"):
        checkpoint.load_pair(tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_checkpoint_is_named(tmp_path: Path, damage: str) -> None:
    save_pair(tmp_path)
    path = tmp_path / DEC
    blob = path.read_bytes()
    path.write_bytes({"truncate": blob[: len(blob) // 2], "garbage": b"not a checkpoint" * 10, "empty": b""}[damage])
    with pytest.raises(CheckpointError, match=f"corrupt checkpoint {path}: its sha256 is not the"):
        checkpoint.load_pair(tmp_path)


def test_garbage_with_a_matching_record_is_named_not_parsed_blindly(tmp_path: Path) -> None:
    save_pair(tmp_path)
    checkpoint.commit(tmp_path, {DEC: b"not a checkpoint" * 10})
    with pytest.raises(CheckpointError, match=f"corrupt checkpoint {tmp_path / DEC}: not an edgevae safetensors"):
        checkpoint.load_pair(tmp_path)


def test_swapped_files_are_caught(tmp_path: Path) -> None:
    save_pair(tmp_path)
    files = {ENC: (tmp_path / DEC).read_bytes(), DEC: (tmp_path / ENC).read_bytes()}
    checkpoint.commit(tmp_path, files)  # swapped, and the record says so: the kinds still disagree
    with pytest.raises(CheckpointError, match="holds a 'decoder' checkpoint, expected 'encoder'"):
        checkpoint.load_pair(tmp_path)


def test_mismatched_pair_is_caught(tmp_path: Path) -> None:
    save_pair(tmp_path)
    other = TrainConfig(model=VAEConfig(hidden=32, latent=6))
    _, decoder = build_models(other.model, seed=0)
    checkpoint.save_module(tmp_path / DEC, "decoder", decoder, other, epoch=1)
    with pytest.raises(CheckpointError, match="different configs"):
        checkpoint.load_pair(tmp_path)


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    save_pair(tmp_path)
    before = (tmp_path / ENC).read_bytes()

    with pytest.raises(KeyboardInterrupt), open_atomic(tmp_path / ENC) as f:
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt
    assert (tmp_path / ENC).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([checkpoint.RECORD_FILE, DEC, ENC])
