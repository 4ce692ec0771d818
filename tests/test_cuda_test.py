"""`make cuda-test` (bench/cuda_test.py): one line and exit 0 without a GPU; its self-test table, run on
the CPU provider here, covers every variant of every packaged model; on a (faked) CUDA machine the
ort variant is reported as not for CUDA and never started there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from edgevae.runtime import contract
from edgevae.runtime.model import list_packaged_models

from conftest import REPO, load_script

SCRIPT = REPO / "bench" / "cuda_test.py"


def cuda_test() -> ModuleType:
    return load_script(SCRIPT, "cuda_test")


def test_without_a_gpu_it_says_so_in_one_line_and_exits_0() -> None:
    if cuda_test().gpu_name() is not None:
        pytest.skip("an NVIDIA GPU is present: make cuda-test runs its real checks here")
    done = subprocess.run(
        ["make", "-s", "cuda-test", f"PYTHON={sys.executable}"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == [
        "make cuda-test: no NVIDIA GPU on this machine (nvidia-smi found none); nothing to check"
    ]


def test_the_table_covers_every_packaged_variant(tmp_path: Path) -> None:
    out = tmp_path / "cuda-test.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| model | variant | provider | worst output | max diff | tolerance | result |" in done.stdout
    rows = json.loads(out.read_text())["rows"]
    assert {(r["model"], r["variant"]) for r in rows} == {
        (m, v) for m in list_packaged_models() for v in contract.VARIANTS
    }
    assert all(r["result"] == "pass" and r["max_diff"] <= r["tolerance"] for r in rows)
    assert "summary: 10 self-tests on cpu, 0 failed" in done.stdout


def test_on_cuda_ort_is_not_for_this_device_and_the_rest_fail_loudly(fake_cuda: list) -> None:
    rows = cuda_test().selftest_rows("cuda")
    ort_rows = [r for r in rows if r["variant"] == "ort"]
    assert ort_rows and all(r["result"] == "not for this device" for r in ort_rows)
    # the fake lists CUDA but runs on the CPU: "did not load" is a failure the table must show
    assert all(r["result"] == "FAIL" and "did not load" in str(r["note"]) for r in rows if r["variant"] != "ort")
