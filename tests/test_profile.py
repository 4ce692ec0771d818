"""bench/profile_nodes.py: onnxruntime's per-node profile of a graph, as `make profile` prints it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("args", "ops"),
    [
        (["--runs", "5", "--batch", "8"], {"FusedGemm", "Gemm", "Sigmoid"}),
        (["--runs", "5", "--variant", "int8", "--batch", "8"], {"DynamicQuantizeMatMul", "Sigmoid"}),
        (["--runs", "5", "--graph", "encoder", "--variant", "b1", "--threads", "2"], {"FusedGemm", "Gemm", "Exp"}),
    ],
)
def test_profile_lists_every_kernel_with_shares_that_add_up(args: list[str], ops: set[str]) -> None:
    out = subprocess.run(
        [sys.executable, "bench/profile_nodes.py", *args], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert ops <= {r[1].strip() for r in rows}, out
    shares = [float(r[3].strip().rstrip("%")) for r in rows]
    assert abs(sum(shares) - 100) <= len(shares), out  # each share is rounded to a whole percent
    assert "batch 1," in out.splitlines()[0] if "b1" in args else "batch 8," in out.splitlines()[0]
    assert "Matrix products:" in out


def test_no_bench_script_hides_a_standard_library_module() -> None:
    # Python puts a script's own folder first on sys.path, so bench/profile.py once stood in for the
    # standard library's `profile` inside every bench worker, and torch.compile failed on it.
    names = {p.stem for p in (REPO / "bench").glob("*.py")}
    assert names and not names & set(sys.stdlib_module_names)
