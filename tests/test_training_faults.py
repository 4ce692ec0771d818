"""Training under kill -9: checkpoint sets on disk are always whole and consistent (the previous
pair or the new one), stray temporary files are removed on the next start, and a killed run
resumed with --resume ends with the same weights as an uninterrupted one, bit for bit (CPU)."""

from __future__ import annotations

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


def test_interrupted_pair_commit_is_recovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    encoder, decoder = checkpoint.load_pair(Path(__file__).resolve().parents[1] / "artifacts" / "checkpoints")
    config = TrainConfig()
    checkpoint.save_pair(tmp_path, encoder, decoder, config, epoch=1, run="r1")
    real_replace = os.replace

    def dying_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(dst).name == checkpoint.DECODER_FILE:  # the pair's second rename
            raise KeyboardInterrupt("killed between the two renames")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_pair(tmp_path, encoder, decoder, config, epoch=2, run="r1")
    monkeypatch.setattr(os, "replace", real_replace)
    assert checkpoint.read_file(tmp_path / checkpoint.ENCODER_FILE)["epoch"] == 2
    assert checkpoint.read_file(tmp_path / checkpoint.DECODER_FILE)["epoch"] == 1  # the mix a kill leaves
    checkpoint.load_pair(tmp_path)  # reads the whole pending half: a consistent epoch-2 pair
    checkpoint.finish_pair(tmp_path)
    assert checkpoint.read_file(tmp_path / checkpoint.DECODER_FILE)["epoch"] == 2
    assert not list(tmp_path.glob(".*.pending"))


@pytest.mark.slow
def test_30_kills_never_leave_a_broken_or_mixed_set(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "run"
    rng = random.Random(0)
    checked = 0
    for _ in range(30):
        before = mtime(out / checkpoint.STATE_FILE)
        proc = start(data_dir, out, epochs=10_000, resume=True)
        wait_for(out / checkpoint.STATE_FILE, proc, after=before)  # training runs and writes
        time.sleep(rng.uniform(0.0, 0.3))  # a random moment; most of an epoch here is checkpoint writing
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        encoder, decoder = checkpoint.load_pair(out)  # whole, CRC-checked, one run and epoch
        state = checkpoint.load_train_state(out / checkpoint.STATE_FILE)
        assert encoder.config == decoder.config and int(state["epoch"]) >= 1
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
