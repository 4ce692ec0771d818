"""Progress of long work: `log_likelihood` and `score` report it through a callback, the CLI draws a
line on a terminal only, and a callback changes nothing of the result."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgevae.runtime import VAE, contract
from edgevae.runtime import progress as progress_module
from edgevae.runtime.cli import describe_variant, header, main
from edgevae.runtime.progress import ProgressLine


@pytest.fixture(scope="module")
def digits(real_digits: np.ndarray) -> np.ndarray:
    return np.asarray(real_digits)[:24]


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("chunk_size", [64, 1000, 8192])
@pytest.mark.parametrize("batch", [1, 7, 24])
def test_log_likelihood_reports_every_block_and_ends_at_the_total(digits, chunk_size: int, batch: int) -> None:
    vae = VAE(chunk_size=chunk_size)
    calls: list[tuple[int, int]] = []
    with_progress = vae.log_likelihood(digits[:batch], k=50, seed=3, progress=lambda d, t: calls.append((d, t)))
    without = vae.log_likelihood(digits[:batch], k=50, seed=3)
    np.testing.assert_allclose(with_progress, without, rtol=0, atol=1e-9)
    assert calls[-1] == (batch, batch)
    done = [d for d, _ in calls]
    assert done == sorted(done) and len(set(done)) == len(done) and all(t == batch for _, t in calls)
    # a block holds at most chunk_size decoder rows: with k=50, at most chunk_size // 50 images
    assert len(calls) >= -(-batch // max(1, chunk_size // 50))


@pytest.mark.parametrize("batch", [1, 24])
def test_score_reports_progress_and_the_same_scores(digits, batch: int) -> None:
    vae = VAE(chunk_size=128)
    calls: list[tuple[int, int]] = []
    got = vae.score(digits[:batch], progress=lambda d, t: calls.append((d, t)))
    want = vae.score(digits[:batch])
    np.testing.assert_allclose(got.score, want.score, rtol=0, atol=1e-9)
    assert calls and calls[-1] == (batch, batch)


def test_a_callback_that_raises_stops_the_work() -> None:
    vae = VAE(chunk_size=64)
    calls: list[int] = []

    def stop(done: int, total: int) -> None:
        calls.append(done)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        vae.log_likelihood(np.zeros((40, 784), np.float32), k=32, seed=0, progress=stop)
    assert calls == [2]  # 64 rows per run, 32 samples each: the first block is two images


@pytest.mark.parametrize("bad", [3, "yes", [print]])
def test_progress_must_be_callable(bad: object) -> None:
    vae = VAE()
    for call in (
        lambda: vae.log_likelihood(np.zeros(784), k=2, seed=0, progress=bad),
        lambda: vae.score(np.zeros(784), progress=bad),
    ):
        with pytest.raises(TypeError, match=f"progress must be None or a callable .*got {type(bad).__name__}"):
            call()


def test_progress_line_waits_draws_in_place_and_ends_the_line() -> None:
    term, clock = FakeTerminal(), Clock()
    line = ProgressLine("likelihood", term, delay=2.0, clock=clock)
    clock.now += 1.0
    line(10, 100)
    assert term.getvalue() == ""  # a job under the delay shows nothing
    clock.now += 1.5
    line(50, 100)
    clock.now += 2.5
    line(100, 100)
    text = term.getvalue()
    assert text.startswith("\rlikelihood: 50/100 images (50%), 20.0 images/s, 2 s left")
    assert "\rlikelihood: 100/100 images (100%), 20.0 images/s\x1b[K" in text and "\n" not in text
    line.close()
    assert term.getvalue().endswith("\n") and term.getvalue().count("\n") == 1


def test_progress_line_is_silent_off_a_terminal() -> None:
    stream, clock = io.StringIO(), Clock()
    line = ProgressLine("score", stream, delay=0.0, clock=clock)
    clock.now += 10
    line(1, 2)
    line(2, 2)
    line.close()
    assert stream.getvalue() == ""


@pytest.mark.parametrize("command", ["likelihood", "score"])
def test_cli_draws_progress_on_a_terminal(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "x.npy", np.zeros((6, 784), np.float32))
    term = FakeTerminal()
    monkeypatch.setattr(progress_module, "DELAY_S", 0.0)
    monkeypatch.setattr(sys, "stderr", term)
    assert main([command, str(tmp_path / "x.npy"), "-k", "4", "-o", str(tmp_path / "out.csv")]) == 0
    assert f"\r{command}: 6/6 images (100%)" in term.getvalue() and term.getvalue().endswith("\n")


def test_cli_likelihood_writes_the_api_figures_and_nothing_extra_off_a_terminal(tmp_path: Path, digits) -> None:
    np.save(tmp_path / "x.npy", digits[:5])
    done = subprocess.run(
        [sys.executable, "-m", "edgevae.runtime.cli", "likelihood", str(tmp_path / "x.npy"), "-k", "20", "--seed", "4"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [line.split(",") for line in done.stdout.strip().splitlines()]
    assert rows[0] == ["index", "log_likelihood_nats", "bits_per_dim"] and len(rows) == 6
    want = VAE().log_likelihood(digits[:5], k=20, seed=4)
    np.testing.assert_allclose([float(r[1]) for r in rows[1:]], want, atol=1e-4)
    np.testing.assert_allclose([float(r[2]) for r in rows[1:]], -want / (784 * np.log(2)), atol=1e-6)
    assert done.stderr.splitlines()[0].startswith("device: ") and "\r" not in done.stderr


def test_int8_says_it_is_a_cpu_model_on_cuda() -> None:
    vae = VAE(variant="int8")
    assert "on CUDA: a CPU model in disguise" in describe_variant(vae.files, "int8")
    assert "on CUDA" not in describe_variant(vae.files, "fp16")
    on_cuda = SimpleNamespace(files=vae.files, device="cuda", providers=["CUDAExecutionProvider"])
    assert "use fp16 or fp32" in header(SimpleNamespace(device="cuda"), on_cuda)  # type: ignore[arg-type]
    assert "use fp16 or fp32" not in header(SimpleNamespace(device="cpu"), vae)  # type: ignore[arg-type]
    assert all(not v.on_cuda for name, v in contract.VARIANTS.items() if name != "int8")


def test_the_percentage_reaches_100_only_at_the_end() -> None:
    term, clock = FakeTerminal(), Clock()
    line = ProgressLine("likelihood", term, delay=0.0, clock=clock)
    clock.now += 1.0
    line(999, 1000)
    assert "(99%)" in term.getvalue() and "(100%)" not in term.getvalue()
