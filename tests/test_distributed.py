"""Data-parallel training under torchrun (gloo on the CPU): two processes train what one does, within
the reordering of the gradient sums; a killed torchrun job resumes bit for bit; shards cover each
global batch exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import need

need("torch", "hypothesis")

import torch
from hypothesis import given
from hypothesis import strategies as st

from edgevae.train import checkpoint, distributed

# Two processes on this 2-core machine sum gradients in another order than one process; after 2
# epochs of 20 steps the measured gaps are 3e-8 (relative, per-epoch loss) and 2e-6 (absolute,
# weights). The bounds leave room for other BLAS builds and stay far below any real difference
# (a lost shard or a doubled gradient moves the loss by whole nats).
LOSS_RTOL = 1e-6
WEIGHT_ATOL = 1e-4
# The ELBO, where the tolerances below were calibrated (weights 2e-6 apart). The IWAE default's
# log-sum-exp weights amplify the different summation order: 5.7e-4 apart after 2 epochs.
SMALL = [
    "--train-limit",
    "2000",
    "--test-limit",
    "200",
    "--batch-size",
    "100",
    "--iw-samples",
    "0",
    "--objective",
    "elbo",
]


def train(data_dir: Path, out: Path, processes: int, *extra: str) -> subprocess.Popen[str]:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    cmd = [*(launcher if processes > 1 else [sys.executable]), "-m", "edgevae.train", "--data-dir", str(data_dir)]
    cmd += ["--out", str(out), "--device", "cpu", "--no-progress", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )


def finish(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return out + err


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, read from /proc (torchrun starts its ranks in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def weights(folder: Path) -> list[torch.Tensor]:
    encoder, decoder = checkpoint.load_pair(folder)
    return [p.detach() for p in list(encoder.parameters()) + list(decoder.parameters())]


pytestmark = pytest.mark.slow  # torchrun starts a process per rank, each importing torch


def test_two_processes_train_what_one_does(data_dir: Path, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    finish(train(data_dir, one, 1, "--epochs", "2", *SMALL))
    log = finish(train(data_dir, two, 2, "--epochs", "2", *SMALL))
    assert "rank 0 of 2" in log and "rank 1 of 2" in log
    a, b = (json.loads((f / "metrics.json").read_text()) for f in (one, two))
    assert (a["processes"], b["processes"]) == (1, 2)
    for ha, hb in zip(a["history"], b["history"], strict=True):
        for key in ("train_loss", "train_rec", "train_kl", "test_elbo"):
            assert hb[key] == pytest.approx(ha[key], rel=LOSS_RTOL), (ha["epoch"], key)
    gap = max((p - q).abs().max().item() for p, q in zip(weights(one), weights(two), strict=True))
    assert 0 <= gap <= WEIGHT_ATOL
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())  # rank 0 alone wrote


def test_a_killed_torchrun_job_resumes_bit_for_bit(data_dir: Path, tmp_path: Path) -> None:
    args = ["--epochs", "4", "--train-limit", "8000", "--test-limit", "200", "--batch-size", "100", "--iw-samples", "0"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    finish(train(data_dir, whole, 2, *args))
    proc = train(data_dir, killed, 2, *args)
    state = killed / checkpoint.STATE_FILE
    end = time.monotonic() + 300
    while not state.exists():
        assert proc.poll() is None and time.monotonic() < end, "no epoch finished"
        time.sleep(0.01)
    for pid in [proc.pid, *descendants(proc.pid)]:  # torchrun and both ranks (in sessions of their own), mid-run
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.communicate()
    stopped_after = checkpoint.read_file(state)["epoch"]
    assert stopped_after < 4, "the job finished before it was killed: the test proved nothing"
    finish(train(data_dir, killed, 2, *args, "--resume"))
    for p, q in zip(weights(whole), weights(killed), strict=True):
        assert torch.equal(p, q)


@given(rows=st.integers(1, 500), size=st.integers(1, 9))
def test_shards_cover_a_batch_exactly_once(rows: int, size: int) -> None:
    parts = [distributed.shard(rows, distributed.World(rank, size)) for rank in range(size)]
    covered = [i for part in parts for i in range(rows)[part]]
    assert covered == list(range(rows))
    lengths = [len(range(rows)[part]) for part in parts]
    assert max(lengths) - min(lengths) <= 1


@pytest.mark.parametrize(
    "env, message",
    [
        ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK=2 is not within WORLD_SIZE=2"),
        ({"WORLD_SIZE": "two"}, "must be ints"),
    ],
)
def test_a_bad_torchrun_environment_is_named(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValueError, match=message):
        distributed.detect_world()


def test_without_torchrun_the_world_is_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert distributed.detect_world() == distributed.World(0, 1, 0)
