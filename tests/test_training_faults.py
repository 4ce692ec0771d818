"""Training under kill -9: checkpoint sets on disk are always whole and consistent (the previous
pair or the new one), stray temporary files are removed on the next start, and a killed run
resumed with --resume ends with the same weights as an uninterrupted one, bit for bit (CPU)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import need

need("torch")

import torch

from edgevae.train import checkpoint, loop
from edgevae.train.config import PRESETS, TrainConfig

TINY = dict(train_limit=100, test_limit=20, batch_size=50, iw_samples=0)
ARGS = [
    "--train-limit",
    "100",
    "--test-limit",
    "20",
    "--batch-size",
    "50",
    "--iw-samples",
    "0",
    "--no-progress",
    "--device",
    "cpu",
]


def start(data_dir: Path, out: Path, epochs: int, resume: bool, overwrite: bool = False) -> subprocess.Popen[bytes]:
    cmd = (
        [sys.executable, "-m", "edgevae.train", "--data-dir", str(data_dir), "--out", str(out), "--epochs", str(epochs)]
        + ARGS
        + (["--resume"] if resume else [])
        + (["--overwrite"] if overwrite else [])
    )
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def mtime(path: Path) -> int:
    return path.stat().st_mtime_ns if path.exists() else 0


def wait_for(path: Path, proc: subprocess.Popen[bytes], timeout: float = 60, after: int = 0) -> None:
    """Until `path` is (re)written by this process: its mtime moves past `after`."""
    end = time.monotonic() + timeout
    while mtime(path) <= after:
        assert proc.poll() is None, "training exited before writing a checkpoint"
        assert time.monotonic() < end, f"no new {path} after {timeout}s"
        time.sleep(0.01)


def resume_state(encoder: torch.nn.Module, decoder: torch.nn.Module, config: TrainConfig, epoch: int) -> dict:
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()])
    return {
        "epoch": epoch,
        "train_config": config.to_dict(),
        "encoder": checkpoint.cpu_state_dict(encoder),
        "decoder": checkpoint.cpu_state_dict(decoder),
        "optimizer": optimizer.state_dict(),
        "history": [],
        "run": "r1",
    }


@pytest.mark.parametrize(
    "dies_at, survivor",
    [(checkpoint.RECORD_FILE, 1), (checkpoint.ENCODER_FILE, 2), (checkpoint.DECODER_FILE, 2), (None, 2)],
)
def test_an_interrupted_commit_leaves_the_old_set_or_the_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dies_at: str | None, survivor: int
) -> None:
    """A kill before the record is replaced (the commit point) leaves epoch 1; after it, epoch 2,
    read from the files not yet renamed (.NAME.pending) until finish_commit renames them."""
    encoder, decoder = checkpoint.load_pair(Path(__file__).resolve().parents[1] / "artifacts" / "checkpoints")
    config = TrainConfig()
    checkpoint.save_pair(tmp_path, encoder, decoder, config, 1, "r1", resume_state(encoder, decoder, config, 1))
    real_replace = os.replace

    def dying_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(dst).name == dies_at:
            raise KeyboardInterrupt(f"killed at the rename to {dies_at}")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt) if dies_at else contextlib.nullcontext():
        checkpoint.save_pair(tmp_path, encoder, decoder, config, 2, "r1", resume_state(encoder, decoder, config, 2))
    monkeypatch.setattr(os, "replace", real_replace)
    pending = sorted(p.name for p in tmp_path.glob(".*.pending"))
    assert len(pending) == {checkpoint.RECORD_FILE: 3, checkpoint.ENCODER_FILE: 3, checkpoint.DECODER_FILE: 2}.get(
        dies_at, 0
    ), pending
    for _ in range(2):  # before and after finish_commit (a training start calls it)
        pair = checkpoint.load_checkpoints(tmp_path)  # verified, one run and epoch
        assert pair.encoder.config == pair.decoder.config
        for kind, path in pair.paths.items():  # the file a load read, pending or not, reads back verified
            assert checkpoint.read_file(path)["epoch"] == survivor, (kind, path.name)
        for name in (checkpoint.ENCODER_FILE, checkpoint.DECODER_FILE, checkpoint.STATE_FILE):
            assert checkpoint.read_file(tmp_path / name)["epoch"] == survivor, name
        checkpoint.finish_commit(tmp_path)
        assert not list(tmp_path.glob(".*.pending"))
    assert {p.name for p in tmp_path.iterdir()} == {*checkpoint.FILES, checkpoint.RECORD_FILE}


@pytest.mark.slow
def test_30_kills_never_leave_a_broken_or_mixed_set(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "run"
    rng = random.Random(0)
    checked = 0
    for _ in range(30):
        before = mtime(out / checkpoint.STATE_FILE)
        proc = start(data_dir, out, epochs=10_000, resume=True)
        wait_for(out / checkpoint.STATE_FILE, proc, after=before)  # training runs and writes
        time.sleep(rng.uniform(0.0, 0.3))  # a random moment; the commit is about a fifth of an epoch here
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        pair = checkpoint.load_checkpoints(out)  # whole, sha256-checked, one run and epoch
        state = checkpoint.load_train_state(out / checkpoint.STATE_FILE)
        assert pair.encoder.config == pair.decoder.config and int(state["epoch"]) >= 1
        assert checkpoint.read_file(pair.paths["encoder"])["epoch"] == state["epoch"]  # one commit
        checked += 1
    assert checked == 30
    leftovers = [p.name for p in out.iterdir() if p.name.endswith((".tmp", ".pending"))]
    print(f"\nafter 30 kills: {len(leftovers)} stray temporary files: {leftovers}")
    proc = start(data_dir, out, epochs=1, resume=False, overwrite=True)  # a fresh start in the folder cleans up
    assert proc.wait(timeout=120) == 0
    assert not [p.name for p in out.iterdir() if p.name.endswith((".tmp", ".pending"))], leftovers


@pytest.mark.slow
def test_kill_then_resume_equals_an_uninterrupted_run(tmp_path: Path, data_dir: Path) -> None:
    epochs = 40
    whole = tmp_path / "whole"
    config = dataclasses.replace(PRESETS["default"], epochs=epochs, **TINY)  # what the CLI below trains
    loop.run_training(config, data_dir, whole, device="cpu", progress=False)
    out = tmp_path / "killed"
    proc = start(data_dir, out, epochs=epochs, resume=False)
    wait_for(out / checkpoint.ENCODER_FILE, proc)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = int(checkpoint.load_train_state(out / checkpoint.STATE_FILE)["epoch"])
    assert 1 <= done_before < epochs, done_before
    proc = start(data_dir, out, epochs=epochs, resume=True)
    assert proc.wait(timeout=300) == 0
    for name in (checkpoint.ENCODER_FILE, checkpoint.DECODER_FILE):
        a, b = checkpoint.read_file(whole / name), checkpoint.read_file(out / name)
        assert a["epoch"] == b["epoch"] == epochs
        assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
