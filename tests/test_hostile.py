"""Hostile input, round two (issue 27): outputs that are not plain files, unbounded options, image
bombs, files whose size or header lies, outputs that would destroy inputs, forged .npz members,
non-finite thresholds, `info` that hides failures, transparent PNGs, temporary files of killed
writers, huge latents and arguments that were checked differently by each method.

Everything here needs only the runtime (numpy, onnxruntime; Pillow where a PNG is drawn). Memory is
measured from child processes (peak RSS), so each "refused before reading" claim is a number.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from edgevae.runtime import VAE, contract
from edgevae.runtime.atomic import open_atomic
from edgevae.runtime.cli import main
from edgevae.runtime.errors import InputError
from edgevae.runtime.images import PNG_SIGNATURE, png_chunk, read_images
from edgevae.runtime.limits import MEMORY_BUDGET_ENV
from edgevae.runtime.model import seal_manifest

from conftest import SHIPPED_MODEL

EDGEVAE = [sys.executable, "-m", "edgevae.runtime.cli"]
# The CLI in-process, then its own peak RSS (KiB, Linux) written to the file named first. VmHWM, not
# getrusage's ru_maxrss: Linux carries the parent's high-water mark into ru_maxrss across fork and exec,
# so a child of a pytest process that has grown (torch imported, a browser run) would report that.
MEASURED = (
    "import sys\nfrom edgevae.runtime.cli import main\ncode = 2\ntry:\n    code = main(sys.argv[2:])\n"
    "finally:\n    hwm = [line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')]\n"
    "    open(sys.argv[1], 'w').write(hwm[0])\n"
    "sys.exit(code)"
)
PEAK_MIB = 200  # the CLI itself peaks at about 70-100 MiB; the inputs refused here would take 0.5-40 GB


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], float]:
    """The CLI in a child process: (result, that child's peak RSS in MiB)."""
    peak_file = cwd / ".peak_rss"
    done = subprocess.run(
        [sys.executable, "-c", MEASURED, str(peak_file), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )
    peak = int(peak_file.read_text()) / 1024
    peak_file.unlink()
    return done, peak


def one_line_error(done: subprocess.CompletedProcess[str], code: int = 2) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("edgevae: error: ")
    return lines[0]


@pytest.fixture
def digits(tmp_path: Path, real_digits: np.ndarray) -> Path:
    path = tmp_path / "x.npy"
    np.save(path, real_digits[:6])
    return path


# -- 1. outputs that are not regular files -------------------------------------------------------
def test_1_dev_null_stays_a_device(tmp_path: Path, digits: Path) -> None:
    for args in (["sample", "-n", "3", "-o", os.devnull], ["score", str(digits), "-o", os.devnull]):
        done, _ = run(*args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    assert Path(os.devnull).is_char_device()


@pytest.mark.parametrize("command", [["sample", "-n", "4"], ["score", "x.npy"]])
def test_1_a_fifo_is_written_through_not_replaced(command: list[str], tmp_path: Path, digits: Path) -> None:
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    done, _ = run(*command, "-o", str(fifo), cwd=tmp_path)
    reader.join(timeout=60)
    assert done.returncode == 0, done.stderr
    assert fifo.is_fifo() and got
    if command[0] == "sample":
        assert got[0].startswith(PNG_SIGNATURE)  # a FIFO has no suffix: the command's default format
    else:
        assert got[0].decode().splitlines()[0].startswith("index,score,nll") and len(got[0].splitlines()) == 7


def test_1_a_symlink_is_followed_and_its_target_replaced(tmp_path: Path) -> None:
    target = tmp_path / "real" / "s.npy"
    target.parent.mkdir()
    target.write_bytes(b"old")
    link = tmp_path / "link.npy"
    link.symlink_to(target)
    done, _ = run("sample", "-n", "2", "--seed", "1", "-o", str(link), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    np.testing.assert_array_equal(np.load(target), VAE(device="cpu").sample(2, seed=1))
    assert sorted(p.name for p in target.parent.iterdir()) == ["s.npy"]  # no temporary file left


def test_1_dash_writes_to_stdout(tmp_path: Path, digits: Path) -> None:
    png = subprocess.run([*EDGEVAE, "sample", "-n", "4", "-o", "-"], cwd=tmp_path, capture_output=True, timeout=120)
    assert png.returncode == 0 and png.stdout.startswith(PNG_SIGNATURE) and b"wrote 4 samples" not in png.stdout
    done, _ = run("score", "x.npy", "-o", "-", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("index,score,nll")


# -- 2. every amount has a bound from one budget ----------------------------------------------------
@pytest.mark.parametrize(
    "args, option",
    [
        (["interpolate", "x.npy", "x.npy", "--steps", "1000000", "-o", "p.png"], "--steps=1,000,000"),
        (["score", "x.npy", "-k", "1000000000"], "k=1,000,000,000"),
        (["likelihood", "x.npy", "-k", "1000000000"], "k=1,000,000,000"),
        (["sample", "-n", "100000000", "-o", "s.npy"], "-n=100,000,000"),
    ],
)
def test_2_amounts_over_the_budget_are_refused_before_allocating(
    args: list[str], option: str, tmp_path: Path, real_digits: np.ndarray
) -> None:
    np.save(tmp_path / "x.npy", real_digits[:1])
    done, peak = run(*args, cwd=tmp_path)
    line = one_line_error(done)
    assert f"{option} is over its bound of " in line and "under the memory budget of 2 GiB" in line
    assert MEMORY_BUDGET_ENV in line and peak < PEAK_MIB  # MiB: nothing was allocated for the work


def test_2_the_budget_can_be_lowered_and_raised(tmp_path: Path) -> None:
    done, _ = run("sample", "-n", "2000", "-o", "s.npy", cwd=tmp_path, env={MEMORY_BUDGET_ENV: "16M"})
    assert "-n=2,000 is over its bound of " in one_line_error(done) and "budget of 16 MiB" in done.stderr
    done, _ = run(
        "sample", "-n", "2000", "-o", "s.npy", "--memory-budget", "1G", cwd=tmp_path, env={MEMORY_BUDGET_ENV: "16M"}
    )
    assert done.returncode == 0 and np.load(tmp_path / "s.npy").shape == (2000, 28, 28)
    done, _ = run("sample", "-n", "2", "-o", "s.npy", cwd=tmp_path, env={MEMORY_BUDGET_ENV: "lots"})
    assert f"{MEMORY_BUDGET_ENV}: expected a size in bytes" in one_line_error(done)
    assert VAE(memory_budget="64M").memory_budget == 64 * 2**20
    with pytest.raises(ValueError, match=r"k=100,000 is over its bound of [\d,]+ samples"):
        VAE(memory_budget="8M").log_likelihood(np.zeros(784, np.float32), k=100_000)


# -- 3. picture bombs -----------------------------------------------------------------------------
def bomb_png(path: Path, side: int, bits: int = 8) -> Path:
    """A greyscale PNG of side x side black pixels, compressed in a stream (never held whole)."""
    header = struct.pack(">IIBBBBB", side, side, bits, 0, 0, 0, 0)
    row = b"\x00" * (1 + side * bits // 8)
    pack = zlib.compressobj(9)
    data = b"".join(pack.compress(row) for _ in range(side)) + pack.flush()
    path.write_bytes(PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("side, bits", [(10_000, 8), (10_000, 16), (30_000, 8)])
def test_3_a_huge_png_is_refused_from_its_header(side: int, bits: int, tmp_path: Path) -> None:
    pytest.importorskip("PIL", reason="reading PNG input needs Pillow (the images extra)")
    bomb_png(tmp_path / "bomb.png", side, bits)
    done, peak = run("reconstruct", "bomb.png", "-o", "r.png", cwd=tmp_path)
    line = one_line_error(done)
    assert "bomb.png" in line and ("pixels is over the limit" in line or "decompression bomb" in line), line
    assert peak < PEAK_MIB  # MiB; decoding it would take 100 MB to 1.8 GB
    with pytest.raises(InputError, match="pixels is over the limit|decompression bomb"):
        read_images(tmp_path / "bomb.png")  # the API without a model's shape: the pixel limit


def test_3_a_png_of_the_wrong_size_is_refused_before_decoding(tmp_path: Path) -> None:
    pytest.importorskip("PIL", reason="reading PNG input needs Pillow (the images extra)")
    bomb_png(tmp_path / "big.png", 3000)
    done, peak = run("reconstruct", "big.png", "-o", "r.png", cwd=tmp_path)
    assert "big.png: expected images shaped" in one_line_error(done) and "got shape (3000, 3000)" in done.stderr


# -- 4. files whose size lies -----------------------------------------------------------------------
@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    model = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL, model)
    return model


@pytest.mark.parametrize("name", ["decoder.onnx", contract.SCORE_DENSITY_FILE, contract.MANIFEST_FILE])
def test_4_a_huge_sparse_file_is_refused_from_its_size(name: str, model_copy: Path, tmp_path: Path) -> None:
    os.truncate(model_copy / name, 40 * 2**30)  # 40 GiB, sparse: costs no disk
    done, peak = run("sample", "-n", "2", "-o", "s.png", "--model", str(model_copy), cwd=tmp_path)
    line = one_line_error(done)
    assert name in line and "corrupt" in line and peak < PEAK_MIB


def test_4_a_wrong_shape_npy_is_refused_from_its_header(tmp_path: Path) -> None:
    path = tmp_path / "wide.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (2**26, 4)})
    os.truncate(path, path.stat().st_size + 2**30)  # 1 GiB of data, sparse
    done, peak = run("reconstruct", "wide.npy", "-o", "r.png", cwd=tmp_path)
    assert "wide.npy: expected images shaped" in one_line_error(done) and peak < PEAK_MIB


# -- 5. an output that is an input ---------------------------------------------------------------------
@pytest.mark.parametrize("alias", ["same", "symlink", "hardlink"])
def test_5_an_output_that_is_the_input_is_refused_before_work(alias: str, tmp_path: Path, digits: Path) -> None:
    before = digits.read_bytes()
    out = {"same": digits, "symlink": tmp_path / "l.npy", "hardlink": tmp_path / "h.npy"}[alias]
    if alias == "symlink":
        out.symlink_to(digits)
    elif alias == "hardlink":
        os.link(digits, out)
    done, _ = run("reconstruct", str(digits), "-o", str(out), cwd=tmp_path)
    assert "is the input file" in one_line_error(done) and digits.read_bytes() == before


@pytest.mark.parametrize(("command", "method"), [("score", "score"), ("likelihood", "log_likelihood")])
def test_5_csv_outputs_must_be_csv_and_are_checked_before_work(
    command: str,
    method: str,
    tmp_path: Path,
    digits: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(VAE, method, lambda *a, **k: pytest.fail("worked before checking the output"))
    assert main([command, str(digits), "-o", str(tmp_path / "s.png")]) == 2
    assert "output must end in .csv, got 's.png'" in capsys.readouterr().err
    assert main([command, str(digits), "-o", str(digits)]) == 2  # and never onto its input


# -- 6. forged .npz members -------------------------------------------------------------------------
def forged_npz(arrays: dict[str, np.ndarray], lie: str) -> bytes:
    """An .npz whose member `lie` claims 10**10 float32 values in a few bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, array in arrays.items():
            member = io.BytesIO()
            if name == lie:
                np.lib.format.write_array_header_1_0(
                    member, {"descr": "<f4", "fortran_order": False, "shape": (10**10,)}
                )
                member.write(b"\0" * 64)
            else:
                np.lib.format.write_array(member, array)
            zf.writestr(f"{name}.npy", member.getvalue())
    return buf.getvalue()


def reseal(model: Path, name: str, blob: bytes) -> None:
    """Write `blob` as `name` and rewrite the manifest so its sha256, size and seal stay valid."""
    import hashlib

    (model / name).write_bytes(blob)
    manifest = json.loads((model / contract.MANIFEST_FILE).read_text())
    manifest.pop("manifest_sha256", None)
    manifest["files"][name].update(sha256=hashlib.sha256(blob).hexdigest(), size=len(blob))
    (model / contract.MANIFEST_FILE).write_bytes(seal_manifest(manifest))


@pytest.mark.parametrize("command, code", [(["score", "x.npy"], 2), (["selftest"], 2), (["info"], 1)])
def test_6_a_forged_npz_header_is_an_error_not_a_crash(
    command: list[str], code: int, model_copy: Path, tmp_path: Path, digits: Path
) -> None:
    with np.load(model_copy / contract.SCORE_DENSITY_FILE) as npz:
        density = {k: npz[k] for k in npz.files}
    reseal(model_copy, contract.SCORE_DENSITY_FILE, forged_npz(density, "means"))
    # golden.bin has no header: its index in golden.json claims 10**10 floats for decoder.z instead
    spec = json.loads((model_copy / contract.GOLDEN_SPEC_FILE).read_text())
    spec["tensors"]["decoder.z"].update(shape=[10**10], bytes=4 * 10**10)
    reseal(model_copy, contract.GOLDEN_SPEC_FILE, json.dumps(spec).encode())
    done, peak = run(*command, "--model", str(model_copy), cwd=tmp_path)
    assert done.returncode == code and "Traceback" not in done.stderr + done.stdout, done.stderr
    text = done.stderr + done.stdout
    if command[0] == "score":
        assert "header says shape (10000000000,) of float32" in text and "forged" in text, text
    else:
        assert "golden.bin: index entry 'decoder.z' (shape [10000000000]" in text and "does not fit" in text, text
    assert peak < PEAK_MIB


# -- 7. thresholds --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, message",
    [
        ("nan", "--threshold: expected a finite number"),
        ("inf", "--threshold: expected a finite number"),
        ("-inf", "--threshold: expected a finite number"),
        ("lots", "--threshold: expected a finite number"),
        ("p42", "no stored percentile '42' for score 'density'"),
    ],
)
def test_7_thresholds_must_be_finite_numbers_or_stored_percentiles(
    value: str, message: str, digits: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(VAE, "score", lambda *a, **k: pytest.fail("scored before checking the threshold"))
    assert main(["score", str(digits), f"--threshold={value}"]) == 2
    assert message in capsys.readouterr().err


# -- 8. info reports every failure and exits non-zero ----------------------------------------------
def test_8_info_runs_every_check_and_exits_1_when_one_failed(model_copy: Path, tmp_path: Path) -> None:
    graph = model_copy / contract.VARIANTS["int8"].file("decoder")
    blob = bytearray(graph.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    graph.write_bytes(bytes(blob))
    done, _ = run("info", "--model", str(model_copy), "--device", "cpu", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "selftest cpu int8: FAIL (model file" in done.stdout and "decoder.int8.onnx is corrupt" in done.stdout
    for later in ("fp16", "b1", "ort"):  # the variants after the broken one are still checked
        assert f"selftest cpu {later} (CPUExecutionProvider): pass" in done.stdout
    assert done.stdout.strip().endswith("info: 1 check(s) failed")


def test_13_info_on_a_file_says_it_is_a_file(tmp_path: Path, digits: Path) -> None:
    done, _ = run("info", "--model", str(digits), cwd=tmp_path)
    assert f"model folder {digits} is a file, not a folder" in one_line_error(done)


# -- 9. transparency -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_9_transparent_pngs_are_composited_onto_white(mode: str, tmp_path: Path) -> None:
    image_mod = pytest.importorskip("PIL.Image", reason="reading PNG input needs Pillow (the images extra)")
    strokes = np.zeros((28, 28), bool)
    strokes[6:22, 12:16] = True  # a black bar on a transparent background
    alpha = np.where(strokes, 255, 0).astype(np.uint8)
    black = np.zeros((28, 28), np.uint8)
    layers = [black, black, black, alpha] if mode == "RGBA" else [black, alpha]
    picture = image_mod.fromarray(np.stack(layers, axis=-1))
    assert picture.mode == mode
    picture.save(tmp_path / "t.png")
    got = read_images(tmp_path / "t.png")
    assert got.dtype == np.uint8 and (got[strokes] == 0).all() and (got[~strokes] == 255).all()


# -- 10. temporary files of killed writers ------------------------------------------------------------
def test_10_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path: Path) -> None:
    out = tmp_path / "s.png"
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, signal, sys; from edgevae.runtime.atomic import open_atomic\n"
            "with open_atomic(sys.argv[1]) as f:\n"
            "    f.write(b'half'); f.flush(); os.kill(os.getpid(), signal.SIGKILL)",
            str(out),
        ],
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL
    leftovers = list(tmp_path.glob(".s.png.*.tmp"))
    assert len(leftovers) == 1 and not out.exists()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        alive = tmp_path / f".s.png.{live.pid}.abc123.tmp"  # a writer that is still running
        alive.write_bytes(b"in progress")
        done, _ = run("sample", "-n", "2", "-o", str(out), cwd=tmp_path)
        assert done.returncode == 0 and out.exists()
        assert not leftovers[0].exists() and alive.exists()
    finally:
        live.kill()
        live.wait()


def test_10_open_atomic_names_its_temporary_file_by_pid(tmp_path: Path) -> None:
    with open_atomic(tmp_path / "a.bin") as f:
        (tmp,) = tmp_path.glob(".a.bin.*.tmp")
        assert tmp.name.startswith(f".a.bin.{os.getpid()}.")
        f.write(b"x")
    assert (tmp_path / "a.bin").read_bytes() == b"x" and not tmp.exists()


# -- 11. huge latents -----------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["fp32", "int8", "fp16"])
def test_11_decode_keeps_its_promise_for_any_finite_latent(variant: str) -> None:
    vae = VAE(device="cpu", variant=variant)
    big = np.finfo(np.float32).max
    z = np.array([[3e38] * 20, [-3e38] * 20, [big, -big] * 10, [1e5] * 20], np.float32)
    out = vae.decode(z)
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0


# -- 12. one argument validator -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call",
    [
        lambda v, x: v.sample(np.int64(2), seed=np.uint32(1)),
        lambda v, x: v.interpolate(x[0], x[1], steps=np.int16(3)),
        lambda v, x: v.log_likelihood(x, k=np.int64(2), seed=np.int64(1)),
        lambda v, x: v.elbo(x, seed=np.uint64(2**63)),
        lambda v, x: v.score(x, k=np.int32(2), seed=np.int8(1)),
        lambda v, x: VAE(chunk_size=np.int64(16), threads=np.int32(1)).decode(np.zeros((2, 20), np.float32)),
    ],
)
def test_12_numpy_integers_are_accepted_everywhere(call: object, real_digits: np.ndarray) -> None:
    call(VAE(device="cpu"), real_digits[:2])  # type: ignore[operator]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda v, x: VAE(chunk_size=True), "chunk_size must be an int >= 1; got True"),
        (lambda v, x: VAE(threads=True), "threads must be an int >= 0; got True"),
        (lambda v, x: v.sample(True), "n must be an int >= 1; got True"),
        (lambda v, x: v.sample(2, seed=2.0), "seed must be an int in [0, 2**128); got 2.0"),
        (lambda v, x: v.log_likelihood(x, k=True), "k must be an int >= 1; got True"),
        (lambda v, x: v.interpolate(x[0], x[1], steps=3.0), "steps must be an int >= 2; got 3.0"),
    ],
)
def test_12_bools_and_floats_are_refused_alike(call: object, message: str, real_digits: np.ndarray) -> None:
    with pytest.raises(ValueError) as refused:
        call(VAE(device="cpu"), real_digits[:2])  # type: ignore[operator]
    assert message in str(refused.value)


@pytest.mark.parametrize(
    "call",
    [
        lambda v, x, s: v.sample(1, seed=s),
        lambda v, x, s: v.elbo(x, seed=s),
        lambda v, x, s: v.log_likelihood(x, k=2, seed=s),
        lambda v, x, s: v.score(x, k=2, seed=s),
        lambda v, x, s: v.encode_z(x, seed=s),
        lambda v, x, s: v.reconstruct(x, stochastic=True, seed=s),
    ],
)
def test_12_every_seeded_method_takes_one_seed_range(call: object, real_digits: np.ndarray) -> None:
    vae, x = VAE(device="cpu"), real_digits[:2]
    call(vae, x, 2**128 - 1)  # type: ignore[operator]
    for bad in (2**128, -1):
        with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*128\)"):
            call(vae, x, bad)  # type: ignore[operator]
