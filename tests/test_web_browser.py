"""web/index.html in a real browser: Debian's chromium, headless, driven by Playwright, the page served by
`python -m http.server` from the repo as `make web` serves it. Skips, saying what is missing, without
chromium, playwright or web/node_modules (.ci/run installs all three)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgevae.runtime import contract

from conftest import REPO, SHIPPED_MODEL
from web_support import canvas_pixels, cells, is_digit, launch, need_browser, open_page, serve

pytestmark = pytest.mark.slow  # a browser start and a WASM compile: a few seconds


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launch(need_browser()) as found:
        yield found


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    need_browser()
    with serve(REPO) as url:
        yield url


def page_url(site: str, **params: object) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{site}/web/index.html" + (f"?{query}" if query else "")


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_page_loads_and_its_selftest_passes(browser: Any, site: str, variant: str) -> None:
    page = open_page(browser, page_url(site, variant=variant))
    assert page.evaluate("document.body.dataset.state") == "ready", page.inner_text("#error")
    report = page.evaluate("window.edgevae.report")
    assert report["passed"] and report["variant"] == variant
    budgets = json.loads((SHIPPED_MODEL / "golden.json").read_text())["variants"][variant]["budget_vs_fp32"]
    assert {f"{c['graph']}.{c['output']}" for c in report["checks"]} == {
        f"{g}.{o}" for g, spec in contract.GRAPHS.items() for o in spec.output_names if budgets[o] is not None
    }
    assert all(0 <= c["maxDiff"] <= c["tolerance"] for c in report["checks"])
    assert page.inner_text("#selftest").startswith(f"{variant}, onnxruntime-web WASM: pass")
    assert f"Variant in use: {variant} " in page.inner_text("#variant-info")
    assert page.is_hidden("#error")
    together = "async () => (await Promise.all([1, 2, 3].map((s) => edgevae.vae.sample(2, s)))).map((b) => b.rows)"
    assert page.evaluate(together) == [2, 2, 2]  # calls at once all complete
    page.close()


@pytest.mark.parametrize("n", [9, 16, 10])
def test_the_grid_has_the_requested_number_of_digits(browser: Any, site: str, n: int) -> None:
    page = open_page(browser, page_url(site, n=n))
    grid = canvas_pixels(page, "#grid")
    cols = int(np.ceil(np.sqrt(n)))
    rows = -(-n // cols)
    assert grid.shape == (rows * 30 + 2, cols * 30 + 2)
    found = cells(grid)
    assert [is_digit(c) for c in found] == [True] * n + [False] * (len(found) - n)
    page.close()


def render(page: Any, seed: str) -> np.ndarray:
    """Type a seed into the seed box, wait for the grid to redraw, return it."""
    before = page.evaluate("window.edgevae.renders")
    page.fill("#seed", seed)
    page.dispatch_event("#seed", "change")
    page.wait_for_function(f"window.edgevae.renders > {before}")
    assert page.get_attribute("#grid", "data-seed") == seed
    return canvas_pixels(page, "#grid").astype(np.int16)


def test_the_seed_box_changes_the_grid_and_the_same_seed_gives_the_same_grid(browser: Any, site: str) -> None:
    page = open_page(browser, page_url(site))
    first = canvas_pixels(page, "#grid").astype(np.int16)
    other = render(page, "1")
    again = render(page, "0")
    assert np.abs(first - again).max() <= 1  # same seed, same noise: the same digits (one level for rounding)
    assert np.abs(first - other).mean() > 10  # another seed: other digits
    assert sum(is_digit(c) for c in cells(other)) == 16
    page.close()


def test_the_latent_walk_runs_from_the_first_digit_to_the_last(browser: Any, site: str) -> None:
    page = open_page(browser, page_url(site))
    grid = cells(canvas_pixels(page, "#grid"))
    for t, end in (("0", grid[0]), ("100", grid[15])):
        before = page.evaluate("window.edgevae.walks")
        page.fill("#walk", t)  # fires the slider's input event
        page.wait_for_function(f"window.edgevae.walks > {before}")
        first, middle, last = cells(canvas_pixels(page, "#walk-image"))
        assert np.abs(middle.astype(int) - end.astype(int)).max() <= 1, t
        assert np.abs(first.astype(int) - grid[0].astype(int)).max() <= 1
        assert np.abs(last.astype(int) - grid[15].astype(int)).max() <= 1
    page.close()


def test_a_tampered_graph_is_refused_on_the_page(browser: Any, tmp_path: Path) -> None:
    """One flipped byte in decoder.onnx: the page says which file is corrupt and draws no digit."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "web").symlink_to(REPO / "web")
    shutil.copytree(SHIPPED_MODEL, root / "tampered")
    graph = root / "tampered" / "decoder.onnx"
    blob = bytearray(graph.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    graph.write_bytes(bytes(blob))
    with serve(root) as url:
        page = open_page(browser, f"{url}/web/index.html?model=../tampered/")
        assert page.evaluate("document.body.dataset.state") == "error"
        assert page.is_visible("#error")
        message = page.inner_text("#error")
        assert (
            message.startswith("ModelError: model file ") and "tampered/decoder.onnx is corrupt (modified)" in message
        )
        assert page.evaluate("document.querySelector('#grid').width") == 0  # no digits drawn
        assert page.evaluate("window.edgevae.report") is None  # refused before anything ran
        page.close()
