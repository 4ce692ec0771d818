"""The device route of the README, as a newcomer takes it: build the wheel, install it with [cpu] into
an empty venv, and run there examples/embed.py (the README's "Embed it" block, which tests/test_readme.py
keeps equal to it) and every command of the README's "Command line" section."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow  # about a minute: a wheel build and a pip install from the package index


def readme_block(section: str, language: str) -> str:
    """The first ```language block under the README heading `section`."""
    text = (REPO / "README.md").read_text()
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    found = re.search(rf"```{language}\n(.*?)```", text[start : end if end > 0 else None], re.S)
    assert found, f"no {language} block under '## {section}'"
    return found.group(1)


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


@pytest.fixture(scope="module")
def device_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding only the wheel with [cpu] and what pip resolves for it."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"  # a copy of what the wheel is built from, so the build writes nothing in the repo
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for folder in ("runtime", "train", "export"):
        shutil.copytree(REPO / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(root / "dist"), str(src)], root)
    assert built.returncode == 0, built.stderr
    (wheel,) = (root / "dist").glob("edgevae-*-py3-none-any.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    installed = run([str(venv / "bin" / "pip"), "install", "-q", f"{wheel}[cpu]"], root)
    assert installed.returncode == 0, installed.stderr
    return venv


def test_the_wheel_is_the_runtime_without_torch(device_venv: Path, tmp_path: Path) -> None:
    python = str(device_venv / "bin" / "python")
    probe = run(
        [python, "-c", "import importlib.util as u; print([m for m in ('torch', 'onnx', 'PIL') if u.find_spec(m)])"],
        tmp_path,
    )
    assert probe.stdout.strip() == "[]", probe.stderr
    train = run([python, "-m", "edgevae.train", "--data-dir", ".", "--out", "o"], tmp_path)
    assert train.returncode == 2 and "Traceback" not in train.stderr
    assert "pip install 'edgevae[train]'" in train.stderr


def test_every_readme_runtime_command_works_in_the_clean_venv(device_venv: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{device_venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env.pop("EDGEVAE_MODEL_DIR", None)  # the packaged model, as on a device
    # examples/embed.py is the README's "Embed it (no torch)" block (tests/test_readme.py checks it line for line)
    shutil.copy(REPO / "examples" / "embed.py", tmp_path / "embed.py")
    embedded = run([str(device_venv / "bin" / "python"), "embed.py"], tmp_path, env)
    assert embedded.returncode == 0, embedded.stderr
    assert "(4, 28, 28)" in embedded.stdout
    commands = [line for line in readme_block("Command line", "sh").splitlines() if line.strip()]
    assert len(commands) >= 8
    for line in commands:
        assert line.startswith("edgevae "), line
        done = run(["bash", "-c", line], tmp_path, env)
        assert done.returncode == 0, (line, done.stderr)
        assert str(REPO) not in done.stdout, "the installed package must not come from the repository"
    for name in ("samples.png", "digits.npy", "recon.png", "a.npy", "b.npy", "path.png", "scores.csv"):
        assert (tmp_path / name).stat().st_size > 0, name
    info = run(["edgevae", "info", "--device", "cpu"], tmp_path, env)
    assert "site-packages" in info.stdout and "selftest cpu fp32 (CPUExecutionProvider): pass" in info.stdout
