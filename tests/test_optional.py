"""Optional packages: with torch, onnx, Pillow, hypothesis or ray missing, the suite still collects,
and every module that needs the missing one is skipped with a reason that names its extra."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXTRAS

REPO = Path(__file__).resolve().parents[1]
# Runs pytest --collect-only with some top-level packages made unimportable, as in a venv without them.
COLLECT_WITHOUT = """
import importlib.abc, sys
blocked = set(sys.argv[1].split(","))

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None

sys.meta_path.insert(0, Block())
import pytest
sys.exit(pytest.main(["--collect-only", "-q", "-rs", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "tests"]))
"""


def collect_without(*packages: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", COLLECT_WITHOUT, ",".join(packages)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    "packages, skipped_modules",
    [
        (("ray",), {"test_raydata.py"}),
        (("PIL",), {"test_cli.py", "test_images.py", "test_raydata.py"}),
        (("hypothesis",), {"test_runtime_speed_paths.py", "test_distributed.py", "test_property_inputs.py"}),
        (("torch", "onnx"), {"test_train.py", "test_export.py", "test_selftest.py", "test_score.py"}),
    ],
)
def test_a_missing_optional_package_skips_its_modules_and_breaks_nothing(
    packages: tuple[str, ...], skipped_modules: set[str]
) -> None:
    done = collect_without(*packages)
    out = done.stdout + done.stderr
    assert done.returncode == 0 and not re.search(r"\d+ errors? ", out), out[-3000:]
    skips = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    for module in skipped_modules:
        line = next((s for s in skips if f"{module} needs " in s), None)
        assert line is not None, (module, skips)
        assert any(f"needs {p}, which is not installed: {EXTRAS[p]}" in line for p in packages), line
    assert re.search(r"\b[1-9]\d* tests collected", out)  # the rest of the suite is still there
