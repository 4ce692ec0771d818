"""`make cuda-bench` (bench/cuda_bench.py): one line and exit 0 without a GPU, nothing written; its
table, run on the CPU provider here, has every row the issue asks for, from alternating rounds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, SHIPPED_MODEL, load_bench, need

SCRIPT = REPO / "bench" / "cuda_bench.py"


def test_without_a_gpu_it_says_so_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    if load_bench("cuda_test").gpu_name() is not None:
        pytest.skip("an NVIDIA GPU is present: make cuda-bench measures it")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == [
        "make cuda-bench: no NVIDIA GPU on this machine (nvidia-smi found none); nothing measured"
    ]
    assert list(tmp_path.iterdir()) == []


def test_the_table_has_every_row_on_the_cpu_provider(tmp_path: Path) -> None:
    need("torch", "onnx")
    cmd = [sys.executable, str(SCRIPT), "--device", "cpu", "--rounds", "2", "--budget", "0.01", "--out", str(tmp_path)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "cuda_bench.json").read_text())
    assert report["summary"]["errors"] == {} and len(report["raw"]) == 2
    assert [list(r) for r in report["raw"]] == [["api", "bound", "torch", "gemm"], ["bound", "torch", "gemm", "api"]]
    cells = report["summary"]["cells"]
    for contender in ("api", "bound", "torch"):
        assert {f"decode/{b}" for b in (1, 1024, 65536)} <= set(cells[contender])
    for job in ("log_likelihood", "score"):
        share = report["summary"]["shares"][job]
        assert share["rounds"] == 2 and 0 < share["p10"] <= share["p50"] <= share["p90"]
    table = (tmp_path / "cuda_bench.md").read_text()
    rows = ("log_likelihood k=1000", "score (k=16)", "decode batch 1,", "decode batch 1,024", "decode batch 65,536")
    assert all(f"| {row}" in table for row in rows), table


def test_its_score_k_is_the_shipped_statistics_k() -> None:
    stats = json.loads((SHIPPED_MODEL / "score_stats.json").read_text())
    assert load_bench("cuda_bench").SCORE_K == stats["k"]
