"""What the web/ tests share: finding node, the npm packages and chromium (or the reason to skip),
serving the repo with `python -m http.server`, a headless chromium page, and running Node code."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import REPO

WEB = REPO / "web"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NODE = shutil.which("node")
NPM_HINT = "run `npm ci --ignore-scripts` in web/ (.ci/run does)"
INK = 64  # a pixel at this level (a quarter of white) or brighter is ink


def need_node() -> str:
    """The node executable with onnxruntime-node installed in web/, or skip saying what is missing."""
    if NODE is None:
        pytest.skip("node is not installed (Debian: apt-get install nodejs npm)")
    if not (WEB / "node_modules" / "onnxruntime-node" / "package.json").is_file():
        pytest.skip(f"web/node_modules has no onnxruntime-node: {NPM_HINT}")
    return NODE


def need_browser() -> Any:
    """playwright.sync_api, with chromium and onnxruntime-web present, or skip saying what is missing."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[web]'")
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; never `playwright install`)")
    if not (WEB / "node_modules" / "onnxruntime-web" / "dist").is_dir():
        pytest.skip(f"web/node_modules has no onnxruntime-web: {NPM_HINT}")
    return sync_api


def run_node(script: str, stdin: str = "", timeout: float = 120) -> Any:
    """Run an ES module (`script`, in web/ so its imports resolve) and parse the JSON it prints last."""
    done = subprocess.run(
        [need_node(), "--input-type=module", "-e", script],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=WEB,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def serve(root: Path) -> Iterator[str]:
    """`python -m http.server` on a free local port in `root`, as `make web` runs it; yields its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"port (\d+)", line)
        assert found, f"http.server said {line!r}"
        yield f"http://127.0.0.1:{found.group(1)}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextlib.contextmanager
def launch(sync_api: Any) -> Iterator[Any]:
    """A headless Debian chromium driven by Playwright; yields the browser."""
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser: Any, url: str, timeout_ms: int = 60_000) -> Any:
    """A new page at `url`, once its script says 'ready' or 'error' (body data-state)."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_function("document.body.dataset.state !== 'loading'", timeout=timeout_ms)
    assert not errors, errors
    return page


def canvas_pixels(page: Any, selector: str) -> np.ndarray:
    """The canvas's pixels as a (height, width) uint8 gray image (its red channel)."""
    width, height, red = page.evaluate(
        """(sel) => {
            const c = document.querySelector(sel);
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            return [c.width, c.height, Array.from(d.filter((_, i) => i % 4 === 0))];
        }""",
        selector,
    )
    return np.asarray(red, np.uint8).reshape(height, width)


def cells(grid: np.ndarray, size: int = 28, pad: int = 2) -> list[np.ndarray]:
    """The images of a grid laid out as runtime/images.py and web/grid.js lay it out."""
    rows, cols = (grid.shape[0] - pad) // (size + pad), (grid.shape[1] - pad) // (size + pad)
    return [
        grid[
            pad + r * (size + pad) : pad + r * (size + pad) + size,
            pad + c * (size + pad) : pad + c * (size + pad) + size,
        ]
        for r in range(rows)
        for c in range(cols)
    ]


def is_digit(cell: np.ndarray) -> bool:
    """A drawn digit: some ink, but not a filled square (under half the cell). Of 2000 samples of the
    default model (web/noise.js, seed 0) the faintest has 22 pixels of ink, the median about 110."""
    ink = int((cell >= INK).sum())
    return 16 <= ink < cell.size // 2
